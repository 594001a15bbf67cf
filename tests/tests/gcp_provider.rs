//! The operator's GCP provider against the fake Compute Engine (`tests/gcp/fake_gce.py`): a fleet
//! in two projects, served one item per page.
//!
//! Covered: selection by labels, names, statuses and excluded labels across projects and zones;
//! OS (Windows from licenses), disk order, exposure with reasons (an open rule through a network
//! tag; a higher-priority deny); Cloud SQL and GCS bucket targets; credentials from a service-account key Secret
//! (a key made now with openssl) and from the metadata server, and a wrong key's clear error
//! (never the key); snapshots and disks created labelled, reused after a "restart" (a new
//! provider), named by `block_volumes`/`reader_config` alike and mapping to the instance's disk
//! image, released without leftovers; throttling and server errors retried; a disk quota error; the sweep of one policy's old
//! resources only; `newestExisting`, which snapshots nothing and deletes only its disk.

mod fixture;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use snapsentry_cloud::Provider;
use snapsentry_cloud::gcp::{CSI_DRIVER, MANAGED_BY_LABEL, POLICY_LABEL, SCAN_ID_LABEL};
use snapsentry_crds::{DiskSource, InstanceSelector, SnapshotStrategy, TargetKind};
use snapsentry_tests::fake_arm::TestCertificate;
use snapsentry_tests::fake_gce::FakeGce;

use fixture::*;

fn selector(tags: &[(&str, &str)], exclude: &[(&str, &str)], states: &[&str]) -> InstanceSelector {
    let map = |p: &[(&str, &str)]| p.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    InstanceSelector {
        tags: map(tags),
        ids: vec![],
        states: states.iter().map(|s| (*s).into()).collect(),
        exclude_tags: map(exclude),
    }
}

#[tokio::test]
async fn inventory_selects_across_projects_with_exposure_and_os() -> Result<()> {
    let gce = FakeGce::start()?;
    gce.load_fleet(&fleet(None))?;
    let ctx = context("fleet");

    // Default statuses (RUNNING, TERMINATED), one instance per page, both projects.
    let p = provider(&gce, spec(&gce, InstanceSelector::default()));
    let inv = p.inventory(&ctx).await.context("inventory")?;
    ensure!(
        names(&inv.machines) == ["app-1", "db-1", "web-1", "win-1"],
        "{:?}",
        names(&inv.machines)
    );
    let web = inv
        .machines
        .iter()
        .find(|m| m.name == "web-1")
        .context("web-1")?;
    ensure!(web.region.as_deref() == Some("us-central1-a"));
    ensure!(web.platform.as_deref() == Some("linux") && web.state.as_deref() == Some("running"));
    ensure!(
        web.id.chars().all(|c| c.is_ascii_digit()),
        "numeric id: {}",
        web.id
    );
    let disks: Vec<&str> = web.disks.iter().map(|d| d.id.as_str()).collect();
    ensure!(
        disks
            == [
                format!("projects/{PROJECT}/zones/us-central1-a/disks/web-1-boot"),
                format!("projects/{PROJECT}/zones/us-central1-a/disks/web-1-data"),
            ],
        "{disks:?}"
    );
    ensure!(web.disks[0].size_bytes == Some(20 << 30));
    ensure!(web.exposure.internet_facing, "{:?}", web.exposure);
    ensure!(
        web.exposure.reasons
            == [
                "external IPv4 34.1.2.3",
                "firewall rule allow-ssh allows 0.0.0.0/0 on tcp:22"
            ],
        "{:?}",
        web.exposure.reasons
    );
    let win = inv
        .machines
        .iter()
        .find(|m| m.name == "win-1")
        .context("win-1")?;
    ensure!(win.platform.as_deref() == Some("windows"));
    ensure!(
        !win.exposure.internet_facing,
        "deny-rdp wins: {:?}",
        win.exposure
    );
    let db = inv
        .machines
        .iter()
        .find(|m| m.name == "db-1")
        .context("db-1")?;
    ensure!(
        db.state.as_deref() == Some("terminated") && db.region.as_deref() == Some("us-east1-c")
    );
    ensure!(inv.targets.exists(TargetKind::SqlDatabase, "orders") == Some(true));
    ensure!(inv.targets.exists(TargetKind::SqlDatabase, "35.1.1.1") == Some(true));
    // Both projects' buckets, by the name a signed URL or a gs:// reference carries.
    for bucket in ["shop-exports", "app-media"] {
        ensure!(inv.targets.exists(TargetKind::GcsBucket, bucket) == Some(true));
    }
    ensure!(inv.targets.exists(TargetKind::GcsBucket, "someone-elses") == None);

    // Labels, excluded labels, other statuses, names and zones.
    let p = provider(
        &gce,
        spec(
            &gce,
            selector(
                &[("env", "prod")],
                &[("skip", "yes")],
                &["suspended", "running", "terminated"],
            ),
        ),
    );
    let inv = p.inventory(&ctx).await?;
    ensure!(
        names(&inv.machines) == ["idle-1", "web-1", "win-1"],
        "{:?}",
        names(&inv.machines)
    );
    let mut by_name = spec(&gce, InstanceSelector::default());
    by_name.selector.ids = vec!["WIN-1".into()];
    let inv = provider(&gce, by_name).inventory(&ctx).await?;
    ensure!(
        names(&inv.machines) == ["win-1"],
        "{:?}",
        names(&inv.machines)
    );
    let mut zoned = spec(&gce, InstanceSelector::default());
    zoned.zones = vec!["us-east1-c".into()];
    let inv = provider(&gce, zoned).inventory(&ctx).await?;
    ensure!(
        names(&inv.machines) == ["db-1"],
        "{:?}",
        names(&inv.machines)
    );
    Ok(())
}

