//! Disks the Job cannot read: each volume not read is recorded with its reason, and the machine
//! is `Failed` (nothing read) or `Incomplete` (some read), never `Scanned`; an assignment for a
//! machine that does not exist is an error.

use super::*;

#[tokio::test]
async fn unusable_disks_are_recorded_and_a_missing_machine_is_an_error() -> Result<()> {
    let _ = logs();
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    cp.install_crds()?;
    let ns = "scan-job-failures";
    create_namespace(&client, ns).await?;
    machine(&client, ns, "lab-images-broken", false).await?;

    let a = assignment(
        ns,
        "lab-images-broken",
        "s1",
        vec![
            AssignedDisk {
                id: "missing.img".into(),
                source: DiskSource::Image {
                    path: "/nonexistent/missing.img".into(),
                },
            },
            AssignedDisk {
                id: "vol-0abc".into(),
                source: DiskSource::GcpSnapshot {
                    project: "p".into(),
                    snapshot: "snap-0abc".into(),
                },
            },
        ],
    );
    let out = job::run(client.clone(), &a, KEY.to_vec(), &Options::default()).await?;
    ensure!(!out.summary.succeeded && out.findings.is_empty());
    let sm = Api::<ScannedMachine>::namespaced(client.clone(), ns)
        .get("lab-images-broken")
        .await?;
    let status = sm.status.context("status")?;
    ensure!(status.phase == Some(MachinePhase::Failed), "{status:?}");
    let last = status.last_scan.context("lastScan")?;
    let ids: Vec<&str> = last.volumes.iter().map(|v| v.id.as_str()).collect();
    ensure!(ids == ["disk0", "disk1"], "{ids:?}");
    ensure!(last.volumes.iter().all(|v| !v.scanned && v.error.is_some()));
    let reasons: Vec<_> = last.volumes.iter().map(|v| v.skip_reason).collect();
    ensure!(
        reasons == [Some(SkipReason::Unreadable), Some(SkipReason::Unsupported)],
        "{reasons:?}"
    );
    ensure!(
        last.errors
            .iter()
            .any(|e| e.contains("disk1") && e.contains("not supported in this build")),
        "{:?}",
        last.errors
    );

    let missing = assignment(ns, "no-such-machine", "s1", a.disks.clone());
    match job::run(client, &missing, KEY.to_vec(), &Options::default()).await {
        Err(e @ job::Error::MachineNotFound { .. }) => ensure!(e.exit_code() != 0),
        other => bail!("expected MachineNotFound, got {other:?}"),
    }
    Ok(())
}

/// A machine whose disk holds an ext4 partition beside a LUKS one, and whose second disk cannot
/// be opened: the Job scans what it can and records the machine `Incomplete` (never `Scanned`),
/// each volume not read with its reason.
#[tokio::test]
async fn a_luks_partition_and_a_missing_disk_make_the_machine_incomplete() -> Result<()> {
    let _ = logs();
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    cp.install_crds()?;
    let ns = "scan-job-coverage";
    create_namespace(&client, ns).await?;
    machine(&client, ns, "lab-images-vault", false).await?;
    let dir = tempfile::tempdir()?;
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("home/alice/.aws"))?;
    std::fs::write(
        tree.join("home/alice/.aws/credentials"),
        format!(
            "[default]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"
        ),
    )?;
    let image = dir.path().join("vault.img");
    snapsentry_tests::image::gpt_ext4_and_luks(&tree, &image)?;

    let a = assignment(
        ns,
        "lab-images-vault",
        "s1",
        vec![
            AssignedDisk {
                id: "vault.img".into(),
                source: DiskSource::Image {
                    path: image.display().to_string(),
                },
            },
            AssignedDisk {
                id: "gone.img".into(),
                source: DiskSource::Image {
                    path: "/nonexistent/gone.img".into(),
                },
            },
        ],
    );
    let out = job::run(client.clone(), &a, KEY.to_vec(), &Options::default()).await?;
    ensure!(out.summary.succeeded && out.findings.len() == 1, "{out:?}");
    let sm = Api::<ScannedMachine>::namespaced(client, ns)
        .get("lab-images-vault")
        .await?;
    let status = sm.status.context("status")?;
    ensure!(status.phase == Some(MachinePhase::Incomplete), "{status:?}");
    let last = status.last_scan.context("lastScan")?;
    let volumes: Vec<_> = last
        .volumes
        .iter()
        .map(|v| {
            (
                v.id.as_str(),
                v.filesystem.as_deref(),
                v.scanned,
                v.skip_reason,
            )
        })
        .collect();
    ensure!(
        volumes
            == [
                ("disk0/p1", Some("ext4"), true, None),
                ("disk0/p2", Some("luks"), false, Some(SkipReason::Encrypted)),
                ("disk1", None, false, Some(SkipReason::Unreadable)),
            ],
        "{volumes:?}"
    );
    let coverage = MachineCoverage::of(&last);
    ensure!(coverage.summary == "1/3 volumes", "{coverage:?}");
    Ok(())
}
