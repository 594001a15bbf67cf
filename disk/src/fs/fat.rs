//! FAT12/16/32 reader (EFI system partitions, USB-style data disks).
//!
//! Layout: a boot sector with the BIOS parameter block (BPB), reserved sectors, one or more
//! copies of the file allocation table, (FAT12/16 only) a fixed-size root directory, then the
//! data clusters. The FAT type follows from the cluster count alone, as the specification says.
//!
//! A node is identified by the position of its 32-byte short directory entry: the entry's byte
//! offset in the volume divided by 32. The root, which has no entry, is [`ROOT`]. So metadata is
//! one 32-byte read and no table of nodes is kept.
//!
//! Times are stored in local time without a zone; they are read as UTC, which is what a cloud VM
//! (kernel timezone UTC) writes and what Linux `vfat` shows there.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::debug;

use crate::bytes::{le_u16, le_u32};
use crate::fs::{DirEntry, FileContent, FileKind, Filesystem, Metadata, NodeId, Timestamp};
use crate::source::BlockSource;
use crate::{DiskError, Result};

/// Node id of the root directory: no directory entry sits at byte offset 0 (the boot sector).
const ROOT: NodeId = 0;

/// Largest directory read: the specification limits a directory to 65536 entries.
const MAX_DIR_BYTES: u64 = 65536 * 32;

/// Largest FAT kept in memory; a bigger one is read entry by entry from the source.
const MAX_CACHED_FAT: u64 = 64 << 20;

const ATTR_READ_ONLY: u8 = 0x01;
const ATTR_HIDDEN: u8 = 0x02;
const ATTR_SYSTEM: u8 = 0x04;
const ATTR_VOLUME_ID: u8 = 0x08;
const ATTR_DIRECTORY: u8 = 0x10;
const ATTR_LFN: u8 = ATTR_READ_ONLY | ATTR_HIDDEN | ATTR_SYSTEM | ATTR_VOLUME_ID;

/// Contiguous byte ranges `(volume offset, length)` of a cluster chain.
type ByteRuns = Vec<(u64, u64)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

fn corrupt(detail: impl Into<String>) -> DiskError {
    DiskError::corrupt("fat", detail)
}

/// The BIOS parameter block fields this reader uses, validated.
#[derive(Clone, Debug)]
struct Bpb {
    bytes_per_sector: u64,
    sectors_per_cluster: u64,
    reserved_sectors: u64,
    num_fats: u64,
    root_entries: u64,
    total_sectors: u64,
    fat_sectors: u64,
    root_cluster: u32,
    label: Option<String>,
}

impl Bpb {
    fn parse(b: &[u8]) -> Result<Bpb> {
        if b.len() < 512 {
            return Err(corrupt("boot sector shorter than 512 bytes"));
        }
        if !matches!(b[0], 0xEB | 0xE9 | 0xE8) {
            return Err(corrupt(
                "boot sector does not start with a jump instruction",
            ));
        }
        if &b[3..11] == b"NTFS    " || &b[3..11] == b"EXFAT   " {
            return Err(corrupt("boot sector is NTFS or exFAT"));
        }
        let bytes_per_sector = u64::from(le_u16(b, 11).unwrap_or(0));
        if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) {
            return Err(corrupt(format!(
                "BPB bytes per sector is {bytes_per_sector}"
            )));
        }
        let sectors_per_cluster = u64::from(b[13]);
        if !sectors_per_cluster.is_power_of_two() {
            return Err(corrupt(format!(
                "BPB sectors per cluster is {sectors_per_cluster}"
            )));
        }
        let reserved_sectors = u64::from(le_u16(b, 14).unwrap_or(0));
        let num_fats = u64::from(b[16]);
        let root_entries = u64::from(le_u16(b, 17).unwrap_or(0));
        let total16 = u64::from(le_u16(b, 19).unwrap_or(0));
        let fat16 = u64::from(le_u16(b, 22).unwrap_or(0));
        let total32 = u64::from(le_u32(b, 32).unwrap_or(0));
        if reserved_sectors == 0 || !(1..=4).contains(&num_fats) {
            return Err(corrupt(format!(
                "BPB has {reserved_sectors} reserved sectors and {num_fats} FATs"
            )));
        }
        let total_sectors = if total16 != 0 { total16 } else { total32 };
        let (fat_sectors, root_cluster, label_off) = if fat16 != 0 {
            (fat16, 0, 43)
        } else {
            (
                u64::from(le_u32(b, 36).unwrap_or(0)),
                le_u32(b, 44).unwrap_or(0) & 0x0FFF_FFFF,
                71,
            )
        };
        if fat_sectors == 0 || total_sectors == 0 {
            return Err(corrupt("BPB has a zero FAT size or sector count"));
        }
        // The label field is valid only with the extended boot signature 0x29.
        let sig_off = label_off - 5 - 1;
        let label = if b[sig_off] == 0x29 {
            short_text(&b[label_off..label_off + 11])
        } else {
            None
        };
        Ok(Bpb {
            bytes_per_sector,
            sectors_per_cluster,
            reserved_sectors,
            num_fats,
            root_entries,
            total_sectors,
            fat_sectors,
            root_cluster,
            label,
        })
    }
}

