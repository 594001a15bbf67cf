//! XFS reader against images built by `mkfs.xfs -p protofile` from the reference tree (v5 and
//! v4), a loop-mounted copy with times, hard links and sparse files (skipped where mounting is not
//! possible), and hostile variants patched byte by byte.

mod common;

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{
    Checks, Features, RefTree, assert_matches, blank_image, build_tree, entry, lookup,
    read_everything, read_exact, run, try_loop_mount,
};
use snapsentry_disk::fs::xfs::{self, Xfs};
use snapsentry_disk::fs::{FileKind, Filesystem};
use snapsentry_disk::source::{BlockSource, FileSource};

const IMAGE_SIZE: u64 = 320 << 20;

/// Write a protofile describing the host tree at `root` (modes, owners, contents, link targets).
fn protofile(root: &Path) -> String {
    fn mode_spec(kind: char, mode: u32) -> String {
        let u = if mode & 0o4000 != 0 { 'u' } else { '-' };
        let g = if mode & 0o2000 != 0 { 'g' } else { '-' };
        format!("{kind}{u}{g}{:03o}", mode & 0o777)
    }
    fn dir(out: &mut String, path: &Path) {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let name = p.file_name().unwrap().to_str().unwrap();
            let ft = m.file_type();
            if ft.is_dir() {
                writeln!(
                    out,
                    "{name} {} {} {}",
                    mode_spec('d', m.mode()),
                    m.uid(),
                    m.gid()
                )
                .unwrap();
                dir(out, &p);
                out.push_str("$\n");
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                writeln!(
                    out,
                    "{name} {} {} {} {}",
                    mode_spec('l', m.mode()),
                    m.uid(),
                    m.gid(),
                    target.display()
                )
                .unwrap();
            } else {
                writeln!(
                    out,
                    "{name} {} {} {} {}",
                    mode_spec('-', m.mode()),
                    m.uid(),
                    m.gid(),
                    p.display()
                )
                .unwrap();
            }
        }
    }
    let m = std::fs::metadata(root).unwrap();
    let mut out = format!(
        "/dev/null\n0 0\n{} {} {}\n",
        mode_spec('d', m.mode()),
        m.uid(),
        m.gid()
    );
    dir(&mut out, root);
    out.push_str("$\n");
    out
}

fn mkfs(tree: &RefTree, dir: &Path, args: &[&str]) -> PathBuf {
    let proto = dir.join("proto");
    std::fs::write(&proto, protofile(tree.path())).unwrap();
    let image = blank_image(dir, "fs.img", IMAGE_SIZE);
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-L", "refvol", "-p"])
        .arg(&proto)
        .args(args)
        .arg(&image));
    image
}

fn open(image: &Path) -> Xfs {
    let source: Arc<dyn BlockSource> = Arc::new(FileSource::open(image).unwrap());
    let mut head = vec![0u8; 4096];
    source.read_at(0, &mut head).unwrap();
    assert!(xfs::detect(&head));
    Xfs::open(source).unwrap()
}

/// Protofiles cannot express times or hard links: the link becomes a second file with the same
/// content, which the comparer accepts; times are not compared.
const PROTO_CHECKS: Checks = Checks {
    mtime: false,
    ..Checks::ALL
};

#[test]
fn xfs_v5_protofile() {
    let tree = build_tree(Features::POSIX);
    let dir = tempfile::tempdir().unwrap();
    let image = mkfs(&tree, dir.path(), &[]);
    let fs = open(&image);
    assert_eq!(fs.kind(), "xfs");
    assert_eq!(fs.label().as_deref(), Some("refvol"));
    assert_matches(&fs, &tree, PROTO_CHECKS, |_| false);
}

#[test]
fn xfs_v4_protofile() {
    let tree = build_tree(Features::POSIX);
    let dir = tempfile::tempdir().unwrap();
    let image = mkfs(&tree, dir.path(), &["-m", "crc=0"]);
    assert_matches(&open(&image), &tree, PROTO_CHECKS, |_| false);
}

#[test]
fn xfs_v5_no_ftype_large_dir_blocks() {
    let tree = build_tree(Features::POSIX);
    let dir = tempfile::tempdir().unwrap();
    let image = mkfs(&tree, dir.path(), &["-n", "size=16384", "-i", "size=1024"]);
    assert_matches(&open(&image), &tree, PROTO_CHECKS, |_| false);
}

