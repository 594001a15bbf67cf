//! ext2/3/4 reader against images built by `mke2fs -d` from the reference tree, plus hostile
//! variants patched byte by byte.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{
    Checks, Features, RefTree, assert_matches, blank_image, build_tree, entry, lookup,
    read_everything, read_exact, run, try_loop_mount,
};
use snapsentry_disk::fs::ext4::{self, Ext4};
use snapsentry_disk::fs::{FileKind, Filesystem};
use snapsentry_disk::source::{BlockSource, FileSource, MemSource};

fn ignore_lost_found(path: &str) -> bool {
    path == "/lost+found" || path.starts_with("/lost+found/")
}

/// Build an image of `tree` with `mke2fs` and the given extra arguments.
fn mkfs(tree: &RefTree, dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let image = blank_image(dir, name, 64 << 20);
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-L", "refvol", "-d"])
        .arg(tree.path())
        .args(args)
        .arg(&image)
        .env("E2FSPROGS_FAKE_TIME", "1700000000"));
    fix_mke2fs_bugs(&image, args);
    image
}

/// Work around two bugs of mke2fs 1.47.0 `-d` (the image is wrong, not the reader): it drops the
/// epoch bits of times after 2038 (stores 0 in `i_mtime_extra`), and with `inline_data` it sets
/// `i_size` of a file ending in a hole to the end of its last data block.
fn fix_mke2fs_bugs(image: &Path, args: &[&str]) {
    let mut cmds = vec!["sif /var/lib/sparse.img size 10486760".to_string()];
    if !args.contains(&"128") {
        cmds.push("sif /var/old/2040.txt mtime_extra 1".into());
    }
    for cmd in cmds {
        run(Command::new("debugfs").args(["-w", "-R", &cmd]).arg(image));
    }
}

fn open(image: &Path) -> Ext4 {
    let source: Arc<dyn BlockSource> = Arc::new(FileSource::open(image).unwrap());
    let mut head = vec![0u8; 4096];
    source.read_at(0, &mut head).unwrap();
    assert!(ext4::detect(&head));
    Ext4::open(source).unwrap()
}

fn check(args: &[&str], kind: &str, checks: Checks) {
    let tree = build_tree(Features::POSIX);
    let dir = tempfile::tempdir().unwrap();
    let image = mkfs(&tree, dir.path(), "fs.img", args);
    let fs = open(&image);
    assert_eq!(fs.kind(), kind);
    assert_eq!(fs.label().as_deref(), Some("refvol"));
    assert_matches(&fs, &tree, checks, ignore_lost_found);
}

#[test]
fn ext4_default() {
    check(&["-t", "ext4", "-b", "4096"], "ext4", Checks::ALL);
}

#[test]
fn ext4_inline_data() {
    check(
        &["-t", "ext4", "-b", "4096", "-O", "inline_data"],
        "ext4",
        Checks::ALL,
    );
}

#[test]
fn ext4_1k_blocks() {
    check(&["-t", "ext4", "-b", "1024"], "ext4", Checks::ALL);
}

#[test]
fn ext4_64bit_meta_bg() {
    check(
        &[
            "-t",
            "ext4",
            "-b",
            "1024",
            "-O",
            "64bit,meta_bg,^resize_inode",
        ],
        "ext4",
        Checks::ALL,
    );
}

/// `mke2fs -d` writes linear directories; `e2fsck -D` rebuilds them as htrees (hashed b-trees).
#[test]
fn ext4_htree_dirs() {
    for args in [
        &["-t", "ext4", "-b", "4096"][..],
        &["-t", "ext3", "-b", "1024"][..],
    ] {
        let tree = build_tree(Features::POSIX);
        let dir = tempfile::tempdir().unwrap();
        let image = mkfs(&tree, dir.path(), "fs.img", args);
        let status = Command::new("e2fsck")
            .arg("-fyD")
            .arg(&image)
            .output()
            .unwrap()
            .status;
        assert!(
            matches!(status.code(), Some(0 | 1)),
            "e2fsck -fyD: {status}"
        );
        let stat = run(Command::new("debugfs")
            .args(["-R", "stat /var/spool/many"])
            .arg(&image));
        let flags = stat
            .split("Flags: 0x")
            .nth(1)
            .and_then(|s| u32::from_str_radix(s.split_whitespace().next()?, 16).ok())
            .unwrap();
        assert!(flags & 0x1000 != 0, "not an htree directory: {stat}");
        assert_matches(&open(&image), &tree, Checks::ALL, ignore_lost_found);
    }
}

