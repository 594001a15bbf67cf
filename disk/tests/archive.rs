//! `snapsentry_disk::archive` on the seed archives of its fuzz target (built by `tar`, `gzip` and
//! `zip`) and on bombs made here: what is visited, with which path, and what is counted.

use std::io::Write;
use std::path::PathBuf;

use snapsentry_disk::archive::{ArchiveLimits, ArchiveStats, read_archive};

fn seed(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus/archive")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every visited entry as `a!b` with its size, and the stats.
fn read(
    name: &str,
    data: &[u8],
    limits: &ArchiveLimits,
) -> (Vec<(String, usize)>, Option<ArchiveStats>) {
    let mut seen = Vec::new();
    let stats = read_archive(name, data, limits, &mut |e| {
        seen.push((e.path.join("!"), e.data.len()));
    });
    seen.sort();
    (seen, stats)
}

#[test]
fn nested_archives_are_read_down_to_the_depth_limit() {
    let data = seed("nested.zip");
    let (seen, stats) = read("nested.zip", &data, &ArchiveLimits::default());
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["etc/app/.env", "lib/app.jar!application.properties"]
    );
    assert!(!stats.unwrap().incomplete());

    let shallow = ArchiveLimits {
        max_depth: 1,
        ..ArchiveLimits::default()
    };
    let (seen, stats) = read("nested.zip", &data, &shallow);
    assert_eq!(seen.len(), 1);
    assert_eq!(stats.unwrap().too_deep, 1);

    let off = ArchiveLimits {
        max_depth: 0,
        ..ArchiveLimits::default()
    };
    assert_eq!(read("nested.zip", &data, &off).1.unwrap().too_deep, 1);
    assert_eq!(read("notes.txt", b"password=x\n", &off).1, None);
}

#[test]
fn tar_and_gzip_layers_are_transparent() {
    let (seen, _) = read(
        "backup.tar.gz",
        &seed("backup.tar.gz"),
        &ArchiveLimits::default(),
    );
    assert!(seen.iter().any(|(n, _)| n == "etc/app/.env"), "{seen:?}");
    let (seen, _) = read("plain.tar", &seed("plain.tar"), &ArchiveLimits::default());
    assert!(seen.iter().any(|(n, _)| n == "etc/app/.env"), "{seen:?}");
    let (seen, _) = read(
        "single.conf.gz",
        &seed("single.conf.gz"),
        &ArchiveLimits::default(),
    );
    assert_eq!(seen, [("single.conf".to_owned(), 11)]);
}

#[test]
fn damage_and_limits_are_counted() {
    let (seen, stats) = read(
        "truncated.tar.gz",
        &seed("truncated.tar.gz"),
        &ArchiveLimits::default(),
    );
    assert!(seen.is_empty());
    assert_eq!(stats.unwrap().corrupt, 1);

    // Entries of every level count: the jar, the file in it, then the limit.
    let few = ArchiveLimits {
        max_entries: 2,
        ..ArchiveLimits::default()
    };
    let (seen, stats) = read("nested.zip", &seed("nested.zip"), &few);
    assert_eq!(seen.len(), 1);
    assert!(stats.unwrap().limited);
}

/// 256 MiB of zeros gzip-compressed (about 250 KiB): the budget (100× the archive, from 1 MiB
/// up) stops inflation at 100 MiB; a smaller entry limit makes it a too-large entry instead.
#[test]
fn a_gzip_bomb_stops_at_the_budget() {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; 1 << 20];
    for _ in 0..256 {
        enc.write_all(&block).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let big = ArchiveLimits {
        max_entry_size: 1 << 30,
        ..ArchiveLimits::default()
    };
    let (seen, stats) = read("zeros.gz", &bomb, &big);
    let stats = stats.unwrap();
    assert!(seen.is_empty());
    assert!(stats.limited);
    assert_eq!(stats.inflated, 100 << 20);

    let (seen, stats) = read("zeros.gz", &bomb, &ArchiveLimits::default());
    let stats = stats.unwrap();
    assert!(seen.is_empty());
    assert_eq!(stats.too_large, 1);
    assert!(!stats.limited);
}
