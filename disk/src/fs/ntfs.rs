//! NTFS reader: every Windows VM's system volume.
//!
//! Everything on NTFS is a record of the master file table (MFT), itself a file (record 0) whose
//! data runs are found from the boot sector. A record holds attributes: resident ones inline,
//! non-resident ones as run lists of clusters; a record too small for its attributes spreads them
//! over extension records listed by an `$ATTRIBUTE_LIST`. Directories are B-trees of
//! `$FILE_NAME` keys, in `$INDEX_ROOT` and in INDX blocks of `$INDEX_ALLOCATION`; this reader lists
//! every in-use entry of every in-use block instead of descending the tree, so a damaged tree
//! still lists what it can and a looping one cannot hang it.
//!
//! A node is an MFT record number; the root directory is record 5. Metadata comes from
//! `$STANDARD_INFORMATION` (times) and the unnamed `$DATA` stream (size). Named streams (ADS)
//! are ignored. Compressed and EFS-encrypted files are reported unreadable.

use std::collections::HashSet;
use std::sync::Arc;

use tracing::debug;

use crate::bytes::{array, le_u16, le_u32, le_u64, utf16_le_units};
use crate::fs::{DirEntry, FileContent, FileKind, Filesystem, Metadata, NodeId, Timestamp};
use crate::source::BlockSource;
use crate::{DiskError, Result};

const ROOT_RECORD: u64 = 5;
const VOLUME_RECORD: u64 = 3;
/// Records 0..24 are reserved for the filesystem's own metadata files.
const FIRST_USER_RECORD: u64 = 24;
/// The record-number part of a file reference.
const RECORD_MASK: u64 = (1 << 48) - 1;

const AT_STANDARD_INFORMATION: u32 = 0x10;
const AT_ATTRIBUTE_LIST: u32 = 0x20;
const AT_VOLUME_NAME: u32 = 0x60;
const AT_DATA: u32 = 0x80;
const AT_INDEX_ROOT: u32 = 0x90;
const AT_INDEX_ALLOCATION: u32 = 0xA0;
const AT_BITMAP: u32 = 0xB0;
const AT_REPARSE_POINT: u32 = 0xC0;
const AT_END: u32 = 0xFFFF_FFFF;

const ATTR_FLAG_COMPRESSED: u16 = 0x00FF;
const ATTR_FLAG_ENCRYPTED: u16 = 0x4000;
const FILE_ATTR_COMPRESSED: u32 = 0x0800;
const FILE_ATTR_ENCRYPTED: u32 = 0x4000;

const TAG_MOUNT_POINT: u32 = 0xA000_0003;
const TAG_SYMLINK: u32 = 0xA000_000C;
const TAG_LX_SYMLINK: u32 = 0xA000_001D;
const TAG_DEDUP: u32 = 0x8000_0013;
const TAG_WOF: u32 = 0x8000_0017;

/// Caps against hostile input.
const MAX_RUNS: usize = 1 << 20;
const MAX_ATTR_LIST: u64 = 1 << 20;
const MAX_EXTENSION_RECORDS: usize = 512;
const MAX_RESIDENT_READ: u64 = 1 << 20;
const MAX_INDEX_BLOCKS: u64 = 1 << 20;
const MAX_DIR_ENTRIES: usize = 4 << 20;
const MAX_REPARSE: u64 = 64 * 1024;
/// Highest virtual cluster number accepted: keeps `vcn * cluster_size` (at most 2 MiB) inside
/// `u64` while allowing streams of petabytes.
const MAX_VCN: u64 = 1 << 42;

fn corrupt(what: &'static str, detail: impl Into<String>) -> DiskError {
    DiskError::corrupt(what, detail)
}

fn utf16_name(b: &[u8]) -> String {
    let units: Vec<u16> = utf16_le_units(b).collect();
    String::from_utf16_lossy(&units)
}

/// Apply the update sequence array of a multi-sector record (`FILE` or `INDX`) in place.
fn apply_fixups(what: &'static str, rec: &mut [u8]) -> Result<()> {
    let usa_off = usize::from(le_u16(rec, 4).unwrap_or(0));
    let usa_count = usize::from(le_u16(rec, 6).unwrap_or(0));
    if usa_count == 0 || (usa_count - 1) * 512 > rec.len() {
        return Err(corrupt(what, format!("update sequence count {usa_count}")));
    }
    let usn = array::<2>(rec, usa_off)
        .ok_or_else(|| corrupt(what, "update sequence array out of record"))?;
    for i in 1..usa_count {
        let fix = array::<2>(rec, usa_off + 2 * i)
            .ok_or_else(|| corrupt(what, "update sequence array out of record"))?;
        let end = i * 512;
        let slot = rec
            .get_mut(end - 2..end)
            .ok_or_else(|| corrupt(what, "update sequence past record"))?;
        if slot != usn {
            return Err(corrupt(
                what,
                format!("update sequence mismatch in sector {i} (torn write)"),
            ));
        }
        slot.copy_from_slice(&fix);
    }
    Ok(())
}