#[test]
fn ext4_bigalloc() {
    check(
        &["-t", "ext4", "-b", "4096", "-O", "bigalloc", "-C", "16384"],
        "ext4",
        Checks::ALL,
    );
}

#[test]
fn ext4_32bit_no_csum() {
    check(
        &["-t", "ext4", "-b", "4096", "-O", "^64bit,^metadata_csum"],
        "ext4",
        Checks::ALL,
    );
}

#[test]
fn ext3_block_maps() {
    check(&["-t", "ext3", "-b", "4096"], "ext3", Checks::ALL);
}

#[test]
fn ext2_block_maps() {
    check(&["-t", "ext2", "-b", "4096"], "ext2", Checks::ALL);
}

#[test]
fn ext4_128_byte_inodes() {
    // 128-byte inodes have no extra timestamp bits: the 2040 file cannot be stored right.
    check(
        &["-t", "ext4", "-b", "4096", "-I", "128"],
        "ext4",
        Checks {
            mtime: false,
            ..Checks::ALL
        },
    );
}

#[test]
fn ext4_times_and_nlink() {
    let tree = build_tree(Features::POSIX);
    let dir = tempfile::tempdir().unwrap();
    let image = mkfs(&tree, dir.path(), "fs.img", &["-t", "ext4"]);
    let fs = open(&image);
    let lookup = |path: &str| lookup(&fs, path);
    let m = fs.metadata(lookup("/var/old/2040.txt")).unwrap();
    assert_eq!(m.modified.unwrap().secs, 2_210_000_000);
    let m = fs.metadata(lookup("/usr/local/bin/tool")).unwrap();
    assert_eq!(m.nlink, Some(2));
    assert_eq!(m.mode, Some(0o104755));
    assert_eq!(
        fs.read_link(lookup("/etc/long-link")).unwrap(),
        format!("/{}", "t".repeat(300))
    );
    assert_eq!(
        fs.metadata(lookup("/etc/localtime")).unwrap().kind,
        FileKind::Symlink
    );
}

#[test]
fn negative_times() {
    // A file dated before 1970 needs the sign of the 32-bit seconds.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    let f = root.join("old.txt");
    std::fs::write(&f, b"x").unwrap();
    let t = std::time::UNIX_EPOCH - std::time::Duration::from_secs(100_000_000);
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(t)
        .unwrap();
    let image = blank_image(dir.path(), "fs.img", 8 << 20);
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&root)
        .arg(&image));
    let fs = open(&image);
    let e = entry(&fs, fs.root(), "old.txt");
    assert_eq!(
        fs.metadata(e.node).unwrap().modified.unwrap().secs,
        -100_000_000
    );
}

// ---- hostile inputs -------------------------------------------------------------------------

/// A small ext4 image with a few files, in memory.
fn small_image(args: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/small.txt"), b"hello\n").unwrap();
    std::fs::write(root.join("big.bin"), common::pseudo_random(7, 300_000)).unwrap();
    let image = blank_image(dir.path(), "fs.img", 4 << 20);
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-b", "1024", "-d"])
        .arg(&root)
        .args(args)
        .arg(&image));
    std::fs::read(&image).unwrap()
}

/// Open and exercise everything; must not panic or hang. Returns the walk error count, or None
/// when the filesystem did not open.
fn exercise(bytes: Vec<u8>) -> Option<usize> {
    let source: Arc<dyn BlockSource> = Arc::new(MemSource::new(bytes));
    let fs = Ext4::open(source).ok()?;
    let met = read_everything(&fs);
    Some(met.open_errors + met.walk_errors)
}

/// Find `inode`'s raw bytes offset in `img` (1 KiB blocks, group 0).
fn inode_offset(img: &[u8], ino: u64) -> usize {
    let le32 = |o: usize| u32::from_le_bytes(img[o..o + 4].try_into().unwrap()) as usize;
    let le16 = |o: usize| u16::from_le_bytes(img[o..o + 2].try_into().unwrap()) as usize;
    let bs = 1024 << le32(1024 + 0x18);
    let inode_size = le16(1024 + 0x58);
    let gdt = (le32(1024 + 0x14) + 1) * bs;
    let table = le32(gdt + 8);
    table * bs + (ino as usize - 1) * inode_size
}

