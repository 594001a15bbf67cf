//! From a block source to scannable volumes: image format → partition table → LVM → filesystem.
//!
//! [`open_disk`] never fails because of one bad volume: each volume carries its own error and the
//! others are still returned. It fails only when the disk as a whole is unusable (an image format
//! it cannot read, a source that cannot be read at all).

use std::sync::Arc;

use serde::Serialize;

use crate::fs::Filesystem;
use crate::source::{BlockSource, Slice};
use crate::{DiskError, Result};

/// A disk opened down to its volumes.
pub struct Disk {
    /// Container format detected from content: `raw`, `qcow2`, `vhd`, `vhdx`, `vmdk`.
    pub format: &'static str,
    /// Virtual size of the disk (what the VM sees), in bytes.
    pub size: u64,
    /// Partition scheme: `gpt`, `mbr` or `none`.
    pub scheme: &'static str,
    /// Every volume found, scanned or not: whole-disk or partitions in table order, then
    /// logical volumes.
    pub volumes: Vec<Volume>,
}

/// One volume: a partition, a logical volume or a whole-disk filesystem.
pub struct Volume {
    /// What is reported about the volume.
    pub info: VolumeInfo,
    /// The opened filesystem, when `info.scanned` is true.
    pub fs: Option<Arc<dyn Filesystem>>,
}

/// What the CLI and the Job report about a volume: one entry of the JSON output's `volumes`
/// (camelCase fields; `offset` is not serialised). Ids, and how LVM, encrypted and swap volumes
/// are listed, are in `docs/architecture.md` ("Volume ids").
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInfo {
    /// Stable id inside the disk: `p2` (partition 2), `disk` (no partition table),
    /// `p3/rootvg/rootlv` (logical volume `rootlv` of volume group `rootvg` on partition 3).
    pub id: String,
    /// 1-based partition number, `None` for a whole-disk filesystem.
    pub partition: Option<u32>,
    /// Partition scheme of the disk the volume is on: `gpt`, `mbr` or `none`.
    pub scheme: &'static str,
    /// Volume group and logical volume, for a logical volume.
    pub lvm: Option<LvmInfo>,
    /// Filesystem kind (`ext4`, `xfs`, `ntfs`, `vfat`, `btrfs`), `luks`/`bitlocker` for encrypted
    /// volumes, `lvm2` for a physical volume, or `None` when unrecognised.
    pub filesystem: Option<String>,
    /// Filesystem label, if set.
    pub label: Option<String>,
    /// Byte offset of the volume inside the disk and its size.
    #[serde(skip)]
    pub offset: u64,
    /// Size of the volume in bytes.
    pub size_bytes: u64,
    /// Whether the volume's filesystem was opened, to be walked (see `error` when not).
    pub scanned: bool,
    /// Why the volume was not scanned, in one line.
    pub error: Option<String>,
}

/// Logical volume identity.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LvmInfo {
    /// Volume group name.
    pub vg: String,
    /// Logical volume name.
    pub lv: String,
}

/// Bytes at the start of a volume that filesystem detection looks at (btrfs keeps its superblock
/// at 64 KiB).
pub const DETECT_LEN: usize = 128 * 1024;

