//! The stock-OS noise test: a real Debian root (debootstrap bookworm minbase with a small server
//! package set, built once by `scripts/lib/stock-root.sh` and cached under ~/.cache/snapsentry),
//! scanned as a directory and as an ext4 disk image (`mkfs.ext4 -d`). Nothing planted is nothing
//! at medium or above: what the packages shipped is vendor content, at `info` with the package's
//! name, read from the root's own dpkg database. The keys the OS generated at install (SSH host
//! keys, the ssl-cert snakeoil key) are still reported, at info/low. A package file changed after
//! installation is the opposite of noise: it keeps its severity and says it was modified.
//!
//! dpkg's own control area and debconf's caches, where dpkg keeps no checksum: a maintainer
//! script as the package shipped it (its mtime before the package's unpack) is vendor content,
//! one written after the unpack keeps its severity; a line of debconf's template cache is vendor
//! text when the package's `.templates` holds it, not otherwise; a password answered to debconf
//! (`passwords.dat`) is reported at its rule's severity.
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

/// A maintainer script as shipped (its mtime kept) holding a command-line password, and one
/// changed after the unpack.
const VENDOR_SCRIPT: &str = "/var/lib/dpkg/info/openssh-server.postinst";
const VENDOR_SCRIPT_PASSWORD: &str = "Qm4Xv8Tz2Lk9Wb3N";
const CHANGED_SCRIPT: &str = "/var/lib/dpkg/info/ssl-cert.postinst";
const CHANGED_SCRIPT_PASSWORD: &str = "Hr7Jc2Pw9Zs4Kd6F";
/// debconf: a template (in the package's `.templates`, mtime kept, and in the cache) quoting a
/// command-line password, a cache paragraph no package holds, and a password answered.
const TEMPLATE_CACHE: &str = "/var/cache/debconf/templates.dat";
const TEMPLATE_PASSWORD: &str = "Vb8Nq3Xe6Rt1Ym5W";
const FOREIGN_TEMPLATE_PASSWORD: &str = "Lp2Gd7Fs4Ah9Jk3Z";
const PASSWORDS_DAT: &str = "/var/cache/debconf/passwords.dat";
const DEBCONF_ANSWER: &str = "Tw6Ux1Cy8Bv3Ni5O";

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

/// Lines of debconf's template cache planted by [`modified_copy`]: the vendor template's two
/// lines, and the line no package's templates hold.
struct Planted {
    vendor_template_lines: [usize; 2],
    foreign_template_line: usize,
}