/// One run of a non-resident attribute: `len` clusters from virtual cluster `vcn`, at logical
/// cluster `lcn` or sparse (`None`).
#[derive(Clone, Copy, Debug)]
struct Run {
    vcn: u64,
    lcn: Option<u64>,
    len: u64,
}

/// Decode a run list starting at virtual cluster `start_vcn`, checking every run lies inside the
/// volume's `total_clusters`.
fn decode_runs(b: &[u8], start_vcn: u64, total_clusters: u64, out: &mut Vec<Run>) -> Result<()> {
    const WHAT: &str = "ntfs run list";
    let mut pos = 0usize;
    let mut vcn = start_vcn;
    let mut lcn: i64 = 0;
    loop {
        let Some(&header) = b.get(pos) else {
            return Err(corrupt(WHAT, "run list runs past its attribute"));
        };
        if header == 0 {
            return Ok(());
        }
        let len_size = usize::from(header & 0x0F);
        let off_size = usize::from(header >> 4);
        if len_size == 0 || len_size > 8 || off_size > 8 {
            return Err(corrupt(WHAT, format!("run header {header:#04x}")));
        }
        let field = |start: usize, size: usize, signed: bool| -> Result<i64> {
            let s = b
                .get(start..start + size)
                .ok_or_else(|| corrupt(WHAT, "run list runs past its attribute"))?;
            let mut v = [0u8; 8];
            v[..size].copy_from_slice(s);
            if signed && size < 8 && s[size - 1] & 0x80 != 0 {
                v[size..].fill(0xFF);
            }
            Ok(i64::from_le_bytes(v))
        };
        let len = field(pos + 1, len_size, false)? as u64;
        if len == 0 || len > total_clusters {
            return Err(corrupt(WHAT, format!("run of {len} clusters")));
        }
        let run_lcn = if off_size == 0 {
            None
        } else {
            let delta = field(pos + 1 + len_size, off_size, true)?;
            lcn = lcn
                .checked_add(delta)
                .ok_or_else(|| corrupt(WHAT, "cluster number overflows"))?;
            let start = u64::try_from(lcn)
                .map_err(|_| corrupt(WHAT, format!("negative cluster number {lcn}")))?;
            if start
                .checked_add(len)
                .is_none_or(|end| end > total_clusters)
            {
                return Err(corrupt(
                    WHAT,
                    format!(
                        "run of {len} clusters at {start} is past the volume ({total_clusters} clusters)"
                    ),
                ));
            }
            Some(start)
        };
        if out.len() >= MAX_RUNS {
            return Err(DiskError::Limit(format!("more than {MAX_RUNS} runs")));
        }
        out.push(Run {
            vcn,
            lcn: run_lcn,
            len,
        });
        vcn = vcn
            .checked_add(len)
            .filter(|&v| v <= MAX_VCN)
            .ok_or_else(|| corrupt(WHAT, format!("virtual cluster number past {MAX_VCN}")))?;
        pos += 1 + len_size + off_size;
    }
}

/// An attribute taken out of its record.
#[derive(Clone, Debug)]
struct Attr {
    ty: u32,
    name: String,
    flags: u16,
    body: AttrBody,
}

#[derive(Clone, Debug)]
enum AttrBody {
    Resident(Vec<u8>),
    NonResident {
        start_vcn: u64,
        runs: Vec<Run>,
        /// Why the run list is unusable (checked when the content is read, so one bad attribute
        /// does not hide the whole record).
        bad_runs: Option<String>,
        data_size: u64,
        init_size: u64,
        compression_unit: u16,
    },
}

impl AttrBody {
    /// The runs of a non-resident attribute, or the reason they cannot be used.
    fn runs(&self) -> Result<&[Run]> {
        match self {
            AttrBody::NonResident {
                bad_runs: Some(e), ..
            } => Err(corrupt("ntfs run list", e.clone())),
            AttrBody::NonResident { runs, .. } => Ok(runs),
            AttrBody::Resident(_) => Ok(&[]),
        }
    }
}

/// A parsed MFT record (with its extension records merged in).
struct Record {
    flags: u16,
    attrs: Vec<Attr>,
}

impl Record {
    fn in_use(&self) -> bool {
        self.flags & 0x01 != 0
    }
    fn is_dir(&self) -> bool {
        self.flags & 0x02 != 0
    }
    fn find(&self, ty: u32, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.ty == ty && a.name == name)
    }
}

