//! The whole path with the real scanner: the operator (in-process), a real kube-apiserver, the
//! local Job runner playing kubelet + Job controller, and the real `snapsentry-scan job` on ext4
//! images with random secrets: verified SSH key → attack path → `kubectl get` columns → the key
//! removed and rescanned → resolved; and at the end, nothing anyone can see (objects, Events,
//! Jobs, ConfigMaps, the in-process operator's logs captured through `tracing`, the scanners'
//! output, `/metrics`) holds a planted value.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use kube::ResourceExt;
use kube::api::ListParams;
use snapsentry_crds::{ScanPolicy, SecretFinding};
use snapsentry_tests::planted::alice_key_pair;
use snapsentry_tests::random::{self, ALNUM, HEX};
use snapsentry_tests::world::{self, World, condition, images};

/// Wait (up to 90 s) until a scan of the policy other than `previous` has finished.
async fn wait_scan_finished(
    w: &World<images::Images>,
    name: &str,
    previous: Option<&str>,
) -> Result<ScanPolicy> {
    Ok(
        w.wait_scan_finished(name, previous, Duration::from_secs(90))
            .await?,
    )
}

/// A value from `make` that the engine will not take for a placeholder: it skips values holding
/// words like these (`PLACEHOLDER_MARKERS` in `engine/src/validate.rs`), which random text
/// contains now and then.
fn random_secret(make: impl Fn() -> std::io::Result<String>) -> std::io::Result<String> {
    const MARKERS: [&str; 18] = [
        "test",
        "fake",
        "todo",
        "dummy",
        "lorem",
        "fixme",
        "xxxx",
        "sample",
        "insert",
        "replace",
        "foobar",
        "redacted",
        "example",
        "your",
        "placeholder",
        "changeme",
        "keyvault",
        "getenv",
    ];
    loop {
        let s = make()?;
        let lower = s.to_ascii_lowercase();
        if !MARKERS.iter().any(|m| lower.contains(m)) {
            return Ok(s);
        }
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A file tree made into an ext4 image with `mke2fs -d`.
fn ext4_image(tree: &Path, image: &Path) -> Result<()> {
    Ok(snapsentry_tests::image::ext4(tree, image, 32)?)
}

/// Secret values planted on the lab's disks, random per run, and where.
struct Planted {
    aws_key_id: String,
    aws_secret: String,
    db_password: String,
    storage_key: String,
    rds_password: String,
    /// alice's OpenSSH private key file (`ssh-keygen`, new every run).
    private_key: String,
}

/// Where each planted secret lives: (machine, path).
const WEB_KEY: (&str, &str) = ("lab-web-01", "/home/alice/.ssh/id_ed25519");
const WEB_AWS: (&str, &str) = ("lab-web-01", "/home/alice/.aws/credentials");
const APP_ENV: (&str, &str) = ("lab-app-01", "/srv/app/.env");
const APP_STORAGE: (&str, &str) = ("lab-app-01", "/srv/app/appsettings.json");
const APP_RDS: (&str, &str) = ("lab-app-01", "/etc/billing/database.yaml");

impl Planted {
    /// Write the three machines' trees under `trees` and their ext4 images into `images`:
    /// web-01 (exposed) holds alice's private key and AWS keys, db-01 authorizes alice's key
    /// for bob, app-01 holds application secrets.
    fn build(trees: &Path, images: &Path) -> Result<Self> {
        let web = trees.join("web-01");
        let db = trees.join("db-01");
        let app = trees.join("app-01");
        for d in [
            web.join("home/alice/.ssh"),
            web.join("home/alice/.aws"),
            db.join("home/bob/.ssh"),
            app.join("srv/app"),
            app.join("etc/billing"),
        ] {
            std::fs::create_dir_all(d)?;
        }
        let private_key = alice_key_pair(
            &web.join(&WEB_KEY.1[1..]),
            &db.join("home/bob/.ssh/authorized_keys"),
        )?;
        let planted = Planted {
            aws_key_id: random_secret(|| {
                Ok(format!(
                    "AKIA{}",
                    random::string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)?
                ))
            })?,
            aws_secret: random_secret(|| {
                random::string(
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                    40,
                )
            })?,
            db_password: random_secret(|| random::string(ALNUM, 20))?,
            storage_key: random_secret(|| Ok(base64(&random::bytes(64)?)))?,
            rds_password: random_secret(|| random::string(ALNUM, 20))?,
            private_key,
        };
        std::fs::write(
            web.join(&WEB_AWS.1[1..]),
            format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                planted.aws_key_id, planted.aws_secret
            ),
        )?;
        std::fs::write(
            app.join(&APP_ENV.1[1..]),
            format!("APP_ENV=production\nDB_PASSWORD={}\n", planted.db_password),
        )?;
        std::fs::write(
            app.join(&APP_STORAGE.1[1..]),
            format!(
                "{{\"Storage\": \"DefaultEndpointsProtocol=https;AccountName=labbackups{};AccountKey={};EndpointSuffix=core.windows.net\"}}\n",
                random::string(HEX, 6)?,
                planted.storage_key
            ),
        )?;
        std::fs::write(
            app.join(&APP_RDS.1[1..]),
            format!(
                "url: 'postgres://billing:{}@billing.c{}.eu-west-1.rds.amazonaws.com:5432/billing'\n",
                planted.rds_password,
                random::string(HEX, 10)?
            ),
        )?;
        for m in ["web-01", "db-01", "app-01"] {
            ext4_image(&trees.join(m), &images.join(format!("{m}.raw")))?;
        }
        Ok(planted)
    }

    /// What must never be seen: (what, value, whether its first 12 characters are forbidden
    /// too). The private key is checked line by line, without its first line (the same
    /// `openssh-key-v1` header in every key).
    fn forbidden<'a>(&'a self, fingerprint_key: &'a str) -> Vec<(&'static str, &'a str, bool)> {
        let mut v = vec![
            ("the AWS access key id", self.aws_key_id.as_str(), true),
            ("the AWS secret access key", self.aws_secret.as_str(), true),
            ("the .env password", self.db_password.as_str(), true),
            ("the storage account key", self.storage_key.as_str(), true),
            ("the RDS password", self.rds_password.as_str(), true),
            ("the fingerprint key", fingerprint_key, true),
        ];
        v.extend(
            self.private_key
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .skip(1)
                .map(|l| ("a line of the SSH private key", l, false)),
        );
        v
    }
}

