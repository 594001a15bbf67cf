//! Image formats against `qemu-img`: a raw image with known pseudo-random content and holes is
//! converted to every supported format, and every byte read through `open_image` must equal the
//! raw image. Truncated and corrupted copies must fail cleanly, never panic.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::tool;
use snapsentry_disk::DiskError;
use snapsentry_disk::image::open_image;
use snapsentry_disk::source::{BlockSource, FileSource, MemSource};

/// xorshift: deterministic pseudo-random bytes without a dependency.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// 6 MiB + 7 sectors: random data, with zeroed holes of several sizes and alignments, and an
/// all-zero tail so some clusters are never allocated.
fn raw_image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let len = (6 << 20) + 7 * 512;
    let mut data = noise(0x5eed, len);
    for (start, hole) in [
        (0usize, 512usize),
        (70_000, 200_000),
        (1 << 20, 1 << 20),
        (3 << 20, 65_536),
        (3 * (1 << 20) + 65_536 * 3 + 100, 4096),
        (5 << 20, len - (5 << 20) - 4096),
    ] {
        data[start..start + hole].fill(0);
    }
    // Text that compresses well, for the compressed formats.
    let text = b"snapsentry compressible text block ".repeat(2000);
    data[2 << 20..(2 << 20) + text.len()].copy_from_slice(&text);
    let path = dir.join("disk.raw");
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

fn convert(raw: &Path, dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut all = vec!["convert", "-f", "raw"];
    all.extend_from_slice(args);
    all.push(raw.to_str().unwrap());
    all.push(out.to_str().unwrap());
    tool("qemu-img", &all);
    out
}

/// Read `source` whole in odd-sized steps and compare with `want` (zeros past its end).
fn assert_same(source: &dyn BlockSource, want: &[u8], what: &str) {
    let size = source.size() as usize;
    assert!(
        size >= want.len(),
        "{what}: virtual size {size} < {}",
        want.len()
    );
    let mut got = vec![0u8; size];
    let mut off = 0;
    while off < size {
        let n = 100_003.min(size - off);
        source
            .read_at(off as u64, &mut got[off..off + n])
            .unwrap_or_else(|e| panic!("{what}: read at {off}: {e}"));
        off += n;
    }
    if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
        panic!("{what}: first difference at byte {i}");
    }
    assert!(
        got[want.len()..].iter().all(|&b| b == 0),
        "{what}: non-zero tail"
    );
    // Small reads that straddle cluster and grain boundaries.
    for (i, off) in [
        0usize,
        511,
        65_535,
        65_536 * 5 - 3,
        (2 << 20) - 1,
        want.len() - 9,
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = vec![0u8; 7 + i * 1000];
        let n = b.len().min(size - off);
        source.read_at(off as u64, &mut b[..n]).unwrap();
        assert_eq!(b[..n], got[off..off + n], "{what}: small read at {off}");
    }
    assert!(source.read_at(size as u64 - 1, &mut [0u8; 2]).is_err());
}

/// Truncated and byte-flipped copies: opening and reading everything must not panic, and a copy
/// cut in half must fail somewhere (open or read) — or, for a fixed VHD whose footer is cut off,
/// no longer be taken for its format (it is then indistinguishable from a raw image).
fn assert_hostile_copies_fail_cleanly(image: &[u8], format: &str, what: &str) {
    let read_all = |bytes: Vec<u8>| -> Result<&'static str, DiskError> {
        let (format, s) = open_image(Arc::new(MemSource::new(bytes)))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < s.size() {
            let n = (s.size() - off).min(buf.len() as u64) as usize;
            s.read_at(off, &mut buf[..n])?;
            off += n as u64;
        }
        Ok(format)
    };
    let half = image[..image.len() / 2].to_vec();
    if let Ok(got) = read_all(half) {
        assert_ne!(got, format, "{what}: half an image read without error");
    }
    for cut in [
        0,
        100,
        512,
        4096,
        70_000,
        image.len() - 1024,
        image.len() - 1,
    ] {
        let _ = read_all(image[..cut.min(image.len())].to_vec());
    }
    let mut x = 0x1234_5678u64;
    for round in 0..40 {
        let mut copy = image.to_vec();
        // Flip bytes in the first 1 MiB (headers, tables) and the last 64 KiB (footers, GDs).
        for _ in 0..8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let region = if round % 2 == 0 {
                (x as usize) % copy.len().min(1 << 20)
            } else {
                copy.len() - 1 - (x as usize) % copy.len().min(65_536)
            };
            copy[region] ^= (x >> 32) as u8 | 1;
        }
        let _ = read_all(copy);
    }
}