/// Inode number of `name` in the root directory.
fn ino_of(img: &[u8], name: &str) -> u64 {
    let fs = Ext4::open(Arc::new(MemSource::new(img.to_vec()))).unwrap();
    entry(&fs, fs.root(), name).node
}

#[test]
fn truncated_images_do_not_panic() {
    let img = small_image(&["-t", "ext4"]);
    for len in [
        0,
        100,
        1024,
        1500,
        2048,
        4096,
        10_000,
        100_000,
        1 << 20,
        img.len() - 1,
    ] {
        exercise(img[..len].to_vec());
    }
}

#[test]
fn absurd_superblock_counts_are_rejected() {
    let img = small_image(&["-t", "ext4"]);
    for (off, value) in [
        (0x0usize, u32::MAX), // inodes count
        (0x4, u32::MAX),      // blocks count
        (0x20, 0),            // blocks per group
        (0x28, 0),            // inodes per group
        (0x28, u32::MAX),     // inodes per group
        (0x18, 40),           // log block size
    ] {
        let mut bad = img.clone();
        bad[1024 + off..1024 + off + 4].copy_from_slice(&value.to_le_bytes());
        exercise(bad);
    }
}

#[test]
fn extent_tree_pointing_at_itself_is_an_error() {
    let img = small_image(&["-t", "ext4"]);
    let ino = ino_of(&img, "big.bin");
    let mut bad = img.clone();
    let at = inode_offset(&bad, ino) + 0x28;
    // Turn the in-inode root into an index node (depth 1) whose one child is block B, and make
    // block B an index node of depth 1 again pointing at itself.
    let child: u32 = 3000;
    let mut root = vec![0u8; 60];
    root[0..2].copy_from_slice(&0xF30Au16.to_le_bytes());
    root[2..4].copy_from_slice(&1u16.to_le_bytes());
    root[4..6].copy_from_slice(&4u16.to_le_bytes());
    root[6..8].copy_from_slice(&2u16.to_le_bytes());
    root[16..20].copy_from_slice(&child.to_le_bytes());
    bad[at..at + 60].copy_from_slice(&root);
    let b = child as usize * 1024;
    let mut node = root.clone();
    node[6..8].copy_from_slice(&1u16.to_le_bytes());
    bad[b..b + 60].copy_from_slice(&node);
    let fs = Ext4::open(Arc::new(MemSource::new(bad.clone()))).unwrap();
    assert!(fs.open(ino).is_err());
    exercise(bad);
    // A child whose header claims the parent's depth.
    let mut bad2 = img.clone();
    bad2[at..at + 60].copy_from_slice(&root);
    let mut node2 = root.clone();
    node2[6..8].copy_from_slice(&2u16.to_le_bytes());
    bad2[b..b + 60].copy_from_slice(&node2);
    let fs = Ext4::open(Arc::new(MemSource::new(bad2))).unwrap();
    assert!(fs.open(ino).is_err());
}

#[test]
fn bad_rec_len_is_an_error() {
    let img = small_image(&["-t", "ext4", "-O", "^inline_data"]);
    let fs = Ext4::open(Arc::new(MemSource::new(img.clone()))).unwrap();
    let d = ino_of(&img, "d");
    let _ = fs;
    // The directory's first block: find it through its extent.
    let at = inode_offset(&img, d) + 0x28;
    let block = u32::from_le_bytes(img[at + 20..at + 24].try_into().unwrap()) as usize;
    for rec_len in [0u16, 3, 2000, 60000] {
        let mut bad = img.clone();
        // Second entry (".." at offset 12).
        bad[block * 1024 + 12 + 4..block * 1024 + 12 + 6].copy_from_slice(&rec_len.to_le_bytes());
        let fs = Ext4::open(Arc::new(MemSource::new(bad.clone()))).unwrap();
        assert!(fs.read_dir(d).is_err(), "rec_len {rec_len}");
        exercise(bad);
    }
}

