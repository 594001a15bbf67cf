//! The operator's Azure provider against the fake ARM (`tests/azure/fake_arm.py`): a fleet of VMs
//! in two subscriptions, served one item per page, with disks whose SAS URLs are unreachable
//! placeholders (nothing reads them here; the blob side is `azure_blob.rs`).
//!
//! Covered: selection by tags, names, power states and excluded tags across subscriptions and
//! resource groups, with paging; OS and disk order, unmanaged VHDs reported; targets; each
//! credential kind (client secret and certificate from a Secret of the real API server, workload
//! identity, managed identity) and a wrong secret's clear error; snapshots created tagged, reused
//! after a "restart" (a new provider), granted (a SAS per disk), released (no snapshot, no grant
//! left); 429 and 503 on snapshot PUT and list, retried; the sweep of one policy's old snapshots
//! only; `newestExisting`, which picks the newest and deletes nothing. No assertion message
//! prints a SAS URL or a token.

mod fixture;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::json;
use snapsentry_cloud::Provider;
use snapsentry_cloud::azure::{
    AzureEnvironment, AzureProvider, MANAGED_BY_TAG, POLICY_TAG, SCAN_ID_TAG,
};
use snapsentry_crds::contract::GRANTS_DIR;
use snapsentry_crds::{DiskSource, SnapshotStrategy, TargetKind};
use snapsentry_tests::fake_arm::{FakeArm, TENANT, TestCertificate};

use fixture::*;

#[tokio::test]
async fn inventory_selects_across_subscriptions_pages_and_retries() -> Result<()> {
    let arm = FakeArm::start()?;
    arm.load_fleet(&fleet(json!({})))?;
    arm.set_faults(&json!({"virtualMachines.list": {"throttleEvery": 3, "serverErrorEvery": 4}}))?;
    let ctx = context("fleet");

    // Tags, excluded tags, default states (running and stopped), one VM per page.
    let p = provider(&arm, spec(&arm, selector(&[("env", "prod")], &[], &[])));
    let inv = p.inventory(&ctx).await.context("inventory")?;
    ensure!(
        names(&inv.machines) == ["legacy", "old-1", "web-1"],
        "{:?}",
        names(&inv.machines)
    );
    // One token served every Compute and ARM call of the provider (cached).
    ensure!(
        arm.state()?["tokensIssued"] == 1,
        "{}",
        arm.state()?["tokensIssued"]
    );
    let counters = arm.fault_counters()?;
    ensure!(
        counters["virtualMachines.list"]["throttled"].as_u64() > Some(0)
            && counters["virtualMachines.list"]["serverErrors"].as_u64() > Some(0),
        "{counters}"
    );
    let web = inv
        .machines
        .iter()
        .find(|m| m.name == "web-1")
        .context("web-1")?;
    ensure!(web.id == vm_id(SUB_A, "rg-web", "web-1"));
    ensure!(web.region.as_deref() == Some("eastus"));
    ensure!(web.platform.as_deref() == Some("linux"));
    ensure!(web.state.as_deref() == Some("running"));
    let disks: Vec<(&str, Option<&str>)> = web
        .disks
        .iter()
        .map(|d| {
            (
                d.id.rsplit('/').next().unwrap_or_default(),
                d.device.as_deref(),
            )
        })
        .collect();
    ensure!(
        disks == [("web-1-os", Some("os")), ("web-1-data", Some("lun0"))],
        "{disks:?}"
    );
    ensure!(
        web.disks
            .iter()
            .all(|d| d.size_bytes == Some(2 << 30) && d.unsupported.is_none())
    );
    let legacy = inv
        .machines
        .iter()
        .find(|m| m.name == "legacy")
        .context("legacy")?;
    ensure!(legacy.disks.len() == 1 && legacy.disks[0].unsupported.is_some());
    let old = inv
        .machines
        .iter()
        .find(|m| m.name == "old-1")
        .context("old-1")?;
    ensure!(old.state.as_deref() == Some("stopped") && old.region.as_deref() == Some("westeurope"));
    // Targets of both subscriptions, listed completely.
    ensure!(inv.targets.exists(TargetKind::StorageAccount, "webstore") == Some(true));
    ensure!(
        inv.targets
            .exists(TargetKind::StorageAccount, "bstore.blob.core.windows.net")
            == Some(true)
    );
    ensure!(inv.targets.exists(TargetKind::StorageAccount, "nope") == Some(false));

    // Power states and names (case-insensitive) as ids.
    let p = provider(&arm, spec(&arm, selector(&[], &[], &["deallocated"])));
    let inv = p.inventory(&ctx).await?;
    ensure!(names(&inv.machines) == ["db-1"]);
    ensure!(inv.machines[0].platform.as_deref() == Some("windows"));
    let by_id = vm_id(SUB_B, "rg-b", "dev-1").to_uppercase();
    let p = provider(&arm, spec(&arm, selector(&[], &["WEB-1", &by_id], &[])));
    ensure!(names(&p.inventory(&ctx).await?.machines) == ["dev-1", "web-1"]);
    // Only a resource group of the listed subscriptions.
    let mut in_rg = spec(&arm, selector(&[], &[], &[]));
    in_rg.resource_groups = vec!["rg-b".into()];
    let inv = provider(&arm, in_rg).inventory(&ctx).await?;
    ensure!(
        names(&inv.machines) == ["dev-1", "old-1"],
        "{:?}",
        names(&inv.machines)
    );
    Ok(())
}

