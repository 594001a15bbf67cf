//! btrfs reader against images made by `mkfs.btrfs --rootdir`, which keeps modes, owners,
//! nanosecond times, hard links, symlinks and sparse files (btrfs-progs 6.2).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::{Checks, Features, assert_matches, blank_image, build_tree, run, try_loop_mount};
use snapsentry_disk::fs::Filesystem;
use snapsentry_disk::fs::btrfs::{self, Btrfs};
use snapsentry_disk::source::{BlockSource, FileSource, MemSource};

fn mkfs(img: &Path, rootdir: &Path, extra: &[&str]) {
    run(Command::new("mkfs.btrfs")
        .args(["-q", "-f", "-L", "data-vol"])
        .args(extra)
        .arg("--rootdir")
        .arg(rootdir)
        .arg(img));
}

#[test]
fn btrfs_matches_reference_tree() {
    let tree = build_tree(Features::POSIX);
    let tmp = tempfile::tempdir().unwrap();
    let img = blank_image(tmp.path(), "btrfs.img", 256 << 20);
    mkfs(&img, tree.path(), &[]);
    let source: Arc<dyn BlockSource> = Arc::new(FileSource::open(&img).unwrap());
    let mut head = vec![0u8; 128 * 1024];
    source.read_at(0, &mut head).unwrap();
    assert!(btrfs::detect(&head));
    let fs = Btrfs::open(source.clone()).unwrap();
    assert_eq!(fs.kind(), "btrfs");
    assert_eq!(fs.label().as_deref(), Some("data-vol"));
    assert_matches(&fs, &tree, Checks::ALL, |_| false);
    let opened = snapsentry_disk::open_filesystem(source).unwrap().unwrap();
    assert_eq!(opened.kind(), "btrfs");
}

/// A small image (a directory of 400 files, a 300 KB file) as bytes.
fn small_image(extra: &[&str]) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"db-01\n").unwrap();
    std::fs::write(root.join("big.bin"), common::pseudo_random(9, 300_000)).unwrap();
    for i in 0..400 {
        std::fs::write(root.join(format!("etc/f{i:04}-with-a-longer-name")), b"x").unwrap();
    }
    let img = blank_image(tmp.path(), "small.img", 128 << 20);
    mkfs(&img, &root, extra);
    std::fs::read(&img).unwrap()
}

fn walk_all(bytes: Vec<u8>) -> snapsentry_disk::Result<usize> {
    let fs = Btrfs::open(Arc::new(MemSource::new(bytes)))?;
    let mut n = 0;
    let _ = snapsentry_disk::walk(&fs, &Default::default(), |e| {
        n += 1;
        if e.metadata.kind == snapsentry_disk::FileKind::File
            && let Ok(mut c) = fs.open(e.node)
        {
            let mut buf = vec![0u8; 65536];
            let mut off = 0;
            while let Ok(k) = c.read_at(off, &mut buf) {
                if k == 0 {
                    break;
                }
                off += k as u64;
            }
        }
        std::ops::ControlFlow::Continue(())
    })?;
    Ok(n)
}

/// Offsets of every copy of the tree node whose header says logical address `bytenr`.
fn node_copies(bytes: &[u8], bytenr: u64, nodesize: usize) -> Vec<usize> {
    (0..bytes.len() / nodesize)
        .map(|i| i * nodesize)
        .filter(|&off| bytes[off + 0x30..off + 0x38] == bytenr.to_le_bytes())
        .collect()
}

#[test]
fn node_pointing_at_itself_is_an_error() {
    let bytes = small_image(&[]);
    assert_eq!(walk_all(bytes.clone()).unwrap(), 403);
    let nodesize = u32::from_le_bytes(bytes[0x10094..0x10098].try_into().unwrap()) as usize;
    // Every internal node (level > 0): point its first child at itself.
    let mut b = bytes.clone();
    let mut patched = 0;
    for off in (0..b.len() / nodesize).map(|i| i * nodesize) {
        let level = b[off + 0x64];
        let is_node = b[off + 0x20..off + 0x30] == bytes[0x10020..0x10030] && level > 0;
        if is_node {
            let own = b[off + 0x30..off + 0x38].to_vec();
            b[off + 0x65 + 17..off + 0x65 + 25].copy_from_slice(&own);
            patched += 1;
        }
    }
    assert!(patched > 0, "the image has internal nodes");
    // Refused (or listed without hanging): never a panic or a hang.
    let _ = walk_all(b);
}

