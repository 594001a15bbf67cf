//! Runs the engine's fuzz targets' seed corpora (`fuzz/corpus/engine/`, `fuzz/corpus/dpkg/`,
//! `fuzz/corpus/prefilter/`)
//! through the same entry points the cargo-fuzz targets use, as a regression test: a crash once
//! found stays fixed. Also feeds every seed truncated at every length up to 512 bytes, and a few
//! adversarial shapes.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seed corpus in {}", dir.display());
    out
}

#[test]
fn engine_seed_corpus() {
    for (path, data) in corpus("engine") {
        eprintln!("engine: {}", path.display());
        snapsentry_engine::fuzz(&data);
        for len in (0..data.len().min(512)).step_by(7) {
            snapsentry_engine::fuzz(&data[..len]);
        }
    }
}

#[test]
fn dpkg_seed_corpus() {
    for (path, data) in corpus("dpkg") {
        eprintln!("dpkg: {}", path.display());
        snapsentry_engine::packages::fuzz(&data);
        for len in 0..data.len().min(512) {
            snapsentry_engine::packages::fuzz(&data[..len]);
        }
    }
}

#[test]
fn dpkg_adversarial_shapes_finish_quickly() {
    let started = std::time::Instant::now();
    // One endless line, endless paragraphs, endless conffiles, paths that all differ.
    snapsentry_engine::packages::fuzz(&b"/".repeat(4 << 20));
    snapsentry_engine::packages::fuzz(&b"Package: p\n\n".repeat(200_000));
    let mut conffiles = b"Package: p\nStatus: install ok installed\nConffiles:\n".to_vec();
    conffiles.extend_from_slice(&b" /etc/x 0123456789abcdef0123456789abcdef\n".repeat(100_000));
    snapsentry_engine::packages::fuzz(&conffiles);
    let many: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("0123456789abcdef0123456789abcdef  usr/f{i}\n").into_bytes())
        .collect();
    snapsentry_engine::packages::fuzz(&many);
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn adversarial_shapes_finish_quickly() {
    let started = std::time::Instant::now();
    // A keyword every few bytes: windows merge, the regex work stays linear.
    snapsentry_engine::fuzz(&b"\x00AKIA".repeat(200_000));
    snapsentry_engine::fuzz(&b"password=x;".repeat(100_000));
    snapsentry_engine::fuzz(&b"-----BEGIN OPENSSH PRIVATE KEY-----\n".repeat(20_000));
    // The generic rules' keywords on every short line, and many on one long line (a fuzz seed's
    // first byte picks the path: 0x08 is /etc/app/app.ini).
    let mut lines = vec![0x08];
    lines.extend_from_slice(&b"\n$pass = 'x".repeat(100_000));
    snapsentry_engine::fuzz(&lines);
    let mut long = vec![0x08];
    long.extend_from_slice(&b" password: 'a token=b".repeat(50_000));
    snapsentry_engine::fuzz(&long);
    // Huge claimed DER lengths and deep nesting.
    let mut der = b"-----BEGIN RSA PRIVATE KEY-----\n".to_vec();
    der.extend_from_slice(&b"MIQ/////".repeat(100));
    der.extend_from_slice(b"\n-----END RSA PRIVATE KEY-----\n");
    snapsentry_engine::fuzz(&der);
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn prefilter_seed_corpus() {
    // Each seed, and its prefixes up to 512 bytes: the SIMD, scalar and naive keyword searches
    // agree (the fuzz entry panics otherwise).
    for (path, data) in corpus("prefilter") {
        eprintln!("prefilter: {}", path.display());
        snapsentry_engine::prefilter::fuzz(&data);
        for len in (0..data.len().min(512)).step_by(3) {
            snapsentry_engine::prefilter::fuzz(&data[..len]);
        }
    }
}
