//! The views against a real API server. `kubectl snapsentry` after real scans (the images world, the
//! operator in-process, the real `snapsentry-scan job`): exposed web-01 holds alice's SSH key,
//! which db-01 authorizes for bob, and AWS keys. Every view is checked against the objects the
//! scan wrote — `summary`, `machine`, `paths`, `graph` (DOT and SVG), `diff` (everything new
//! after the first scan; after the AWS keys are removed and the policy rescanned, they are
//! resolved and nothing is new) — and the HTML `report` is opened in headless Chromium: its
//! structure as the browser parsed it, a screenshot, and no planted value anywhere. And the
//! chart's Grafana dashboard ConfigMap, rendered by helm and applied.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use snapsentry_crds::{AttackPath, ScanPolicy};
use snapsentry_tests::ControlPlane;
use snapsentry_tests::browser::Browser;
use snapsentry_tests::planted::{self, AWS_KEY_ID, AWS_SECRET};
use snapsentry_tests::world::{self, World, images};

const KEY: &str = planted::WEB_KEY;
const AWS: &str = planted::WEB_AWS;

/// The plugin binary of this workspace (built by `cargo test --workspace` or `cargo build -p
/// kubectl-snapsentry`).
fn plugin() -> Result<PathBuf> {
    let bin = snapsentry_tests::bin_dir()?.join("kubectl-snapsentry");
    ensure!(
        bin.is_file(),
        "{} is missing: run `cargo build -p kubectl-snapsentry` first",
        bin.display()
    );
    Ok(bin)
}