/// A service-account JSON key for `key` (the PKCS#8 private key). Its `token_uri` is Google's,
/// as in every key, and never called: google-cloud-auth signs JWTs the fake verifies.
fn key_json(key: &TestCertificate) -> Result<String> {
    let pem = std::fs::read_to_string(&key.key_file)?;
    Ok(json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "test",
        "private_key": pem,
        "client_email": EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string())
}

#[tokio::test]
async fn credentials_from_a_key_secret_or_the_metadata_server() -> Result<()> {
    let gce = FakeGce::start()?;
    let dir = tempfile::tempdir()?;
    let key = TestCertificate::generate(dir.path())?;
    gce.load_fleet(&fleet(Some(&key.modulus)))?;

    // The key from the policy's Secret: google-cloud-auth's self-signed JWTs, no token exchange.
    let ctx = secret_context("gcp-key", &key_json(&key)?).await?;
    let mut with_key = spec(&gce, InstanceSelector::default());
    with_key.credentials_secret = Some("gcp-credentials".into());
    let inv = provider(&gce, with_key.clone()).inventory(&ctx).await?;
    ensure!(inv.machines.len() == 4, "{:?}", names(&inv.machines));
    let state = gce.state()?;
    ensure!(
        state["tokensIssued"] == 0 && state["selfSignedCalls"].as_u64() >= Some(3),
        "every call with the key's JWT: {state}"
    );

    // A key the fake does not know: refused, named, never shown.
    let other_dir = tempfile::tempdir()?;
    let other = TestCertificate::generate(other_dir.path())?;
    let wrong = key_json(&other)?;
    let ctx = secret_context("gcp-wrong-key", &wrong).await?;
    let e = provider(&gce, with_key.clone())
        .inventory(&ctx)
        .await
        .err()
        .context("a wrong key must fail")?
        .to_string();
    ensure!(
        e.contains("Secret gcp-credentials") && e.contains("HTTP 401 authError"),
        "{e}"
    );
    let body = std::fs::read_to_string(&other.key_file)?;
    let key_line = body.lines().nth(1).context("key line")?;
    ensure!(!e.contains(key_line), "the error shows the key");

    // A Secret without the key.
    let ctx = secret_context("gcp-no-key", "").await?;
    let e = provider(&gce, with_key)
        .inventory(&ctx)
        .await
        .err()
        .context("an empty key must fail")?
        .to_string();
    ensure!(e.contains("GCP credentials Secret gcp-credentials"), "{e}");

    // Workload identity: the metadata server.
    let inv = provider(&gce, spec(&gce, InstanceSelector::default()))
        .inventory(&context("fleet"))
        .await?;
    ensure!(inv.machines.len() == 4);
    let state = gce.state()?;
    ensure!(state["tokensIssued"].as_u64() >= Some(1), "{state}");
    Ok(())
}