/// Geometry and the MFT's own runs.
pub struct Ntfs {
    source: Arc<dyn BlockSource>,
    cluster_size: u64,
    total_clusters: u64,
    record_size: u64,
    mft_runs: Vec<Run>,
    mft_size: u64,
    label: Option<String>,
}

/// True when `head` (the first [`crate::volume::DETECT_LEN`] bytes of a volume, or fewer)
/// holds an NTFS boot sector.
pub fn detect(head: &[u8]) -> bool {
    head.get(3..11) == Some(b"NTFS    ")
}

impl Ntfs {
    /// Open the NTFS filesystem that `source` holds (one whole volume), validating its
    /// boot sector.
    pub fn open(source: Arc<dyn BlockSource>) -> Result<Self> {
        const WHAT: &str = "ntfs boot sector";
        let mut boot = [0u8; 512];
        source.read_at(0, &mut boot)?;
        if !detect(&boot) {
            return Err(corrupt(WHAT, "no NTFS signature"));
        }
        let bps = u64::from(le_u16(&boot, 11).unwrap_or(0));
        if !matches!(bps, 256 | 512 | 1024 | 2048 | 4096) {
            return Err(corrupt(WHAT, format!("bytes per sector {bps}")));
        }
        let spc_raw = boot[13];
        let cluster_size = if spc_raw <= 0x80 {
            u64::from(spc_raw) * bps
        } else {
            // Large clusters: 2^(256 - value) sectors.
            1u64.checked_shl(256 - u32::from(spc_raw)).unwrap_or(0) * bps
        };
        if !cluster_size.is_power_of_two() || cluster_size > (2 << 20) {
            return Err(corrupt(WHAT, format!("cluster size {cluster_size}")));
        }
        let total_sectors = le_u64(&boot, 40).unwrap_or(0);
        let total_clusters = (total_sectors.saturating_mul(bps) / cluster_size)
            .min(source.size() / cluster_size + 1);
        let mft_lcn = le_u64(&boot, 48).unwrap_or(0);
        let size_byte = |v: u8| -> u64 {
            let v = v as i8;
            if v < 0 {
                1u64.checked_shl(u32::from(v.unsigned_abs())).unwrap_or(0)
            } else {
                u64::from(v as u8) * cluster_size
            }
        };
        let record_size = size_byte(boot[64]);
        if !record_size.is_power_of_two() || !(512..=65536).contains(&record_size) {
            return Err(corrupt(WHAT, format!("MFT record size {record_size}")));
        }
        if mft_lcn == 0 || mft_lcn >= total_clusters {
            return Err(corrupt(WHAT, format!("MFT at cluster {mft_lcn}")));
        }
        let mut fs = Ntfs {
            source,
            cluster_size,
            total_clusters,
            record_size,
            // Until record 0 is read, map just enough of the MFT to read it.
            mft_runs: vec![Run {
                vcn: 0,
                lcn: Some(mft_lcn),
                len: record_size.div_ceil(cluster_size),
            }],
            mft_size: record_size,
            label: None,
        };
        // Bootstrap: the base record's own $DATA extent first, then again with extensions.
        let base = fs.read_record_raw(0)?;
        let (_, attrs) = fs.parse_record(&base, 0)?;
        let mft_data = attrs
            .into_iter()
            .find(|a| a.ty == AT_DATA && a.name.is_empty())
            .ok_or_else(|| corrupt("ntfs $MFT", "no $DATA attribute"))?;
        fs.set_mft(&mft_data)?;
        let record = fs.record(0)?;
        let mft_data = record
            .find(AT_DATA, "")
            .ok_or_else(|| corrupt("ntfs $MFT", "no $DATA attribute"))?
            .clone();
        fs.set_mft(&mft_data)?;
        fs.label = fs.volume_label().ok().flatten();
        debug!(
            cluster_size,
            record_size,
            records = fs.mft_size / record_size,
            "ntfs volume"
        );
        Ok(fs)
    }

    fn set_mft(&mut self, data: &Attr) -> Result<()> {
        data.body.runs()?;
        match &data.body {
            AttrBody::NonResident {
                runs, data_size, ..
            } if !runs.is_empty() => {
                self.mft_runs = runs.clone();
                self.mft_size = *data_size;
                Ok(())
            }
            _ => Err(corrupt("ntfs $MFT", "$DATA is resident or empty")),
        }
    }

    fn volume_label(&self) -> Result<Option<String>> {
        let rec = self.record(VOLUME_RECORD)?;
        Ok(match rec.find(AT_VOLUME_NAME, "") {
            Some(Attr {
                body: AttrBody::Resident(v),
                ..
            }) if !v.is_empty() => Some(utf16_name(v)),
            _ => None,
        })
    }

