//! What admission cannot check, the operator reports: a ScanPolicy whose schedule has five fields
//! but one out of range, or whose zone has the shape of an IANA name but is not one, gets
//! `Ready=False` with the field and the reason, and one Warning Event; it starts no scan (never a
//! default in its place). Fixing it makes the policy Ready again.

use std::time::Duration;

use anyhow::{Result, ensure};
use kube::api::{Patch, PatchParams};
use snapsentry_crds::ScanPolicy;
use snapsentry_tests::world::images::{self, Images};
use snapsentry_tests::world::{self, condition};

type World = world::World<Images>;

/// The `Ready` condition's status and reason, once its reason is `reason`.
async fn wait_ready(w: &World, reason: &str) -> Result<(String, String)> {
    let p = w
        .wait_policy("lab", reason, Duration::from_secs(30), |p| {
            condition(p, "Ready").is_some_and(|c| c.reason == reason)
        })
        .await?;
    let c = condition(&p, "Ready").expect("waited for it");
    Ok((c.status.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_admission_cannot_check_is_said_in_ready_and_an_event() -> Result<()> {
    let mut w = World::start(images::setup("op-validation")?).await?;
    w.start_operator()?;
    let mut policy = images::policy(&w.ns, "lab", &["web-01"], 1)?;
    policy.spec.schedule = Some("61 3 * * *".into());
    w.create_policy(&policy).await?;

    let (status, message) = wait_ready(&w, "InvalidSchedule").await?;
    ensure!(status == "False", "{status}");
    ensure!(
        message.starts_with("spec.schedule:") && message.contains("61 3 * * *"),
        "{message}"
    );
    let api = w.api::<ScanPolicy>();
    let patch = |v: serde_json::Value| {
        let api = api.clone();
        async move {
            api.patch("lab", &PatchParams::default(), &Patch::Merge(&v))
                .await
        }
    };
    patch(serde_json::json!({"spec": {"schedule": "0 3 * * *", "timeZone": "Mars/Olympus_Mons"}}))
        .await?;
    let (status, message) = wait_ready(&w, "InvalidTimeZone").await?;
    ensure!(
        status == "False" && message.contains("Mars/Olympus_Mons"),
        "{message}"
    );
    patch(serde_json::json!({"spec": {"timeZone": "Europe/Paris"}})).await?;
    let (status, _) = wait_ready(&w, "Scheduled").await?;
    ensure!(status == "True");

    let reasons = w.event_reasons().await?;
    for reason in ["InvalidSchedule", "InvalidTimeZone"] {
        let n = reasons.iter().filter(|r| *r == reason).count();
        ensure!(n == 1, "{n} {reason} Events: {reasons:?}");
    }
    // Neither invalid spec started a scan; the valid one waits for 03:00 Paris time.
    ensure!(w.jobs().await?.is_empty(), "a Job was started");
    w.stop_operator().await?;
    Ok(())
}