#[test]
fn truncated_and_absurd_images_fail_cleanly() {
    let bytes = small_image(&[]);
    for len in [0, 65536, 65536 + 4096, 1 << 20, 5 << 20, 30 << 20] {
        let _ = walk_all(bytes[..len.min(bytes.len())].to_vec());
    }
    // Absurd superblock numbers: node size, sys_chunk_array size, levels, root pointer.
    for (off, val) in [
        (0x10094usize, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        (0x100A0, vec![0xFF, 0xFF, 0, 0]),
        (0x100C6, vec![200]),
        (0x10050, vec![0x00, 0x10, 0, 0, 0, 0, 0, 0]),
    ] {
        let mut b = bytes.clone();
        b[off..off + val.len()].copy_from_slice(&val);
        let _ = walk_all(b);
    }
    // Every leaf item of every node: absurd offsets and sizes.
    let nodesize = u32::from_le_bytes(bytes[0x10094..0x10098].try_into().unwrap()) as usize;
    let root = u64::from_le_bytes(bytes[0x10050..0x10058].try_into().unwrap());
    for copy in node_copies(&bytes, root, nodesize) {
        let mut b = bytes.clone();
        for i in 0..8 {
            let at = copy + 0x65 + i * 25 + 21;
            b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        let _ = walk_all(b);
    }
}

/// Files written by the kernel with `compress-force=zlib`, and a nested subvolume: both need a
/// loop mount (mkfs.btrfs 6.2 has no `--compress`). Skipped where mounting is not allowed.
#[test]
fn kernel_written_zlib_files_and_subvolumes_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let img = blank_image(tmp.path(), "z.img", 128 << 20);
    mkfs(&img, &empty, &[]);
    let mnt = tmp.path().join("mnt");
    let Some(mount) = try_loop_mount(&img, &mnt, "compress-force=zlib") else {
        eprintln!("cannot loop-mount btrfs here; kernel-written extents not exercised");
        return;
    };
    let text = b"password=hunter2 and some compressible text\n".repeat(20_000);
    let small = b"tiny tiny tiny tiny tiny tiny tiny tiny\n".repeat(20);
    std::fs::write(mnt.join("config.txt"), &text).unwrap();
    std::fs::write(mnt.join("small.txt"), &small).unwrap();
    run(Command::new("btrfs")
        .args(["-q", "subvolume", "create"])
        .arg(mnt.join("home")));
    std::fs::write(mnt.join("home/.netrc"), b"machine x login y password z\n").unwrap();
    run(Command::new("mount")
        .args(["-o", "remount,compress-force=zstd"])
        .arg(&mnt));
    std::fs::write(mnt.join("zstd.txt"), &text).unwrap();
    drop(mount);

    let fs = Btrfs::open(Arc::new(FileSource::open(&img).unwrap())).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    snapsentry_disk::walk(&fs, &Default::default(), |e| {
        if e.metadata.kind == snapsentry_disk::FileKind::File {
            let mut got = Vec::new();
            let c = fs.open(e.node).unwrap();
            match std::io::copy(&mut snapsentry_disk::fs::ContentReader::new(c), &mut got) {
                Ok(_) => {
                    seen.insert(e.path, got);
                }
                // zstd is not decoded: the read fails with a reason, it does not return garbage.
                Err(err) => assert!(
                    e.path == "/zstd.txt" && err.to_string().contains("zstd"),
                    "{}: {err}",
                    e.path
                ),
            }
        }
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert!(seen["/config.txt"] == text, "zlib extents differ");
    assert!(seen["/small.txt"] == small, "inline zlib extent differs");
    assert_eq!(seen["/home/.netrc"], b"machine x login y password z\n");
    assert!(!seen.contains_key("/zstd.txt"));
}

/// The fuzz seed is a mixed-mode 32 MiB volume with its two chunks moved inside 188 KiB: it must
/// open, list and read, or fuzzing starts from nothing.
#[test]
fn fuzz_seed_lists_and_reads_files() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/btrfs/btrfs-mixed-compacted"
    );
    let fs = Btrfs::open(Arc::new(MemSource::new(std::fs::read(path).unwrap()))).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    snapsentry_disk::walk(&fs, &Default::default(), |e| {
        let content = (e.metadata.kind == snapsentry_disk::FileKind::File).then(|| {
            let mut got = Vec::new();
            let c = fs.open(e.node).unwrap();
            std::io::copy(&mut snapsentry_disk::fs::ContentReader::new(c), &mut got).unwrap();
            got
        });
        seen.insert(e.path, (content, e.link_target));
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen["/etc/cred"].0.as_deref(), Some(&b"token=abc\n"[..]));
    assert_eq!(seen["/blob"].0.as_ref().map(Vec::len), Some(20000));
    assert_eq!(seen["/link"].1.as_deref(), Some("/etc/cred"));
}

/// The seed corpus with deterministic random byte mutations must never panic or hang.
#[test]
fn mutated_seeds_never_panic() {
    common::run_mutated_seeds("btrfs", snapsentry_disk::fuzzing::btrfs);
}