/// Populate through a loop mount (`cp -a`), which keeps times, hard links and holes, and adds a
/// file fragmented enough to need a B+tree extent map. Skipped when mounting is not possible.
#[test]
fn xfs_mounted_copy_with_times_links_and_btree_extents() {
    let tree = build_tree(Features::POSIX);
    let dir = tempfile::tempdir().unwrap();
    let image = blank_image(dir.path(), "fs.img", IMAGE_SIZE);
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-L", "refvol"])
        .arg(&image));
    let mnt = dir.path().join("mnt");
    let Some(mount) = try_loop_mount(&image, &mnt, "") else {
        eprintln!("skipping: cannot loop-mount XFS here");
        return;
    };
    let copied = Command::new("cp")
        .args(["-a", "--sparse=always"])
        .arg(format!("{}/.", tree.path().display()))
        .arg(&mnt)
        .status();
    // Many islands: more extents than the inode holds, so the map becomes a B+tree.
    let frag = mnt.join("frag.bin");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::File::create(&frag).unwrap();
        for i in 0..600u64 {
            f.seek(SeekFrom::Start(i * 16384)).unwrap();
            f.write_all(&common::pseudo_random(1000 + i, 4096)).unwrap();
        }
        f.sync_all().unwrap();
    }
    let want_frag = std::fs::read(&frag).unwrap();
    // A remote symlink (kernel-written, with its XSLM header).
    std::os::unix::fs::symlink("r".repeat(1000), mnt.join("remote-link")).unwrap();
    let umount = mount.unmount();
    assert!(copied.unwrap().success());
    assert!(umount);

    let fs = open(&image);
    assert_matches(&fs, &tree, Checks::ALL, |p| {
        p == "/frag.bin" || p == "/remote-link"
    });
    let link = entry(&fs, fs.root(), "remote-link");
    assert_eq!(fs.read_link(link.node).unwrap(), "r".repeat(1000));
    let node = entry(&fs, fs.root(), "frag.bin").node;
    let db = run(Command::new("xfs_db")
        .args([
            "-r",
            "-c",
            &format!("inode {node}"),
            "-c",
            "print core.format",
        ])
        .arg(&image));
    assert!(
        db.contains("btree"),
        "frag.bin is not in btree format: {db}"
    );
    let got = read_exact(&fs, node, want_frag.len());
    assert!(got == want_frag, "fragmented file content differs");
    // Hard links share an inode; the 2040 file keeps its time (bigtime).
    let bin = lookup(&fs, "/usr/local/bin");
    let tool = |name: &str| entry(&fs, bin, name);
    let a = tool("tool");
    assert_eq!(a.node, tool("tool-hardlink").node);
    assert_eq!(a.kind, Some(FileKind::File));
    assert_eq!(fs.metadata(a.node).unwrap().nlink, Some(2));
}

// ---- hostile inputs -------------------------------------------------------------------------

/// A small v5 image with a few files (a shortform root, a block directory, a big file, a
/// remote symlink), kept on disk; hostile variants are patched views of it.
struct Small {
    _dir: tempfile::TempDir,
    source: Arc<dyn BlockSource>,
}

fn small_image(extra: &[&str]) -> Small {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir_all(root.join("d")).unwrap();
    for i in 0..40 {
        std::fs::write(root.join(format!("d/file-{i:03}.txt")), b"hello\n").unwrap();
    }
    std::fs::write(root.join("big.bin"), common::pseudo_random(7, 300_000)).unwrap();
    std::os::unix::fs::symlink("t".repeat(1000), root.join("long-link")).unwrap();
    let proto = dir.path().join("proto");
    std::fs::write(&proto, protofile(&root)).unwrap();
    let image = blank_image(dir.path(), "fs.img", IMAGE_SIZE);
    run(Command::new("mkfs.xfs")
        .args(["-q", "-f", "-p"])
        .arg(&proto)
        .args(extra)
        .arg(&image));
    let source = Arc::new(FileSource::open(&image).unwrap());
    Small { _dir: dir, source }
}

/// A source with some bytes replaced.
struct Patched {
    base: Arc<dyn BlockSource>,
    patches: Vec<(u64, Vec<u8>)>,
}