/// Fail when `text` holds a forbidden value (naming the value's kind, never the value).
fn assert_no_leak(what: &str, text: &[u8], forbidden: &[(&str, &str, bool)]) {
    let text = String::from_utf8_lossy(text);
    for (kind, value, prefix) in forbidden {
        assert!(!text.contains(value), "{what} contains {kind}");
        if *prefix {
            assert!(
                !text.contains(&value[..12]),
                "{what} contains the first 12 characters of {kind}"
            );
        }
    }
}

/// One row of `kubectl get` output: column header → cell.
type Row = BTreeMap<String, String>;

/// `kubectl get` output as (header, rows), cells cut at the header's column starts (kubectl
/// aligns every column under its header; a header like `LAST SCAN` holds one space, columns are
/// at least three apart).
fn kubectl_table(text: &str) -> Result<(Vec<String>, Vec<Row>)> {
    let mut lines = text.lines();
    let header = lines.next().context("no header")?;
    let mut starts = Vec::new();
    let mut names = Vec::new();
    let mut at = 0;
    while at < header.len() {
        let rest = &header[at..];
        let start = at + (rest.len() - rest.trim_start().len());
        if start >= header.len() {
            break;
        }
        let len = header[start..].find("  ").unwrap_or(header.len() - start);
        starts.push(start);
        names.push(header[start..start + len].to_owned());
        at = start + len;
    }
    let rows = lines
        .map(|line| {
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let end = starts.get(i + 1).copied().unwrap_or(line.len());
                    let cell = line.get(starts[i]..end.min(line.len())).unwrap_or("");
                    (name.clone(), cell.trim().to_owned())
                })
                .collect()
        })
        .collect();
    Ok((names, rows))
}