    /// Read `buf.len()` bytes at `offset` of a non-resident stream; sparse runs and bytes past
    /// `init_size` read as zeros. Bytes past the last run are an error.
    fn read_runs(&self, runs: &[Run], init_size: u64, offset: u64, buf: &mut [u8]) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let vcn = pos / self.cluster_size;
            let idx = runs.partition_point(|r| r.vcn + r.len <= vcn);
            let run = runs
                .get(idx)
                .filter(|r| r.vcn <= vcn)
                .ok_or_else(|| corrupt("ntfs run list", format!("no run maps cluster {vcn}")))?;
            let run_end = (run.vcn + run.len) * self.cluster_size;
            let n = ((run_end - pos) as usize).min(buf.len() - done);
            let chunk = &mut buf[done..done + n];
            match run.lcn {
                Some(lcn) if pos < init_size => {
                    let disk = lcn * self.cluster_size + (pos - run.vcn * self.cluster_size);
                    self.source.read_at(disk, chunk)?;
                    if pos + n as u64 > init_size {
                        chunk[(init_size - pos) as usize..].fill(0);
                    }
                }
                _ => chunk.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// The raw record `n` with fixups applied.
    fn read_record_raw(&self, n: u64) -> Result<Vec<u8>> {
        let off = n
            .checked_mul(self.record_size)
            .filter(|&o| o.saturating_add(self.record_size) <= self.mft_size)
            .ok_or_else(|| DiskError::NotFound(format!("ntfs MFT record {n}")))?;
        let mut rec = vec![0u8; self.record_size as usize];
        self.read_runs(&self.mft_runs, u64::MAX, off, &mut rec)?;
        if &rec[0..4] != b"FILE" {
            return Err(corrupt(
                "ntfs MFT record",
                format!("record {n} has no FILE magic"),
            ));
        }
        apply_fixups("ntfs MFT record", &mut rec)?;
        Ok(rec)
    }

    /// Flags, and the attributes of one record (without following an attribute list).
    fn parse_record(&self, rec: &[u8], n: u64) -> Result<(u16, Vec<Attr>)> {
        const WHAT: &str = "ntfs MFT record";
        let flags = le_u16(rec, 22).unwrap_or(0);
        let used = (le_u32(rec, 24).unwrap_or(0) as usize).min(rec.len());
        let mut pos = usize::from(le_u16(rec, 20).unwrap_or(0));
        let mut attrs = Vec::new();
        while pos + 8 <= used {
            let ty = le_u32(rec, pos).unwrap_or(AT_END);
            if ty == AT_END {
                break;
            }
            let len = le_u32(rec, pos + 4).unwrap_or(0) as usize;
            if len < 16 || !len.is_multiple_of(8) || pos + len > used {
                return Err(corrupt(
                    WHAT,
                    format!("record {n}: attribute {ty:#x} has length {len}"),
                ));
            }
            let a = &rec[pos..pos + len];
            pos += len;
            let non_resident = a[8] != 0;
            let name_len = usize::from(a[9]);
            let name_off = usize::from(le_u16(a, 10).unwrap_or(0));
            let name = a
                .get(name_off..name_off + 2 * name_len)
                .map(utf16_name)
                .ok_or_else(|| {
                    corrupt(WHAT, format!("record {n}: attribute name out of bounds"))
                })?;
            let flags = le_u16(a, 12).unwrap_or(0);
            let body = if !non_resident {
                let vlen = le_u32(a, 16).unwrap_or(0) as usize;
                let voff = usize::from(le_u16(a, 20).unwrap_or(0));
                let v = a.get(voff..voff.saturating_add(vlen)).ok_or_else(|| {
                    corrupt(WHAT, format!("record {n}: resident value out of bounds"))
                })?;
                AttrBody::Resident(v.to_vec())
            } else {
                let (Some(start_vcn), Some(roff), Some(data_size), Some(init_size)) =
                    (le_u64(a, 16), le_u16(a, 32), le_u64(a, 48), le_u64(a, 56))
                else {
                    return Err(corrupt(
                        WHAT,
                        format!("record {n}: non-resident header truncated"),
                    ));
                };
                let mut runs = Vec::new();
                let rl = a.get(usize::from(roff)..).unwrap_or(&[]);
                let bad_runs = decode_runs(rl, start_vcn, self.total_clusters, &mut runs)
                    .err()
                    .map(|e| format!("record {n}, attribute {ty:#x}: {e}"));
                AttrBody::NonResident {
                    start_vcn,
                    runs,
                    bad_runs,
                    data_size,
                    init_size,
                    compression_unit: le_u16(a, 34).unwrap_or(0),
                }
            };
            attrs.push(Attr {
                ty,
                name,
                flags,
                body,
            });
        }
        Ok((flags, attrs))
    }

    /// Record `n` with the attributes of its extension records merged in.
    /// `node` is a file reference: record number in the low 48 bits, and in the high 16 the
    /// sequence number the directory entry expects (0: any). A mismatch means the entry is stale
    /// (the record was freed and reused), so the node is reported missing rather than misnamed.
    fn record(&self, node: NodeId) -> Result<Record> {
        let n = node & RECORD_MASK;
        let raw = self.read_record_raw(n)?;
        let want_seq = (node >> 48) as u16;
        let seq = le_u16(&raw, 16).unwrap_or(0);
        if want_seq != 0 && seq != want_seq {
            return Err(DiskError::NotFound(format!(
                "ntfs record {n}: stale directory entry (sequence {want_seq}, record has {seq})"
            )));
        }
        let (flags, mut attrs) = self.parse_record(&raw, n)?;
        if let Some(list) = attrs.iter().find(|a| a.ty == AT_ATTRIBUTE_LIST).cloned() {
            let list = self.attr_bytes(&list, MAX_ATTR_LIST)?;
            let mut extensions: Vec<u64> = Vec::new();
            let mut pos = 0usize;
            while pos + 26 <= list.len() {
                let len = usize::from(le_u16(&list, pos + 4).unwrap_or(0));
                let reference = le_u64(&list, pos + 16).unwrap_or(0) & RECORD_MASK;
                if len < 26 {
                    return Err(corrupt(
                        "ntfs $ATTRIBUTE_LIST",
                        format!("record {n}: entry length {len}"),
                    ));
                }
                if reference != n && !extensions.contains(&reference) {
                    if extensions.len() >= MAX_EXTENSION_RECORDS {
                        return Err(DiskError::Limit(format!(
                            "ntfs record {n}: more than {MAX_EXTENSION_RECORDS} extension records"
                        )));
                    }
                    extensions.push(reference);
                }
                pos += len;
            }
            for ext in extensions {
                let raw = self.read_record_raw(ext)?;
                let base = le_u64(&raw, 32).unwrap_or(0) & RECORD_MASK;
                if base != n {
                    return Err(corrupt(
                        "ntfs $ATTRIBUTE_LIST",
                        format!("record {n}: extension record {ext} belongs to record {base}"),
                    ));
                }
                let (_, more) = self.parse_record(&raw, ext)?;
                attrs.extend(more);
            }
            attrs = merge_extents(attrs);
        }
        Ok(Record { flags, attrs })
    }

    /// Content of an attribute (resident or not), at most `cap` bytes.
    fn attr_bytes(&self, a: &Attr, cap: u64) -> Result<Vec<u8>> {
        match &a.body {
            AttrBody::Resident(v) => Ok(v.clone()),
            AttrBody::NonResident {
                runs,
                data_size,
                init_size,
                ..
            } => {
                a.body.runs()?;
                if *data_size > cap {
                    return Err(DiskError::Limit(format!(
                        "ntfs attribute {:#x} of {data_size} bytes",
                        a.ty
                    )));
                }
                let mut buf = vec![0u8; *data_size as usize];
                self.read_runs(runs, *init_size, 0, &mut buf)?;
                Ok(buf)
            }
        }
    }

    /// Every `$FILE_NAME` key in the index node bytes `node` (an index header followed by entries),
    /// appended to `out` as (record number, namespace, name, file-name flags).
    fn index_entries(&self, node: &[u8], out: &mut Vec<(u64, u8, String, u32)>) -> Result<()> {
        const WHAT: &str = "ntfs index";
        let first = le_u32(node, 0).unwrap_or(0) as usize;
        let total = (le_u32(node, 4).unwrap_or(0) as usize).min(node.len());
        let mut pos = first;
        while pos + 16 <= total {
            let len = usize::from(le_u16(node, pos + 8).unwrap_or(0));
            let key_len = usize::from(le_u16(node, pos + 10).unwrap_or(0));
            let flags = le_u16(node, pos + 12).unwrap_or(0);
            if len < 16 || pos + len > total {
                return Err(corrupt(WHAT, format!("index entry length {len}")));
            }
            if flags & 0x02 != 0 {
                break; // last entry: carries no key
            }
            let reference = le_u64(node, pos).unwrap_or(0);
            if let Some(key) = node.get(pos + 16..pos + 16 + key_len)
                && key.len() >= 66
            {
                let name_len = usize::from(key[64]);
                let namespace = key[65];
                let fn_flags = le_u32(key, 56).unwrap_or(0);
                if let Some(name) = key.get(66..66 + 2 * name_len) {
                    if out.len() >= MAX_DIR_ENTRIES {
                        return Err(DiskError::Limit(format!(
                            "more than {MAX_DIR_ENTRIES} directory entries"
                        )));
                    }
                    out.push((reference, namespace, utf16_name(name), fn_flags));
                }
            }
            pos += len;
        }
        Ok(())
    }

    /// The unnamed `$DATA` attribute (the file content; named streams are ignored).
    fn data_attr<'r>(&self, rec: &'r Record, node: NodeId) -> Result<&'r Attr> {
        rec.find(AT_DATA, "")
            .ok_or_else(|| corrupt("ntfs MFT record", format!("record {node} has no $DATA")))
    }

    /// An Interix special file (how ntfs-3g and Services for Unix store symlinks and devices):
    /// a SYSTEM file whose data starts with `IntxLNK\x01` (then the UTF-16 target), `IntxCHR`
    /// or `IntxBLK`. Returns the magic and the data.
    fn interix(&self, rec: &Record, file_attrs: u32) -> Option<([u8; 8], Vec<u8>)> {
        const FILE_ATTR_SYSTEM: u32 = 0x04;
        if file_attrs & FILE_ATTR_SYSTEM == 0 || rec.is_dir() {
            return None;
        }
        let data = rec.find(AT_DATA, "")?;
        let v = self.attr_bytes(data, 8 + 2 * 4096).ok()?;
        let magic: [u8; 8] = array(&v, 0)?;
        matches!(&magic, b"IntxLNK\x01" | b"IntxCHR\0" | b"IntxBLK\0").then_some((magic, v))
    }

    fn file_attrs(rec: &Record) -> u32 {
        match rec.find(AT_STANDARD_INFORMATION, "").map(|a| &a.body) {
            Some(AttrBody::Resident(v)) => le_u32(v, 32).unwrap_or(0),
            _ => 0,
        }
    }

    fn reparse(&self, rec: &Record) -> Option<(u32, Vec<u8>)> {
        let a = rec.find(AT_REPARSE_POINT, "")?;
        let v = self.attr_bytes(a, MAX_REPARSE).ok()?;
        Some((le_u32(&v, 0)?, v))
    }
}