impl BlockSource for Patched {
    fn size(&self) -> u64 {
        self.base.size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> snapsentry_disk::Result<()> {
        self.base.read_at(offset, buf)?;
        let end = offset + buf.len() as u64;
        for (at, bytes) in &self.patches {
            for (i, b) in bytes.iter().enumerate() {
                let p = at + i as u64;
                if p >= offset && p < end {
                    buf[(p - offset) as usize] = *b;
                }
            }
        }
        Ok(())
    }
}

impl Small {
    fn patched(&self, patches: Vec<(u64, Vec<u8>)>) -> Arc<dyn BlockSource> {
        Arc::new(Patched {
            base: self.source.clone(),
            patches,
        })
    }
    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.source.read_at(offset, &mut buf).unwrap();
        buf
    }
    fn fs(&self) -> Xfs {
        Xfs::open(self.source.clone()).unwrap()
    }
}

/// Open and exercise everything; must not panic or hang. Returns the error count (symlinks
/// without a target included), or None when the filesystem did not open.
fn exercise(source: Arc<dyn BlockSource>) -> Option<usize> {
    let fs = Xfs::open(source).ok()?;
    let met = read_everything(&fs);
    Some(met.open_errors + met.walk_errors + met.unread_links)
}

/// Superblock geometry needed to find things in tests.
struct Geo {
    bs: u64,
    agblocks: u64,
    isize: u64,
    agblklog: u64,
    inopblog: u64,
}

fn geo(img: &Small) -> Geo {
    let sb = img.read(0, 512);
    let be32 = |o: usize| u32::from_be_bytes(sb[o..o + 4].try_into().unwrap()) as u64;
    Geo {
        bs: be32(4),
        agblocks: be32(84),
        isize: u16::from_be_bytes([sb[104], sb[105]]) as u64,
        agblklog: sb[124] as u64,
        inopblog: sb[123] as u64,
    }
}

impl Geo {
    fn inode_offset(&self, ino: u64) -> u64 {
        let agno = ino >> (self.agblklog + self.inopblog);
        let agino = ino & ((1 << (self.agblklog + self.inopblog)) - 1);
        (agno * self.agblocks + (agino >> self.inopblog)) * self.bs
            + (agino & ((1 << self.inopblog) - 1)) * self.isize
    }
    fn fsb_offset(&self, fsb: u64) -> u64 {
        ((fsb >> self.agblklog) * self.agblocks + (fsb & ((1 << self.agblklog) - 1))) * self.bs
    }
}

fn ino_of(img: &Small, name: &str) -> u64 {
    let fs = img.fs();
    entry(&fs, fs.root(), name).node
}

#[test]
fn small_image_reads() {
    let img = small_image(&[]);
    let fs = img.fs();
    assert_eq!(
        fs.read_link(ino_of(&img, "long-link")).unwrap(),
        "t".repeat(1000)
    );
    let d = ino_of(&img, "d");
    assert_eq!(fs.read_dir(d).unwrap().len(), 40);
    assert_eq!(exercise(img.source.clone()), Some(0));
}

#[test]
fn truncated_images_do_not_panic() {
    let img = small_image(&[]);
    for len in [
        0,
        100,
        512,
        4096,
        40_000,
        200_000,
        1 << 20,
        8 << 20,
        100 << 20,
    ] {
        let cut = snapsentry_disk::source::Slice::new(img.source.clone(), 0, len).unwrap();
        exercise(Arc::new(cut));
    }
}

#[test]
fn absurd_superblock_counts_are_rejected() {
    let img = small_image(&[]);
    for (off, bytes) in [
        (4u64, u32::MAX.to_be_bytes().to_vec()), // block size
        (84, 0u32.to_be_bytes().to_vec()),       // AG blocks
        (88, 0u32.to_be_bytes().to_vec()),       // AG count
        (88, u32::MAX.to_be_bytes().to_vec()),   // AG count
        (8, u64::MAX.to_be_bytes().to_vec()),    // data blocks
        (56, u64::MAX.to_be_bytes().to_vec()),   // root inode
        (104, 7u16.to_be_bytes().to_vec()),      // inode size
        (124, vec![63]),                         // AG block log
        (123, vec![40]),                         // inodes per block log
        (192, vec![30]),                         // directory block log
    ] {
        exercise(img.patched(vec![(off, bytes)]));
    }
}