/// An 11-byte space-padded label, `None` when blank or the "NO NAME" placeholder.
fn short_text(b: &[u8]) -> Option<String> {
    let s: String = b.iter().map(|&c| oem_char(c)).collect();
    let s = s.trim_end_matches([' ', '\0']).to_string();
    (!s.is_empty() && s != "NO NAME").then_some(s)
}

/// Upper half of code page 437, the OEM code page Linux `vfat` assumes by default.
const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

/// A byte of a short name. Short names are in an OEM code page that the volume does not record;
/// code page 437 is what Linux assumes (and agrees with 850, the mtools default, on letters).
fn oem_char(c: u8) -> char {
    match c {
        0x20..=0x7E if c != b'/' => c as char,
        0x80.. => CP437_HIGH
            .chars()
            .nth(usize::from(c - 0x80))
            .unwrap_or(char::REPLACEMENT_CHARACTER),
        _ => char::REPLACEMENT_CHARACTER,
    }
}

/// True when `head` (the first [`crate::volume::DETECT_LEN`] bytes of a volume, or fewer)
/// holds a FAT12/16/32 boot sector.
pub fn detect(head: &[u8]) -> bool {
    head.len() >= 512 && head[510] == 0x55 && head[511] == 0xAA && Bpb::parse(head).is_ok()
}

/// A FAT12/16/32 filesystem, read-only.
pub struct Fat {
    source: Arc<dyn BlockSource>,
    fat_type: FatType,
    cluster_size: u64,
    /// Clusters that exist (numbered 2..cluster_count+2) and fit in the source.
    cluster_count: u32,
    fat_offset: u64,
    /// The first FAT, when small enough to keep in memory.
    fat_cache: Option<Vec<u8>>,
    /// FAT12/16 fixed root directory: byte offset and length.
    root_region: (u64, u64),
    root_cluster: u32,
    data_offset: u64,
    label: Option<String>,
}

