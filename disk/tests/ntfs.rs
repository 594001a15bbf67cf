//! NTFS reader against images made by `mkntfs` and populated through the `ntfs-3g` FUSE driver.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{
    Checks, Features, Mount, RefTree, assert_matches, blank_image, build_tree, entry, run,
};
use snapsentry_disk::fs::ntfs::{self, Ntfs};
use snapsentry_disk::fs::{FileKind, Filesystem};
use snapsentry_disk::source::{BlockSource, FileSource, MemSource};

/// What NTFS through ntfs-3g keeps: everything but Unix owners and modes (no user mapping).
const NTFS_FEATURES: Features = Features {
    symlinks: true,
    hard_links: true,
    unix_meta: false,
    long_names: true,
    sparse: true,
    wide_times: true,
    big_dir_files: 3000,
};

const NTFS_CHECKS: Checks = Checks {
    perm: false,
    owner: false,
    mtime: true,
    mtime_slack: 0,
};

/// `mkntfs` an image and copy `tree` into it through an `ntfs-3g` mount.
fn ntfs_image(dir: &Path, tree: &RefTree, size: u64) -> PathBuf {
    let img = blank_image(dir, "ntfs.img", size);
    run(Command::new("mkntfs")
        .args(["-F", "-Q", "-q", "-L", "Windows"])
        .arg(&img));
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("ntfs-3g").arg(&img).arg(&mnt));
    let mount = Mount(mnt.clone());
    let mut cmd = Command::new("cp");
    cmd.args(["-R", "--preserve=timestamps,links", "--sparse=always"]);
    for entry in std::fs::read_dir(tree.path()).unwrap() {
        cmd.arg(entry.unwrap().path());
    }
    cmd.arg(&mnt);
    run(&mut cmd);
    drop(mount);
    img
}

fn open(img: &Path) -> (Arc<dyn BlockSource>, Ntfs) {
    let source: Arc<dyn BlockSource> = Arc::new(FileSource::open(img).unwrap());
    let fs = Ntfs::open(source.clone()).unwrap();
    (source, fs)
}

#[test]
fn ntfs_matches_reference_tree() {
    let tree = build_tree(NTFS_FEATURES);
    let tmp = tempfile::tempdir().unwrap();
    let img = ntfs_image(tmp.path(), &tree, 128 << 20);
    let (source, fs) = open(&img);
    let mut head = vec![0u8; 512];
    source.read_at(0, &mut head).unwrap();
    assert!(ntfs::detect(&head));
    assert_eq!(fs.kind(), "ntfs");
    assert_eq!(fs.label().as_deref(), Some("Windows"));
    assert_matches(&fs, &tree, NTFS_CHECKS, |_| false);
    let opened = snapsentry_disk::open_filesystem(source).unwrap().unwrap();
    assert_eq!(opened.kind(), "ntfs");
}

/// A small NTFS image holding one file, copied in with `ntfscp`.
fn small_image(name: &str, content: &[u8]) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let img = blank_image(tmp.path(), "small.img", 8 << 20);
    run(Command::new("mkntfs").args(["-F", "-Q", "-q"]).arg(&img));
    let file = tmp.path().join("f");
    std::fs::write(&file, content).unwrap();
    run(Command::new("ntfscp").arg(&img).arg(&file).arg(name));
    std::fs::read(&img).unwrap()
}

fn list_and_read(bytes: Vec<u8>) -> snapsentry_disk::Result<Vec<String>> {
    let fs = Ntfs::open(Arc::new(MemSource::new(bytes)))?;
    let mut errors = Vec::new();
    for e in fs.read_dir(fs.root())? {
        let m = match fs.metadata(e.node) {
            Ok(m) => m,
            Err(err) => {
                errors.push(err.to_string());
                continue;
            }
        };
        if m.kind != FileKind::File {
            continue;
        }
        match fs.open(e.node) {
            Ok(mut c) => {
                let mut buf = vec![0u8; 65536];
                let mut off = 0;
                loop {
                    match c.read_at(off, &mut buf) {
                        Ok(0) => break,
                        Ok(n) => off += n as u64,
                        Err(err) => {
                            errors.push(err.to_string());
                            break;
                        }
                    }
                }
            }
            Err(err) => errors.push(err.to_string()),
        }
    }
    Ok(errors)
}