fn check(dir: &Path, raw: &Path, want: &[u8], name: &str, format: &str, args: &[&str]) {
    let path = convert(raw, dir, name, args);
    let (got_format, source) = open_image(Arc::new(FileSource::open(&path).unwrap())).unwrap();
    assert_eq!(got_format, format, "{name}");
    assert_same(source.as_ref(), want, name);
    // qemu's own reading of the image is the oracle for the virtual size, except for a fixed
    // VHD, which qemu sizes by its file length while this reader trusts the footer's current
    // size, as Hyper-V and Azure do (both hold the whole raw image; `assert_same` checked).
    let back = dir.join(format!("{name}.back"));
    tool(
        "qemu-img",
        &[
            "convert",
            "-O",
            "raw",
            path.to_str().unwrap(),
            back.to_str().unwrap(),
        ],
    );
    let qemu_size = std::fs::metadata(&back).unwrap().len();
    if name != "fixed.vhd" {
        assert_eq!(qemu_size, source.size(), "{name}: virtual size");
    }
    assert_hostile_copies_fail_cleanly(&std::fs::read(&path).unwrap(), format, name);
}

fn setup() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (raw, data) = raw_image(dir.path());
    (dir, raw, data)
}

#[test]
fn raw_is_raw() {
    let (_dir, raw, want) = setup();
    let (format, source) = open_image(Arc::new(FileSource::open(&raw).unwrap())).unwrap();
    assert_eq!(format, "raw");
    assert_same(source.as_ref(), &want, "raw");
}

#[test]
fn qcow2_v3_v2_and_compressed() {
    let (dir, raw, want) = setup();
    let d = dir.path();
    check(d, &raw, &want, "v3.qcow2", "qcow2", &["-O", "qcow2"]);
    check(
        d,
        &raw,
        &want,
        "v2.qcow2",
        "qcow2",
        &["-O", "qcow2", "-o", "compat=0.10"],
    );
    check(d, &raw, &want, "c.qcow2", "qcow2", &["-O", "qcow2", "-c"]);
    check(
        d,
        &raw,
        &want,
        "c4k.qcow2",
        "qcow2",
        &["-O", "qcow2", "-c", "-o", "cluster_size=4096"],
    );
    check(
        d,
        &raw,
        &want,
        "big.qcow2",
        "qcow2",
        &["-O", "qcow2", "-o", "cluster_size=2M"],
    );
}

#[test]
fn qcow2_zero_clusters() {
    // A v3 image written by qemu-io with zero clusters over allocated data.
    let (dir, raw, mut want) = setup();
    let d = dir.path();
    let path = convert(&raw, d, "z.qcow2", &["-O", "qcow2"]);
    tool(
        "qemu-io",
        &[
            "-f",
            "qcow2",
            "-c",
            "write -z 131072 131072",
            path.to_str().unwrap(),
        ],
    );
    want[131_072..262_144].fill(0);
    let (_, source) = open_image(Arc::new(FileSource::open(&path).unwrap())).unwrap();
    assert_same(source.as_ref(), &want, "zero clusters");
}

