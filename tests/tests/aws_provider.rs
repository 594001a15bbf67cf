//! The operator's AWS provider against a real moto server and a real API server: credentials
//! come from a `credentialsSecret` in the policy's namespace; the fleet fixture makes instances
//! (exposed and not, Linux and Windows, one or two volumes), an RDS instance and buckets.
//!
//! Covered: selection by tags, ids, states and excluded tags; platform, disk order, exposure
//! with reasons; RDS endpoints and buckets as targets; snapshots created tagged for every volume
//! and reused (not duplicated) for the same scan; deletion of tagged snapshots only; the sweep
//! of one policy's old snapshots; `newestExisting`, which picks and creates nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::{Value, json};
use snapsentry_cloud::aws::{AwsProvider, MANAGED_BY_TAG, POLICY_TAG, SCAN_ID_TAG, SnapshotWait};
use snapsentry_cloud::{InventoryMachine, Provider, ProviderContext};
use snapsentry_crds::{AwsProvider as AwsSpec, InstanceSelector, SnapshotStrategy, TargetKind};
use snapsentry_tests::Moto;
use snapsentry_tests::controlplane::{ControlPlane, create_namespace};
use snapsentry_tests::moto::REGION;

const SECRET: &str = "aws-credentials";

/// A namespace holding the credentials Secret moto accepts, and the provider context for it.
async fn context(namespace: &str, policy: &str) -> Result<ProviderContext> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    create_namespace(&client, namespace).await?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(SECRET.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("accessKeyId".to_owned(), ByteString(b"testing".to_vec())),
            (
                "secretAccessKey".to_owned(),
                ByteString(b"testing".to_vec()),
            ),
        ])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(ProviderContext {
        policy: policy.into(),
        namespace: namespace.into(),
        client: Some(client),
    })
}

fn spec(moto: &Moto, selector: InstanceSelector) -> AwsSpec {
    AwsSpec {
        regions: vec![REGION.into()],
        credentials_secret: Some(SECRET.into()),
        assume_role_arn: None,
        external_id: None,
        endpoint_url: Some(moto.endpoint()),
        selector,
        snapshot_strategy: None,
    }
}

fn provider(spec: AwsSpec) -> AwsProvider {
    AwsProvider::new(spec).with_snapshot_wait(SnapshotWait {
        timeout: Duration::from_secs(30),
        first_poll: Duration::from_millis(100),
        max_poll: Duration::from_secs(1),
    })
}

/// A test's own EC2 client, for what the provider must not do itself.
async fn ec2(moto: &Moto) -> aws_sdk_ec2::Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(moto.endpoint())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    aws_sdk_ec2::Client::new(&config)
}

/// A 1 MiB raw image whose blocks are not all zero.
fn image(dir: &Path, name: &str, fill: u8) -> Result<String> {
    let path = dir.join(name);
    let mut data = vec![0u8; 1 << 20];
    data[4096..8192].fill(fill);
    std::fs::write(&path, data)?;
    Ok(path.display().to_string())
}

fn instance_id(fleet: &Value, name: &str) -> String {
    fleet["machines"][name]["instanceId"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn selector(
    tags: &[(&str, &str)],
    ids: &[String],
    states: &[&str],
    exclude: &[(&str, &str)],
) -> InstanceSelector {
    let map = |v: &[(&str, &str)]| v.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    InstanceSelector {
        tags: map(tags),
        ids: ids.to_vec(),
        states: states.iter().map(|s| (*s).into()).collect(),
        exclude_tags: map(exclude),
    }
}

fn names(machines: &[InventoryMachine]) -> Vec<&str> {
    let mut n: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    n.sort_unstable();
    n
}

/// Snapshots carrying `tag:key=value`, as (id, tags).
async fn tagged(ec2: &aws_sdk_ec2::Client, key: &str, value: &str) -> Result<Vec<String>> {
    let out = ec2
        .describe_snapshots()
        .filters(
            Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build(),
        )
        .send()
        .await?;
    let mut ids: Vec<String> = out
        .snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_owned))
        .collect();
    ids.sort();
    Ok(ids)
}

async fn snapshot_exists(ec2: &aws_sdk_ec2::Client, id: &str) -> bool {
    ec2.describe_snapshots()
        .snapshot_ids(id)
        .send()
        .await
        .is_ok_and(|o| !o.snapshots().is_empty())
}