#[tokio::test]
async fn every_credential_kind_gets_tokens_and_a_wrong_secret_is_named() -> Result<()> {
    let arm = FakeArm::start()?;
    let dir = tempfile::tempdir()?;
    let cert = TestCertificate::generate(dir.path())?;
    arm.load_fleet(&fleet(json!({
        "federatedToken": "federated-service-account-token",
        "certificate": {"modulus": cert.modulus},
        "managedIdentityClientId": "mi-client",
    })))?;
    let all = selector(&[], &[], &[]);
    let count = |inv: &snapsentry_cloud::Inventory| inv.machines.len();

    // Client secret from the policy's Secret.
    let ctx = secret_context("azure-secret", "clientSecret", CLIENT_SECRET).await?;
    let mut with_secret = spec(&arm, all.clone());
    with_secret.credentials_secret = Some("azure-credentials".into());
    let p = AzureProvider::new(with_secret.clone()).with_environment(AzureEnvironment::default());
    ensure!(count(&p.inventory(&ctx).await?) == 4);

    // A wrong secret: a clear error naming the Secret and Entra's code, never the value.
    let ctx = secret_context("azure-wrong", "clientSecret", "not-the-secret-XYZ").await?;
    let p = AzureProvider::new(with_secret.clone()).with_environment(AzureEnvironment::default());
    let error = p
        .inventory(&ctx)
        .await
        .err()
        .context("a wrong secret worked")?;
    ensure!(
        matches!(error, snapsentry_cloud::Error::AzureCredentials { .. }) && error.is_provider(),
        "{error:?}"
    );
    let e = error.to_string();
    ensure!(
        e.contains("Secret azure-credentials") && e.contains("invalid_client"),
        "{e}"
    );
    ensure!(e.contains("AADSTS7000215"), "{e}");
    ensure!(
        !e.contains("not-the-secret-XYZ") && !e.contains(CLIENT_SECRET),
        "the error quotes the secret"
    );

    // Client certificate from the Secret.
    let ctx = secret_context("azure-cert", "clientCertificate", &cert.pem).await?;
    let p = AzureProvider::new(with_secret).with_environment(AzureEnvironment::default());
    ensure!(count(&p.inventory(&ctx).await?) == 4);

    // The operator's own app registration from its environment (the chart's
    // `cloud.azure.credentialsSecret`): AZURE_CLIENT_SECRET, else AZURE_CLIENT_CERTIFICATE_PATH.
    let mut from_env = spec(&arm, all.clone());
    from_env.tenant_id = None;
    from_env.client_id = None;
    let app = AzureEnvironment {
        client_id: Some(CLIENT_ID.into()),
        tenant_id: Some(TENANT.into()),
        ..Default::default()
    };
    let env_secret = AzureEnvironment {
        client_secret: Some(CLIENT_SECRET.into()),
        ..app.clone()
    };
    ensure!(
        !format!("{env_secret:?}").contains(CLIENT_SECRET),
        "Debug prints the client secret"
    );
    let p = AzureProvider::new(from_env.clone()).with_environment(env_secret);
    ensure!(count(&p.inventory(&context("env-secret")).await?) == 4);
    let pem_file = dir.path().join("client-certificate.pem");
    std::fs::write(&pem_file, &cert.pem)?;
    let env_cert = AzureEnvironment {
        client_certificate_path: Some(pem_file),
        ..app.clone()
    };
    let p = AzureProvider::new(from_env.clone()).with_environment(env_cert);
    ensure!(count(&p.inventory(&context("env-cert")).await?) == 4);
    let missing = AzureEnvironment {
        client_certificate_path: Some(dir.path().join("absent.pem")),
        ..app
    };
    let e = AzureProvider::new(from_env)
        .with_environment(missing)
        .inventory(&context("env-cert"))
        .await
        .err()
        .context("a missing certificate file worked")?;
    ensure!(
        e.to_string().contains("AZURE_CLIENT_CERTIFICATE_PATH")
            && e.to_string().contains("absent.pem"),
        "{e}"
    );

    // Workload identity: the federated token file, read again for each token.
    let token_file = dir.path().join("azure-identity-token");
    std::fs::write(&token_file, "federated-service-account-token\n")?;
    let wi = AzureEnvironment {
        federated_token_file: Some(token_file.clone()),
        client_id: Some(CLIENT_ID.into()),
        tenant_id: Some(TENANT.into()),
        ..Default::default()
    };
    let mut plain = spec(&arm, all.clone());
    plain.tenant_id = None;
    plain.client_id = None;
    let p = AzureProvider::new(plain.clone()).with_environment(wi.clone());
    ensure!(count(&p.inventory(&context("wi")).await?) == 4);
    std::fs::write(&token_file, "rotated-but-not-federated")?;
    let p = AzureProvider::new(plain).with_environment(wi);
    let e = p
        .inventory(&context("wi"))
        .await
        .err()
        .context("a wrong assertion worked")?;
    ensure!(e.to_string().contains("workload identity"), "{e}");

    // Managed identity, user-assigned by clientId.
    let mut mi = spec(&arm, all);
    mi.client_id = Some("mi-client".into());
    let p = provider(&arm, mi.clone());
    ensure!(count(&p.inventory(&context("mi")).await?) == 4);
    mi.client_id = Some("another-identity".into());
    let e = provider(&arm, mi)
        .inventory(&context("mi"))
        .await
        .err()
        .context("any identity")?;
    ensure!(
        e.to_string().contains("managed identity") && e.to_string().contains("Identity not found"),
        "{e}"
    );
    Ok(())
}

