//! The stock-OS noise test: a real Debian root (debootstrap bookworm minbase with a small server
//! package set, built once by `scripts/lib/stock-root.sh` and cached under ~/.cache/snapsentry),
//! scanned as a directory and as an ext4 disk image (`mkfs.ext4 -d`). Nothing planted is nothing
//! at medium or above: what the packages shipped is vendor content, at `info` with the package's
//! name, read from the root's own dpkg database. The keys the OS generated at install (SSH host
//! keys, the ssl-cert snakeoil key) are still reported, at info/low. A package file changed after
//! installation is the opposite of noise: it keeps its severity and says it was modified.
//!
//! The full package set of issue 13 is `scripts/bench-noise.sh` (a benchmark, not a test).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A GitHub token appended to a conffile (`/etc/bash.bashrc`, checked against the checksum in
/// dpkg's status), and an AWS key pair appended to a library source (`.md5sums`).
const GITHUB: &str = "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";
const AWS_ID: &str = "AKIAWB5WKH7DNSIPZZ7F";
const AWS_SECRET: &str = "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";
const CONFFILE: &str = "/etc/bash.bashrc";
const LIBRARY: &str = "/usr/lib/python3.11/smtplib.py";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cached stock root: `make test`'s package set, which the script names (built by
/// scripts/toolchain.sh, or here on first use; needs root and the Debian mirror).
fn stock_root() -> PathBuf {
    let out = Command::new(repo().join("scripts/lib/stock-root.sh"))
        .output()
        .expect("scripts/lib/stock-root.sh runs");
    assert!(
        out.status.success(),
        "scripts/lib/stock-root.sh failed (debootstrap missing? run scripts/toolchain.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(
        root.join("var/lib/dpkg/status").is_file(),
        "{}",
        root.display()
    );
    root
}

/// A copy of the stock root (the cache stays pristine) with two package files changed.
fn modified_copy(root: &Path, into: &Path) {
    let ok = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(root)
        .arg(into)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {}", root.display());
    let append = |rel: &str, text: &str| {
        use std::io::Write;
        let path = into.join(rel.trim_start_matches('/'));
        assert!(path.is_file(), "{} is in the stock root", rel);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    append(CONFFILE, &format!("export GITHUB_TOKEN={GITHUB}\n"));
    append(
        LIBRARY,
        &format!("\naws_access_key_id = \"{AWS_ID}\"\naws_secret_access_key = \"{AWS_SECRET}\"\n"),
    );
}

fn scan(kind: &str, target: &Path, config: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
        .arg(kind)
        .arg(target)
        .args(["--format", "json"])
        .env("XDG_CONFIG_HOME", config)
        .env_remove("SNAPSENTRY_FINGERPRINT_KEY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{kind} {}: {}",
        target.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [GITHUB, AWS_SECRET] {
        for stream in [&out.stdout, &out.stderr] {
            assert!(!String::from_utf8_lossy(stream).contains(secret));
        }
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

fn severity_rank(s: &Value) -> u8 {
    match s.as_str().unwrap() {
        "info" => 0,
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        other => panic!("severity {other}"),
    }
}

/// What every scan of the modified stock root must show.
fn check(what: &str, report: &Value) {
    let findings = report["findings"].as_array().unwrap();
    let summary: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {} {}",
                f["severity"], f["ruleId"], f["path"], f["metadata"]["package"]
            )
        })
        .collect();
    eprintln!(
        "{what}: {} findings\n  {}",
        findings.len(),
        summary.join("\n  ")
    );
    let at =
        |path: &str| -> Vec<&Value> { findings.iter().filter(|f| f["path"] == path).collect() };

    // Nothing at medium or above but the two planted changes.
    for f in findings {
        let path = f["path"].as_str().unwrap();
        if path != CONFFILE && path != LIBRARY {
            assert!(
                severity_rank(&f["severity"]) < 2,
                "{what}: {} {} at {} on a stock OS",
                f["ruleId"],
                f["severity"],
                path
            );
        }
        // A finding in a file a package shipped unchanged is info and names the package.
        if f["metadata"]["package"]["state"] == "unchanged" {
            assert_eq!(f["severity"], "info", "{what}: {path}");
            assert!(
                f["metadata"]["package"]["name"].is_string(),
                "{what}: {path}"
            );
        }
    }

    // The keys the OS generated at install: every SSH host key and the snakeoil key.
    for key in ["ecdsa", "ed25519", "rsa"] {
        let path = format!("/etc/ssh/ssh_host_{key}_key");
        let found = at(&path);
        assert!(!found.is_empty(), "{what}: {path} not reported");
        assert!(found.iter().all(|f| severity_rank(&f["severity"]) <= 1));
    }
    let snakeoil = at("/etc/ssl/private/ssl-cert-snakeoil.key");
    assert!(
        !snakeoil.is_empty(),
        "{what}: the snakeoil key not reported"
    );
    assert!(snakeoil.iter().all(|f| severity_rank(&f["severity"]) <= 1));

    // The changed package files keep their rules' severities and say they were modified.
    for (path, rule, package) in [
        (CONFFILE, "github-token", "bash"),
        (LIBRARY, "aws-access-key", "libpython3.11-stdlib"),
    ] {
        let f = at(path)
            .into_iter()
            .find(|f| f["ruleId"].as_str().unwrap().starts_with(rule))
            .unwrap_or_else(|| panic!("{what}: no {rule} finding in {path}"));
        assert!(
            severity_rank(&f["severity"]) >= 3,
            "{what}: {path} {}",
            f["severity"]
        );
        assert_eq!(f["metadata"]["package"]["name"], package, "{what}: {path}");
        assert_eq!(
            f["metadata"]["package"]["state"], "modified",
            "{what}: {path}"
        );
        assert!(
            f["metadata"]["package"]["version"].is_string(),
            "{what}: {path}"
        );
    }
}

#[test]
fn stock_debian_is_quiet_and_keeps_real_keys_and_changes() {
    let root = stock_root();
    let work = tempfile::Builder::new()
        .prefix("stock-os-")
        .tempdir()
        .unwrap();
    let config = tempfile::tempdir().unwrap();
    let tree = work.path().join("root");
    modified_copy(&root, &tree);

    check("dir", &scan("dir", &tree, config.path()));

    let raw = work.path().join("stock.raw");
    let used = Command::new("du")
        .args(["-sb"])
        .arg(&tree)
        .output()
        .unwrap();
    let used: u64 = String::from_utf8_lossy(&used.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du -sb");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len((used * 3 / 2 + (128 << 20)) & !0xFFFFF)
        .unwrap();
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-L", "rootfs", "-d"])
        .arg(&tree)
        .arg(&raw)
        .status()
        .expect("mkfs.ext4 (e2fsprogs) is installed: run scripts/toolchain.sh")
        .success();
    assert!(ok, "mkfs.ext4 -d");
    std::fs::remove_dir_all(&tree).unwrap();
    check("image", &scan("image", &raw, config.path()));
}
