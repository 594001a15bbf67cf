//! Mutating calls of the fake Compute Engine: snapshots and disks through the operation dance
//! (PENDING, RUNNING, DONE), their labels filter and disk image files, and the faults of those
//! calls (throttling, server errors, a disk quota).

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use snapsentry_tests::fake_gce::FakeGce;

use super::fixture::{
    PROJECT, WEB_IMAGE, ZONES, check, compute, documented, expect, get, list_all, names, poll,
    started,
};

/// The answer of a mutating call (200, an Operation).
fn mutate(
    gce: &FakeGce,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let response = gce.request(method, path, Some(token), body.as_ref())?;
    expect(response, 200, path)?.json().map_err(Into::into)
}

const MANAGED: &str = "labels.snapsentry-io-managed-by=snapsentry";

#[test]
fn snapshots_and_disks_follow_the_operation_dance_and_keep_their_image() -> Result<()> {
    let (gce, token) = started(500)?;
    let labels = json!({"snapsentry-io-managed-by": "snapsentry", "snapsentry-io-scan": "s-1"});
    // A zonal createSnapshot of web-1's boot disk, and a global insert of its data disk.
    let op = mutate(
        &gce,
        &token,
        "POST",
        &compute("/zones/us-central1-a/disks/web-1-boot/createSnapshot"),
        Some(json!({"name": "snap-boot", "labels": labels})),
    )?;
    check(
        &documented("compute.zoneOperations.get", "200")?,
        &op,
        &[
            "/kind",
            "/id",
            "/name",
            "/zone",
            "/operationType",
            "/targetLink",
            "/status",
            "/selfLink",
        ],
    )?;
    ensure!(op["operationType"] == "createSnapshot");
    let creating = get(&gce, &token, &compute("/global/snapshots/snap-boot"))?;
    ensure!(creating["status"] == "CREATING", "{creating}");
    let (done, running) = poll(&gce, &token, &op)?;
    ensure!(
        running == 1 && done["progress"] == 100 && done.get("error").is_none(),
        "{done}"
    );
    let other = mutate(
        &gce,
        &token,
        "POST",
        &compute("/global/snapshots"),
        Some(json!({
        "name": "snap-data", "labels": labels,
        "sourceDisk": format!("projects/{PROJECT}/zones/us-central1-a/disks/web-1-data")})),
    )?;
    ensure!(
        other.get("zone").is_none()
            && other["selfLink"]
                .as_str()
                .is_some_and(|l| l.contains("/global/operations/"))
    );
    poll(&gce, &token, &other)?;
    mutate(
        &gce,
        &token,
        "POST",
        &compute("/zones/europe-west1-b/disks/db-1-boot/createSnapshot"),
        Some(json!({"name": "unmanaged"})),
    )?;

    let documented_snapshot = documented("compute.snapshots.get", "200")?;
    let snapshot = get(&gce, &token, &compute("/global/snapshots/snap-boot"))?;
    check(
        &documented_snapshot,
        &snapshot,
        &[
            "/kind",
            "/id",
            "/name",
            "/status",
            "/sourceDisk",
            "/diskSizeGb",
            "/labels",
            "/storageBytes",
            "/licenses",
            "/selfLink",
        ],
    )?;
    ensure!(snapshot["status"] == "READY" && snapshot["diskSizeGb"] == "20");
    let managed = list_all(
        &gce,
        &token,
        &format!(
            "{}?filter={MANAGED}&maxResults=1",
            compute("/global/snapshots")
        ),
    )?;
    ensure!(
        names(&managed) == ["snap-boot", "snap-data"],
        "{:?}",
        names(&managed)
    );
    for item in &managed {
        check(&documented_snapshot, item, &["/name", "/labels"])?;
    }
    check(
        &documented("compute.snapshots.list", "200")?,
        &get(&gce, &token, &compute("/global/snapshots"))?,
        &["/kind", "/items"],
    )?;

    // A disk from the snapshot in the scanner's zone: the image follows.
    let zone = ZONES[2];
    let op = mutate(
        &gce,
        &token,
        "POST",
        &compute(&format!("/zones/{zone}/disks")),
        Some(json!({
        "name": "scan-web-1-boot", "labels": labels,
        "sourceSnapshot": snapshot["selfLink"]})),
    )?;
    ensure!(op["operationType"] == "insert");
    let taken = gce.request(
        "POST",
        &compute(&format!("/zones/{zone}/disks")),
        Some(&token),
        Some(&json!({"name": "scan-web-1-boot", "sourceSnapshot": "global/snapshots/snap-boot"})),
    )?;
    ensure!(
        taken.status == 409 && taken.json()?["error"]["errors"][0]["reason"] == "alreadyExists"
    );
    poll(&gce, &token, &op)?;
    let disk = get(
        &gce,
        &token,
        &compute(&format!("/zones/{zone}/disks/scan-web-1-boot")),
    )?;
    check(
        &documented("compute.disks.get", "200")?,
        &disk,
        &[
            "/kind",
            "/id",
            "/name",
            "/sizeGb",
            "/zone",
            "/status",
            "/sourceSnapshot",
            "/sourceSnapshotId",
            "/selfLink",
            "/labels",
            "/guestOsFeatures",
            "/licenses",
        ],
    )?;
    ensure!(disk["status"] == "READY" && disk["sizeGb"] == "20" && disk["labels"] == labels);
    let handle = format!("projects/{PROJECT}/zones/{zone}/disks/scan-web-1-boot");
    ensure!(
        gce.image_of(&handle)?
            .is_some_and(|p| p == std::path::Path::new(WEB_IMAGE))
    );
    let state = gce.state()?;
    let entry = state["disks"]
        .as_array()
        .context("disks")?
        .iter()
        .find(|d| d["volumeHandle"] == handle.as_str())
        .context("state disk")?;
    ensure!(entry["sourceSnapshot"] == "snap-boot" && entry["image"] == WEB_IMAGE);
    let snapshots = state["snapshots"].as_array().context("snapshots")?;
    ensure!(
        snapshots
            .iter()
            .any(|s| s["name"] == "snap-data" && s["image"] == "/images/web-1-data.img")
    );
    let disks = list_all(
        &gce,
        &token,
        &format!(
            "{}?filter={MANAGED}",
            compute(&format!("/zones/{zone}/disks"))
        ),
    )?;
    check(
        &documented("compute.disks.list", "200")?,
        &get(&gce, &token, &compute(&format!("/zones/{zone}/disks")))?,
        &["/kind", "/items"],
    )?;
    ensure!(names(&disks) == ["scan-web-1-boot"]);

    // Cleanup: an attached disk cannot go; the scan disk and the snapshots can, each an operation.
    let in_use = gce.request(
        "DELETE",
        &compute("/zones/us-central1-a/disks/web-1-boot"),
        Some(&token),
        None,
    )?;
    ensure!(
        in_use.status == 400
            && in_use.json()?["error"]["errors"][0]["reason"] == "resourceInUseByAnotherResource"
    );
    let op = mutate(
        &gce,
        &token,
        "DELETE",
        &compute(&format!("/zones/{zone}/disks/scan-web-1-boot")),
        None,
    )?;
    ensure!(
        get(
            &gce,
            &token,
            &compute(&format!("/zones/{zone}/disks/scan-web-1-boot"))
        )?["status"]
            == "DELETING"
    );
    poll(&gce, &token, &op)?;
    ensure!(gce.image_of(&handle)?.is_none());
    for name in ["snap-boot", "snap-data"] {
        let op = mutate(
            &gce,
            &token,
            "DELETE",
            &compute(&format!("/global/snapshots/{name}")),
            None,
        )?;
        ensure!(op["operationType"] == "delete");
        poll(&gce, &token, &op)?;
    }
    ensure!(
        list_all(
            &gce,
            &token,
            &format!("{}?filter={MANAGED}", compute("/global/snapshots"))
        )?
        .is_empty()
    );
    let gone = gce.request(
        "GET",
        &compute("/global/snapshots/snap-boot"),
        Some(&token),
        None,
    )?;
    ensure!(gone.status == 404);
    let state = gce.state()?;
    ensure!(
        state["operations"] == json!({"started": 7, "done": 6, "failed": 0}),
        "{state}"
    );
    // Operations belong to their scope: the disk's zonal one is not found globally.
    let zonal_op = op["name"].as_str().context("name")?;
    let misplaced = gce.request(
        "GET",
        &compute(&format!("/global/operations/{zonal_op}")),
        Some(&token),
        None,
    )?;
    ensure!(misplaced.status == 404);
    Ok(())
}