#[test]
fn huge_size_and_extent_count_are_bounded() {
    let img = small_image(&[]);
    let g = geo(&img);
    let ino = ino_of(&img, "big.bin");
    let at = g.inode_offset(ino);
    // A huge size: reads far past the data are holes.
    let bad = img.patched(vec![(at + 0x38, (1u64 << 62).to_be_bytes().to_vec())]);
    let fs = Xfs::open(bad.clone()).unwrap();
    let mut c = fs.open(ino).unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(c.read_at(1 << 50, &mut buf).unwrap(), 4096);
    assert!(buf.iter().all(|&b| b == 0));
    exercise(bad);
    // An extent count that does not fit the fork.
    let bad = img.patched(vec![(at + 0x4C, u32::MAX.to_be_bytes().to_vec())]);
    let fs = Xfs::open(bad).unwrap();
    assert!(fs.open(ino).is_err());
    // A huge symlink size.
    let link = g.inode_offset(ino_of(&img, "long-link"));
    let bad = img.patched(vec![(link + 0x38, u64::MAX.to_be_bytes().to_vec())]);
    let fs = Xfs::open(bad).unwrap();
    assert!(fs.read_link(ino_of(&img, "long-link")).is_err());
}

#[test]
fn btree_pointing_at_itself_is_an_error() {
    let img = small_image(&[]);
    let g = geo(&img);
    let ino = ino_of(&img, "big.bin");
    let at = g.inode_offset(ino);
    // Make the data fork a B+tree root (level 2) pointing at a block that is a level-1 node
    // pointing at itself.
    let target: u64 = 20000; // fs block in AG 0, unused by this small image
    let fork = at + 176;
    let forklen = g.isize - 176;
    let maxrecs = (forklen - 4) / 16;
    let node_max = (g.bs - 72) / 16;
    let b = g.fsb_offset(target);
    let mut node = b"BMA3".to_vec();
    node.extend_from_slice(&1u16.to_be_bytes());
    node.extend_from_slice(&1u16.to_be_bytes());
    let bad = img.patched(vec![
        (at + 5, vec![3]), // btree format
        (fork, [2u16.to_be_bytes(), 1u16.to_be_bytes()].concat()),
        (fork + 4, 0u64.to_be_bytes().to_vec()),
        (fork + 4 + maxrecs * 8, target.to_be_bytes().to_vec()),
        (b, node),
        (b + 72 + node_max * 8, target.to_be_bytes().to_vec()),
    ]);
    let fs = Xfs::open(bad.clone()).unwrap();
    let err = fs.open(ino).err().expect("cycle must be an error");
    assert!(err.to_string().contains("btree"), "{err}");
    exercise(bad);
}

#[test]
fn corrupt_directory_entries_are_errors() {
    let img = small_image(&[]);
    let g = geo(&img);
    let d = ino_of(&img, "d");
    let inode = img.read(g.inode_offset(d), g.isize as usize);
    // The directory is one block (extents format): find its block.
    assert_eq!(inode[5], 2, "block directory expected");
    let l0 = u64::from_be_bytes(inode[176..184].try_into().unwrap());
    let l1 = u64::from_be_bytes(inode[184..192].try_into().unwrap());
    let block = g.fsb_offset(((l0 & 0x1FF) << 43) | (l1 >> 21));
    assert_eq!(&img.read(block, 4)[..], b"XDB3");
    let bs = g.bs;
    // A free entry of length 0, an empty name, a huge leaf count.
    for (off, bytes) in [
        (64u64, vec![0xFF, 0xFF, 0, 0]),
        (64 + 8, vec![0]),
        (bs - 8, u32::MAX.to_be_bytes().to_vec()),
    ] {
        let bad = img.patched(vec![(block + off, bytes)]);
        let fs = Xfs::open(bad.clone()).unwrap();
        assert!(fs.read_dir(d).is_err());
        exercise(bad);
    }
}

#[test]
fn random_corruption_never_panics() {
    let img = small_image(&[]);
    let mut x = 0x1234_5678_9abc_def0u64;
    for _ in 0..200 {
        let mut patches = Vec::new();
        for _ in 0..20 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            patches.push((x % (256 * 1024), vec![(x >> 32) as u8]));
        }
        exercise(img.patched(patches));
    }
}

/// The fuzz seeds (heads of real images) open and walk cleanly.
#[test]
fn fuzz_seeds_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/xfs");
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let source = Arc::new(snapsentry_disk::source::MemSource::new(bytes));
        assert_eq!(exercise(source), Some(0));
    }
}