#[tokio::test]
async fn inventory_selects_describes_and_lists_targets() -> Result<()> {
    let moto = Moto::start()?;
    let dir = tempfile::tempdir()?;
    let root = image(dir.path(), "root.raw", 0xa1)?;
    let data = image(dir.path(), "data.raw", 0x5e)?;
    let fleet = moto.create_fleet(&json!({
        "machines": [
            {"name": "web-1", "images": [root, data], "exposed": true, "tags": {"env": "prod", "team": "web"}},
            {"name": "db-1", "platform": "windows", "tags": {"env": "prod"}},
            {"name": "old-1", "tags": {"env": "prod"}},
            {"name": "skip-1", "tags": {"env": "prod", "snapsentry-skip": "yes"}},
            {"name": "dev-1", "tags": {"env": "dev"}},
        ],
        "rds": [{"id": "orders", "engine": "postgres"}],
        "buckets": ["backups-prod", "media-prod"],
    }))?;
    let ec2 = ec2(&moto).await;
    ec2.stop_instances()
        .instance_ids(instance_id(&fleet, "old-1"))
        .send()
        .await?;
    let ctx = context("aws-inventory", "fleet").await?;

    // Tags, excluded tags, default states (running and stopped).
    let p = provider(spec(
        &moto,
        selector(&[("env", "prod")], &[], &[], &[("snapsentry-skip", "*")]),
    ));
    let inv = p.inventory(&ctx).await.context("inventory")?;
    ensure!(
        names(&inv.machines) == ["db-1", "old-1", "web-1"],
        "{:?}",
        names(&inv.machines)
    );

    let web = inv.machines.iter().find(|m| m.name == "web-1").unwrap();
    assert_eq!(web.id, instance_id(&fleet, "web-1"));
    assert_eq!(web.region.as_deref(), Some(REGION));
    assert_eq!(web.platform.as_deref(), Some("linux"));
    assert_eq!(web.state.as_deref(), Some("running"));
    let volumes: Vec<&str> = fleet["machines"]["web-1"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["volumeId"].as_str().unwrap())
        .collect();
    let disks: Vec<&str> = web.disks.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(disks, volumes, "root volume first, then attachment order");
    assert_eq!(volumes.len(), 2);
    assert!(
        web.disks
            .iter()
            .all(|d| d.size_bytes.is_some_and(|s| s >= 1 << 30))
    );
    // Exposed: a public address and the open group, both named.
    let public_ip = fleet["machines"]["web-1"]["publicIp"].as_str().unwrap();
    let open_group = fleet["securityGroups"]["open"].as_str().unwrap();
    assert!(web.exposure.internet_facing, "{:?}", web.exposure);
    assert!(
        web.exposure
            .reasons
            .iter()
            .any(|r| r.starts_with(&format!("public IPv4 {public_ip}"))),
        "{:?}",
        web.exposure.reasons
    );
    assert!(
        web.exposure.reasons.contains(&format!(
            "security group {open_group} allows 0.0.0.0/0 on 22/tcp"
        )),
        "{:?}",
        web.exposure.reasons
    );

    let db = inv.machines.iter().find(|m| m.name == "db-1").unwrap();
    assert_eq!(db.platform.as_deref(), Some("windows"));
    assert!(!db.exposure.internet_facing, "{:?}", db.exposure);
    assert!(db.exposure.reasons.is_empty());
    let old = inv.machines.iter().find(|m| m.name == "old-1").unwrap();
    assert_eq!(old.state.as_deref(), Some("stopped"));
    assert!(!old.exposure.internet_facing);

    // Targets: the RDS endpoint and the buckets, listed completely.
    let address = fleet["rds"]["orders"]["address"].as_str().unwrap();
    assert_eq!(inv.targets.exists(TargetKind::Rds, address), Some(true));
    assert_eq!(
        inv.targets
            .exists(TargetKind::Rds, "nope.rds.amazonaws.com"),
        Some(false)
    );
    assert_eq!(
        inv.targets.exists(TargetKind::S3Bucket, "backups-prod"),
        Some(true)
    );
    assert_eq!(
        inv.targets.exists(TargetKind::S3Bucket, "media-prod"),
        Some(true)
    );
    assert_eq!(
        inv.targets.exists(TargetKind::S3Bucket, "someone-elses"),
        Some(false)
    );

    // Only running ones; only listed ids; a tag with any value.
    let running = provider(spec(
        &moto,
        selector(
            &[("env", "prod")],
            &[],
            &["running"],
            &[("snapsentry-skip", "*")],
        ),
    ));
    let inv = running.inventory(&ctx).await?;
    assert_eq!(names(&inv.machines), ["db-1", "web-1"]);
    let ids = provider(spec(
        &moto,
        selector(
            &[],
            &[instance_id(&fleet, "dev-1"), "i-0000000000000000".into()],
            &[],
            &[],
        ),
    ));
    assert_eq!(names(&ids.inventory(&ctx).await?.machines), ["dev-1"]);
    let team = provider(spec(&moto, selector(&[("team", "*")], &[], &[], &[])));
    assert_eq!(names(&team.inventory(&ctx).await?.machines), ["web-1"]);
    Ok(())
}