/// Byte offset of the MFT record holding `name` (searched as UTF-16 in FILE records).
fn record_of(bytes: &[u8], name: &str) -> usize {
    let needle: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    (0..bytes.len() - 1024)
        .step_by(1024)
        .find(|&off| {
            &bytes[off..off + 4] == b"FILE"
                && bytes[off..off + 1024]
                    .windows(needle.len())
                    .any(|w| w == needle)
        })
        .expect("record of the file")
}

#[test]
fn ntfscp_file_reads_back() {
    let content = common::pseudo_random(3, 300_000);
    let bytes = small_image("secret.bin", &content);
    let fs = Ntfs::open(Arc::new(MemSource::new(bytes))).unwrap();
    let entries = fs.read_dir(fs.root()).unwrap();
    let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["secret.bin"], "system files are hidden");
    let mut c = fs.open(entries[0].node).unwrap();
    let mut got = vec![0u8; content.len()];
    assert_eq!(c.read_at(0, &mut got).unwrap(), content.len());
    assert_eq!(got, content);
}

/// Offset in `b` of the `$DATA` attribute (type 0x80) of the MFT record at `rec`.
fn data_attribute(b: &[u8], rec: usize) -> usize {
    let mut pos = rec + usize::from(u16::from_le_bytes([b[rec + 20], b[rec + 21]]));
    loop {
        let ty = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap());
        if ty == 0x80 {
            return pos;
        }
        pos += u32::from_le_bytes(b[pos + 4..pos + 8].try_into().unwrap()) as usize;
    }
}

#[test]
fn run_list_past_the_volume_is_an_error() {
    let bytes = small_image("secret.bin", &common::pseudo_random(3, 300_000));
    let rec = record_of(&bytes, "secret.bin");
    let mut b = bytes.clone();
    // Make the first run's LCN of the $DATA attribute huge.
    let pos = data_attribute(&b, rec);
    let rl = pos + usize::from(u16::from_le_bytes([b[pos + 32], b[pos + 33]]));
    let header = b[rl];
    let (ls, os) = (usize::from(header & 0xF), usize::from(header >> 4));
    for i in 0..os {
        b[rl + 1 + ls + i] = if i + 1 == os { 0x7F } else { 0xFF };
    }
    let errors = list_and_read(b).unwrap();
    assert!(
        errors.iter().any(|e| e.contains("past the volume")),
        "{errors:?}"
    );
}

#[test]
fn truncated_and_garbled_images_fail_cleanly() {
    let bytes = small_image("secret.bin", &common::pseudo_random(3, 300_000));
    for len in [0, 100, 512, 4096, 65536, 1 << 20, 3 << 20] {
        let _ = list_and_read(bytes[..len].to_vec());
    }
    // Absurd sizes in the file's record: attribute lengths, data size, attribute list.
    let rec = record_of(&bytes, "secret.bin");
    for (off, val) in [
        (24usize, 0xFFFF_FFFFu32),
        (20, 0x3FF),
        (0x80 + 4, 0xFFFF_FFF8),
    ] {
        let mut b = bytes.clone();
        b[rec + off..rec + off + 4].copy_from_slice(&val.to_le_bytes());
        let _ = list_and_read(b);
    }
    // Garbage over the whole MFT region.
    let mut b = bytes.clone();
    let mft = u64::from_le_bytes(b[48..56].try_into().unwrap()) as usize * 4096;
    for (i, x) in b[mft + 1024..mft + 64 * 1024].iter_mut().enumerate() {
        *x ^= (i * 31 % 251) as u8;
    }
    let _ = list_and_read(b);
}