/// Merge the extents of non-resident attributes split over several records (same type and name)
/// into one run list, in VCN order; the extent starting at VCN 0 carries the sizes.
fn merge_extents(attrs: Vec<Attr>) -> Vec<Attr> {
    let mut out: Vec<Attr> = Vec::new();
    let mut extents: Vec<Attr> = Vec::new();
    for a in attrs {
        match &a.body {
            AttrBody::NonResident { start_vcn, .. } if *start_vcn != 0 => extents.push(a),
            _ => out.push(a),
        }
    }
    extents.sort_by_key(|a| match &a.body {
        AttrBody::NonResident { start_vcn, .. } => *start_vcn,
        AttrBody::Resident(_) => 0,
    });
    for ext in extents {
        let AttrBody::NonResident {
            runs: more,
            bad_runs: more_bad,
            ..
        } = ext.body
        else {
            continue;
        };
        if let Some(Attr {
            body: AttrBody::NonResident { runs, bad_runs, .. },
            ..
        }) = out
            .iter_mut()
            .find(|b| b.ty == ext.ty && b.name == ext.name)
        {
            // Keep VCNs increasing: an overlapping extent is ignored.
            if bad_runs.is_none() {
                *bad_runs = more_bad;
            }
            let next = runs.last().map_or(0, |r| r.vcn + r.len);
            if more.first().is_some_and(|r| r.vcn >= next) && runs.len() + more.len() <= MAX_RUNS {
                runs.extend(more);
            }
        }
    }
    out
}

