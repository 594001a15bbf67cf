//! Files inside archives, end to end through the `snapsentry-scan` binary: archives built by the
//! real tools (`tar`, `gzip`, `zip`), nested ones, zip and gzip bombs that end bounded and are
//! reported, damaged ones that are reported without failing the scan, an archive on an ext4 disk
//! image, and the `archive!entry` location in every output.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const GITHUB: &str = "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";
const AWS_ID: &str = "AKIAWB5WKH7DNSIPZZ7F";
const AWS_SECRET: &str = "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";

fn require(tool: &str, package: &str) {
    assert!(
        Command::new(tool).arg("--help").output().is_ok(),
        "{tool} is not installed: run scripts/toolchain.sh (or apt-get install {package})"
    );
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Run `cmd` in `dir` through `sh -c`, which must succeed.
fn sh(dir: &Path, cmd: &str) {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `snapsentry-scan <args>` with a throwaway fingerprint key.
fn scan(args: &[&str], target: &Path) -> Output {
    let config = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
        .args(&args[..1])
        .arg(target)
        .args(&args[1..])
        .args(["--no-config", "--no-progress"])
        .env("XDG_CONFIG_HOME", config.path())
        .env("SNAPSENTRY_LOG", "debug")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The findings' `path:line`, sorted.
fn locations(report: &Value) -> Vec<String> {
    let mut v: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| format!("{}:{}", f["path"].as_str().unwrap(), f["line"]))
        .collect();
    v.sort();
    v.dedup();
    v
}

fn assert_no_leak(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in [GITHUB, AWS_SECRET] {
        assert!(!text.contains(secret), "{what} leaks a secret value");
    }
}

/// A server tree with configuration backups: `/srv/backup.tar.gz` (GNU tar + gzip) holding
/// `etc/app/.env` (the token on line 3) and a test fixture, `/opt/a.zip` holding `lib/app.jar`
/// (built by `zip`) whose `application.properties` has an AWS key on line 2, and a plain
/// `/var/backups/etc.tar`.
fn plant_archives(root: &Path) {
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    write(
        s,
        "etc/app/.env",
        format!("# app settings\nAPP_ENV=production\nGITHUB_TOKEN={GITHUB}\n").as_bytes(),
    );
    write(
        s,
        "etc/app/test/fixtures/.env",
        format!("GITHUB_TOKEN={GITHUB}\n").as_bytes(),
    );
    write(
        s,
        "application.properties",
        format!(
            "cloud.aws.credentials.access-key={AWS_ID}\ncloud.aws.credentials.secret-key={AWS_SECRET}\nserver.port=8080\n"
        )
        .as_bytes(),
    );
    write(s, "etc/motd", b"welcome\n");
    std::fs::create_dir_all(root.join("srv")).unwrap();
    std::fs::create_dir_all(root.join("opt")).unwrap();
    std::fs::create_dir_all(root.join("var/backups")).unwrap();
    let root = root.display();
    sh(
        s,
        &format!("tar --format=gnu -cf - etc | gzip -9 > {root}/srv/backup.tar.gz"),
    );
    sh(
        s,
        "mkdir lib && zip -q -X lib/app.jar application.properties",
    );
    sh(
        s,
        &format!("zip -q -X {root}/opt/a.zip lib/app.jar etc/motd"),
    );
    sh(
        s,
        &format!("tar -cf {root}/var/backups/etc.tar etc/motd etc/app/.env"),
    );
}

#[test]
fn secrets_inside_archives_are_found_with_archive_locations() {
    require("zip", "zip");
    let root = tempfile::tempdir().unwrap();
    plant_archives(root.path());

    let out = scan(&["dir", "--format", "json"], root.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_leak("json", &out.stdout);
    assert_no_leak("stderr", &out.stderr);
    let report = json(&out);
    let locs = locations(&report);
    for want in [
        "/srv/backup.tar.gz!etc/app/.env:3",
        "/var/backups/etc.tar!etc/app/.env:3",
        "/opt/a.zip!lib/app.jar!application.properties:2",
    ] {
        assert!(locs.iter().any(|l| l == want), "{want} not in {locs:?}");
    }
    // The test fixture inside the archive is skipped like one on the disk.
    assert!(
        !locs.iter().any(|l| l.contains("test/fixtures")),
        "{locs:?}"
    );
    assert!(
        report["stats"]["skipped"]["testDirectory"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/opt/a.zip!lib/app.jar!application.properties")
        .unwrap();
    assert_eq!(f["archive"]["path"], "/opt/a.zip");
    assert_eq!(f["archive"]["entry"], "lib/app.jar!application.properties");
    assert_eq!(
        f["file"]["size"].as_u64().unwrap(),
        std::fs::metadata(root.path().join("opt/a.zip"))
            .unwrap()
            .len(),
        "file facts are the archive's"
    );
    assert!(report["stats"]["archiveEntries"].as_u64().unwrap() >= 6);
    assert_eq!(
        report["stats"]["skipped"]["archives"],
        serde_json::json!({"tooDeep": 0, "unsupported": 0, "corrupt": 0, "limited": 0})
    );

    // The same location in the other outputs: table, SARIF, the SecretFinding manifests.
    let table = scan(&["dir"], root.path());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("/srv/backup.tar.gz!etc/app/.env:3"), "{text}");
    assert!(text.contains("archives: "), "{text}");
    let sarif = json(&scan(&["dir", "--format", "sarif"], root.path()));
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| {
        r["properties"]["archive"]["entry"] == "etc/app/.env"
            && r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                == "srv/backup.tar.gz%21etc/app/.env"
    }));
    let yaml = scan(&["dir", "--format", "yaml"], root.path());
    let text = String::from_utf8_lossy(&yaml.stdout);
    assert!(
        text.contains("path: /srv/backup.tar.gz!etc/app/.env"),
        "{text}"
    );
    assert!(
        text.contains("entry: lib/app.jar!application.properties"),
        "{text}"
    );
    let html = scan(&["dir", "--format", "html"], root.path());
    assert!(String::from_utf8_lossy(&html.stdout).contains("backup.tar.gz!etc/app/.env:3"));
    assert_no_leak("html", &html.stdout);
}

#[test]
fn archive_depth_limits_what_is_opened_and_says_so() {
    require("zip", "zip");
    let root = tempfile::tempdir().unwrap();
    plant_archives(root.path());

    // Depth 1: the jar inside the zip is not opened, and counted.
    let out = scan(
        &["dir", "--format", "json", "--archive-depth", "1"],
        root.path(),
    );
    let report = json(&out);
    let locs = locations(&report);
    assert!(
        locs.iter()
            .any(|l| l == "/srv/backup.tar.gz!etc/app/.env:3"),
        "{locs:?}"
    );
    assert!(!locs.iter().any(|l| l.contains("app.jar")), "{locs:?}");
    assert_eq!(report["stats"]["skipped"]["archives"]["tooDeep"], 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: archive content not read: 1 nested too deep"),
        "{stderr}"
    );

    // Depth 0: archives are plain files again; nothing inside the compressed ones is seen.
    let report = json(&scan(
        &["dir", "--format", "json", "--archive-depth", "0"],
        root.path(),
    ));
    let locs = locations(&report);
    assert!(!locs.iter().any(|l| l.contains('!')), "{locs:?}");
    assert_eq!(report["stats"]["archiveEntries"], 0);
}

/// 1 GiB of zeros, deflated by `zip` and by `gzip`, beside a real secret: the scan ends, reads
/// at most the budget of each, reports them cut short (or too large) and still finds the secret.
#[test]
fn zip_and_gzip_bombs_end_bounded_and_are_reported() {
    require("zip", "zip");
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    sh(r, "head -c 1073741824 /dev/zero | zip -q zeros.zip -");
    sh(r, "head -c 1073741824 /dev/zero | gzip -1 > zeros.gz");
    write(
        r,
        "srv/app/.env",
        format!("GITHUB_TOKEN={GITHUB}\n").as_bytes(),
    );
    for name in ["zeros.zip", "zeros.gz"] {
        let size = std::fs::metadata(r.join(name)).unwrap().len();
        assert!(size < 8 << 20, "{name} is {size} bytes: not a bomb");
    }

    // Default limits: each inflates past the 64 MiB file size limit and is not read whole.
    let report = json(&scan(&["dir", "--format", "json"], r));
    assert_eq!(locations(&report), ["/srv/app/.env:1"]);
    assert_eq!(report["stats"]["skipped"]["tooLarge"], 2);

    // A file size limit above the bombs' size: the inflation budget (100× the archive) cuts them.
    let out = scan(&["dir", "--format", "json", "--max-file-size", "2GiB"], r);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(locations(&report), ["/srv/app/.env:1"]);
    assert_eq!(report["stats"]["skipped"]["archives"]["limited"], 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("archive content not read: 2 cut short by a limit (zip/gzip bomb)"),
        "{stderr}"
    );
    // Fewer bytes were inflated than the bombs hold: the budget, not the end of the data, stopped
    // them (the whole scan read less than the two GiB the bombs expand to).
    let table =
        String::from_utf8_lossy(&scan(&["dir", "--max-file-size", "2GiB"], r).stdout).into_owned();
    assert!(
        table.contains("not read: 2 cut short by a limit"),
        "{table}"
    );
}

/// A gzip-compressed tar cut in the middle, a zip with a damaged body, a file with the xz magic:
/// reported as damaged or unsupported, what could be read still scanned, and the scan succeeds.
#[test]
fn damaged_archives_are_reported_and_read_as_far_as_they_go() {
    require("zip", "zip");
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let src = tempfile::tempdir().unwrap();
    write(
        src.path(),
        "etc/app/.env",
        format!("GITHUB_TOKEN={GITHUB}\n").as_bytes(),
    );
    // Incompressible data after the secret, so a cut lands inside it.
    sh(src.path(), "head -c 262144 /dev/urandom > etc/app/blob.bin");
    sh(
        src.path(),
        &format!(
            "tar -cf - etc/app/.env etc/app/blob.bin | gzip > {}/full.tar.gz",
            r.display()
        ),
    );
    sh(
        r,
        "head -c 131072 full.tar.gz > cut.tar.gz && rm full.tar.gz",
    );
    sh(
        src.path(),
        &format!("zip -q -X {}/broken.zip etc/app/blob.bin", r.display()),
    );
    {
        // Overwrite the middle of the deflated body: the CRC (or inflate) fails.
        let p = r.join("broken.zip");
        let mut data = std::fs::read(&p).unwrap();
        for b in &mut data[200..4000] {
            *b = 0x55;
        }
        std::fs::write(&p, data).unwrap();
    }
    write(
        r,
        "backup.tar.xz",
        &[0xfd, b'7', b'z', b'X', b'Z', 0, 0, 4, 0xe6, 0xd6],
    );

    let out = scan(&["dir", "--format", "json"], r);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(locations(&report), ["/cut.tar.gz!etc/app/.env:1"]);
    let a = &report["stats"]["skipped"]["archives"];
    assert_eq!(a["corrupt"], 2, "{a}");
    assert_eq!(a["unsupported"], 1, "{a}");
    assert_eq!(report["coverage"]["status"], "complete");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 damaged or truncated"), "{stderr}");
}

/// `image`: a backup archive on an ext4 filesystem (made by `mkfs.ext4 -d`) is read from the disk
/// like any file and scanned inside.
#[test]
fn archives_on_a_disk_image_are_scanned_inside() {
    require("zip", "zip");
    require("mkfs.ext4", "e2fsprogs");
    let tree = tempfile::tempdir().unwrap();
    plant_archives(tree.path());
    let work = tempfile::tempdir().unwrap();
    let raw = work.path().join("vm.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-d"])
        .arg(tree.path())
        .arg(&raw)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfs.ext4 -d");
    let out = scan(&["image", "--format", "json"], &raw);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_no_leak("image json", &out.stdout);
    let report = json(&out);
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/srv/backup.tar.gz!etc/app/.env")
        .expect("the secret in the backup on the image");
    assert_eq!(f["line"], 3);
    assert!(f["volume"].is_string());
    assert_eq!(f["archive"]["path"], "/srv/backup.tar.gz");
    assert!(
        locations(&report)
            .iter()
            .any(|l| l == "/opt/a.zip!lib/app.jar!application.properties:2")
    );
}