/// Many hard links and a fragmented file overflow one 1 KiB record: the file's attributes spread
/// over extension records listed by an `$ATTRIBUTE_LIST`.
#[test]
fn attribute_list_spreads_names_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let img = blank_image(tmp.path(), "al.img", 32 << 20);
    run(Command::new("mkntfs").args(["-F", "-Q", "-q"]).arg(&img));
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("ntfs-3g").arg(&img).arg(&mnt));
    let mount = Mount(mnt.clone());
    let dir = mnt.join("links");
    std::fs::create_dir(&dir).unwrap();
    // Interleave writes of two files so their runs alternate (hundreds of fragments).
    let a_path = dir.join("fragmented.bin");
    let b_path = dir.join("filler.bin");
    let (mut a, mut b) = (
        std::fs::File::create(&a_path).unwrap(),
        std::fs::File::create(&b_path).unwrap(),
    );
    let mut want = Vec::new();
    for i in 0..400u64 {
        use std::io::Write;
        let chunk = common::pseudo_random(1000 + i, 4096);
        a.write_all(&chunk).unwrap();
        a.sync_all().unwrap();
        b.write_all(&chunk).unwrap();
        b.sync_all().unwrap();
        want.extend_from_slice(&chunk);
    }
    drop((a, b));
    for i in 0..60 {
        std::fs::hard_link(
            &a_path,
            dir.join(format!("link-with-a-long-name-{i:03}.bin")),
        )
        .unwrap();
    }
    drop(mount);
    let (_, fs) = open(&img);
    let links = entry(&fs, fs.root(), "links");
    let entries = fs.read_dir(links.node).unwrap();
    assert_eq!(entries.len(), 62);
    for e in entries.iter().filter(|e| e.name != "filler.bin") {
        let m = fs.metadata(e.node).unwrap();
        assert_eq!(m.size, want.len() as u64, "{}", e.name);
    }
    let node = entries
        .iter()
        .find(|e| e.name == "fragmented.bin")
        .unwrap()
        .node;
    let mut c = fs.open(node).unwrap();
    let mut got = vec![0u8; want.len()];
    assert_eq!(c.read_at(0, &mut got).unwrap(), want.len());
    assert!(got == want, "fragmented content differs");
}

/// The fuzz seed is a 2 MiB volume compacted into 256 KiB (root index block moved inside it):
/// it must open and list its files, or fuzzing starts from nothing.
#[test]
fn fuzz_seed_lists_files() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/ntfs/ntfs-2m-compacted-256k"
    );
    let fs = Ntfs::open(Arc::new(MemSource::new(std::fs::read(path).unwrap()))).unwrap();
    let names: Vec<_> = fs
        .read_dir(fs.root())
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["data.bin", "secret.txt"]);
}

/// Compressed files (written by ntfs-3g in a directory with the compressed attribute) and
/// encrypted ones (flag patched into a record) are reported unreadable, not read as garbage.
#[test]
fn compressed_and_encrypted_files_are_unreadable() {
    let tmp = tempfile::tempdir().unwrap();
    let img = blank_image(tmp.path(), "c.img", 32 << 20);
    run(Command::new("mkntfs").args(["-F", "-Q", "-q"]).arg(&img));
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run(Command::new("ntfs-3g")
        .args(["-o", "compression"])
        .arg(&img)
        .arg(&mnt));
    let mount = Mount(mnt.clone());
    std::fs::create_dir(mnt.join("comp")).unwrap();
    // FILE_ATTRIBUTE_COMPRESSED | DIRECTORY, through ntfs-3g's attribute xattr (no setfattr here).
    run(Command::new("python3").arg("-c").arg(format!(
        "import os; os.setxattr({:?}, 'system.ntfs_attrib_be', (0x810).to_bytes(4, 'big'))",
        mnt.join("comp").to_str().unwrap()
    )));
    std::fs::write(
        mnt.join("comp/file.txt"),
        b"compress me please\n".repeat(10_000),
    )
    .unwrap();
    drop(mount);
    let (_, fs) = open(&img);
    let comp = entry(&fs, fs.root(), "comp");
    let file = &fs.read_dir(comp.node).unwrap()[0];
    let m = fs.metadata(file.node).unwrap();
    assert_eq!(m.unreadable, Some("ntfs compressed file"));
    assert_eq!(m.size, 190_000);

    let bytes = small_image("secret.bin", &common::pseudo_random(3, 300_000));
    let rec = record_of(&bytes, "secret.bin");
    let mut b = bytes.clone();
    let pos = data_attribute(&b, rec);
    b[pos + 12..pos + 14].copy_from_slice(&0x4000u16.to_le_bytes());
    let fs = Ntfs::open(Arc::new(MemSource::new(b))).unwrap();
    let e = &fs.read_dir(fs.root()).unwrap()[0];
    assert_eq!(
        fs.metadata(e.node).unwrap().unreadable,
        Some("ntfs encrypted file")
    );
}

/// The seed corpus with deterministic random byte mutations must never panic or hang.
#[test]
fn mutated_seeds_never_panic() {
    common::run_mutated_seeds("ntfs", snapsentry_disk::fuzzing::ntfs);
}