impl Filesystem for Ntfs {
    fn kind(&self) -> &'static str {
        "ntfs"
    }

    fn label(&self) -> Option<String> {
        self.label.clone()
    }

    fn root(&self) -> NodeId {
        ROOT_RECORD
    }

    fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
        const WHAT: &str = "ntfs directory";
        let rec = self.record(dir)?;
        if !rec.in_use() || !rec.is_dir() {
            return Err(DiskError::NotFound(format!(
                "ntfs record {dir} is not a directory"
            )));
        }
        let root = rec
            .find(AT_INDEX_ROOT, "$I30")
            .ok_or_else(|| corrupt(WHAT, format!("record {dir} has no $INDEX_ROOT")))?;
        let root = self.attr_bytes(root, MAX_RESIDENT_READ)?;
        let block_size = u64::from(le_u32(&root, 8).unwrap_or(0));
        let mut found = Vec::new();
        self.index_entries(root.get(16..).unwrap_or(&[]), &mut found)?;
        if let Some(alloc) = rec.find(AT_INDEX_ALLOCATION, "$I30")
            && let AttrBody::NonResident {
                runs,
                data_size,
                init_size,
                ..
            } = &alloc.body
        {
            alloc.body.runs()?;
            if !block_size.is_power_of_two() || !(512..=65536).contains(&block_size) {
                return Err(corrupt(WHAT, format!("index block size {block_size}")));
            }
            let bitmap = match rec.find(AT_BITMAP, "$I30") {
                Some(b) => Some(self.attr_bytes(b, MAX_INDEX_BLOCKS / 8)?),
                None => None,
            };
            // A directory cannot hold more blocks than the volume has room for.
            let volume_blocks = self.total_clusters.saturating_mul(self.cluster_size) / block_size;
            let blocks = (data_size / block_size)
                .min(volume_blocks)
                .min(MAX_INDEX_BLOCKS);
            let mut buf = vec![0u8; block_size as usize];
            for i in 0..blocks {
                let in_use = match &bitmap {
                    Some(bm) => bm
                        .get((i / 8) as usize)
                        .is_some_and(|byte| byte & (1 << (i % 8)) != 0),
                    None => true,
                };
                if !in_use {
                    continue;
                }
                self.read_runs(runs, *init_size, i * block_size, &mut buf)?;
                if &buf[0..4] != b"INDX" {
                    return Err(corrupt(
                        WHAT,
                        format!("record {dir}: block {i} has no INDX magic"),
                    ));
                }
                apply_fixups("ntfs INDX block", &mut buf)?;
                self.index_entries(buf.get(24..).unwrap_or(&[]), &mut found)?;
            }
        }
        let mut seen: HashSet<(u64, String)> = HashSet::new();
        let mut out = Vec::new();
        for (reference, namespace, name, fn_flags) in found {
            // DOS-only 8.3 aliases (namespace 2) duplicate a long name of the same record.
            if namespace == 2 || name == "." || name.is_empty() {
                continue;
            }
            if dir & RECORD_MASK == ROOT_RECORD
                && reference & RECORD_MASK < FIRST_USER_RECORD
                && name.starts_with('$')
            {
                continue;
            }
            let name: String = name
                .chars()
                .map(|c| {
                    if c == '/' || c == '\0' {
                        char::REPLACEMENT_CHARACTER
                    } else {
                        c
                    }
                })
                .collect();
            if !seen.insert((reference, name.clone())) {
                continue;
            }
            let kind = if fn_flags & 0x400 != 0 {
                None // reparse point: metadata decides
            } else if fn_flags & 0x1000_0000 != 0 {
                Some(FileKind::Dir)
            } else {
                Some(FileKind::File)
            };
            out.push(DirEntry {
                name,
                node: reference,
                kind,
            });
        }
        Ok(out)
    }

    fn metadata(&self, node: NodeId) -> Result<Metadata> {
        let rec = self.record(node)?;
        if !rec.in_use() {
            return Err(DiskError::NotFound(format!(
                "ntfs record {node} is not in use"
            )));
        }
        let si = rec
            .find(AT_STANDARD_INFORMATION, "")
            .and_then(|a| match &a.body {
                AttrBody::Resident(v) => Some(v.clone()),
                AttrBody::NonResident { .. } => None,
            });
        let file_attrs = Self::file_attrs(&rec);
        let reparse = self.reparse(&rec);
        let mut m = if rec.is_dir() {
            Metadata::new(FileKind::Dir, 0)
        } else {
            let data = self.data_attr(&rec, node)?;
            let size = match &data.body {
                AttrBody::Resident(v) => v.len() as u64,
                AttrBody::NonResident { data_size, .. } => *data_size,
            };
            let mut m = Metadata::new(FileKind::File, size);
            if data.flags & ATTR_FLAG_ENCRYPTED != 0 || file_attrs & FILE_ATTR_ENCRYPTED != 0 {
                m.unreadable = Some("ntfs encrypted file");
            } else if data.flags & ATTR_FLAG_COMPRESSED != 0
                || file_attrs & FILE_ATTR_COMPRESSED != 0
                || matches!(data.body, AttrBody::NonResident { compression_unit, .. } if compression_unit != 0)
            {
                m.unreadable = Some("ntfs compressed file");
            }
            m
        };
        match reparse.as_ref().map(|r| r.0) {
            None => {}
            Some(TAG_SYMLINK | TAG_MOUNT_POINT | TAG_LX_SYMLINK) => {
                if let Ok(target) = self.read_link(node) {
                    m.kind = FileKind::Symlink;
                    m.size = target.len() as u64;
                    m.unreadable = None;
                } else {
                    m.kind = FileKind::Other;
                }
            }
            Some(TAG_WOF | TAG_DEDUP) if m.kind == FileKind::File => {
                m.unreadable = Some("ntfs reparse-point file (WOF-compressed or deduplicated)");
            }
            Some(_) => {
                m.kind = FileKind::Other;
            }
        }
        if reparse.is_none()
            && let Some((magic, v)) = self.interix(&rec, file_attrs)
        {
            if &magic == b"IntxLNK\x01" {
                m.kind = FileKind::Symlink;
                // Like a POSIX symlink: the size is the target's length in bytes.
                m.size = utf16_name(v.get(8..).unwrap_or(&[])).len() as u64;
            } else {
                m.kind = FileKind::Other;
            }
        }
        if let Some(v) = si {
            let t = |off| le_u64(&v, off).map(Timestamp::from_filetime);
            m.created = t(0);
            m.modified = t(8);
            m.changed = t(16);
            m.accessed = t(24);
        }
        Ok(m)
    }

    fn open(&self, node: NodeId) -> Result<Box<dyn FileContent + '_>> {
        let rec = self.record(node)?;
        if rec.is_dir() {
            return Err(DiskError::NotFound(format!(
                "ntfs record {node} is a directory"
            )));
        }
        let data = self.data_attr(&rec, node)?;
        data.body.runs()?;
        if data.flags & (ATTR_FLAG_COMPRESSED | ATTR_FLAG_ENCRYPTED) != 0 {
            return Err(DiskError::unsupported(
                "ntfs file",
                format!("record {node} is compressed or encrypted"),
            ));
        }
        Ok(Box::new(match &data.body {
            AttrBody::Resident(v) => NtfsFile {
                fs: self,
                content: Content::Resident(v.clone()),
            },
            AttrBody::NonResident {
                runs,
                data_size,
                init_size,
                ..
            } => NtfsFile {
                fs: self,
                content: Content::Runs {
                    runs: runs.clone(),
                    size: *data_size,
                    init_size: (*init_size).min(*data_size),
                },
            },
        }))
    }

    fn read_link(&self, node: NodeId) -> Result<String> {
        const WHAT: &str = "ntfs reparse point";
        let rec = self.record(node)?;
        if let Some((magic, v)) = self.interix(&rec, Self::file_attrs(&rec))
            && &magic == b"IntxLNK\x01"
        {
            return Ok(utf16_name(v.get(8..).unwrap_or(&[])));
        }
        let (tag, v) = self
            .reparse(&rec)
            .ok_or_else(|| DiskError::NotFound(format!("ntfs record {node} is not a link")))?;
        let data = v.get(8..).unwrap_or(&[]);
        let target = match tag {
            TAG_SYMLINK | TAG_MOUNT_POINT => {
                let buf_off = if tag == TAG_SYMLINK { 12 } else { 8 };
                let field = |i: usize| usize::from(le_u16(data, i).unwrap_or(0));
                let name = |off: usize, len: usize| {
                    data.get(buf_off + off..buf_off + off + len)
                        .map(utf16_name)
                        .filter(|s| !s.is_empty())
                };
                name(field(4), field(6))
                    .or_else(|| name(field(0), field(2)))
                    .ok_or_else(|| corrupt(WHAT, format!("record {node}: empty link target")))?
            }
            TAG_LX_SYMLINK => {
                let t = data.get(4..).unwrap_or(&[]);
                String::from_utf8_lossy(t).into_owned()
            }
            _ => {
                return Err(DiskError::NotFound(format!(
                    "ntfs record {node}: reparse tag {tag:#x} is not a link"
                )));
            }
        };
        Ok(target)
    }
}

