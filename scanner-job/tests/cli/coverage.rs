//! Honest coverage: an input the CLI could not read (in whole or in part) never looks clean. The
//! exit codes (2 unusable, 3 nothing scanned, 4 partial), the `coverage` object, the SARIF
//! invocation and the warnings on standard error, per docs/cli.md.

use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use super::*;

const MIB: u64 = 1 << 20;

/// `snapsentry-scan image PATH ARGS…`, killed (and the test failed) if it runs past 60 s.
fn image(path: &Path, config: &Path, args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
        .arg("image")
        .arg(path)
        .args(args)
        .env("SNAPSENTRY_LOG", "trace")
        .env("XDG_CONFIG_HOME", config)
        .env_remove("SNAPSENTRY_FINGERPRINT_KEY")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!(
                "snapsentry-scan image {} still running after {:?}",
                path.display(),
                started.elapsed()
            );
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(out)))
}

/// An ext4 image of `size` bytes holding the planted tree.
fn ext4(path: &Path, size: u64) {
    require("mkfs.ext4", "e2fsprogs");
    let tree = tempfile::tempdir().unwrap();
    plant(tree.path());
    std::fs::File::create(path).unwrap().set_len(size).unwrap();
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-d"])
        .arg(tree.path())
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfs.ext4 -d");
}

/// Asserts a scan that read nothing: exit 3, `coverage.status` `none`, the one volume skipped
/// for `reason`, and the warnings on standard error.
fn assert_nothing_scanned(out: &Output, reason: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let v = json(out);
    let c = &v["coverage"];
    assert_eq!(c["status"], "none");
    assert_eq!(c["volumesFound"], 1);
    assert_eq!(c["volumesScanned"], 0);
    assert_eq!(c["volumesSkipped"][0]["id"], "disk");
    assert_eq!(c["volumesSkipped"][0]["reason"], reason);
    assert_eq!(c["files"], 0);
    assert_eq!(c["bytes"], 0);
    assert!(
        err.contains(&format!("warning: volume disk not scanned ({reason})")),
        "{err}"
    );
    assert!(err.contains("warning: nothing scanned"), "{err}");
}

#[test]
fn damaged_filesystem_is_nothing_scanned() {
    let work = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let raw = work.path().join("damaged.raw");
    ext4(&raw, 16 * MIB);
    // Zero the primary superblock (1 KiB at 1 KiB).
    let mut f = std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
    f.seek(SeekFrom::Start(1024)).unwrap();
    f.write_all(&[0u8; 1024]).unwrap();
    drop(f);
    let out = image(
        &raw,
        config.path(),
        &["--format", "json", "--exit-code", "1"],
    );
    assert_nothing_scanned(&out, "noFilesystem");
}

#[test]
fn empty_file_is_nothing_scanned_in_every_format() {
    let work = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    assert_nothing_scanned(
        &image(&empty, config.path(), &["--format", "json"]),
        "noFilesystem",
    );
    let table = image(&empty, config.path(), &[]);
    assert_eq!(table.status.code(), Some(3));
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.contains("coverage: none; 0 file(s), 0 bytes read; 0 of 1 volume(s) scanned; disk skipped (noFilesystem)"),
        "{text}"
    );
    let sarif = image(&empty, config.path(), &["--format", "sarif"]);
    assert_eq!(sarif.status.code(), Some(3));
    let run = &json(&sarif)["runs"][0];
    assert_eq!(run["invocations"][0]["executionSuccessful"], false);
    let notes = run["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .unwrap();
    assert!(notes.iter().all(|n| n["level"] == "warning"));
    assert!(
        notes[0]["message"]["text"]
            .as_str()
            .unwrap()
            .starts_with("volume disk not scanned (noFilesystem)")
    );
    assert_eq!(run["properties"]["coverage"]["status"], "none");
    for format in ["jsonl", "yaml"] {
        let out = image(&empty, config.path(), &["--format", format]);
        assert_eq!(out.status.code(), Some(3), "{format}");
        assert!(out.stdout.is_empty(), "{format}: no findings, nothing else");
        assert!(
            stderr(&out).contains("coverage: none; 0 file(s), 0 bytes read"),
            "{format}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn sparse_2_tib_without_structure_is_nothing_scanned_quickly() {
    let work = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let sparse = work.path().join("sparse.img");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(2 << 40)
        .unwrap();
    let started = Instant::now();
    let out = image(&sparse, config.path(), &["--format", "json"]);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_nothing_scanned(&out, "noFilesystem");
    assert_eq!(json(&out)["source"]["sizeBytes"], 2u64 << 40);
}

#[test]
fn dev_null_fifo_and_directory_are_refused_at_once() {
    let work = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let null = image(Path::new("/dev/null"), config.path(), &[]);
    assert_eq!(null.status.code(), Some(2));
    assert_eq!(
        stderr(&null).trim_end(),
        "snapsentry-scan: /dev/null: a character device, not a disk image or block device"
    );
    let fifo = work.path().join("fifo");
    let ok = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo");
    let started = Instant::now();
    let out = image(&fifo, config.path(), &[]);
    assert!(started.elapsed() < Duration::from_secs(10), "no hang");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(": a FIFO, not a disk image or block device"),
        "{}",
        stderr(&out)
    );
    let ls = Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
        .arg("ls")
        .arg(&fifo)
        .output()
        .unwrap();
    assert_eq!(ls.status.code(), Some(2), "ls refuses it too");
    assert!(stderr(&ls).contains(": a FIFO, not a disk image or block device"));
    let dir = image(work.path(), config.path(), &[]);
    assert_eq!(dir.status.code(), Some(2));
    assert!(
        stderr(&dir).contains("is a directory; scan it with `snapsentry-scan dir"),
        "{}",
        stderr(&dir)
    );
}

#[test]
fn missing_file_error_is_said_once_even_without_a_key_directory() {
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("missing.img");
    // XDG_CONFIG_HOME below a regular file: no key directory can be made there.
    let blocker = work.path().join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let out = image(&missing, &blocker.join("config"), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("snapsentry-scan: {}: ", missing.display())),
        "{err}"
    );
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(!err.contains("fingerprint key"), "{err}");
}

