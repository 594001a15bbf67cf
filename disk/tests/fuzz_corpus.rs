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
    disk => snapsentry_disk::fuzzing::exercise_disk,
    ext4 => snapsentry_disk::fs::ext4::fuzz,
    xfs => snapsentry_disk::fs::xfs::fuzz,
    ntfs => snapsentry_disk::fs::ntfs::fuzz,
    fat => snapsentry_disk::fs::fat::fuzz,
    btrfs => snapsentry_disk::fs::btrfs::fuzz,
    qcow2 => snapsentry_disk::image::qcow2::fuzz,
    vhd => snapsentry_disk::image::vhd::fuzz,
    vhdx => snapsentry_disk::image::vhdx::fuzz,
    vmdk => snapsentry_disk::image::vmdk::fuzz,
    gpt => snapsentry_disk::table::gpt::fuzz,
    mbr => snapsentry_disk::table::mbr::fuzz,
    lvm => snapsentry_disk::lvm::fuzz,
}