#[test]
fn qcow2_unsupported_features_are_named() {
    let (dir, raw, _) = setup();
    let d = dir.path();
    let base = convert(&raw, d, "base.qcow2", &["-O", "qcow2"]);
    let overlay = d.join("overlay.qcow2");
    tool(
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-F",
            "qcow2",
            "-b",
            base.to_str().unwrap(),
            overlay.to_str().unwrap(),
        ],
    );
    let ext = convert(
        &raw,
        d,
        "ext.qcow2",
        &["-O", "qcow2", "-o", "extended_l2=on"],
    );
    let zstd = convert(
        &raw,
        d,
        "zstd.qcow2",
        &["-O", "qcow2", "-o", "compression_type=zstd"],
    );
    let enc = d.join("enc.qcow2");
    let create_encrypted = [
        "create",
        "--object",
        "secret,id=s0,data=pw",
        "-f",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10",
        enc.to_str().unwrap(),
        "1M",
    ];
    // qemu-img times its LUKS key derivation by the thread's CPU time, and on a loaded machine
    // it sometimes reads no progress ("Unable to get accurate CPU usage"): try again then.
    for attempt in 1.. {
        let out = std::process::Command::new("qemu-img")
            .args(create_encrypted)
            .output()
            .expect("qemu-img (scripts/toolchain.sh installs it)");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            break;
        }
        assert!(
            attempt < 3 && stderr.contains("Unable to get accurate CPU usage"),
            "qemu-img {create_encrypted:?} failed ({}):\n{stderr}",
            out.status
        );
    }
    for (path, word) in [
        (overlay, "backing"),
        (ext, "extended"),
        (zstd, "zstd"),
        (enc, "encrypted"),
    ] {
        let err = open_image(Arc::new(FileSource::open(&path).unwrap()))
            .err()
            .unwrap();
        assert!(
            matches!(err, DiskError::Unsupported { .. }) && err.to_string().contains(word),
            "{}: {err}",
            path.display()
        );
    }
}

#[test]
fn vhd_dynamic_and_fixed() {
    let (dir, raw, want) = setup();
    let d = dir.path();
    check(
        d,
        &raw,
        &want,
        "dyn.vhd",
        "vhd",
        &["-O", "vpc", "-o", "subformat=dynamic"],
    );
    check(
        d,
        &raw,
        &want,
        "fixed.vhd",
        "vhd",
        &["-O", "vpc", "-o", "subformat=fixed"],
    );
    check(
        d,
        &raw,
        &want,
        "forced.vhd",
        "vhd",
        &["-O", "vpc", "-o", "subformat=dynamic,force_size=on"],
    );
}

#[test]
fn vhdx() {
    let (dir, raw, want) = setup();
    let d = dir.path();
    check(d, &raw, &want, "d.vhdx", "vhdx", &["-O", "vhdx"]);
    check(
        d,
        &raw,
        &want,
        "b.vhdx",
        "vhdx",
        &["-O", "vhdx", "-o", "block_size=1M,log_size=1M"],
    );
    check(
        d,
        &raw,
        &want,
        "f.vhdx",
        "vhdx",
        &["-O", "vhdx", "-o", "subformat=fixed"],
    );
}

#[test]
fn vmdk_sparse_and_stream_optimized() {
    let (dir, raw, want) = setup();
    let d = dir.path();
    check(
        d,
        &raw,
        &want,
        "s.vmdk",
        "vmdk",
        &["-O", "vmdk", "-o", "subformat=monolithicSparse"],
    );
    check(
        d,
        &raw,
        &want,
        "so.vmdk",
        "vmdk",
        &["-O", "vmdk", "-o", "subformat=streamOptimized"],
    );
}

#[test]
fn vmdk_descriptor_files_are_unsupported() {
    let (dir, raw, _) = setup();
    let d = dir.path();
    for sub in ["monolithicFlat", "twoGbMaxExtentSparse"] {
        let path = convert(
            &raw,
            d,
            &format!("{sub}.vmdk"),
            &["-O", "vmdk", "-o", &format!("subformat={sub}")],
        );
        let err = open_image(Arc::new(FileSource::open(&path).unwrap()))
            .err()
            .unwrap();
        assert!(matches!(err, DiskError::Unsupported { .. }), "{sub}: {err}");
    }
}