/// Open a disk: detect the image format, read the partition table, expand LVM, open filesystems.
///
/// Volumes come in table order (GPT entry order, MBR primaries then logical partitions), then
/// the logical volumes of every volume group found, each after the partitions.
pub fn open_disk(source: Arc<dyn BlockSource>) -> Result<Disk> {
    let (format, image) = crate::image::open_image(source)?;
    let size = image.size();
    let table = match crate::table::read_table(image.as_ref()) {
        Ok(table) => table,
        Err(e @ (DiskError::Io { .. } | DiskError::OutOfBounds { .. })) => return Err(e),
        Err(e) => {
            // A GPT that is there but broken beyond use (or an image whose first clusters are):
            // the disk opens, with one volume saying why there is nothing to scan.
            let scheme = match &e {
                DiskError::Corrupt { what: "gpt", .. } | DiskError::Limit(_) => "gpt",
                _ => "none",
            };
            let mut info = VolumeInfo::new("disk".into(), None, scheme, 0, size);
            info.error = Some(e.to_string());
            return Ok(Disk {
                format,
                size,
                scheme,
                volumes: vec![Volume { info, fs: None }],
            });
        }
    };
    let scheme = table.scheme;
    let mut volumes = Vec::new();
    let mut pvs = Vec::new();
    if table.scheme == "none" {
        let info = VolumeInfo::new("disk".into(), None, scheme, 0, size);
        let (volume, pv) = classify(image.clone(), info, true);
        volumes.push(volume);
        pvs.extend(pv);
    }
    for p in &table.partitions {
        let id = format!("p{}", p.number);
        let mut info = VolumeInfo::new(id, Some(p.number), scheme, p.start, p.size);
        if let Some(error) = &p.error {
            info.error = Some(format!("partition {}: {error}", p.number));
            volumes.push(Volume { info, fs: None });
            continue;
        }
        match Slice::new(image.clone(), p.start, p.size) {
            Ok(slice) => {
                let (volume, pv) = classify(Arc::new(slice), info, true);
                volumes.push(volume);
                pvs.extend(pv);
            }
            Err(e) => {
                info.error = Some(format!(
                    "partition {} extends past the end of the disk: {e}",
                    p.number
                ));
                volumes.push(Volume { info, fs: None });
            }
        }
    }
    let lvs = logical_volumes(scheme, &pvs, &mut volumes);
    volumes.extend(lvs);
    for v in &volumes {
        tracing::info!(
            id = %v.info.id,
            filesystem = v.info.filesystem.as_deref().unwrap_or("-"),
            scanned = v.info.scanned,
            error = v.info.error.as_deref().unwrap_or(""),
            "volume"
        );
    }
    Ok(Disk {
        format,
        size,
        scheme,
        volumes,
    })
}

impl VolumeInfo {
    fn new(
        id: String,
        partition: Option<u32>,
        scheme: &'static str,
        offset: u64,
        size: u64,
    ) -> Self {
        VolumeInfo {
            id,
            partition,
            scheme,
            lvm: None,
            filesystem: None,
            label: None,
            offset,
            size_bytes: size,
            scanned: false,
            error: None,
        }
    }
}

/// An LVM physical volume found while classifying volumes.
struct FoundPv {
    /// Id of the volume holding it (`p3`, `disk`), the prefix of its LVs' ids.
    volume_id: String,
    partition: Option<u32>,
    offset: u64,
    pv: crate::lvm::PhysicalVolume,
    source: Arc<dyn BlockSource>,
}

/// What is on `source`: encrypted, LVM PV, swap, a filesystem, or nothing known.
/// `expand_lvm` is false inside a logical volume (a PV nested in an LV is reported, not opened).
fn classify(
    source: Arc<dyn BlockSource>,
    mut info: VolumeInfo,
    expand_lvm: bool,
) -> (Volume, Option<FoundPv>) {
    let len = DETECT_LEN.min(usize::try_from(source.size()).unwrap_or(DETECT_LEN));
    let mut head = vec![0u8; len];
    if let Err(e) = source.read_at(0, &mut head) {
        info.error = Some(e.to_string());
        return (Volume { info, fs: None }, None);
    }
    let encrypted = if head.starts_with(b"LUKS\xba\xbe") {
        Some("luks")
    } else if head.get(3..11) == Some(b"-FVE-FS-") {
        Some("bitlocker")
    } else {
        None
    };
    if let Some(scheme) = encrypted {
        info.filesystem = Some(scheme.into());
        info.error = Some(DiskError::Encrypted { scheme }.to_string());
        return (Volume { info, fs: None }, None);
    }
    if crate::lvm::detect(&head) {
        info.filesystem = Some("lvm2".into());
        if !expand_lvm {
            info.error = Some("LVM physical volume inside a logical volume, not opened".into());
            return (Volume { info, fs: None }, None);
        }
        info.error = Some("LVM physical volume: its logical volumes are listed separately".into());
        let pv = match crate::lvm::read_pv(source.as_ref()) {
            Ok(Some(pv)) => pv,
            Ok(None) => return (Volume { info, fs: None }, None),
            Err(e) => {
                info.error = Some(format!("LVM physical volume: {e}"));
                return (Volume { info, fs: None }, None);
            }
        };
        let found = FoundPv {
            volume_id: info.id.clone(),
            partition: info.partition,
            offset: info.offset,
            pv,
            source,
        };
        return (Volume { info, fs: None }, Some(found));
    }
    let swap = [4096usize, 8192, 16384, 65536].iter().any(|page| {
        matches!(
            head.get(page - 10..*page),
            Some(b"SWAPSPACE2" | b"SWAP-SPACE")
        )
    });
    if swap {
        info.filesystem = Some("swap".into());
        info.error = Some("swap space, not scanned".into());
        return (Volume { info, fs: None }, None);
    }
    match open_filesystem(source) {
        Ok(Some(fs)) => {
            info.filesystem = Some(fs.kind().into());
            info.label = fs.label();
            info.scanned = true;
            (Volume { info, fs: Some(fs) }, None)
        }
        Ok(None) => {
            info.error = Some("no known filesystem".into());
            (Volume { info, fs: None }, None)
        }
        Err(e) => {
            info.error = Some(e.to_string());
            (Volume { info, fs: None }, None)
        }
    }
}