impl Fat {
    /// Open the FAT12/16/32 filesystem that `source` holds (one whole volume), validating its
    /// boot sector.
    pub fn open(source: Arc<dyn BlockSource>) -> Result<Self> {
        let mut boot = [0u8; 512];
        source.read_at(0, &mut boot)?;
        let bpb = Bpb::parse(&boot)?;
        let bps = bpb.bytes_per_sector;
        let root_dir_sectors = (bpb.root_entries * 32).div_ceil(bps);
        let fat_offset = bpb.reserved_sectors * bps;
        let root_offset = fat_offset + bpb.num_fats * bpb.fat_sectors * bps;
        let data_sector = bpb.reserved_sectors + bpb.num_fats * bpb.fat_sectors + root_dir_sectors;
        if data_sector >= bpb.total_sectors {
            return Err(corrupt(format!(
                "data region starts at sector {data_sector}, past the {} sectors of the volume",
                bpb.total_sectors
            )));
        }
        let declared_clusters = (bpb.total_sectors - data_sector) / bpb.sectors_per_cluster;
        let fat_type = if declared_clusters < 4085 {
            FatType::Fat12
        } else if declared_clusters < 65525 {
            FatType::Fat16
        } else {
            FatType::Fat32
        };
        if fat_type == FatType::Fat32 && (bpb.root_cluster < 2 || bpb.root_entries != 0) {
            return Err(corrupt(format!(
                "FAT32 root cluster {} / fixed root entries {}",
                bpb.root_cluster, bpb.root_entries
            )));
        }
        let cluster_size = bps * bpb.sectors_per_cluster;
        let data_offset = data_sector * bps;
        // Clusters the FAT can describe and the source holds; a hostile BPB may claim more.
        let fat_bytes = bpb.fat_sectors * bps;
        let fat_entries = match fat_type {
            FatType::Fat12 => fat_bytes * 2 / 3,
            FatType::Fat16 => fat_bytes / 2,
            FatType::Fat32 => fat_bytes / 4,
        };
        let in_source = source.size().saturating_sub(data_offset) / cluster_size;
        let cluster_count = declared_clusters
            .min(fat_entries.saturating_sub(2))
            .min(in_source)
            .min(0x0FFF_FFF5);
        let cluster_count = u32::try_from(cluster_count).unwrap_or(0x0FFF_FFF5);
        let fat_cache = if fat_bytes <= MAX_CACHED_FAT {
            // Only the part that describes existing clusters.
            let need = match fat_type {
                FatType::Fat12 => (u64::from(cluster_count) + 2) * 3 / 2 + 2,
                FatType::Fat16 => (u64::from(cluster_count) + 2) * 2,
                FatType::Fat32 => (u64::from(cluster_count) + 2) * 4,
            }
            .min(fat_bytes);
            let mut buf = vec![0u8; need as usize];
            source.read_at(fat_offset, &mut buf)?;
            Some(buf)
        } else {
            None
        };
        let mut fs = Fat {
            source,
            fat_type,
            cluster_size,
            cluster_count,
            fat_offset,
            fat_cache,
            root_region: (root_offset, bpb.root_entries * 32),
            root_cluster: bpb.root_cluster,
            data_offset,
            label: None,
        };
        debug!(?fat_type, cluster_count, cluster_size, "fat volume");
        // The label entry in the root directory wins over the BPB copy (that is what tools update).
        fs.label = fs.root_label().ok().flatten().or(bpb.label);
        Ok(fs)
    }

    fn root_label(&self) -> Result<Option<String>> {
        let (bytes, _) = self.dir_bytes(ROOT)?;
        for e in bytes.chunks_exact(32) {
            match e[0] {
                0x00 => break,
                0xE5 => continue,
                _ => {}
            }
            if e[11] & ATTR_LFN != ATTR_LFN && e[11] & ATTR_VOLUME_ID != 0 {
                return Ok(short_text(&e[0..11]));
            }
        }
        Ok(None)
    }

    /// The FAT entry of `cluster`.
    fn next_cluster(&self, cluster: u32) -> Result<u32> {
        let n = u64::from(cluster);
        let (off, width) = match self.fat_type {
            FatType::Fat12 => (n + n / 2, 2),
            FatType::Fat16 => (n * 2, 2),
            FatType::Fat32 => (n * 4, 4),
        };
        let mut raw = [0u8; 4];
        match &self.fat_cache {
            Some(fat) => {
                let s = usize::try_from(off)
                    .ok()
                    .and_then(|o| fat.get(o..o + width))
                    .ok_or_else(|| corrupt(format!("cluster {cluster} is past the FAT")))?;
                raw[..width].copy_from_slice(s);
            }
            None => self
                .source
                .read_at(self.fat_offset + off, &mut raw[..width])?,
        }
        let v = u32::from_le_bytes(raw);
        Ok(match self.fat_type {
            FatType::Fat12 if cluster & 1 == 1 => (v >> 4) & 0xFFF,
            FatType::Fat12 => v & 0xFFF,
            FatType::Fat16 => v & 0xFFFF,
            FatType::Fat32 => v & 0x0FFF_FFFF,
        })
    }

    fn is_end(&self, entry: u32) -> bool {
        entry
            >= match self.fat_type {
                FatType::Fat12 => 0xFF8,
                FatType::Fat16 => 0xFFF8,
                FatType::Fat32 => 0x0FFF_FFF8,
            }
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_offset + u64::from(cluster - 2) * self.cluster_size
    }

