//! The `aws` provider: EC2 instances, read through EBS snapshots.
//!
//! One [`AwsProvider`] serves one `spec.providers[].aws` entry. Its SDK clients (EC2 and RDS per
//! region, one S3 client) are built on first use and shared by every call on the same provider
//! value; credentials come from the default chain (environment, IRSA web identity, instance
//! profile) or from the policy's `credentialsSecret`, optionally exchanged for an assumed role.
//! The HTTPS client is hyper on rustls with the ring crypto provider.
//!
//! - Inventory: DescribeInstances (filtered by the selector), the instances' security groups and
//!   volumes; targets are RDS instance and cluster endpoints and S3 buckets.
//! - Snapshots (`create`): one CreateSnapshots per instance, tagged `snapsentry.io/*`; a scan
//!   that finds its own tagged snapshots (an operator restart) reuses them. `newestExisting`
//!   picks each volume's newest completed snapshot and creates nothing.
//! - Deletion only ever touches snapshots that carry `snapsentry.io/managed-by=snapsentry`.

mod inventory;

pub use inventory::{DEFAULT_STATES, instance_filters, selects};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    Filter, InstanceSpecification, ResourceType, SecurityGroup, Snapshot, SnapshotState, Tag,
    TagSpecification,
};
use aws_smithy_http_client::tls;
use futures::future::{BoxFuture, FutureExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use snapsentry_crds::{
    AssignedDisk, AwsProvider as AwsSpec, Cloud, DiskSource, SnapshotStrategy, TargetKind,
};
use tokio::sync::OnceCell;

use super::{Inventory, InventoryMachine, Provider, ProviderContext, SnapshotRef, TargetInventory};
use crate::error::{Error, Result};

/// Tag on every snapshot snapsentry creates; delete permissions can be scoped to it.
pub const MANAGED_BY_TAG: &str = "snapsentry.io/managed-by";
/// Value of [`MANAGED_BY_TAG`].
pub const MANAGED_BY_VALUE: &str = "snapsentry";
/// `<namespace>.<policy>` of the ScanPolicy the snapshot was taken for.
pub const POLICY_TAG: &str = "snapsentry.io/policy";
/// Id of the scan the snapshot was taken for.
pub const SCAN_ID_TAG: &str = "snapsentry.io/scan-id";
/// Instance whose volume the snapshot copies.
pub const INSTANCE_TAG: &str = "snapsentry.io/instance";

/// Keys of a `credentialsSecret`.
pub const ACCESS_KEY_ID_KEY: &str = "accessKeyId";
pub const SECRET_ACCESS_KEY_KEY: &str = "secretAccessKey";
pub const SESSION_TOKEN_KEY: &str = "sessionToken";

/// Values per DescribeVolumes / DescribeSecurityGroups filter (the API allows 200).
const FILTER_CHUNK: usize = 200;

/// How long [`Provider::prepare_snapshots`] waits for snapshots to complete, and how often it
/// looks (the interval doubles up to `max_poll`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotWait {
    pub timeout: Duration,
    pub first_poll: Duration,
    pub max_poll: Duration,
}

impl Default for SnapshotWait {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(20 * 60),
            first_poll: Duration::from_secs(2),
            max_poll: Duration::from_secs(30),
        }
    }
}

/// EC2 instances of one `aws` provider entry.
pub struct AwsProvider {
    spec: AwsSpec,
    wait: SnapshotWait,
    clients: OnceCell<Arc<Clients>>,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("spec", &self.spec)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

/// SDK clients of one provider.
struct Clients {
    /// Per region, in the order of `spec.regions`.
    regions: Vec<RegionClients>,
    s3: aws_sdk_s3::Client,
}

struct RegionClients {
    region: String,
    ec2: aws_sdk_ec2::Client,
    rds: aws_sdk_rds::Client,
}

/// An AWS SDK failure as text: the operation, its error code and message (never credentials).
fn aws_error<E, R>(operation: &str, region: &str, e: SdkError<E, R>) -> Error
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    Error::Aws {
        operation: operation.to_owned(),
        region: region.to_owned(),
        code: e.code().map(str::to_owned),
        message: DisplayErrorContext(&e).to_string(),
    }
}

fn provider_error(message: impl Into<String>) -> Error {
    Error::Provider {
        provider: "aws",
        message: message.into(),
    }
}

