//! The fuzz entry points: one function per cargo-fuzz target (`fuzz/fuzz_targets/<name>.rs`
//! calls `fuzzing::<name>`), also run on the seed corpus by the regression test
//! (`disk/tests/fuzz_corpus.rs`), so both exercise exactly the same code.
//!
//! Each entry drives a parser through its ordinary API as far as it will go on arbitrary bytes —
//! open, walk, read every file — with small limits, and ignores every error: the property checked
//! is "no panic, no hang, no unbounded allocation", not a result. This module calls the parsers;
//! no parser calls it.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::Result;
use crate::fs::btrfs::Btrfs;
use crate::fs::ext4::Ext4;
use crate::fs::fat::Fat;
use crate::fs::ntfs::Ntfs;
use crate::fs::xfs::Xfs;
use crate::fs::{FileKind, Filesystem};
use crate::image::{qcow2::Qcow2, vhd::Vhd, vhdx::Vhdx, vmdk::Vmdk};
use crate::lvm::{PhysicalVolume, VolumeGroup, read_pv};
use crate::source::{BlockSource, MemSource};
use crate::table::{gpt, mbr};
use crate::walk::{WalkLimits, walk};

/// Limits small enough that one fuzz input finishes in milliseconds.
fn fuzz_limits() -> WalkLimits {
    WalkLimits {
        max_depth: 32,
        max_nodes: 4096,
        max_path_len: 4096,
    }
}

/// Walk `fs` and read every regular file (at most 1 MiB of each).
fn exercise_fs(fs: &dyn Filesystem) {
    let mut files = Vec::new();
    let _ = walk(fs, &fuzz_limits(), |e| {
        if e.metadata.kind == FileKind::File && e.metadata.unreadable.is_none() {
            files.push(e.node);
        }
        ControlFlow::Continue(())
    });
    let mut buf = vec![0u8; 64 * 1024];
    for node in files {
        let Ok(mut content) = fs.open(node) else {
            continue;
        };
        let mut offset = 0u64;
        while offset < (1 << 20) {
            match content.read_at(offset, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => offset += n as u64,
            }
        }
    }
}

/// Open `data` as a volume with `open` and exercise the filesystem.
fn exercise_volume(
    data: &[u8],
    open: impl FnOnce(Arc<dyn BlockSource>) -> Result<Arc<dyn Filesystem>>,
) {
    let source: Arc<dyn BlockSource> = Arc::new(MemSource::new(data.to_vec()));
    if let Ok(fs) = open(source) {
        exercise_fs(fs.as_ref());
    }
}

/// Read a source end to end in 64 KiB steps (at most 64 MiB): drives image-format lookups.
fn exercise_source(source: &dyn BlockSource) {
    let mut buf = vec![0u8; 64 * 1024];
    let size = source.size().min(64 << 20);
    let mut offset = 0u64;
    while offset < size {
        let n = (size - offset).min(buf.len() as u64) as usize;
        if source.read_at(offset, &mut buf[..n]).is_err() {
            break;
        }
        offset += n as u64;
    }
}

/// Open `data` as an image with `open` and read the whole virtual disk.
fn exercise_image<S: BlockSource>(
    data: &[u8],
    open: impl FnOnce(Arc<dyn BlockSource>) -> Result<S>,
) {
    let source: Arc<dyn BlockSource> = Arc::new(MemSource::new(data.to_vec()));
    if let Ok(image) = open(source) {
        exercise_source(&image);
    }
}

/// The whole stack on arbitrary bytes: format, table, LVM, filesystems.
pub fn disk(data: &[u8]) {
    let source: Arc<dyn BlockSource> = Arc::new(MemSource::new(data.to_vec()));
    if let Ok(disk) = crate::volume::open_disk(source) {
        for v in disk.volumes {
            if let Some(fs) = v.fs {
                exercise_fs(fs.as_ref());
            }
        }
    }
}