#[test]
fn encrypted_volume_beside_a_good_one_is_a_partial_scan() {
    let work = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let fs = work.path().join("fs.raw");
    ext4(&fs, 16 * MIB);
    // MBR: p1 (1 MiB at 1 MiB) starts with the LUKS magic, p2 (16 MiB at 2 MiB) is the ext4.
    let disk = work.path().join("disk.raw");
    let mut image_bytes = vec![0u8; (18 * MIB) as usize];
    for (i, (start, size)) in [(MIB, MIB), (2 * MIB, 16 * MIB)].into_iter().enumerate() {
        let e = 446 + 16 * i;
        image_bytes[e + 4] = 0x83;
        image_bytes[e + 8..e + 12].copy_from_slice(&((start / 512) as u32).to_le_bytes());
        image_bytes[e + 12..e + 16].copy_from_slice(&((size / 512) as u32).to_le_bytes());
    }
    image_bytes[510..512].copy_from_slice(&[0x55, 0xaa]);
    image_bytes[MIB as usize..MIB as usize + 6].copy_from_slice(b"LUKS\xba\xbe");
    image_bytes[2 * MIB as usize..].copy_from_slice(&std::fs::read(&fs).unwrap());
    std::fs::write(&disk, &image_bytes).unwrap();

    let out = image(&disk, config.path(), &["--format", "json"]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(4),
        "partial, findings ignored: {err}"
    );
    let v = json(&out);
    let c = &v["coverage"];
    assert_eq!(c["status"], "partial");
    assert_eq!(c["volumesFound"], 2);
    assert_eq!(c["volumesScanned"], 1);
    assert_eq!(c["volumesSkipped"].as_array().unwrap().len(), 1);
    assert_eq!(c["volumesSkipped"][0]["id"], "p1");
    assert_eq!(c["volumesSkipped"][0]["reason"], "encrypted");
    assert!(c["files"].as_u64().unwrap() > 0);
    assert!(c["bytes"].as_u64().unwrap() > 0);
    assert!(!v["findings"].as_array().unwrap().is_empty());
    assert!(
        err.contains("warning: volume p1 not scanned (encrypted): "),
        "{err}"
    );
    assert!(
        err.contains("warning: partial scan: 1 of 2 volume(s) scanned"),
        "{err}"
    );
    assert_no_leak("partial stderr", &out.stderr);
    // Findings with --exit-code N take precedence over partial.
    let found = image(
        &disk,
        config.path(),
        &["--format", "json", "--exit-code", "1"],
    );
    assert_eq!(found.status.code(), Some(1));
}

#[test]
fn empty_directory_is_a_complete_scan_of_nothing() {
    let tree = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let out = scan(
        tree.path(),
        config.path(),
        &["--format", "json", "--exit-code", "1"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let c = &json(&out)["coverage"];
    assert_eq!(c["status"], "complete");
    assert_eq!(c["volumesFound"], 0);
    assert_eq!(c["files"], 0);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

#[test]
fn stderr_has_no_colour_when_piped() {
    let work = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let empty = work.path().join("empty.img");
    std::fs::write(&empty, b"").unwrap();
    // SNAPSENTRY_LOG=trace: plenty of log lines, none coloured.
    let out = image(&empty, config.path(), &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("TRACE") || stderr(&out).contains("INFO"));
    assert!(!out.stderr.contains(&0x1b), "{}", stderr(&out));
    let tree = tempfile::tempdir().unwrap();
    plant(tree.path());
    let out = scan(tree.path(), config.path(), &[]);
    assert!(out.status.success());
    assert!(!out.stderr.contains(&0x1b), "{}", stderr(&out));
}