/// The order without a policy Secret: the key file GOOGLE_APPLICATION_CREDENTIALS names (the
/// chart's `cloud.gcp.credentialsSecret`), else the metadata server; the Secret beats both.
#[tokio::test]
async fn credentials_secret_then_key_file_then_metadata_server() -> Result<()> {
    let gce = FakeGce::start()?;
    let dir = tempfile::tempdir()?;
    let key = TestCertificate::generate(dir.path())?;
    gce.load_fleet(&fleet(Some(&key.modulus)))?;
    let key_file = dir.path().join("key.json");
    std::fs::write(&key_file, key_json(&key)?)?;
    let other_dir = tempfile::tempdir()?;
    let other = TestCertificate::generate(other_dir.path())?;
    let wrong_file = dir.path().join("wrong.json");
    std::fs::write(&wrong_file, key_json(&other)?)?;
    let signed = |state: &serde_json::Value| {
        (
            state["tokensIssued"].as_u64().unwrap_or_default(),
            state["selfSignedCalls"].as_u64().unwrap_or_default(),
        )
    };
    let all = || spec(&gce, InstanceSelector::default());

    // The key file: self-signed JWTs, the metadata server never asked.
    let (tokens, calls) = signed(&gce.state()?);
    let inv = provider(&gce, all())
        .with_key_file(Some(&key_file))
        .inventory(&context("fleet"))
        .await?;
    ensure!(inv.machines.len() == 4, "{:?}", names(&inv.machines));
    let (tokens_after, calls_after) = signed(&gce.state()?);
    ensure!(
        tokens_after == tokens && calls_after >= calls + 3,
        "every call with the file's key: {tokens_after} tokens, {calls_after} signed calls"
    );

    // The policy's Secret beats the key file (here a key the fake refuses).
    let ctx = secret_context("gcp-key-over-file", &key_json(&key)?).await?;
    let mut with_secret = all();
    with_secret.credentials_secret = Some("gcp-credentials".into());
    let inv = provider(&gce, with_secret)
        .with_key_file(Some(&wrong_file))
        .inventory(&ctx)
        .await?;
    ensure!(inv.machines.len() == 4, "{:?}", names(&inv.machines));

    // A refused, a missing and an unreadable key file: named by the variable and the path,
    // never shown; the metadata server is not fallen back to.
    let e = provider(&gce, all())
        .with_key_file(Some(&wrong_file))
        .inventory(&context("fleet"))
        .await
        .err()
        .context("a wrong key file must fail")?
        .to_string();
    let named = format!(
        "GCP credentials GOOGLE_APPLICATION_CREDENTIALS file {}",
        wrong_file.display()
    );
    ensure!(
        e.contains(&named) && e.contains("HTTP 401 authError"),
        "{e}"
    );
    let body = std::fs::read_to_string(&other.key_file)?;
    let key_line = body.lines().nth(1).context("key line")?;
    ensure!(!e.contains(key_line), "the error shows the key");
    let missing = dir.path().join("absent.json");
    let e = provider(&gce, all())
        .with_key_file(Some(&missing))
        .inventory(&context("fleet"))
        .await
        .err()
        .context("a missing key file must fail")?
        .to_string();
    ensure!(
        e.contains(&format!(
            "GOOGLE_APPLICATION_CREDENTIALS file {}",
            missing.display()
        )) && e.contains("unreadable"),
        "{e}"
    );
    std::fs::write(&wrong_file, "{\"private_key\": \"s3cr3t\"")?;
    let e = provider(&gce, all())
        .with_key_file(Some(&wrong_file))
        .inventory(&context("fleet"))
        .await
        .err()
        .context("a malformed key file must fail")?
        .to_string();
    ensure!(e.contains(&named) && !e.contains("s3cr3t"), "{e}");
    ensure!(
        signed(&gce.state()?).0 == tokens,
        "the metadata server was asked"
    );

    // No Secret, no key file: the metadata server.
    provider(&gce, all()).inventory(&context("fleet")).await?;
    ensure!(
        signed(&gce.state()?).0 > tokens,
        "the metadata server was not asked"
    );
    Ok(())
}