enum Content {
    Resident(Vec<u8>),
    Runs {
        runs: Vec<Run>,
        size: u64,
        init_size: u64,
    },
}

struct NtfsFile<'a> {
    fs: &'a Ntfs,
    content: Content,
}

impl FileContent for NtfsFile<'_> {
    fn size(&self) -> u64 {
        match &self.content {
            Content::Resident(v) => v.len() as u64,
            Content::Runs { size, .. } => *size,
        }
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let size = self.size();
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(size - offset) as usize;
        match &self.content {
            Content::Resident(v) => {
                let start = offset as usize;
                buf[..n].copy_from_slice(&v[start..start + n]);
            }
            Content::Runs {
                runs, init_size, ..
            } => self.fs.read_runs(runs, *init_size, offset, &mut buf[..n])?,
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_list_decodes_sparse_and_negative_offsets() {
        // 4 clusters at 100, 2 sparse, 3 at 100 - 50 = 50.
        let rl = [0x11, 4, 100, 0x01, 2, 0x11, 3, 0xCE, 0];
        let mut runs = Vec::new();
        decode_runs(&rl, 0, 1000, &mut runs).unwrap();
        let got: Vec<_> = runs.iter().map(|r| (r.vcn, r.lcn, r.len)).collect();
        assert_eq!(got, vec![(0, Some(100), 4), (4, None, 2), (6, Some(50), 3)]);
        // Past the volume.
        assert!(decode_runs(&rl, 0, 102, &mut Vec::new()).is_err());
        // No terminator.
        assert!(decode_runs(&rl[..3], 0, 1000, &mut Vec::new()).is_err());
    }
}
