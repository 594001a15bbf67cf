//! Runs every fuzz target's seed corpus (`fuzz/corpus/<target>/`) through the same entry point
//! the cargo-fuzz target uses, as a regression test: a crash once found stays fixed.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_file() {
            let data = std::fs::read(&path).unwrap();
            out.push((path, data));
        }
    }
    assert!(
        !out.is_empty(),
        "fuzz target {target} has no seed corpus in {}",
        dir.display()
    );
    out
}

fn run(target: &str, entry: fn(&[u8])) {
    for (path, data) in corpus(target) {
        eprintln!("{target}: {}", path.display());
        entry(&data);
    }
}

macro_rules! corpus_tests {
    ($($name:ident => $entry:path),* $(,)?) => {
        $(#[test] fn $name() { run(stringify!($name), $entry); })*
    };
}

corpus_tests! {
    disk => snapsentry_disk::fuzzing::disk,
    ext4 => snapsentry_disk::fuzzing::ext4,
    xfs => snapsentry_disk::fuzzing::xfs,
    ntfs => snapsentry_disk::fuzzing::ntfs,
    fat => snapsentry_disk::fuzzing::fat,
    btrfs => snapsentry_disk::fuzzing::btrfs,
    qcow2 => snapsentry_disk::fuzzing::qcow2,
    vhd => snapsentry_disk::fuzzing::vhd,
    vhdx => snapsentry_disk::fuzzing::vhdx,
    vmdk => snapsentry_disk::fuzzing::vmdk,
    gpt => snapsentry_disk::fuzzing::gpt,
    mbr => snapsentry_disk::fuzzing::mbr,
    lvm => snapsentry_disk::fuzzing::lvm,
    archive => snapsentry_disk::fuzzing::archive,
}