    /// Follow the chain from `first` for at most `max_clusters` clusters, as contiguous byte runs
    /// `(volume offset, length)`. A chain longer than the volume's cluster count must loop.
    fn chain(&self, first: u32, max_clusters: u64) -> Result<ByteRuns> {
        // Visited clusters as disjoint ranges start → end (exclusive), to detect a chain that
        // comes back to a cluster it already used: a loop, or two files sharing clusters.
        let mut seen: BTreeMap<u32, u32> = BTreeMap::new();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut cluster = first;
        let mut current: Option<u32> = None;
        let mut count = 0u64;
        while count < max_clusters {
            if cluster < 2 || cluster - 2 >= self.cluster_count {
                return Err(corrupt(format!(
                    "cluster chain from {first} reaches invalid cluster {cluster}"
                )));
            }
            count += 1;
            let extends = current.is_some_and(|start| seen.get(&start) == Some(&cluster));
            let revisit = if extends {
                seen.contains_key(&cluster)
            } else {
                seen.range(..=cluster)
                    .next_back()
                    .is_some_and(|(_, &end)| end > cluster)
            };
            if revisit {
                return Err(corrupt(format!(
                    "cluster chain from {first} loops at cluster {cluster}"
                )));
            }
            match current {
                Some(start) if extends => {
                    seen.insert(start, cluster + 1);
                }
                _ => {
                    seen.insert(cluster, cluster + 1);
                    current = Some(cluster);
                }
            }
            let off = self.cluster_offset(cluster);
            match runs.last_mut() {
                Some((start, len)) if *start + *len == off => *len += self.cluster_size,
                _ => runs.push((off, self.cluster_size)),
            }
            let next = self.next_cluster(cluster)?;
            if self.is_end(next) {
                break;
            }
            cluster = next;
        }
        Ok(runs)
    }

    /// Read the 32-byte short entry of `node`.
    fn entry(&self, node: NodeId) -> Result<[u8; 32]> {
        let off = node
            .checked_mul(32)
            .ok_or_else(|| DiskError::NotFound(format!("fat node {node}")))?;
        let mut e = [0u8; 32];
        self.source.read_at(off, &mut e)?;
        Ok(e)
    }

    fn first_cluster(&self, e: &[u8; 32]) -> u32 {
        let hi = if self.fat_type == FatType::Fat32 {
            u32::from(le_u16(e, 20).unwrap_or(0)) << 16
        } else {
            0
        };
        hi | u32::from(le_u16(e, 26).unwrap_or(0))
    }

    /// The raw bytes of directory `dir` and the volume offset of each byte run (to map entry
    /// index → node id).
    fn dir_bytes(&self, dir: NodeId) -> Result<(Vec<u8>, ByteRuns)> {
        let runs = if dir == ROOT {
            match self.fat_type {
                FatType::Fat32 => {
                    self.chain(self.root_cluster, MAX_DIR_BYTES.div_ceil(self.cluster_size))?
                }
                _ => vec![self.root_region],
            }
        } else {
            let e = self.entry(dir)?;
            if e[11] & ATTR_DIRECTORY == 0 {
                return Err(DiskError::NotFound(format!(
                    "fat node {dir} is not a directory"
                )));
            }
            let first = self.first_cluster(&e);
            if first == 0 {
                // A directory entry pointing at cluster 0 means the root; only `..` may do that.
                return Err(corrupt(format!("directory node {dir} has no clusters")));
            }
            self.chain(first, MAX_DIR_BYTES.div_ceil(self.cluster_size))?
        };
        let total: u64 = runs.iter().map(|r| r.1).sum::<u64>().min(MAX_DIR_BYTES);
        let mut buf = vec![0u8; total as usize];
        let mut at = 0usize;
        for &(off, len) in &runs {
            let len = (len as usize).min(buf.len() - at);
            self.source.read_at(off, &mut buf[at..at + len])?;
            at += len;
        }
        Ok((buf, runs))
    }
}

/// Volume offset of byte `pos` of a directory laid out in `runs`.
fn run_offset(runs: &[(u64, u64)], mut pos: u64) -> Option<u64> {
    for &(off, len) in runs {
        if pos < len {
            return Some(off + pos);
        }
        pos -= len;
    }
    None
}

/// Checksum of an 11-byte short name, stored in each of its long-name entries.
fn lfn_checksum(name: &[u8]) -> u8 {
    name.iter()
        .fold(0u8, |sum, &c| sum.rotate_right(1).wrapping_add(c))
}