#[tokio::test]
async fn snapshots_are_created_reused_granted_and_released() -> Result<()> {
    let arm = FakeArm::start()?;
    arm.load_fleet(&fleet(json!({})))?;
    let ctx = context("fleet");
    let p = provider(&arm, spec(&arm, selector(&[], &["web-1"], &[])));
    let web = web_1(&p, &ctx).await?;
    arm.set_faults(&json!({"snapshots.put": {"throttleEvery": 2, "serverErrorEvery": 2}}))?;
    let scan = "20261206-220000";
    let refs = p
        .prepare_snapshots(&ctx, &web, scan)
        .await
        .context("prepare")?;
    let counters = arm.fault_counters()?;
    ensure!(
        counters["snapshots.put"]["throttled"].as_u64() > Some(0)
            && counters["snapshots.put"]["serverErrors"].as_u64() > Some(0),
        "{counters}"
    );
    ensure!(refs.len() == 2 && refs.iter().all(|r| r.created));
    ensure!(refs[0].disk_id == web.disks[0].id && refs[1].disk_id == web.disks[1].id);
    let state = arm.state()?;
    ensure!(
        state["snapshots"].as_array().map(Vec::len) == Some(2),
        "{}",
        state["snapshots"]
    );
    let token = test_token(&arm)?;
    for r in &refs {
        let s = arm
            .request(
                "GET",
                &format!("{}?api-version=2024-03-02", r.snapshot_id),
                Some(&token),
                None,
            )?
            .json()?;
        ensure!(s["properties"]["provisioningState"] == "Succeeded");
        ensure!(s["properties"]["incremental"] == true);
        ensure!(s["properties"]["creationData"]["sourceResourceId"] == r.disk_id.as_str());
        ensure!(s["tags"][MANAGED_BY_TAG] == "snapsentry" && s["tags"][SCAN_ID_TAG] == scan);
        ensure!(s["tags"][POLICY_TAG] == "security.fleet" && s["location"] == "eastus");
    }

    // An operator restart: a new provider finds this scan's snapshots and creates none.
    arm.set_faults(&json!({}))?;
    let again = provider(&arm, spec(&arm, selector(&[], &["web-1"], &[])));
    let reused = again.prepare_snapshots(&ctx, &web, scan).await?;
    ensure!(
        ids(&reused) == ids(&refs),
        "{:?} vs {:?}",
        ids(&reused),
        ids(&refs)
    );
    ensure!(
        arm.fault_counters()?["snapshots.put"].is_null(),
        "a snapshot was PUT again"
    );

    // A read SAS per disk, in the files the reader config names.
    let grant = again
        .grant_read(&ctx, &web, &refs, Duration::from_secs(3600))
        .await?;
    let files: Vec<&str> = grant.files.keys().map(String::as_str).collect();
    ensure!(files == ["disk-0", "disk-1"], "{files:?}");
    ensure!(
        grant.files["disk-0"] == sas("web-1-os"),
        "disk-0 holds another disk's SAS"
    );
    ensure!(
        grant.files["disk-1"] == sas("web-1-data"),
        "disk-1 holds another disk's SAS"
    );
    ensure!(!format!("{grant:?}").contains("sig="), "Debug shows a SAS");
    ensure!(arm.state()?["activeGrants"] == 2);
    let disks = again.reader_config(&web, &refs);
    for (i, d) in disks.iter().enumerate() {
        match &d.source {
            DiskSource::AzureSnapshot {
                snapshot_id,
                sas_file,
            } => {
                ensure!(*snapshot_id == refs[i].snapshot_id);
                ensure!(*sas_file == format!("{GRANTS_DIR}/disk-{i}"), "{sas_file}");
            }
            other => anyhow::bail!("{other:?}"),
        }
    }

    // Released: grants ended, snapshots deleted; again is no error.
    again.release_snapshots(&ctx, &refs).await?;
    let state = arm.state()?;
    ensure!(
        state["snapshots"] == json!([]) && state["activeGrants"] == 0,
        "{state}"
    );
    again.release_snapshots(&ctx, &refs).await?;
    Ok(())
}