#[tokio::test]
async fn snapshots_are_created_tagged_reused_deleted_and_swept() -> Result<()> {
    let moto = Moto::start()?;
    let dir = tempfile::tempdir()?;
    let root = image(dir.path(), "root.raw", 0x11)?;
    let data = image(dir.path(), "data.raw", 0x22)?;
    let fleet = moto.create_fleet(&json!({
        "machines": [{"name": "app-1", "images": [root, data], "tags": {"env": "prod"}}],
    }))?;
    let ec2 = ec2(&moto).await;
    let ctx = context("aws-snapshots", "prod").await?;
    let p = provider(spec(&moto, selector(&[("env", "prod")], &[], &[], &[])));
    let inv = p.inventory(&ctx).await?;
    let machine = &inv.machines[0];
    let volumes: Vec<&str> = machine.disks.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(volumes.len(), 2);

    let scan = "20261122-140000";
    let snaps = p
        .prepare_snapshots(&ctx, machine, scan)
        .await
        .context("create")?;
    let disk_ids: Vec<&str> = snaps.iter().map(|s| s.disk_id.as_str()).collect();
    assert_eq!(disk_ids, volumes, "one snapshot per volume, in disk order");
    assert!(
        snaps
            .iter()
            .all(|s| s.created && s.region.as_deref() == Some(REGION))
    );
    let mut created: Vec<String> = snaps.iter().map(|s| s.snapshot_id.clone()).collect();
    created.sort();
    assert_eq!(tagged(&ec2, SCAN_ID_TAG, scan).await?, created);
    assert_eq!(
        tagged(&ec2, POLICY_TAG, "aws-snapshots.prod").await?,
        created
    );
    assert_eq!(tagged(&ec2, MANAGED_BY_TAG, "snapsentry").await?, created);
    let instance_tag = tagged(
        &ec2,
        "snapsentry.io/instance",
        &instance_id(&fleet, "app-1"),
    )
    .await?;
    assert_eq!(instance_tag, created);

    // The same scan again (an operator restart): the same snapshots, no new ones.
    let again = p.prepare_snapshots(&ctx, machine, scan).await?;
    assert_eq!(again, snaps);
    assert_eq!(tagged(&ec2, MANAGED_BY_TAG, "snapsentry").await?, created);
    // A fresh provider value (new clients) finds them too.
    let fresh = provider(spec(&moto, selector(&[("env", "prod")], &[], &[], &[])));
    assert_eq!(fresh.prepare_snapshots(&ctx, machine, scan).await?, snaps);

    // The scanner reads them in disk order.
    let disks = p.reader_config(machine, &snaps);
    assert_eq!(disks.len(), 2);
    match &disks[0].source {
        snapsentry_crds::DiskSource::EbsSnapshot {
            snapshot_id,
            region,
            endpoint_url,
            ..
        } => {
            assert_eq!(snapshot_id, &snaps[0].snapshot_id);
            assert_eq!(region, REGION);
            assert_eq!(endpoint_url.as_deref(), Some(moto.endpoint().as_str()));
        }
        other => panic!("{other:?}"),
    }

    // A user's snapshot handed in as "created" survives deletion; ours go; twice is fine.
    let user = ec2
        .create_snapshot()
        .volume_id(volumes[0])
        .description("user backup")
        .send()
        .await?
        .snapshot_id()
        .unwrap()
        .to_owned();
    let mut to_delete = snaps.clone();
    to_delete.push(snapsentry_cloud::SnapshotRef {
        disk_id: volumes[0].into(),
        snapshot_id: user.clone(),
        region: Some(REGION.into()),
        created: true,
    });
    p.release_snapshots(&ctx, &to_delete)
        .await
        .context("delete")?;
    for s in &snaps {
        assert!(
            !snapshot_exists(&ec2, &s.snapshot_id).await,
            "{} not deleted",
            s.snapshot_id
        );
    }
    assert!(
        snapshot_exists(&ec2, &user).await,
        "the user's snapshot was deleted"
    );
    p.release_snapshots(&ctx, &to_delete)
        .await
        .context("delete twice")?;

    // Sweep: this policy's tagged leftovers older than the cut-off, nothing else.
    let second = p
        .prepare_snapshots(&ctx, machine, "20261122-150000")
        .await?;
    assert_eq!(second.len(), 2);
    let other_policy = ec2
        .create_snapshot()
        .volume_id(volumes[1])
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Snapshot)
                .tags(
                    Tag::builder()
                        .key(MANAGED_BY_TAG)
                        .value("snapsentry")
                        .build(),
                )
                .tags(
                    Tag::builder()
                        .key(POLICY_TAG)
                        .value("aws-snapshots.other")
                        .build(),
                )
                .build(),
        )
        .send()
        .await?
        .snapshot_id()
        .unwrap()
        .to_owned();
    let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    assert_eq!(p.sweep(&ctx, hour_ago).await?, 0, "nothing is an hour old");
    for s in &second {
        assert!(snapshot_exists(&ec2, &s.snapshot_id).await);
    }
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5);
    assert_eq!(p.sweep(&ctx, soon).await?, 2);
    for s in &second {
        assert!(
            !snapshot_exists(&ec2, &s.snapshot_id).await,
            "{} not swept",
            s.snapshot_id
        );
    }
    assert!(
        snapshot_exists(&ec2, &other_policy).await,
        "another policy's snapshot was swept"
    );
    assert!(
        snapshot_exists(&ec2, &user).await,
        "the user's snapshot was swept"
    );
    Ok(())
}