/// Run the plugin in the world's namespace; its standard output.
fn run(w: &World<images::Images>, args: &[&str]) -> Result<String> {
    let out = Command::new(plugin()?)
        .env("KUBECONFIG", w.cp.kubeconfig())
        .args(["-n", &w.ns])
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "kubectl-snapsentry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

async fn wait(w: &World<images::Images>, previous: Option<&str>) -> Result<ScanPolicy> {
    Ok(
        w.wait_scan_finished("lab", previous, Duration::from_secs(90))
            .await?,
    )
}

/// The `diff` header line of a machine: `<machine>  scan … : <rest>`.
fn diff_line<'a>(diff: &'a str, machine: &str) -> Result<&'a str> {
    diff.lines()
        .find(|l| l.starts_with(&format!("{machine}  scan ")))
        .and_then(|l| l.split_once("): ").map(|(_, rest)| rest))
        .with_context(|| format!("no diff line for {machine} in\n{diff}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_views_of_a_real_scan() -> Result<()> {
    world::scanner()?;
    plugin()?;
    let browser = Browser::find()?;
    let mut w = World::start(images::setup("plugin")?).await?;
    let trees = tempfile::tempdir()?;
    let private_key = planted::web_and_db(trees.path(), w.cloud.dir.path())?;
    let mut never: Vec<&str> = vec![AWS_SECRET, AWS_KEY_ID];
    never.extend(
        private_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .skip(1),
    );
    w.start_operator()?;
    w.create_policy(&images::policy(&w.ns, "lab", &["web-01", "db-01"], 2)?)
        .await?;
    let p = wait(&w, None).await?;
    let first = p.status.as_ref().and_then(|s| s.scan_id.clone());

    let findings = w.findings().await?;
    let open: Vec<_> = findings
        .iter()
        .filter(|f| f.labels().get("snapsentry.io/state").map(String::as_str) == Some("active"))
        .collect();
    ensure!(open.len() >= 2, "the key and the AWS keys: {findings:?}");
    let key = findings
        .iter()
        .find(|f| f.spec.locations.iter().any(|l| l.path == format!("/{KEY}")))
        .context("the private key's finding")?;
    // The view labels the operator writes.
    assert_eq!(
        key.labels().get("snapsentry.io/target").map(String::as_str),
        Some("lab-db-01")
    );
    for f in &findings {
        assert_eq!(
            f.labels().get("snapsentry.io/new").map(String::as_str),
            Some("true"),
            "{} after the first scan",
            f.name_any()
        );
    }

    // summary: the counts of the objects, the most common type first.
    let summary = run(&w, &["summary"])?;
    assert!(
        summary.contains(&format!(
            "{} open finding(s) on 1 of 2 machine(s) (1 exposed to the internet)",
            open.len()
        )),
        "{summary}"
    );
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &open {
        *by_type.entry(f.spec.secret_type.as_str()).or_default() += 1;
    }
    let most = by_type.values().max().copied().unwrap_or(0);
    let types = &summary[summary.find("MOST COMMON SECRETS").context("types")?..];
    let first_row = types.lines().nth(2).context("a type row")?;
    let (first_type, n) = by_type
        .iter()
        .find(|(t, _)| first_row.starts_with(*t))
        .with_context(|| format!("{first_row:?} names no open type of {by_type:?}"))?;
    assert_eq!(*n, most, "{first_type} is not the most common: {summary}");
    for t in by_type.keys() {
        assert!(types.contains(t), "{t} missing from\n{summary}");
    }

    // machine: web-01's findings with their paths and metadata; db-01 has none.
    let web = run(&w, &["machine", "lab-web-01"])?;
    assert!(
        web.starts_with("lab-web-01  (image, exposed to the internet)\n"),
        "{web}"
    );
    assert!(
        web.contains(&format!("{} finding(s), {} open", open.len(), open.len())),
        "{web}"
    );
    assert!(
        web.contains(&format!(":/{KEY}:")) && web.contains(&format!(":/{AWS}:")),
        "{web}"
    );
    assert!(web.contains("ssh key        ssh-ed25519 SHA256:"), "{web}");
    assert!(web.contains("authorized on  lab-db-01 (bob)"), "{web}");
    let db = run(&w, &["machine", "lab-db-01"])?;
    assert!(db.contains("0 finding(s), 0 open"), "{db}");

    // paths: the AttackPath as a chain.
    let ap = w.api::<AttackPath>().list(&Default::default()).await?.items;
    ensure!(ap.len() == 1, "{ap:?}");
    let paths = run(&w, &["paths"])?;
    assert!(
        paths.contains(&format!(
            "   internet → lab-web-01 → {} (/{KEY}) → vm lab-db-01 (as bob)\n",
            ap[0].spec.secret.secret_type
        )),
        "{paths}"
    );
    assert!(paths.contains(&ap[0].spec.title), "{paths}");

    // graph: DOT edges from the internet to the key to db-01; the SVG draws every node.
    let dot = run(&w, &["graph", "--format", "dot"])?;
    assert!(dot.contains("\"internet\" -> \"m:lab-web-01\";"), "{dot}");
    assert!(
        dot.contains(&format!(
            "\"s:lab-web-01/{}\" -> \"t:vm:lab-db-01\" [label=\"as bob\"];",
            key.name_any()
        )),
        "{dot}"
    );
    let out = tempfile::tempdir()?;
    let svg_path = out.path().join("graph.svg");
    run(&w, &["graph", "-o", svg_path.to_str().context("utf-8")?])?;
    let svg = std::fs::read_to_string(&svg_path)?;
    let dot_nodes = dot
        .lines()
        .filter(|l| l.contains(" [label=") && !l.contains(" -> "))
        .count();
    assert_eq!(
        svg.matches("<g class=\"node ").count(),
        dot_nodes,
        "one SVG node per DOT node:\n{dot}"
    );

    // diff after the first scan: everything is new.
    let diff = run(&w, &["diff"])?;
    assert_eq!(
        diff_line(&diff, "lab-web-01")?,
        format!("{} new, 0 resolved, 0 changed", findings.len()),
        "{diff}"
    );
    assert_eq!(diff_line(&diff, "lab-db-01")?, "no change", "{diff}");

    // The HTML report as Chromium sees it.
    let html_path = out.path().join("report.html");
    run(&w, &["report", "-o", html_path.to_str().context("utf-8")?])?;
    let html = std::fs::read_to_string(&html_path)?;
    let dom = browser.dump_dom(&html_path)?;
    for id in [
        "summary",
        "graph",
        "paths",
        "machines",
        "machine-lab-web-01",
        "machine-lab-db-01",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no #{id} in the DOM");
    }
    assert_eq!(dom.matches("<section class=\"machine\"").count(), 2);
    assert_eq!(dom.matches("<tr class=\"finding").count(), findings.len());
    assert!(dom.contains("<svg ") && dom.contains("class=\"node secret\""));
    let png = out.path().join("report.png");
    browser.screenshot(&html_path, &png, 1280, 1600)?;
    for value in &never {
        for (what, text) in [
            ("report", &html),
            ("DOM", &dom),
            ("SVG", &svg),
            ("DOT", &dot),
            ("summary", &summary),
            ("machine", &web),
            ("paths", &paths),
        ] {
            assert!(!text.contains(value), "the {what} holds a planted value");
        }
    }

    // The AWS keys are removed from web-01 and the policy rescanned: they are resolved, the key
    // is seen again (not new), nothing is new.
    std::fs::remove_file(trees.path().join("web-01").join(AWS))?;
    planted::lab_image(trees.path(), w.cloud.dir.path(), "web-01")?;
    w.scan_now("lab", "aws-removed").await?;
    wait(&w, first.as_deref()).await?;
    let after = w.findings().await?;
    let resolved = after
        .iter()
        .filter(|f| f.labels().get("snapsentry.io/state").map(String::as_str) == Some("resolved"))
        .count();
    ensure!(
        resolved == findings.len() - 1,
        "only the key stays: {after:?}"
    );
    let key_after = after
        .iter()
        .find(|f| f.name_any() == key.name_any())
        .context("key")?;
    assert_eq!(
        key_after
            .labels()
            .get("snapsentry.io/new")
            .map(String::as_str),
        Some("false")
    );
    let diff = run(&w, &["diff"])?;
    assert_eq!(
        diff_line(&diff, "lab-web-01")?,
        format!("0 new, {resolved} resolved, 0 changed"),
        "{diff}"
    );
    assert!(
        diff.contains(&format!(":/{AWS}:")),
        "the resolved AWS keys are listed: {diff}"
    );
    assert!(
        !diff.contains(&key.name_any()),
        "the key did not change: {diff}"
    );
    let summary = run(&w, &["summary"])?;
    assert!(
        summary.contains("1 open finding(s) on 1 of 2 machine(s)"),
        "{summary}"
    );
    Ok(())
}

/// `helm template` of the chart's dashboards ConfigMap with `args`; `None` when helm renders
/// nothing for it (the toggle off).
fn render_dashboards(cp: &ControlPlane, ns: &str, args: &[&str]) -> Result<Option<String>> {
    let out = Command::new(cp.helm()?)
        .args(["template", "snapsentry", "--namespace", ns])
        .args(["--show-only", "templates/dashboards.yaml"])
        .args(args)
        .arg(snapsentry_tests::repo().join("charts/snapsentry"))
        .output()?;
    if out.status.success() {
        Ok(Some(String::from_utf8(out.stdout)?))
    } else if String::from_utf8_lossy(&out.stderr).contains("could not find template") {
        Ok(None)
    } else {
        anyhow::bail!("helm template: {}", String::from_utf8_lossy(&out.stderr))
    }
}

/// The chart ships the dashboard as a ConfigMap with the Grafana sidecar's label only when
/// `grafana.dashboards.enabled`; the API server takes it, and its JSON is the chart's file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_ships_the_grafana_dashboard() -> Result<()> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    let ns = "views-dashboard";
    snapsentry_tests::controlplane::create_namespace(&client, ns).await?;
    cp.install_crds()?;
    assert!(render_dashboards(cp, ns, &[])?.is_none(), "off by default");
    let rendered = render_dashboards(cp, ns, &["--set", "grafana.dashboards.enabled=true"])?
        .context("rendered when enabled")?;
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), rendered)?;
    world::kubectl_ok(
        cp,
        &[
            "apply",
            "--server-side",
            "-f",
            file.path().to_str().context("utf-8")?,
        ],
    )?;
    let cm = Api::<ConfigMap>::namespaced(client, ns)
        .get("snapsentry-dashboards")
        .await?;
    assert_eq!(
        cm.labels().get("grafana_dashboard").map(String::as_str),
        Some("1")
    );
    let data = cm.data.context("data")?;
    let shipped: serde_json::Value = serde_json::from_str(&data["snapsentry.json"])?;
    let file = snapsentry_tests::repo().join("charts/snapsentry/dashboards/snapsentry.json");
    let source: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    assert_eq!(shipped, source);
    assert_eq!(shipped["uid"], "snapsentry-overview");
    Ok(())
}