#[tokio::test]
async fn sweep_deletes_only_this_policys_old_snapshots() -> Result<()> {
    let arm = FakeArm::start()?;
    arm.load_fleet(&fleet(json!({})))?;
    let p = provider(&arm, spec(&arm, selector(&[], &["web-1"], &[])));
    let (mine, theirs) = (context("mine"), context("theirs"));
    let web = web_1(&p, &mine).await?;
    let my_refs = p.prepare_snapshots(&mine, &web, "scan-1").await?;
    let their_refs = p.prepare_snapshots(&theirs, &web, "scan-1").await?;
    // A snapshot snapsentry did not make.
    let token = test_token(&arm)?;
    let foreign = format!(
        "/subscriptions/{SUB_A}/resourceGroups/rg-web/providers/Microsoft.Compute/snapshots/backup"
    );
    let body = json!({"location": "eastus", "properties": {"creationData":
        {"createOption": "Copy", "sourceResourceId": web.disks[0].id}}});
    let put = arm.request(
        "PUT",
        &format!("{foreign}?api-version=2024-03-02"),
        Some(&token),
        Some(&body),
    )?;
    ensure!(put.status == 202, "{}", put.status);

    // A leftover of a scan that never ended its grant: the sweep ends it before deleting.
    p.grant_read(&mine, &web, &my_refs, Duration::from_secs(600))
        .await?;
    ensure!(arm.state()?["activeGrants"] == 2);
    arm.set_faults(&json!({"snapshots.list": {"throttleEvery": 3, "serverErrorEvery": 4}}))?;
    // Nothing is older than an hour ago.
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(3600);
    ensure!(p.sweep(&mine, past).await? == 0);
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5);
    ensure!(p.sweep(&mine, future).await? == 2);
    let counters = arm.fault_counters()?;
    ensure!(
        counters["snapshots.list"]["throttled"].as_u64() > Some(0),
        "{counters}"
    );
    let mut left: Vec<String> = arm.state()?["snapshots"]
        .as_array()
        .context("snapshots")?
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    left.sort();
    let mut expected = ids(&their_refs);
    expected.push(foreign);
    expected.sort();
    ensure!(left == expected, "left {left:?}");
    ensure!(ids(&my_refs).iter().all(|id| !left.contains(id)));
    ensure!(arm.state()?["activeGrants"] == 0);
    Ok(())
}