/// Static credentials from a `credentialsSecret`'s data. Errors name the Secret and the key,
/// never a value.
pub fn secret_credentials(secret: &Secret) -> Result<aws_sdk_ec2::config::Credentials> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let data = secret.data.as_ref();
    let get = |key: &str| -> Result<Option<String>> {
        let Some(bytes) = data.and_then(|d| d.get(key)) else {
            return Ok(None);
        };
        let value = String::from_utf8(bytes.0.clone()).map_err(|_| Error::AwsCredentials {
            secret: name.clone(),
            reason: format!("key {key} is not UTF-8"),
        })?;
        let value = value.trim().to_owned();
        Ok((!value.is_empty()).then_some(value))
    };
    let required = |key: &str| -> Result<String> {
        get(key)?.ok_or_else(|| Error::AwsCredentials {
            secret: name.clone(),
            reason: format!("key {key} is missing or empty"),
        })
    };
    Ok(aws_sdk_ec2::config::Credentials::new(
        required(ACCESS_KEY_ID_KEY)?,
        required(SECRET_ACCESS_KEY_KEY)?,
        get(SESSION_TOKEN_KEY)?,
        None,
        "snapsentry-credentials-secret",
    ))
}

/// The HTTPS client every SDK client uses: hyper on rustls with ring.
fn https_client() -> aws_sdk_ec2::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// `StartTime` as a jiff timestamp.
fn start_time(s: &Snapshot) -> Option<Timestamp> {
    let t = s.start_time()?;
    Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok()
}

fn has_tag(tags: &[Tag], key: &str, value: &str) -> bool {
    tags.iter()
        .any(|t| t.key() == Some(key) && t.value() == Some(value))
}

fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{key}"))
        .values(value)
        .build()
}

impl AwsProvider {
    pub fn new(spec: AwsSpec) -> Self {
        Self {
            spec,
            wait: SnapshotWait::default(),
            clients: OnceCell::new(),
        }
    }

    /// Change how long snapshot creation is waited for.
    pub fn with_snapshot_wait(mut self, wait: SnapshotWait) -> Self {
        self.wait = wait;
        self
    }

    /// The `snapsentry.io/policy` tag value of a policy.
    pub fn policy_tag(ctx: &ProviderContext) -> String {
        format!("{}.{}", ctx.namespace, ctx.policy)
    }

    fn strategy(&self) -> SnapshotStrategy {
        self.spec
            .snapshot_strategy
            .unwrap_or(SnapshotStrategy::Create)
    }

    async fn clients(&self, ctx: &ProviderContext) -> Result<Arc<Clients>> {
        self.clients
            .get_or_try_init(|| async { self.build_clients(ctx).await.map(Arc::new) })
            .await
            .cloned()
    }