/// A copy of the stock root (the cache stays pristine) with package files, dpkg's control area
/// and debconf's caches changed.
fn modified_copy(root: &Path, into: &Path) -> Planted {
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
    // As if the package had shipped it: the content changes, the mtime stays the build's.
    let append_as_shipped = |rel: &str, text: &str| {
        let path = into.join(rel.trim_start_matches('/'));
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        append(rel, text);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
    };
    append_as_shipped(
        VENDOR_SCRIPT,
        &format!("mysql -u root -p{VENDOR_SCRIPT_PASSWORD} -e 'SELECT 1' >/dev/null\n"),
    );
    append(
        CHANGED_SCRIPT,
        &format!("mysql -u root -p{CHANGED_SCRIPT_PASSWORD} -e 'SELECT 1' >/dev/null\n"),
    );
    append_as_shipped(
        "/var/lib/dpkg/info/openssh-server.templates",
        &format!(
            "\nTemplate: openssh-server/check-db\nType: note\nDescription: Check the database:\n \
             mysql -u root -p{TEMPLATE_PASSWORD} -e 'SELECT 1'\n .\n Then run\n \
             mysql -u root -p{TEMPLATE_PASSWORD} again.\n"
        ),
    );
    let cache = into.join(TEMPLATE_CACHE.trim_start_matches('/'));
    let before = std::fs::read(&cache).unwrap();
    let first = before.iter().filter(|&&b| b == b'\n').count() + 1;
    append(
        TEMPLATE_CACHE,
        &format!(
            "Name: openssh-server/check-db\nDescription: Check the database: mysql -u root \
             -p{TEMPLATE_PASSWORD} -e 'SELECT 1'\nExtended_description: Then run \\n mysql -u root \
             -p{TEMPLATE_PASSWORD} again.\nType: note\nOwners: openssh-server/check-db\n\n\
             Name: openssh-server/tampered\nDescription: mysql -u root -p{FOREIGN_TEMPLATE_PASSWORD} \
             -e 'SELECT 1'\nType: note\n\n"
        ),
    );
    append(
        PASSWORDS_DAT,
        &format!(
            "Name: openssh-server/db-password\nTemplate: openssh-server/db-password\nValue: \
             {DEBCONF_ANSWER}\nOwners: openssh-server\nFlags: seen\n\n"
        ),
    );
    Planted {
        vendor_template_lines: [first + 1, first + 2],
        foreign_template_line: first + 7,
    }
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
    for secret in [
        GITHUB,
        AWS_SECRET,
        VENDOR_SCRIPT_PASSWORD,
        CHANGED_SCRIPT_PASSWORD,
        TEMPLATE_PASSWORD,
        FOREIGN_TEMPLATE_PASSWORD,
        DEBCONF_ANSWER,
    ] {
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
fn check(what: &str, report: &Value, planted: &Planted) {
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

    // Nothing at medium or above but the planted changes.
    for f in findings {
        let path = f["path"].as_str().unwrap();
        let foreign = path == TEMPLATE_CACHE && f["line"] == planted.foreign_template_line;
        if ![CONFFILE, LIBRARY, CHANGED_SCRIPT, PASSWORDS_DAT].contains(&path) && !foreign {
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

    // A maintainer script as shipped is vendor content: info, naming its package.
    let script = at(VENDOR_SCRIPT);
    assert!(!script.is_empty(), "{what}: nothing in {VENDOR_SCRIPT}");
    for f in script {
        assert_eq!(f["severity"], "info", "{what}: {VENDOR_SCRIPT}");
        assert_eq!(f["metadata"]["package"]["state"], "control", "{what}");
        assert_eq!(f["metadata"]["package"]["name"], "openssh-server", "{what}");
    }
    // One written after the package's unpack keeps its rule's severity, marked modified.
    let changed = at(CHANGED_SCRIPT);
    assert!(
        changed.iter().any(|f| severity_rank(&f["severity"]) >= 3
            && f["metadata"]["package"]["state"] == "modified"
            && f["metadata"]["package"]["name"] == "ssl-cert"),
        "{what}: {CHANGED_SCRIPT} not reported as modified at its severity"
    );
    // debconf's template cache: lines the package's templates hold are vendor text; a line no
    // package holds keeps its severity.
    let cache = at(TEMPLATE_CACHE);
    for line in planted.vendor_template_lines {
        let f = cache
            .iter()
            .find(|f| f["line"] == line)
            .unwrap_or_else(|| panic!("{what}: {TEMPLATE_CACHE}:{line} not reported"));
        assert_eq!(f["severity"], "info", "{what}: {TEMPLATE_CACHE}:{line}");
        assert_eq!(f["metadata"]["package"]["state"], "control", "{what}");
        assert_eq!(f["metadata"]["package"]["name"], "openssh-server", "{what}");
    }
    let foreign = cache
        .iter()
        .find(|f| f["line"] == planted.foreign_template_line)
        .unwrap_or_else(|| panic!("{what}: the foreign template line not reported"));
    assert!(severity_rank(&foreign["severity"]) >= 3, "{what}");
    assert!(foreign["metadata"]["package"].is_null(), "{what}");
    // A password answered to debconf is a real one.
    let answer = at(PASSWORDS_DAT);
    assert!(
        answer.iter().any(|f| f["ruleId"] == "debconf-password"
            && severity_rank(&f["severity"]) >= 3
            && f["metadata"]["package"].is_null()),
        "{what}: the debconf password not reported at its severity"
    );
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
    let planted = modified_copy(&root, &tree);

    check("dir", &scan("dir", &tree, config.path()), &planted);

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
    check("image", &scan("image", &raw, config.path()), &planted);
}