#[tokio::test]
async fn newest_existing_picks_the_newest_and_deletes_nothing() -> Result<()> {
    let arm = FakeArm::start()?;
    arm.load_fleet(&fleet(json!({})))?;
    let mut s = spec(&arm, selector(&[], &["old-1"], &[]));
    s.snapshot_strategy = Some(SnapshotStrategy::NewestExisting);
    let p = provider(&arm, s);
    let ctx = context("fleet");
    let old = p
        .inventory(&ctx)
        .await?
        .machines
        .into_iter()
        .next()
        .context("old-1")?;
    // Without any snapshot of its disk: a clear error.
    let e = p
        .prepare_snapshots(&ctx, &old, "scan")
        .await
        .err()
        .context("no snapshot")?;
    ensure!(e.to_string().contains("newestExisting"), "{e}");
    let token = test_token(&arm)?;
    let path = |name: &str| {
        format!(
            "/subscriptions/{SUB_B}/resourceGroups/rg-b/providers/Microsoft.Compute/snapshots/{name}"
        )
    };
    for name in ["nightly-1", "nightly-2"] {
        let body = json!({"location": "westeurope", "properties": {"creationData":
            {"createOption": "Copy", "sourceResourceId": old.disks[0].id}, "incremental": true}});
        let put = arm.request(
            "PUT",
            &format!("{}?api-version=2024-03-02", path(name)),
            Some(&token),
            Some(&body),
        )?;
        ensure!(put.status == 202);
        // The operation completes on its second poll.
        let op = put
            .header("Azure-AsyncOperation")
            .context("operation")?
            .to_owned();
        for _ in 0..2 {
            arm.request("GET", &op, Some(&token), None)?;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let refs = p.prepare_snapshots(&ctx, &old, "scan").await?;
    ensure!(refs.len() == 1 && !refs[0].created);
    ensure!(
        refs[0].snapshot_id == path("nightly-2"),
        "{}",
        refs[0].snapshot_id
    );
    let grant = p
        .grant_read(&ctx, &old, &refs, Duration::from_secs(600))
        .await?;
    ensure!(grant.files.len() == 1 && arm.state()?["activeGrants"] == 1);
    p.release_snapshots(&ctx, &refs).await?;
    let state = arm.state()?;
    ensure!(state["activeGrants"] == 0, "{state}");
    ensure!(
        state["snapshots"].as_array().map(Vec::len) == Some(2),
        "a chosen snapshot was deleted"
    );
    ensure!(
        p.sweep(
            &ctx,
            jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5)
        )
        .await?
            == 0
    );
    Ok(())
}