/// Open `data` as a ext2/3/4 volume and walk and read everything.
pub fn ext4(data: &[u8]) {
    exercise_volume(data, |s| Ext4::open(s).map(|fs| Arc::new(fs) as _));
}

/// Open `data` as a XFS volume and walk and read everything.
pub fn xfs(data: &[u8]) {
    exercise_volume(data, |s| Xfs::open(s).map(|fs| Arc::new(fs) as _));
}

/// Open `data` as an NTFS volume and walk and read everything.
pub fn ntfs(data: &[u8]) {
    exercise_volume(data, |s| Ntfs::open(s).map(|fs| Arc::new(fs) as _));
}

/// Open `data` as a FAT12/16/32 volume and walk and read everything.
pub fn fat(data: &[u8]) {
    exercise_volume(data, |s| Fat::open(s).map(|fs| Arc::new(fs) as _));
}

/// Open `data` as a btrfs volume and walk and read everything.
pub fn btrfs(data: &[u8]) {
    exercise_volume(data, |s| Btrfs::open(s).map(|fs| Arc::new(fs) as _));
}

/// Open `data` as qcow2 and read the whole virtual disk.
pub fn qcow2(data: &[u8]) {
    exercise_image(data, Qcow2::open);
}

/// Open `data` as a VHD and read the whole virtual disk.
pub fn vhd(data: &[u8]) {
    exercise_image(data, Vhd::open);
}

/// Open `data` as a VHDX and read the whole virtual disk.
pub fn vhdx(data: &[u8]) {
    exercise_image(data, Vhdx::open);
}

/// Open `data` as a VMDK sparse extent and read the whole virtual disk.
pub fn vmdk(data: &[u8]) {
    exercise_image(data, Vmdk::open);
}

/// Read a GPT (primary or backup) from `data`.
pub fn gpt(data: &[u8]) {
    let disk = MemSource::new(data.to_vec());
    let _ = gpt::read(&disk);
}

/// Read an MBR (and its logical partitions) from `data`.
pub fn mbr(data: &[u8]) {
    let disk = MemSource::new(data.to_vec());
    let mut sector0 = [0u8; 512];
    if disk.read_at(0, &mut sector0).is_ok() && mbr::parse_sector(&sector0).is_some() {
        let _ = mbr::read(&disk, &sector0);
    }
}

/// Read a PV label and metadata from `data` (or take `data` as metadata text), parse the text
/// and open every LV.
pub fn lvm(data: &[u8]) {
    let source: Arc<dyn BlockSource> = Arc::new(MemSource::new(data.to_vec()));
    let text = match read_pv(source.as_ref()) {
        Ok(Some(PhysicalVolume {
            uuid,
            metadata: Some(text),
        })) => Some((uuid, text)),
        _ => None,
    };
    let (uuid, text) = text.unwrap_or_else(|| {
        (
            String::new(),
            String::from_utf8_lossy(data.get(..64 * 1024).unwrap_or(data)).into_owned(),
        )
    });
    if let Ok(vg) = VolumeGroup::parse(&text) {
        let pvs = HashMap::from([(uuid, source.clone())]);
        for lv in &vg.lvs {
            if let Ok(lv) = vg.open_lv(lv, &pvs) {
                let mut buf = [0u8; 4096];
                let _ = lv.read_at(0, &mut buf[..lv.size().min(4096) as usize]);
            }
        }
    }
}

/// Read `data` as an archive (tar, gzip, zip, nested) with small limits and touch every entry.
pub fn archive(data: &[u8]) {
    let limits = crate::archive::ArchiveLimits {
        max_depth: 3,
        max_entries: 256,
        max_entry_size: 1 << 20,
        max_total_bytes: 8 << 20,
        max_ratio: 100,
        max_name_len: 256,
    };
    let mut sum = 0usize;
    let _ = crate::archive::read_archive("fuzz.tar", data, &limits, &mut |e| {
        sum = sum.wrapping_add(e.data.len() + e.path.iter().map(String::len).sum::<usize>());
    });
    std::hint::black_box(sum);
}