/// The 8.3 name with the NT case flags applied (bit 3: lowercase base, bit 4: lowercase extension).
fn short_name(e: &[u8; 32]) -> String {
    let mut base: Vec<u8> = e[0..8].to_vec();
    if base[0] == 0x05 {
        base[0] = 0xE5;
    }
    let ext = &e[8..11];
    let lower_base = e[12] & 0x08 != 0;
    let lower_ext = e[12] & 0x10 != 0;
    let part = |b: &[u8], lower: bool| -> String {
        let s: String = b.iter().map(|&c| oem_char(c)).collect();
        let s = s.trim_end_matches(' ');
        if lower {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let base = part(&base, lower_base);
    let ext = part(ext, lower_ext);
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// A FAT date and time (time 0 for date-only fields); `None` when unset or invalid.
fn fat_time(date: u16, time: u16) -> Option<Timestamp> {
    if date == 0 {
        return None;
    }
    let year = 1980 + (date >> 9) as i16;
    let month = ((date >> 5) & 0xF) as i8;
    let day = (date & 0x1F) as i64;
    let (h, m, s) = (
        (time >> 11) as i8,
        ((time >> 5) & 0x3F) as i8,
        (time & 0x1F) as i8 * 2,
    );
    if !(1..=12).contains(&month) || day == 0 || h > 23 || m > 59 || s > 59 {
        return None;
    }
    // A day past the end of its month (February 30) rolls over into the next month, as the
    // plain day count always did: count days from the first of the month.
    let first = jiff::civil::Date::new(year, month, 1).ok()?;
    let date = first.checked_add(jiff::Span::new().days(day - 1)).ok()?;
    let at = date.at(h, m, s, 0).to_zoned(jiff::tz::TimeZone::UTC).ok()?;
    Some(Timestamp::new(at.timestamp().as_second(), 0))
}

impl Filesystem for Fat {
    fn kind(&self) -> &'static str {
        "vfat"
    }

    fn label(&self) -> Option<String> {
        self.label.clone()
    }

    fn root(&self) -> NodeId {
        ROOT
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        let (bytes, runs) = self.dir_bytes(dir)?;
        let mut out = Vec::new();
        // Long name parts collected so far: (checksum, next expected sequence, UTF-16 units by part).
        let mut lfn: Option<(u8, u8, Vec<[u16; 13]>)> = None;
        for (i, chunk) in bytes.chunks_exact(32).enumerate() {
            let Ok(e) = <[u8; 32]>::try_from(chunk) else {
                break;
            };
            match e[0] {
                0x00 => break,
                0xE5 => {
                    lfn = None;
                    continue;
                }
                _ => {}
            }
            let attr = e[11];
            if attr & 0x3F == ATTR_LFN {
                let seq = e[0];
                let ord = seq & 0x1F;
                let mut units = [0u16; 13];
                for (k, off) in [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30]
                    .into_iter()
                    .enumerate()
                {
                    units[k] = le_u16(&e, off).unwrap_or(0);
                }
                if seq & 0x40 != 0 && ord >= 1 {
                    lfn = Some((e[13], ord, vec![units]));
                } else if let Some((sum, expect, parts)) = &mut lfn {
                    if ord + 1 == *expect && ord >= 1 && *sum == e[13] {
                        *expect = ord;
                        parts.push(units);
                    } else {
                        lfn = None;
                    }
                }
                if let Some((_, expect, _)) = &mut lfn
                    && ord != *expect
                {
                    lfn = None;
                }
                continue;
            }
            let long = lfn.take();
            if attr & ATTR_VOLUME_ID != 0 {
                continue;
            }
            if &e[0..2] == b". " || &e[0..3] == b".. " {
                continue;
            }
            let name = match long {
                Some((sum, 1, parts)) if sum == lfn_checksum(&e[0..11]) => {
                    let units: Vec<u16> = parts
                        .iter()
                        .rev()
                        .flatten()
                        .copied()
                        .take_while(|&u| u != 0)
                        .collect();
                    String::from_utf16_lossy(&units)
                        .chars()
                        .map(|c| {
                            if c == '/' {
                                char::REPLACEMENT_CHARACTER
                            } else {
                                c
                            }
                        })
                        .collect()
                }
                _ => short_name(&e),
            };
            if name.is_empty() {
                continue;
            }
            let Some(off) = run_offset(&runs, i as u64 * 32) else {
                break;
            };
            let kind = if attr & ATTR_DIRECTORY != 0 {
                FileKind::Dir
            } else {
                FileKind::File
            };
            out.push(DirEntry {
                name,
                node: off / 32,
                kind: Some(kind),
            });
        }
        Ok(out)
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        if node == ROOT {
            return Ok(Metadata::new(FileKind::Dir, 0));
        }
        let e = self.entry(node)?;
        let dir = e[11] & ATTR_DIRECTORY != 0;
        let mut m = if dir {
            Metadata::new(FileKind::Dir, 0)
        } else {
            Metadata::new(FileKind::File, u64::from(le_u32(&e, 28).unwrap_or(0)))
        };
        m.modified = fat_time(le_u16(&e, 24).unwrap_or(0), le_u16(&e, 22).unwrap_or(0));
        m.accessed = fat_time(le_u16(&e, 18).unwrap_or(0), 0);
        m.created = fat_time(le_u16(&e, 16).unwrap_or(0), le_u16(&e, 14).unwrap_or(0)).map(|t| {
            // Byte 13: hundredths of a second, 0..=199, added to the 2-second time.
            let cs = u32::from(e[13].min(199));
            Timestamp::new(t.secs + i64::from(cs / 100), (cs % 100) * 10_000_000)
        });
        Ok(m)
    }

    fn open(&self, node: NodeId) -> Result<Box<dyn FileContent + '_>> {
        if node == ROOT {
            return Err(DiskError::NotFound("fat root is a directory".into()));
        }
        let e = self.entry(node)?;
        if e[11] & ATTR_DIRECTORY != 0 {
            return Err(DiskError::NotFound(format!(
                "fat node {node} is a directory"
            )));
        }
        let size = u64::from(le_u32(&e, 28).unwrap_or(0));
        let runs = if size == 0 {
            Vec::new()
        } else {
            let need = size.div_ceil(self.cluster_size);
            let runs = self.chain(self.first_cluster(&e), need)?;
            let have: u64 = runs.iter().map(|r| r.1).sum();
            if have < size {
                return Err(corrupt(format!(
                    "cluster chain of node {node} holds {have} bytes, file size is {size}"
                )));
            }
            runs
        };
        Ok(Box::new(FatFile {
            source: self.source.as_ref(),
            runs,
            size,
        }))
    }

    fn read_link(&self, node: NodeId) -> Result<String> {
        Err(DiskError::NotFound(format!(
            "fat node {node}: FAT has no symlinks"
        )))
    }
}

/// An open FAT file: its cluster chain as byte runs.
struct FatFile<'a> {
    source: &'a dyn BlockSource,
    runs: Vec<(u64, u64)>,
    size: u64,
}

