//! `snapsentry-scan image`: the planted tree in a disk image finds what the directory scan finds.

use super::*;

/// `image`: the same tree in an ext4 filesystem (made by `mkfs.ext4 -d`), raw and as qcow2.
#[test]
fn image_scan_finds_the_same_secrets() {
    require("mkfs.ext4", "e2fsprogs");
    require("qemu-img", "qemu-utils");
    let tree = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    plant(tree.path());
    let raw = work.path().join("vm.raw");
    std::fs::File::create(&raw)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-L", "cloudimg-rootfs", "-d"])
        .arg(tree.path())
        .arg(&raw)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfs.ext4 -d");
    let mut images = vec![raw.clone()];
    {
        let qcow2 = work.path().join("vm.qcow2");
        let ok = Command::new("qemu-img")
            .args(["convert", "-O", "qcow2"])
            .arg(&raw)
            .arg(&qcow2)
            .status()
            .unwrap()
            .success();
        assert!(ok, "qemu-img convert");
        images.push(qcow2);
    }
    for image in images {
        let out = Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
            .arg("image")
            .arg(&image)
            .args(["--format", "json"])
            .env("SNAPSENTRY_LOG", "trace")
            .env("XDG_CONFIG_HOME", config.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_no_leak("image stdout", &out.stdout);
        assert_no_leak("image stderr", &out.stderr);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["source"]["kind"], "image");
        assert_eq!(v["volumes"][0]["filesystem"], "ext4");
        let findings = v["findings"].as_array().unwrap();
        let aws = findings
            .iter()
            .find(|f| f["ruleId"] == "aws-access-key")
            .expect("aws finding");
        assert_eq!(aws["volume"], v["volumes"][0]["id"]);
        assert_eq!(aws["path"], "/home/ubuntu/.aws/credentials");
        assert!(aws["file"]["modified"].is_string());
        assert_eq!(v["ssh"]["privateKeys"][0]["fingerprint"], ED25519_FP);
        assert_eq!(v["stats"]["skipped"]["testDirectory"], 1);
    }
}