    async fn build_clients(&self, ctx: &ProviderContext) -> Result<Clients> {
        let first = self
            .spec
            .regions
            .first()
            .ok_or_else(|| provider_error("spec.providers[].aws.regions is empty"))?;
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(https_client())
            .region(Region::new(first.clone()));
        if let Some(url) = &self.spec.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(secret) = &self.spec.credentials_secret {
            let client = ctx.client.clone().ok_or_else(|| Error::AwsCredentials {
                secret: secret.clone(),
                reason: "no Kubernetes client to read it with".into(),
            })?;
            let api: Api<Secret> = Api::namespaced(client, &ctx.namespace);
            let s = api
                .get_opt(secret)
                .await?
                .ok_or_else(|| Error::AwsCredentials {
                    secret: secret.clone(),
                    reason: format!("not found in namespace {}", ctx.namespace),
                })?;
            loader = loader.credentials_provider(secret_credentials(&s)?);
        }
        let mut base: SdkConfig = loader.load().await;
        if let Some(role) = &self.spec.assume_role_arn {
            let mut builder = AssumeRoleProvider::builder(role)
                .session_name("snapsentry")
                .configure(&base);
            if let Some(id) = &self.spec.external_id {
                builder = builder.external_id(id);
            }
            let provider = builder.build().await;
            base = base
                .into_builder()
                .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                    provider,
                ))
                .build();
        }
        let regions = self
            .spec
            .regions
            .iter()
            .map(|r| RegionClients {
                region: r.clone(),
                ec2: aws_sdk_ec2::Client::from_conf(
                    aws_sdk_ec2::config::Builder::from(&base)
                        .region(Region::new(r.clone()))
                        .build(),
                ),
                rds: aws_sdk_rds::Client::from_conf(
                    aws_sdk_rds::config::Builder::from(&base)
                        .region(Region::new(r.clone()))
                        .build(),
                ),
            })
            .collect();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&base)
                .force_path_style(self.spec.endpoint_url.is_some())
                .build(),
        );
        Ok(Clients { regions, s3 })
    }

    fn region<'c>(&self, clients: &'c Clients, region: Option<&str>) -> Result<&'c RegionClients> {
        let region = region
            .or_else(|| self.spec.regions.first().map(String::as_str))
            .unwrap_or_default();
        clients
            .regions
            .iter()
            .find(|r| r.region == region)
            .ok_or_else(|| {
                provider_error(format!("region {region} is not in the policy's regions"))
            })
    }

    /// The selected instances of one region.
    async fn region_machines(&self, rc: &RegionClients) -> Result<Vec<InventoryMachine>> {
        let region = rc.region.as_str();
        let selector = &self.spec.selector;
        let mut instances = Vec::new();
        let mut pages = rc
            .ec2
            .describe_instances()
            .set_filters(Some(instance_filters(selector)))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("DescribeInstances", region, e))?;
            for r in page.reservations() {
                for i in r.instances() {
                    let id = i.instance_id().unwrap_or_default();
                    let state = i.state().and_then(|s| s.name()).map(|n| n.as_str());
                    if selects(selector, id, state, &inventory::tag_map(i.tags())) {
                        instances.push(i.clone());
                    }
                }
            }
        }
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let group_ids: BTreeSet<String> = instances.iter().flat_map(inventory::group_ids).collect();
        let groups = self.security_groups(rc, &group_ids).await?;
        let volume_ids: Vec<String> = instances
            .iter()
            .flat_map(|i| i.block_device_mappings())
            .filter_map(|m| m.ebs()?.volume_id().map(str::to_owned))
            .collect();
        let sizes = match self.volume_sizes(rc, &volume_ids).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%region, error = %e, "volume sizes unknown");
                BTreeMap::new()
            }
        };
        let mut machines: Vec<InventoryMachine> = instances
            .iter()
            .filter_map(|i| inventory::machine(i, region, &groups, &sizes))
            .collect();
        machines.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(machines)
    }

    async fn security_groups(
        &self,
        rc: &RegionClients,
        ids: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, SecurityGroup>> {
        let ids: Vec<String> = ids.iter().cloned().collect();
        let mut groups = BTreeMap::new();
        for chunk in ids.chunks(FILTER_CHUNK) {
            let mut pages = rc
                .ec2
                .describe_security_groups()
                .filters(
                    Filter::builder()
                        .name("group-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| aws_error("DescribeSecurityGroups", &rc.region, e))?;
                for g in page.security_groups() {
                    if let Some(id) = g.group_id() {
                        groups.insert(id.to_owned(), g.clone());
                    }
                }
            }
        }
        Ok(groups)
    }

    async fn volume_sizes(
        &self,
        rc: &RegionClients,
        ids: &[String],
    ) -> Result<BTreeMap<String, u64>> {
        let mut sizes = BTreeMap::new();
        for chunk in ids.chunks(FILTER_CHUNK) {
            let mut pages = rc
                .ec2
                .describe_volumes()
                .filters(
                    Filter::builder()
                        .name("volume-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| aws_error("DescribeVolumes", &rc.region, e))?;
                for v in page.volumes() {
                    if let (Some(id), Some(gib)) = (v.volume_id(), v.size()) {
                        sizes.insert(id.to_owned(), u64::try_from(gib).unwrap_or(0) << 30);
                    }
                }
            }
        }
        Ok(sizes)
    }

    /// RDS instance and cluster endpoints of one region.
    async fn rds_endpoints(&self, rc: &RegionClients) -> Result<Vec<String>> {
        let mut hosts = Vec::new();
        let mut pages = rc.rds.describe_db_instances().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("DescribeDBInstances", &rc.region, e))?;
            for db in page.db_instances() {
                if let Some(a) = db.endpoint().and_then(|e| e.address()) {
                    hosts.push(a.to_owned());
                }
            }
        }
        let mut pages = rc.rds.describe_db_clusters().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("DescribeDBClusters", &rc.region, e))?;
            for c in page.db_clusters() {
                hosts.extend(c.endpoint().map(str::to_owned));
                hosts.extend(c.reader_endpoint().map(str::to_owned));
                hosts.extend(c.custom_endpoints().iter().cloned());
            }
        }
        Ok(hosts)
    }

    async fn buckets(&self, clients: &Clients) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut pages = clients.s3.list_buckets().into_paginator().send();
        while let Some(page) = pages.next().await {
            let region = self.spec.regions.first().map_or("", String::as_str);
            let page = page.map_err(|e| aws_error("ListBuckets", region, e))?;
            names.extend(
                page.buckets()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_owned)),
            );
        }
        Ok(names)
    }

    async fn targets(&self, clients: &Clients) -> TargetInventory {
        let mut targets = TargetInventory::default();
        let mut rds_complete = true;
        for rc in &clients.regions {
            match self.rds_endpoints(rc).await {
                Ok(hosts) => hosts
                    .iter()
                    .for_each(|h| targets.insert(TargetKind::Rds, h)),
                Err(e) => {
                    rds_complete = false;
                    tracing::warn!(region = %rc.region, error = %e, "RDS endpoints unknown");
                }
            }
        }
        if rds_complete {
            targets.complete_for.insert(TargetKind::Rds);
        }
        match self.buckets(clients).await {
            Ok(names) => {
                names
                    .iter()
                    .for_each(|n| targets.insert(TargetKind::S3Bucket, n));
                targets.complete_for.insert(TargetKind::S3Bucket);
            }
            Err(e) => tracing::warn!(error = %e, "S3 buckets unknown"),
        }
        targets
    }

    async fn inventory_impl(&self, ctx: &ProviderContext) -> Result<Inventory> {
        let clients = self.clients(ctx).await?;
        let mut machines = Vec::new();
        for rc in &clients.regions {
            machines.extend(self.region_machines(rc).await?);
        }
        let targets = self.targets(&clients).await;
        Ok(Inventory { machines, targets })
    }

    /// Snapshots matching `filters` (owned by this account), all pages.
    async fn find_snapshots(
        &self,
        rc: &RegionClients,
        filters: Vec<Filter>,
    ) -> Result<Vec<Snapshot>> {
        let mut found = Vec::new();
        let mut pages = rc
            .ec2
            .describe_snapshots()
            .owner_ids("self")
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("DescribeSnapshots", &rc.region, e))?;
            found.extend(page.snapshots().iter().cloned());
        }
        Ok(found)
    }

    fn scan_tags(ctx: &ProviderContext, scan_id: &str, instance: &str) -> Vec<Tag> {
        [
            (MANAGED_BY_TAG, MANAGED_BY_VALUE.to_owned()),
            (POLICY_TAG, Self::policy_tag(ctx)),
            (SCAN_ID_TAG, scan_id.to_owned()),
            (INSTANCE_TAG, instance.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
    }

    async fn create_snapshots(
        &self,
        ctx: &ProviderContext,
        machine: &InventoryMachine,
        scan_id: &str,
    ) -> Result<Vec<SnapshotRef>> {
        let clients = self.clients(ctx).await?;
        let rc = self.region(&clients, machine.region.as_deref())?;
        let policy = Self::policy_tag(ctx);
        let mine = vec![
            tag_filter(MANAGED_BY_TAG, MANAGED_BY_VALUE),
            tag_filter(POLICY_TAG, &policy),
            tag_filter(SCAN_ID_TAG, scan_id),
            tag_filter(INSTANCE_TAG, &machine.id),
        ];
        // Taken before an operator restart: reuse, never duplicate.
        let mut pairs: Vec<(String, String)> = self
            .find_snapshots(rc, mine.clone())
            .await?
            .iter()
            .filter_map(|s| Some((s.volume_id()?.to_owned(), s.snapshot_id()?.to_owned())))
            .collect();
        if pairs.is_empty() {
            let out = rc
                .ec2
                .create_snapshots()
                .instance_specification(
                    InstanceSpecification::builder()
                        .instance_id(&machine.id)
                        .exclude_boot_volume(false)
                        .build(),
                )
                .description(format!("snapsentry scan {scan_id} of {}", machine.id))
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::Snapshot)
                        .set_tags(Some(Self::scan_tags(ctx, scan_id, &machine.id)))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| aws_error("CreateSnapshots", &rc.region, e))?;
            pairs = out
                .snapshots()
                .iter()
                .filter_map(|s| Some((s.volume_id()?.to_owned(), s.snapshot_id()?.to_owned())))
                .collect();
            tracing::info!(policy = %ctx.policy, instance = %machine.id, %scan_id, snapshots = pairs.len(), "snapshots created");
        } else {
            tracing::info!(policy = %ctx.policy, instance = %machine.id, %scan_id, snapshots = pairs.len(), "reusing this scan's snapshots");
        }
        if pairs.is_empty() {
            return Err(provider_error(format!(
                "instance {} has no EBS volume to snapshot",
                machine.id
            )));
        }
        let ids: Vec<String> = pairs.iter().map(|(_, s)| s.clone()).collect();
        self.wait_completed(rc, &ids).await?;
        // The machine's disk order first; volumes attached since the inventory after.
        let position = |vol: &str| {
            machine
                .disks
                .iter()
                .position(|d| d.id == vol)
                .unwrap_or(usize::MAX)
        };
        pairs.sort_by_key(|(vol, snap)| (position(vol), snap.clone()));
        Ok(pairs
            .into_iter()
            .map(|(disk_id, snapshot_id)| SnapshotRef {
                disk_id,
                snapshot_id,
                region: Some(rc.region.clone()),
                created: true,
            })
            .collect())
    }

    /// Poll until every snapshot is `completed`; `error` or the timeout fail.
    async fn wait_completed(&self, rc: &RegionClients, ids: &[String]) -> Result<()> {
        let started = tokio::time::Instant::now();
        let mut poll = self.wait.first_poll;
        loop {
            let snaps = self
                .find_snapshots(
                    rc,
                    vec![
                        Filter::builder()
                            .name("snapshot-id")
                            .set_values(Some(ids.to_vec()))
                            .build(),
                    ],
                )
                .await?;
            let mut pending = Vec::new();
            for id in ids {
                let s = snaps.iter().find(|s| s.snapshot_id() == Some(id.as_str()));
                match s.and_then(|s| s.state()) {
                    Some(SnapshotState::Completed) => {}
                    Some(SnapshotState::Error) => {
                        let why = s.and_then(|s| s.state_message()).unwrap_or("no message");
                        return Err(provider_error(format!("snapshot {id} failed: {why}")));
                    }
                    _ => pending.push(id.as_str()),
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if started.elapsed() + poll > self.wait.timeout {
                return Err(provider_error(format!(
                    "snapshots {} not completed after {:?}",
                    pending.join(", "),
                    self.wait.timeout
                )));
            }
            tracing::debug!(region = %rc.region, pending = pending.len(), "waiting for snapshots");
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(self.wait.max_poll);
        }
    }

    async fn newest_existing(
        &self,
        ctx: &ProviderContext,
        machine: &InventoryMachine,
    ) -> Result<Vec<SnapshotRef>> {
        let clients = self.clients(ctx).await?;
        let rc = self.region(&clients, machine.region.as_deref())?;
        let mut refs = Vec::new();
        for disk in &machine.disks {
            let snaps = self
                .find_snapshots(
                    rc,
                    vec![
                        Filter::builder().name("volume-id").values(&disk.id).build(),
                        Filter::builder().name("status").values("completed").build(),
                    ],
                )
                .await?;
            let newest = snaps
                .iter()
                .filter(|s| s.state() == Some(&SnapshotState::Completed))
                .max_by_key(|s| (start_time(s), s.snapshot_id().map(str::to_owned)))
                .and_then(|s| s.snapshot_id())
                .ok_or_else(|| {
                    provider_error(format!(
                        "volume {} of instance {} has no completed snapshot (snapshotStrategy newestExisting)",
                        disk.id, machine.id
                    ))
                })?;
            refs.push(SnapshotRef {
                disk_id: disk.id.clone(),
                snapshot_id: newest.to_owned(),
                region: Some(rc.region.clone()),
                created: false,
            });
        }
        Ok(refs)
    }

    /// Delete one snapshot if it is snapsentry's; returns whether it was deleted.
    async fn delete_managed(&self, rc: &RegionClients, id: &str) -> Result<bool> {
        let found = rc.ec2.describe_snapshots().snapshot_ids(id).send().await;
        let snap = match found {
            Ok(out) => out.snapshots().first().cloned(),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(aws_error("DescribeSnapshots", &rc.region, e)),
        };
        let Some(snap) = snap else {
            return Ok(false);
        };
        if !has_tag(snap.tags(), MANAGED_BY_TAG, MANAGED_BY_VALUE) {
            tracing::warn!(snapshot = %id, region = %rc.region, "not deleting a snapshot snapsentry did not create");
            return Ok(false);
        }
        match rc.ec2.delete_snapshot().snapshot_id(id).send().await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(aws_error("DeleteSnapshot", &rc.region, e)),
        }
    }

    async fn delete_impl(&self, ctx: &ProviderContext, snapshots: &[SnapshotRef]) -> Result<()> {
        let created: Vec<&SnapshotRef> = snapshots.iter().filter(|s| s.created).collect();
        if created.is_empty() {
            return Ok(());
        }
        let clients = self.clients(ctx).await?;
        for s in created {
            let rc = self.region(&clients, s.region.as_deref())?;
            if self.delete_managed(rc, &s.snapshot_id).await? {
                tracing::info!(policy = %ctx.policy, snapshot = %s.snapshot_id, region = %rc.region, "snapshot deleted");
            }
        }
        Ok(())
    }

    async fn sweep_impl(&self, ctx: &ProviderContext, older_than: Timestamp) -> Result<u32> {
        let clients = self.clients(ctx).await?;
        let policy = Self::policy_tag(ctx);
        let mut deleted = 0;
        for rc in &clients.regions {
            let snaps = self
                .find_snapshots(
                    rc,
                    vec![
                        tag_filter(MANAGED_BY_TAG, MANAGED_BY_VALUE),
                        tag_filter(POLICY_TAG, &policy),
                    ],
                )
                .await?;
            for s in snaps {
                // Filters are the server's business; check again before deleting.
                let ours = has_tag(s.tags(), MANAGED_BY_TAG, MANAGED_BY_VALUE)
                    && has_tag(s.tags(), POLICY_TAG, &policy);
                let old = start_time(&s).is_some_and(|t| t < older_than);
                let Some(id) = s.snapshot_id() else { continue };
                if ours && old {
                    match rc.ec2.delete_snapshot().snapshot_id(id).send().await {
                        Ok(_) => {
                            deleted += 1;
                            tracing::info!(policy = %ctx.policy, snapshot = %id, region = %rc.region, "leftover snapshot swept");
                        }
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(aws_error("DeleteSnapshot", &rc.region, e)),
                    }
                }
            }
        }
        Ok(deleted)
    }
}