impl FileContent for FatFile<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let want = super::readable(self.size, offset, buf.len());
        if want == 0 {
            return Ok(0);
        }
        let mut done = 0usize;
        let mut run_start = 0u64;
        for &(off, len) in &self.runs {
            let pos = offset + done as u64;
            if done == want {
                break;
            }
            if pos < run_start + len {
                let within = pos - run_start;
                let n = ((len - within) as usize).min(want - done);
                self.source
                    .read_at(off + within, &mut buf[done..done + n])?;
                done += n;
            }
            run_start += len;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert() {
        // 2023-11-14 22:13:20 → 1_700_000_000.
        let date = ((2023 - 1980) << 9) | (11 << 5) | 14;
        let time = (22 << 11) | (13 << 5) | 10;
        assert_eq!(fat_time(date, time), Some(Timestamp::new(1_700_000_000, 0)));
        assert_eq!(fat_time(0, 0), None);
        assert_eq!(fat_time((1 << 9) | (13 << 5) | 1, 0), None);
        // The limits of the format: 1980-01-01 and 2107-12-31 23:59:58.
        assert_eq!(
            fat_time((1 << 5) | 1, 0),
            Some(Timestamp::new(315_532_800, 0))
        );
        let last = (127 << 9) | (12 << 5) | 31;
        let time = (23 << 11) | (59 << 5) | 29;
        assert_eq!(fat_time(last, time), Some(Timestamp::new(4_354_819_198, 0)));
        // A day past the end of the month rolls over: 2023-02-30 is 2023-03-02.
        let feb30 = ((2023 - 1980) << 9) | (2 << 5) | 30;
        let mar2 = ((2023 - 1980) << 9) | (3 << 5) | 2;
        assert_eq!(fat_time(feb30, 0), fat_time(mar2, 0));
    }

    #[test]
    fn checksum_matches_reference_value() {
        // Computed independently (Python) with the specification's rotate-right-then-add.
        assert_eq!(lfn_checksum(b"FOO     BAR"), 83);
    }
}
