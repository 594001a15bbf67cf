//! FAT12/16/32 reader against images built by `mkfs.fat` and populated by `mcopy`.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{Checks, Features, RefTree, assert_matches, blank_image, build_tree, run};
use snapsentry_disk::fs::Filesystem;
use snapsentry_disk::fs::fat::{self, Fat};
use snapsentry_disk::source::{BlockSource, FileSource, MemSource};

/// What FAT keeps: no links, no owners or modes, times from 1980 only.
const FAT_FEATURES: Features = Features {
    symlinks: false,
    hard_links: false,
    unix_meta: false,
    long_names: true,
    sparse: false,
    wide_times: false,
    big_dir_files: 300,
};

/// FAT keeps modification times to 2 seconds, in local time; the build runs with `TZ=UTC`.
const FAT_CHECKS: Checks = Checks {
    perm: false,
    owner: false,
    mtime: true,
    mtime_slack: 2,
};

/// Make a FAT image of `size` bytes with `mkfs_args` and copy `tree` into it with times kept.
fn fat_image(dir: &Path, tree: &RefTree, size: u64, mkfs_args: &[&str]) -> std::path::PathBuf {
    let img = blank_image(dir, "fat.img", size);
    run(Command::new("mkfs.fat")
        .args(mkfs_args)
        .args(["-n", "EFI-TEST"])
        .arg(&img));
    let mut cmd = Command::new("mcopy");
    cmd.env("TZ", "UTC").env("MTOOLS_SKIP_CHECK", "1");
    cmd.args(["-s", "-m", "-Q", "-i"]).arg(&img);
    for entry in std::fs::read_dir(tree.path()).unwrap() {
        cmd.arg(entry.unwrap().path());
    }
    cmd.arg("::/");
    run(&mut cmd);
    img
}

fn check(mkfs_args: &[&str], size: u64) {
    let tree = build_tree(FAT_FEATURES);
    let tmp = tempfile::tempdir().unwrap();
    let img = fat_image(tmp.path(), &tree, size, mkfs_args);
    let source: Arc<dyn BlockSource> = Arc::new(FileSource::open(&img).unwrap());
    let mut head = vec![0u8; 4096];
    source.read_at(0, &mut head).unwrap();
    assert!(fat::detect(&head));
    let fs = Fat::open(source.clone()).unwrap();
    assert_eq!(fs.kind(), "vfat");
    assert_eq!(fs.label().as_deref(), Some("EFI-TEST"));
    assert_matches(&fs, &tree, FAT_CHECKS, |_| false);
    // Dispatch through detection too.
    let opened = snapsentry_disk::open_filesystem(source).unwrap().unwrap();
    assert_eq!(opened.kind(), "vfat");
}

#[test]
fn fat12_matches_reference_tree() {
    check(&["-F", "12", "-s", "16"], 16 << 20);
}

#[test]
fn fat16_matches_reference_tree() {
    check(&["-F", "16", "-s", "4"], 64 << 20);
}

#[test]
fn fat32_matches_reference_tree() {
    check(&["-F", "32", "-s", "1"], 64 << 20);
}

/// A small FAT16 image with one multi-cluster file, for the hostile-input tests.
fn small_image() -> (Vec<u8>, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let img = blank_image(tmp.path(), "small.img", 8 << 20);
    run(Command::new("mkfs.fat")
        .args(["-F", "16", "-s", "1"])
        .arg(&img));
    let file = tmp.path().join("data.bin");
    std::fs::write(&file, common::pseudo_random(7, 10_000)).unwrap();
    run(Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&img)
        .arg(&file)
        .arg("::/data.bin"));
    let bytes = std::fs::read(&img).unwrap();
    let fat_off = u64::from(u16::from_le_bytes([bytes[14], bytes[15]])) * 512;
    (bytes, fat_off)
}

fn exercise(bytes: Vec<u8>) -> snapsentry_disk::Result<Vec<String>> {
    let fs = Fat::open(Arc::new(MemSource::new(bytes)))?;
    let mut errors = Vec::new();
    let root = fs.read_dir(fs.root())?;
    for e in root {
        fs.metadata(e.node)?;
        match fs.open(e.node) {
            Ok(mut c) => {
                let mut buf = vec![0u8; 4096];
                let mut off = 0;
                while let Ok(n) = c.read_at(off, &mut buf) {
                    if n == 0 {
                        break;
                    }
                    off += n as u64;
                }
            }
            Err(err) => errors.push(err.to_string()),
        }
    }
    Ok(errors)
}

#[test]
fn looping_cluster_chain_is_an_error() {
    let (mut bytes, fat_off) = small_image();
    assert!(exercise(bytes.clone()).unwrap().is_empty());
    // Point every FAT16 entry at cluster 3: whichever chain data.bin has now loops.
    for c in 2..40u64 {
        let at = (fat_off + c * 2) as usize;
        bytes[at..at + 2].copy_from_slice(&3u16.to_le_bytes());
    }
    let errors = exercise(bytes).unwrap();
    assert!(
        errors.iter().any(|e| e.contains("loops")),
        "want a loop error, got {errors:?}"
    );
}

#[test]
fn truncated_and_absurd_images_fail_cleanly() {
    let (bytes, _) = small_image();
    for len in [0, 100, 511, 512, 4096, 65536, 200_000] {
        let _ = exercise(bytes[..len].to_vec());
    }
    // Absurd BPB: huge sector counts and FAT sizes.
    let mut b = bytes.clone();
    b[19..21].copy_from_slice(&0u16.to_le_bytes());
    b[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    b[22..24].copy_from_slice(&u16::MAX.to_le_bytes());
    let _ = exercise(b);
    // A file size of 4 GiB on a one-cluster chain.
    let mut b = bytes;
    for i in (0..b.len() - 32).step_by(32) {
        if &b[i..i + 11] == b"DATA    BIN" {
            b[i + 28..i + 32].copy_from_slice(&u32::MAX.to_le_bytes());
        }
    }
    let errors = exercise(b).unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
}

/// The fuzz seeds must open and list files, or fuzzing starts from nothing.
#[test]
fn fuzz_seeds_list_files() {
    for seed in ["fat12-efi-lfn", "fat12-small-root"] {
        let path = format!("{}/../fuzz/corpus/fat/{seed}", env!("CARGO_MANIFEST_DIR"));
        let fs = Fat::open(Arc::new(MemSource::new(std::fs::read(path).unwrap()))).unwrap();
        let mut n = 0;
        snapsentry_disk::walk(&fs, &Default::default(), |_| {
            n += 1;
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert!(n >= 3, "{seed}: {n} nodes");
    }
}

/// The seed corpus with deterministic random byte mutations must never panic or hang.
#[test]
fn mutated_seeds_never_panic() {
    common::run_mutated_seeds("fat", snapsentry_disk::fuzzing::fat);
}