#[tokio::test]
async fn snapshots_and_disks_reused_named_alike_and_released() -> Result<()> {
    let gce = FakeGce::start()?;
    gce.load_fleet(&fleet(None))?;
    let ctx = context("fleet");
    let p = provider(&gce, spec(&gce, InstanceSelector::default()));
    let web = machine(&p, &ctx, "web-1").await?;

    let refs = p.prepare_snapshots(&ctx, &web, "scan-1").await?;
    ensure!(refs.len() == 2 && refs.iter().all(|r| r.created));
    ensure!(refs[0].disk_id == web.disks[0].id && refs[1].disk_id == web.disks[1].id);
    ensure!(
        refs.iter()
            .all(|r| r.region.as_deref() == Some(SCANNER_ZONE))
    );
    ensure!(
        refs[0]
            .snapshot_id
            .starts_with(&format!("projects/{PROJECT}/global/snapshots/snapsentry-"))
    );
    let (disks, snapshots) = gce.leftovers()?;
    ensure!(
        disks.len() == 2 && snapshots.len() == 2,
        "{disks:?} {snapshots:?}"
    );
    let state = gce.state()?;
    let snap = state["snapshots"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["labels"][MANAGED_BY_LABEL] == "snapsentry")
        .context("snapshot")?;
    ensure!(snap["labels"][POLICY_LABEL] == "security_fleet", "{snap}");
    ensure!(snap["labels"][SCAN_ID_LABEL] == "scan-1", "{snap}");

    // A restarted operator (a new provider) reuses both.
    let again = provider(&gce, spec(&gce, InstanceSelector::default()));
    let refs2 = again.prepare_snapshots(&ctx, &web, "scan-1").await?;
    ensure!(refs2 == refs, "{refs2:?} != {refs:?}");
    ensure!(gce.leftovers()? == (disks.clone(), snapshots.clone()));

    // block_volumes and reader_config name the same disks; the boot disk's maps to its image.
    let volumes = again.block_volumes(&web, &refs);
    let assigned = again.reader_config(&web, &refs);
    ensure!(volumes.len() == 2 && assigned.len() == 2);
    for (v, a) in volumes.iter().zip(&assigned) {
        ensure!(v.driver == CSI_DRIVER);
        ensure!(
            v.node_affinity == Some(("topology.gke.io/zone".into(), vec![SCANNER_ZONE.into()]))
        );
        ensure!(
            a.source
                == DiskSource::BlockVolume {
                    volume: v.volume_handle.clone(),
                    device_path: v.device_path.clone()
                }
        );
        ensure!(
            gce.image_of(&v.volume_handle)?.is_some(),
            "{} unknown",
            v.volume_handle
        );
    }
    ensure!(volumes[0].capacity_bytes == 20 << 30);
    ensure!(volumes[0].device_path == "/dev/snapsentry/disk-0");
    ensure!(gce.image_of(&volumes[0].volume_handle)? == Some(WEB_IMAGE.into()));

    // Release knows only snapshot id, zone and created (as after a restart): nothing is left.
    let bare: Vec<_> = refs
        .iter()
        .map(|r| snapsentry_cloud::SnapshotRef {
            disk_id: String::new(),
            ..r.clone()
        })
        .collect();
    again.release_snapshots(&ctx, &bare).await?;
    ensure!(
        gce.leftovers()? == (vec![], vec![]),
        "{:?}",
        gce.leftovers()?
    );
    // Idempotent.
    again.release_snapshots(&ctx, &bare).await?;
    Ok(())
}

#[tokio::test]
async fn disk_faults_are_retried_and_a_quota_error_is_clear() -> Result<()> {
    let gce = FakeGce::start()?;
    gce.load_fleet(&fleet(None))?;
    let ctx = context("fleet");
    let p = provider(&gce, spec(&gce, InstanceSelector::default()));
    let web = machine(&p, &ctx, "web-1").await?;
    // Throttling and server errors are retried.
    gce.set_faults(&json!({"disks.insert": {"throttleEvery": 2, "serverErrorEvery": 2}}))?;
    let refs = p.prepare_snapshots(&ctx, &web, "scan-r").await?;
    ensure!(refs.len() == 2);
    let counters = gce.fault_counters()?;
    ensure!(
        counters["disks.insert"]["throttled"].as_u64() > Some(0)
            && counters["disks.insert"]["serverErrors"].as_u64() > Some(0),
        "{counters}"
    );
    p.release_snapshots(&ctx, &refs).await?;
    gce.set_faults(&json!({"disks.insert": {"quotaEvery": 1}}))?;
    let e = p
        .prepare_snapshots(&ctx, &web, "scan-q")
        .await
        .err()
        .context("quota must fail")?
        .to_string();
    ensure!(
        e.starts_with("GCP disks.insert") && e.contains("QUOTA_EXCEEDED"),
        "{e}"
    );
    // The snapshot made before the refused disk is deleted with the failure: the operator never
    // learns of it.
    let (disks, snapshots) = gce.leftovers()?;
    ensure!(
        disks.is_empty() && snapshots.is_empty(),
        "a failed preparation left disks {disks:?}, snapshots {snapshots:?}"
    );
    // Without a scanner zone nothing is made at all.
    let mut no_zone = spec(&gce, InstanceSelector::default());
    no_zone.scanner_zones.clear();
    let e = provider(&gce, no_zone)
        .prepare_snapshots(&ctx, &web, "scan-z")
        .await
        .err()
        .context("no zone")?;
    ensure!(e.to_string().contains("scannerZones is not set"), "{e}");
    Ok(())
}