/// One volume per visible logical volume of every volume group whose metadata the PVs hold.
/// When several PVs carry a VG's metadata, the copy with the highest sequence number wins.
fn logical_volumes(
    scheme: &'static str,
    pvs: &[FoundPv],
    pv_volumes: &mut [Volume],
) -> Vec<Volume> {
    use crate::lvm::VolumeGroup;
    use std::collections::HashMap;
    let mut groups: Vec<VolumeGroup> = Vec::new();
    for found in pvs {
        let Some(text) = &found.pv.metadata else {
            continue;
        };
        match VolumeGroup::parse(text) {
            Ok(vg) => match groups.iter_mut().find(|g| g.name == vg.name) {
                Some(g) if g.seqno < vg.seqno => *g = vg,
                Some(_) => {}
                None => groups.push(vg),
            },
            Err(e) => {
                if let Some(v) = pv_volumes.iter_mut().find(|v| v.info.id == found.volume_id) {
                    v.info.error = Some(format!("LVM physical volume: {e}"));
                }
            }
        }
    }
    let by_uuid: HashMap<String, Arc<dyn BlockSource>> = pvs
        .iter()
        .map(|f| (f.pv.uuid.clone(), f.source.clone()))
        .collect();
    let mut volumes = Vec::new();
    for vg in &groups {
        for lv in &vg.lvs {
            // The LV is named after the PV holding its first extent.
            let home = lv
                .layout
                .as_ref()
                .ok()
                .and_then(|segs| segs.first())
                .and_then(|seg| vg.pvs.get(&seg.pv))
                .and_then(|pv| pvs.iter().find(|f| f.pv.uuid == pv.uuid))
                .or_else(|| {
                    pvs.iter()
                        .find(|f| vg.pvs.values().any(|p| p.uuid == f.pv.uuid))
                });
            let (prefix, partition, offset) = home
                .map(|f| (f.volume_id.clone(), f.partition, f.offset))
                .unwrap_or_else(|| ("disk".into(), None, 0));
            let id = format!("{prefix}/{}/{}", vg.name, lv.name);
            let mut info = VolumeInfo::new(id, partition, scheme, offset, 0);
            info.lvm = Some(LvmInfo {
                vg: vg.name.clone(),
                lv: lv.name.clone(),
            });
            match vg.open_lv(lv, &by_uuid) {
                Ok(source) => {
                    info.size_bytes = source.size();
                    volumes.push(classify(source, info, false).0);
                }
                Err(e) => {
                    info.error = Some(e.to_string());
                    volumes.push(Volume { info, fs: None });
                }
            }
        }
    }
    volumes
}

/// Detect and open the filesystem on `source`. `Ok(None)` when no known filesystem is there.
pub fn open_filesystem(source: Arc<dyn BlockSource>) -> Result<Option<Arc<dyn Filesystem>>> {
    let len = DETECT_LEN.min(usize::try_from(source.size()).unwrap_or(DETECT_LEN));
    let mut head = vec![0u8; len];
    source.read_at(0, &mut head)?;
    use crate::fs::{btrfs, ext4, fat, ntfs, xfs};
    let fs: Arc<dyn Filesystem> = if ext4::detect(&head) {
        Arc::new(ext4::Ext4::open(source)?)
    } else if xfs::detect(&head) {
        Arc::new(xfs::Xfs::open(source)?)
    } else if ntfs::detect(&head) {
        Arc::new(ntfs::Ntfs::open(source)?)
    } else if btrfs::detect(&head) {
        Arc::new(btrfs::Btrfs::open(source)?)
    } else if fat::detect(&head) {
        Arc::new(fat::Fat::open(source)?)
    } else {
        return Ok(None);
    };
    Ok(Some(fs))
}
