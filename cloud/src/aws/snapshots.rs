//! Snapshots of EC2 instances: created per scan (tagged `snapsentry.io/*`, reused after an
//! operator restart), or each volume's newest completed one (`newestExisting`); waited for until
//! completed; deleted only when they carry `snapsentry.io/managed-by=snapsentry`, after a scan or
//! by the sweep of a policy's leftovers.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    Filter, InstanceSpecification, ResourceType, Snapshot, SnapshotState, Tag, TagSpecification,
};
use jiff::Timestamp;

use super::AwsProvider;
use super::clients::{RegionClients, aws_error, provider_error};
use crate::error::Result;
pub use crate::wait::SnapshotWait;
use crate::{InventoryMachine, ProviderContext, SnapshotRef};

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
            (POLICY_TAG, ctx.policy_tag()),
            (SCAN_ID_TAG, scan_id.to_owned()),
            (INSTANCE_TAG, instance.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
    }

    pub(super) async fn create_snapshots(
        &self,
        ctx: &ProviderContext,
        machine: &InventoryMachine,
        scan_id: &str,
    ) -> Result<Vec<SnapshotRef>> {
        let clients = self.clients(ctx).await?;
        let rc = self.region(&clients, machine.region.as_deref())?;
        let policy = ctx.policy_tag();
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
            poll = self.wait.next_poll(poll);
        }
    }

    pub(super) async fn newest_existing(
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

    pub(super) async fn delete_impl(
        &self,
        ctx: &ProviderContext,
        snapshots: &[SnapshotRef],
    ) -> Result<()> {
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

    pub(super) async fn sweep_impl(
        &self,
        ctx: &ProviderContext,
        older_than: Timestamp,
    ) -> Result<u32> {
        let clients = self.clients(ctx).await?;
        let policy = ctx.policy_tag();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_policy_tag() {
        let ctx = ProviderContext {
            policy: "prod".into(),
            namespace: "security".into(),
            client: None,
        };
        assert_eq!(ctx.policy_tag(), "security.prod");
        let tags = AwsProvider::scan_tags(&ctx, "20261122-140000", "i-1");
        assert!(has_tag(&tags, MANAGED_BY_TAG, "snapsentry"));
        assert!(has_tag(&tags, POLICY_TAG, "security.prod"));
        assert!(has_tag(&tags, SCAN_ID_TAG, "20261122-140000"));
        assert!(has_tag(&tags, INSTANCE_TAG, "i-1"));
        assert!(!has_tag(&tags, INSTANCE_TAG, "i-2"));
    }
}
