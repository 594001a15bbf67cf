//! The findings cap of an assignment (`maxFindings`).

use super::*;

/// The findings cap: a machine with two findings scanned under a cap of one writes the more
/// severe one and counts the other in `status.lastScan.findingsOverCap` (and an error says so):
/// nothing is dropped silently.
#[tokio::test]
async fn findings_over_the_cap_are_counted_on_the_machine() -> Result<()> {
    let _ = logs();
    let planted = plant()?;
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    cp.install_crds()?;
    let ns = "scan-job-cap";
    create_namespace(&client, ns).await?;
    machine(&client, ns, "lab-images-capped", false).await?;
    let mut a = assignment(
        ns,
        "lab-images-capped",
        "s1",
        vec![AssignedDisk {
            id: "web-01.img".into(),
            source: DiskSource::Image {
                path: planted.image.display().to_string(),
            },
        }],
    );
    a.max_findings = 1;
    let out = job::run(client.clone(), &a, KEY.to_vec(), &Options::default()).await?;
    ensure!(out.summary.succeeded, "{:?}", out.summary);
    ensure!(out.findings.len() == 1, "findings: {:?}", out.findings);
    let written = Api::<SecretFinding>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items;
    ensure!(written.len() == 1, "{} SecretFindings", written.len());
    let last = Api::<ScannedMachine>::namespaced(client, ns)
        .get("lab-images-capped")
        .await?
        .status
        .and_then(|s| s.last_scan)
        .context("lastScan")?;
    ensure!(
        (last.findings, last.findings_over_cap) == (1, 1),
        "written {}, over the cap {}",
        last.findings,
        last.findings_over_cap
    );
    ensure!(
        last.errors
            .iter()
            .any(|e| e == "findings truncated: 1 of 2 written (most severe first)"),
        "{:?}",
        last.errors
    );
    Ok(())
}