#[test]
fn huge_size_on_tiny_file_is_bounded() {
    for args in [&["-t", "ext4"][..], &["-t", "ext2"][..]] {
        let img = small_image(args);
        let ino = ino_of(&img, "big.bin");
        let mut bad = img.clone();
        let at = inode_offset(&bad, ino);
        bad[at + 4..at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        bad[at + 0x6C..at + 0x70].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        let fs = Ext4::open(Arc::new(MemSource::new(bad.clone()))).unwrap();
        let mut c = fs.open(ino).unwrap();
        let mut buf = vec![0u8; 4096];
        // Far past the data: a hole.
        assert_eq!(c.read_at(1 << 50, &mut buf).unwrap(), 4096);
        assert!(buf.iter().all(|&b| b == 0));
        exercise(bad);
    }
}

#[test]
fn random_corruption_never_panics() {
    let img = small_image(&["-t", "ext4"]);
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..200 {
        let mut bad = img.clone();
        for _ in 0..20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Hit metadata (first 64 KiB) most of the time.
            let pos = (x % 65536) as usize;
            bad[pos] = (x >> 32) as u8;
        }
        exercise(bad);
    }
}

/// The fuzz seeds are real filesystems, so fuzzing starts from inputs that reach deep code.
#[test]
fn fuzz_seeds_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ext4");
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert_eq!(exercise(bytes), Some(0));
    }
}

/// A filesystem copied while mounted, right after an fsync: the new file's metadata is only in
/// the journal (`needs_recovery` is set), and the reader must replay it to see the file.
/// Skipped when loop mounts are not possible here.
#[test]
fn journal_replay_of_unclean_image() {
    let dir = tempfile::tempdir().unwrap();
    let image = blank_image(dir.path(), "fs.img", 64 << 20);
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4"])
        .arg(&image));
    let mnt = dir.path().join("mnt");
    let Some(mount) = try_loop_mount(&image, &mnt, "") else {
        eprintln!("skipping: cannot loop-mount ext4 here");
        return;
    };
    let copy = dir.path().join("unclean.img");
    let result = std::panic::catch_unwind(|| {
        std::fs::create_dir(mnt.join("newdir")).unwrap();
        let content = common::pseudo_random(42, 50_000);
        std::fs::write(mnt.join("newdir/secret.txt"), &content).unwrap();
        // Preallocated space (uninitialized extents) must read as zeros.
        run(Command::new("fallocate")
            .args(["-l", "1M"])
            .arg(mnt.join("newdir/prealloc")));
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::options()
                .write(true)
                .open(mnt.join("newdir/prealloc"))
                .unwrap();
            f.write_all_at(b"written", 5000).unwrap();
        }
        for p in ["newdir/secret.txt", "newdir/prealloc", "newdir", "."] {
            std::fs::File::open(mnt.join(p))
                .unwrap()
                .sync_all()
                .unwrap();
        }
        std::fs::copy(&image, &copy).unwrap();
        content
    });
    let umount = mount.unmount();
    let content = result.unwrap();
    assert!(umount);

    let raw = std::fs::read(&copy).unwrap();
    let incompat = u32::from_le_bytes(raw[1024 + 0x60..1024 + 0x64].try_into().unwrap());
    assert!(incompat & 0x4 != 0, "copy is not marked needs_recovery");
    // debugfs does not replay the journal: tells whether the replay is really needed.
    let listing = run(Command::new("debugfs").args(["-R", "ls -l /"]).arg(&copy));
    if listing.contains("newdir") {
        eprintln!("note: metadata was already checkpointed; replay is exercised but not needed");
    }
    let fs = open(&copy);
    let newdir = entry(&fs, fs.root(), "newdir").node;
    let file = entry(&fs, newdir, "secret.txt").node;
    let got = read_exact(&fs, file, content.len());
    assert!(got == content, "replayed file content differs");
    let prealloc = entry(&fs, newdir, "prealloc").node;
    assert_eq!(fs.open(prealloc).unwrap().size(), 1 << 20);
    let got = read_exact(&fs, prealloc, 1 << 20);
    let mut want = vec![0u8; 1 << 20];
    want[5000..5007].copy_from_slice(b"written");
    assert!(got == want, "preallocated file does not read as zeros");
}

/// The needs_recovery fuzz seed: its directory `d` exists only in the journal.
#[test]
fn needs_recovery_seed_replays() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus/ext4/ext4-needs-recovery-head.img");
    let bytes = std::fs::read(path).unwrap();
    let incompat = u32::from_le_bytes(bytes[1024 + 0x60..1024 + 0x64].try_into().unwrap());
    assert!(incompat & 0x4 != 0);
    let fs = Ext4::open(Arc::new(MemSource::new(bytes))).unwrap();
    let names: Vec<String> = fs
        .read_dir(fs.root())
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&"d".to_string()), "{names:?}");
}