/// The whole path with the real scanner (`snapsentry-scan job`, built by `cargo test
/// --workspace` or `cargo build -p snapsentry-scanner`) on three ext4 images with random
/// secrets: the private key on the exposed web-01 is authorized on db-01, so correlation verifies
/// it and writes a VM → VM attack path, and `kubectl get` shows it. Then web-01 is rebuilt
/// without the key and rescanned: the key's finding is resolved, its attack path gone, the
/// counts drop. At the end no secret value (nor its first 12 characters) is anywhere: objects,
/// Events, Jobs, ConfigMaps, operator logs, scanner output, metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_scanner_verifies_resolves_and_never_leaks() -> Result<()> {
    world::scanner()?;
    // The scanners log at debug: more to check.
    let mut w = World::start(images::setup("op-real")?.env("SNAPSENTRY_LOG", "debug")).await?;
    let trees = tempfile::tempdir()?;
    let planted = Planted::build(trees.path(), w.cloud.dir.path())?;
    w.start_operator()?;
    w.create_policy(&images::policy(
        &w.ns,
        "lab",
        &["web-01", "app-01", "db-01"],
        2,
    )?)
    .await?;
    let p = wait_scan_finished(&w, "lab", None).await?;
    let first_id = p.status.as_ref().and_then(|s| s.scan_id.clone());
    let status = p.status.clone().unwrap();
    let open_before = status.findings.as_ref().map(|f| f.total);
    let m = status.machines.clone().unwrap();
    assert_eq!((m.scanned, m.failed), (3, 0), "{:?}", w.runner.finished());
    assert_eq!(
        condition(&p, "Degraded").map(|c| c.status.as_str()),
        Some("False")
    );

    let machines = w.machines().await?;
    let db_status = machines["lab-db-01"].status.clone().unwrap();
    assert_eq!(db_status.authorized_keys.len(), 1);
    assert!(db_status.last_scan.as_ref().is_some_and(|l| l.succeeded));

    // Every planted secret was found (else the leak check below would prove nothing).
    let findings = w.findings().await?;
    let at = |(machine, path): (&str, &str)| {
        findings
            .iter()
            .find(|f| f.spec.machine == machine && f.spec.locations.iter().any(|l| l.path == path))
            .with_context(|| {
                format!(
                    "no finding at {machine}:{path}; findings: {:?}",
                    findings
                        .iter()
                        .map(|f| (&f.spec.machine, &f.spec.rule_id, &f.spec.locations[0].path))
                        .collect::<Vec<_>>()
                )
            })
    };
    for place in [WEB_AWS, APP_ENV, APP_STORAGE, APP_RDS] {
        at(place)?;
    }
    let key_finding = at(WEB_KEY)?.clone();
    let key_name = key_finding.name_any();
    let aws_name = at(WEB_AWS)?.name_any();

    let to_vm = w
        .api::<SecretFinding>()
        .list(&ListParams::default().labels("snapsentry.io/target-kind=vm"))
        .await?
        .items;
    assert_eq!(to_vm.len(), 1, "one private key opens another VM");
    assert_eq!(to_vm[0].name_any(), key_name);
    assert_eq!(
        key_finding
            .labels()
            .get("snapsentry.io/verified")
            .map(String::as_str),
        Some("verified")
    );
    let key_status = key_finding.status.clone().context("key finding status")?;
    assert!(
        key_status
            .authorized_on
            .iter()
            .any(|a| a.machine == "lab-db-01" && a.user == "bob"),
        "{:?}",
        key_status.authorized_on
    );

    let paths = w
        .api::<snapsentry_crds::AttackPath>()
        .list(&ListParams::default())
        .await?
        .items;
    assert_eq!(paths.len(), 1);
    assert_eq!(status.attack_paths, Some(1));
    let path = &paths[0].spec;
    assert_eq!(
        (
            path.entry.machine.as_str(),
            path.target.name.as_str(),
            path.entry.exposed,
            path.secret.finding.as_str()
        ),
        ("lab-web-01", "lab-db-01", true, key_name.as_str())
    );
    assert!(
        paths[0]
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == p.metadata.uid.as_ref()),
        "attack paths are owned by the policy"
    );
    let recs = w
        .api::<snapsentry_crds::Recommendation>()
        .list(&ListParams::default())
        .await?
        .items;
    assert_eq!(recs.len(), 1);
    let web_affected = |rec: &snapsentry_crds::Recommendation| {
        rec.spec
            .affected_resources
            .iter()
            .find(|r| r.machine == "lab-web-01")
            .map(|r| r.findings)
    };
    let rec_before = recs[0].clone();
    let web_before = web_affected(&rec_before).context("web-01 is affected")?;

    // `kubectl get sf`: the printer columns answer the first questions.
    let (header, rows) = kubectl_table(&String::from_utf8(
        w.kubectl_ok(&["get", "sf", "-n", &w.ns])?,
    )?)?;
    assert_eq!(
        header,
        [
            "NAME", "MACHINE", "TYPE", "PATH", "SEVERITY", "VERIFIED", "TARGET", "STATE", "AGE"
        ]
    );
    assert_eq!(rows.len(), findings.len());
    let row = rows
        .iter()
        .find(|r| r["NAME"] == key_name)
        .context("key finding row")?;
    let severity = key_status.severity.context("assessed severity")?;
    for (column, value) in [
        ("MACHINE", "lab-web-01"),
        ("TYPE", key_finding.spec.secret_type.as_str()),
        ("PATH", WEB_KEY.1),
        ("SEVERITY", severity.as_str()),
        ("VERIFIED", "Verified"),
        ("TARGET", "lab-db-01"),
        ("STATE", "Active"),
    ] {
        assert_eq!(row[column], value, "{column} in {row:?}");
    }
    assert!(!row["AGE"].is_empty());
    // `kubectl get sm`: cloud, exposure, coverage, counts, last scan.
    let (header, rows) = kubectl_table(&String::from_utf8(
        w.kubectl_ok(&["get", "sm", "-n", &w.ns])?,
    )?)?;
    assert_eq!(
        header,
        [
            "NAME",
            "CLOUD",
            "EXPOSED",
            "PHASE",
            "COVERAGE",
            "FINDINGS",
            "CRITICAL",
            "LAST SCAN",
            "AGE"
        ]
    );
    assert_eq!(rows.len(), 3);
    // The real scanner read every volume of the three images.
    assert!(rows.iter().all(|r| r["COVERAGE"] == "complete"), "{rows:?}");
    let web_counts = machines["lab-web-01"]
        .status
        .as_ref()
        .and_then(|s| s.findings.clone())
        .context("web-01 counts")?;
    for r in &rows {
        let m = machines.get(&r["NAME"]).context("a row per machine")?;
        let counts = m.status.as_ref().and_then(|s| s.findings.clone());
        let cell = |n: Option<u32>| n.map_or("<none>".to_owned(), |n| n.to_string());
        assert_eq!(
            (
                r["CLOUD"].as_str(),
                r["EXPOSED"].as_str(),
                r["PHASE"].as_str()
            ),
            (
                "image",
                if r["NAME"] == "lab-web-01" {
                    "true"
                } else {
                    "false"
                },
                "Scanned"
            ),
            "{r:?}"
        );
        assert_eq!(
            r["FINDINGS"],
            cell(counts.as_ref().map(|c| c.total)),
            "{r:?}"
        );
        assert_eq!(
            r["CRITICAL"],
            cell(counts.as_ref().map(|c| c.critical)),
            "{r:?}"
        );
        assert!(
            !r["LAST SCAN"].is_empty() && r["LAST SCAN"] != "<none>",
            "{r:?}"
        );
    }
    let web_row = rows.iter().find(|r| r["NAME"] == "lab-web-01").unwrap();
    assert_eq!(web_row["FINDINGS"], web_counts.total.to_string());

    // The key is removed from web-01 (same image path) and the policy rescanned.
    std::fs::remove_file(trees.path().join("web-01").join(&WEB_KEY.1[1..]))?;
    ext4_image(
        &trees.path().join("web-01"),
        &w.cloud.dir.path().join("web-01.raw"),
    )?;
    w.scan_now("lab", "key-removed").await?;
    let p = wait_scan_finished(&w, "lab", first_id.as_deref()).await?;
    let status = p.status.clone().unwrap();
    let m = status.machines.clone().unwrap();
    assert_eq!((m.scanned, m.failed), (3, 0), "{:?}", w.runner.finished());

    let resolved = w.api::<SecretFinding>().get(&key_name).await?;
    let s = resolved.status.as_ref().context("status")?;
    assert_eq!(s.state, Some(snapsentry_crds::FindingState::Resolved));
    assert!(s.resolved_at.is_some(), "a resolved time");
    assert_eq!(
        resolved
            .labels()
            .get("snapsentry.io/state")
            .map(String::as_str),
        Some("resolved")
    );
    let by_label = w
        .api::<SecretFinding>()
        .list(&ListParams::default().labels("snapsentry.io/state=resolved"))
        .await?
        .items;
    assert_eq!(
        by_label.iter().map(|f| f.name_any()).collect::<Vec<_>>(),
        std::slice::from_ref(&key_name)
    );
    // Still on the disk, still open.
    let aws = w.api::<SecretFinding>().get(&aws_name).await?;
    assert_eq!(
        aws.status.as_ref().and_then(|s| s.state),
        Some(snapsentry_crds::FindingState::Active)
    );
    let paths = w
        .api::<snapsentry_crds::AttackPath>()
        .list(&ListParams::default())
        .await?
        .items;
    assert!(paths.is_empty(), "the attack path is gone: {paths:?}");
    assert_eq!(status.attack_paths, Some(0));
    let recs = w
        .api::<snapsentry_crds::Recommendation>()
        .list(&ListParams::default())
        .await?
        .items;
    assert_eq!(recs.len(), 1);
    assert_eq!(web_affected(&recs[0]), Some(web_before - 1));
    assert_eq!(recs[0].spec.affected_count, rec_before.spec.affected_count);
    let machines = w.machines().await?;
    let web_after = machines["lab-web-01"]
        .status
        .as_ref()
        .and_then(|s| s.findings.clone())
        .context("web-01 counts")?;
    assert_eq!(web_after.total, web_counts.total - 1);
    assert_eq!(
        status.findings.as_ref().map(|f| f.total),
        open_before.map(|n| n - 1),
        "the policy counts open findings"
    );

    // Never leak: nothing anyone can see holds a secret value.
    let forbidden = planted.forbidden(&w.fingerprint_key);
    let seen = w.everything_visible()?;
    for (what, text) in &seen {
        assert_no_leak(what, text, &forbidden);
    }
    // The check looked at real content.
    let text = |name: &str| {
        seen.iter()
            .filter(|(w, _)| w.starts_with(name))
            .map(|(_, t)| String::from_utf8_lossy(t).into_owned())
            .collect::<String>()
    };
    assert!(text("the operator's logs").contains("scan finished"));
    assert!(text("the output of Job").contains("finding written"));
    assert_eq!(w.runner.started().len(), 6);
    assert!(text("kubectl get sp,sf,sm,ap,rec -A -o json").contains(&key_name));
    assert!(text("kubectl get events -A").contains("ScanFinished"));
    assert!(text("/metrics").contains("snapsentry_findings"));
    w.stop_operator().await?;
    Ok(())
}