#[tokio::test]
async fn sweep_deletes_only_this_policys_old_resources() -> Result<()> {
    let gce = FakeGce::start()?;
    gce.load_fleet(&fleet(None))?;
    let p = provider(&gce, spec(&gce, InstanceSelector::default()));
    let mine = context("fleet");
    let theirs = context("other");
    let win = machine(&p, &mine, "win-1").await?;
    p.prepare_snapshots(&mine, &win, "scan-a").await?;
    p.prepare_snapshots(&theirs, &win, "scan-b").await?;
    let (disks, snapshots) = gce.leftovers()?;
    ensure!(disks.len() == 2 && snapshots.len() == 2);

    // Nothing is older than an hour ago.
    let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
    ensure!(p.sweep(&mine, hour_ago).await? == 0);
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    ensure!(p.sweep(&mine, later).await? == 2);
    let (disks, snapshots) = gce.leftovers()?;
    ensure!(
        disks.len() == 1 && snapshots.len() == 1,
        "{disks:?} {snapshots:?}"
    );
    ensure!(p.sweep(&theirs, later).await? == 2);
    ensure!(gce.leftovers()? == (vec![], vec![]));
    Ok(())
}

#[tokio::test]
async fn newest_existing_snapshots_nothing_and_deletes_only_its_disk() -> Result<()> {
    let gce = FakeGce::start()?;
    gce.load_fleet(&fleet(None))?;
    let ctx = context("fleet");
    let mut newest = spec(&gce, InstanceSelector::default());
    newest.snapshot_strategy = Some(SnapshotStrategy::NewestExisting);
    let p = provider(&gce, newest);
    let win = machine(&p, &ctx, "win-1").await?;
    let token = gce.token()?;
    for name in ["win-old", "win-new"] {
        let body = json!({"name": name, "sourceDisk": win.disks[0].id});
        let answer = gce.request(
            "POST",
            &format!("/compute/v1/projects/{PROJECT}/global/snapshots"),
            Some(&token),
            Some(&body),
        )?;
        ensure!(answer.status == 200, "snapshot {name}: {}", answer.status);
        // Let the operation finish (each poll advances it).
        let op = answer.json()?;
        let link = op["selfLink"].as_str().context("selfLink")?.to_owned();
        for _ in 0..3 {
            gce.request("GET", &link, Some(&token), None)?;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let refs = p.prepare_snapshots(&ctx, &win, "scan-n").await?;
    ensure!(refs.len() == 1 && !refs[0].created, "{refs:?}");
    ensure!(
        refs[0].snapshot_id == format!("projects/{PROJECT}/global/snapshots/win-new"),
        "{refs:?}"
    );
    let (disks, snapshots) = gce.leftovers()?;
    ensure!(
        disks.len() == 1 && snapshots.is_empty(),
        "{disks:?} {snapshots:?}"
    );
    let volumes = p.block_volumes(&win, &refs);
    ensure!(gce.image_of(&volumes[0].volume_handle)?.is_some());
    p.release_snapshots(&ctx, &refs).await?;
    ensure!(gce.leftovers()? == (vec![], vec![]));
    let state = gce.state()?;
    let kept = state["snapshots"].as_array().map_or(0, Vec::len);
    ensure!(kept == 2, "the existing snapshots stay: {state}");
    Ok(())
}