#[tokio::test]
async fn newest_existing_picks_and_creates_nothing() -> Result<()> {
    let moto = Moto::start()?;
    let dir = tempfile::tempdir()?;
    let root = image(dir.path(), "root.raw", 0x33)?;
    moto.create_fleet(&json!({
        "machines": [{"name": "batch-1", "images": [root], "tags": {"env": "batch"}}],
    }))?;
    let ec2 = ec2(&moto).await;
    let ctx = context("aws-newest", "batch").await?;
    let mut s = spec(&moto, selector(&[("env", "batch")], &[], &[], &[]));
    s.snapshot_strategy = Some(SnapshotStrategy::NewestExisting);
    let p = provider(s);
    let inv = p.inventory(&ctx).await?;
    let machine = &inv.machines[0];
    let volume = machine.disks[0].id.clone();

    // No snapshot of the volume yet: an error naming it.
    let err = p
        .prepare_snapshots(&ctx, machine, "s1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&volume), "{err}");

    let mut made = Vec::new();
    for n in 0..2 {
        if n > 0 {
            // StartTime has a resolution of a second or finer; keep them apart.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let id = ec2
            .create_snapshot()
            .volume_id(&volume)
            .description(format!("backup {n}"))
            .send()
            .await?
            .snapshot_id()
            .unwrap()
            .to_owned();
        made.push(id);
    }
    let before = ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await?
        .snapshots()
        .len();
    let picked = p.prepare_snapshots(&ctx, machine, "s2").await?;
    assert_eq!(picked.len(), 1);
    assert_eq!(picked[0].snapshot_id, made[1], "the newest one");
    assert_eq!(picked[0].disk_id, volume);
    assert!(!picked[0].created);
    let after = ec2
        .describe_snapshots()
        .owner_ids("self")
        .send()
        .await?
        .snapshots()
        .len();
    assert_eq!(before, after, "nothing created");
    // Not created, so not deleted.
    p.release_snapshots(&ctx, &picked).await?;
    assert!(snapshot_exists(&ec2, &made[1]).await);
    Ok(())
}

#[tokio::test]
async fn credentials_secret_problems_are_reported_without_values() -> Result<()> {
    let moto = Moto::start()?;
    let ctx = context("aws-badcreds", "p").await?;
    let client = ctx.client.clone().unwrap();
    let broken = Secret {
        metadata: ObjectMeta {
            name: Some("half".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "accessKeyId".to_owned(),
            ByteString(b"AKIAHALFCREDENTIALS1".to_vec()),
        )])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client, "aws-badcreds")
        .create(&PostParams::default(), &broken)
        .await?;
    let mut s = spec(&moto, InstanceSelector::default());
    s.credentials_secret = Some("half".into());
    let err = provider(s).inventory(&ctx).await.unwrap_err();
    assert!(err.is_provider());
    assert_eq!(
        err.to_string(),
        "AWS credentials Secret half: key secretAccessKey is missing or empty"
    );
    let mut s = spec(&moto, InstanceSelector::default());
    s.credentials_secret = Some("absent".into());
    let err = provider(s).inventory(&ctx).await.unwrap_err().to_string();
    assert_eq!(
        err,
        "AWS credentials Secret absent: not found in namespace aws-badcreds"
    );
    Ok(())
}