#[test]
fn faults_throttle_fail_and_exceed_the_disk_quota() -> Result<()> {
    let (gce, token) = started(500)?;
    let list = compute("/zones/us-central1-a/disks");
    gce.set_faults(&json!({"disks.list": {"throttleEvery": 2, "serverErrorEvery": 2}}))?;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = gce.request("GET", &list, Some(&token), None)?;
        if response.status == 429 {
            check(
                &documented("compute.error", "429")?,
                &response.json()?,
                &["/error/errors/0/reason"],
            )?;
        }
        statuses.push(response.status);
    }
    ensure!(statuses == [200, 429, 503, 429], "{statuses:?}");
    ensure!(
        gce.fault_counters()?["disks.list"]
            == json!({"calls": 4, "throttled": 2, "serverErrors": 1, "quotaErrors": 0})
    );

    // A quota error: the insert is accepted, its operation ends DONE with QUOTA_EXCEEDED (403).
    gce.set_faults(&json!({"disks.insert": {"quotaEvery": 1}}))?;
    let op = mutate(
        &gce,
        &token,
        "POST",
        &compute("/zones/us-central1-a/disks/web-1-boot/createSnapshot"),
        Some(json!({"name": "snap"})),
    )?;
    poll(&gce, &token, &op)?;
    let insert = compute(&format!("/zones/{}/disks", ZONES[2]));
    let op = mutate(
        &gce,
        &token,
        "POST",
        &insert,
        Some(json!({
        "name": "scan-disk", "sourceSnapshot": format!("projects/{PROJECT}/global/snapshots/snap")})),
    )?;
    let (done, _) = poll(&gce, &token, &op)?;
    check(
        &documented("compute.zoneOperations.get", "200")?,
        &done,
        &[
            "/error/errors/0/code",
            "/error/errors/0/message",
            "/error/errors/0/errorDetails/0/quotaInfo/metricName",
            "/error/errors/0/errorDetails/0/quotaInfo/limit",
            "/httpErrorStatusCode",
            "/httpErrorMessage",
        ],
    )?;
    ensure!(
        done["error"]["errors"][0]["code"] == "QUOTA_EXCEEDED"
            && done["httpErrorStatusCode"] == 403
    );
    let missing = gce.request("GET", &format!("{insert}/scan-disk"), Some(&token), None)?;
    ensure!(missing.status == 404, "a failed insert leaves no disk");
    ensure!(gce.state()?["operations"]["failed"] == 1);
    ensure!(gce.fault_counters()?["disks.insert"]["quotaErrors"] == 1);
    gce.set_faults(&json!({}))?;
    let op = mutate(
        &gce,
        &token,
        "POST",
        &insert,
        Some(json!({
        "name": "scan-disk", "sourceSnapshot": "global/snapshots/snap"})),
    )?;
    ensure!(poll(&gce, &token, &op)?.0.get("error").is_none());
    Ok(())
}