fn is_not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code().is_some_and(|c| c.ends_with(".NotFound"))
}

impl Provider for AwsProvider {
    fn cloud(&self) -> Cloud {
        Cloud::Aws
    }

    fn inventory<'a>(&'a self, ctx: &'a ProviderContext) -> BoxFuture<'a, Result<Inventory>> {
        self.inventory_impl(ctx).boxed()
    }

    fn prepare_snapshots<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        machine: &'a InventoryMachine,
        scan_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SnapshotRef>>> {
        async move {
            match self.strategy() {
                SnapshotStrategy::Create => self.create_snapshots(ctx, machine, scan_id).await,
                SnapshotStrategy::NewestExisting => self.newest_existing(ctx, machine).await,
            }
        }
        .boxed()
    }

    fn delete_snapshots<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        snapshots: &'a [SnapshotRef],
    ) -> BoxFuture<'a, Result<()>> {
        self.delete_impl(ctx, snapshots).boxed()
    }

    fn sweep<'a>(
        &'a self,
        ctx: &'a ProviderContext,
        older_than: Timestamp,
    ) -> BoxFuture<'a, Result<u32>> {
        // Also for `newestExisting`: the policy may have created snapshots before its strategy
        // changed.
        self.sweep_impl(ctx, older_than).boxed()
    }

    fn reader_config(
        &self,
        machine: &InventoryMachine,
        snapshots: &[SnapshotRef],
    ) -> Vec<AssignedDisk> {
        machine
            .disks
            .iter()
            .filter_map(|d| {
                let Some(s) = snapshots.iter().find(|s| s.disk_id == d.id) else {
                    tracing::warn!(instance = %machine.id, volume = %d.id, "no snapshot for volume; not scanned");
                    return None;
                };
                Some(AssignedDisk {
                    id: d.id.clone(),
                    source: DiskSource::EbsSnapshot {
                        snapshot_id: s.snapshot_id.clone(),
                        region: s
                            .region
                            .clone()
                            .or_else(|| machine.region.clone())
                            .unwrap_or_default(),
                        endpoint_url: self.spec.endpoint_url.clone(),
                        assume_role_arn: self.spec.assume_role_arn.clone(),
                        external_id: self.spec.external_id.clone(),
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use snapsentry_crds::{Exposure, InstanceSelector, MachineDisk};

    use super::*;

    fn spec() -> AwsSpec {
        AwsSpec {
            regions: vec!["eu-west-1".into()],
            credentials_secret: None,
            assume_role_arn: Some("arn:aws:iam::111122223333:role/scan".into()),
            external_id: Some("ext-1".into()),
            endpoint_url: Some("http://127.0.0.1:5000".into()),
            selector: InstanceSelector::default(),
            snapshot_strategy: None,
        }
    }

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("aws-creds".into()),
                ..Default::default()
            },
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn credentials_from_a_secret() {
        use aws_sdk_ec2::config::Credentials;
        let c: Credentials = secret_credentials(&secret(&[
            ("accessKeyId", "AKIAEXAMPLEEXAMPLE01"),
            ("secretAccessKey", "s3cr3t-value\n"),
            ("sessionToken", "tok"),
        ]))
        .unwrap();
        assert_eq!(c.access_key_id(), "AKIAEXAMPLEEXAMPLE01");
        assert_eq!(c.secret_access_key(), "s3cr3t-value");
        assert_eq!(c.session_token(), Some("tok"));
        let c = secret_credentials(&secret(&[
            ("accessKeyId", "AKIAEXAMPLEEXAMPLE01"),
            ("secretAccessKey", "s3cr3t-value"),
        ]))
        .unwrap();
        assert_eq!(c.session_token(), None);
        let e = secret_credentials(&secret(&[("accessKeyId", "AKIAEXAMPLEEXAMPLE01")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "AWS credentials Secret aws-creds: key secretAccessKey is missing or empty"
        );
        assert!(!e.contains("AKIA"), "{e}");
    }

    #[test]
    fn reader_config_follows_the_disk_order() {
        let p = AwsProvider::new(spec());
        let machine = InventoryMachine {
            id: "i-1".into(),
            name: "web".into(),
            region: Some("eu-west-1".into()),
            platform: Some("linux".into()),
            state: Some("running".into()),
            exposure: Exposure::default(),
            disks: ["vol-root", "vol-data"]
                .iter()
                .map(|v| MachineDisk {
                    id: (*v).into(),
                    device: None,
                    size_bytes: None,
                })
                .collect(),
        };
        let snaps = [("vol-data", "snap-2"), ("vol-root", "snap-1")].map(|(d, s)| SnapshotRef {
            disk_id: d.into(),
            snapshot_id: s.into(),
            region: Some("eu-west-1".into()),
            created: true,
        });
        let disks = p.reader_config(&machine, &snaps);
        assert_eq!(disks.len(), 2);
        assert_eq!(disks[0].id, "vol-root");
        assert_eq!(
            disks[0].source,
            DiskSource::EbsSnapshot {
                snapshot_id: "snap-1".into(),
                region: "eu-west-1".into(),
                endpoint_url: Some("http://127.0.0.1:5000".into()),
                assume_role_arn: Some("arn:aws:iam::111122223333:role/scan".into()),
                external_id: Some("ext-1".into()),
            }
        );
        assert_eq!(disks[1].id, "vol-data");
        // A volume without a snapshot is left out, not read from nowhere.
        assert_eq!(p.reader_config(&machine, &snaps[..1]).len(), 1);
    }

    #[test]
    fn tags_and_policy_tag() {
        let ctx = ProviderContext {
            policy: "prod".into(),
            namespace: "security".into(),
            client: None,
        };
        assert_eq!(AwsProvider::policy_tag(&ctx), "security.prod");
        let tags = AwsProvider::scan_tags(&ctx, "20261122-140000", "i-1");
        assert!(has_tag(&tags, MANAGED_BY_TAG, "snapsentry"));
        assert!(has_tag(&tags, POLICY_TAG, "security.prod"));
        assert!(has_tag(&tags, SCAN_ID_TAG, "20261122-140000"));
        assert!(has_tag(&tags, INSTANCE_TAG, "i-1"));
        assert!(!has_tag(&tags, INSTANCE_TAG, "i-2"));
    }
}
