//! LVM2: physical volume labels, text metadata, linear logical volumes.
//!
//! A physical volume (PV) has a `LABELONE` label in one of its first four sectors, pointing at a
//! PV header (UUID, data and metadata areas). A metadata area starts with a header whose first
//! "raw location" points at the newest copy of the volume group (VG) text metadata inside a
//! circular buffer. The text lists the VG's PVs (by UUID, with where their extents start) and its
//! logical volumes (LVs) as segments of extents on PVs. Linear LVs (striped with one stripe) on
//! PVs found on the same disk become [`BlockSource`]s; thin, RAID, mirror, cache, striped LVs
//! with more than one stripe and LVs on missing PVs are reported one by one as errors.

use std::collections::HashMap;
use std::sync::Arc;

use crate::bytes::{has_at, le_u32, le_u64};
use crate::crc::lvm_crc;
use crate::source::{BlockSource, ConcatSource};
use crate::{DiskError, Result};

const WHAT: &str = "lvm2";
const SECTOR: u64 = 512;
const MDA_MAGIC: &[u8] = b" LVM2 x[5A%r0N*>";
/// Largest metadata text read (LVM's default area is 1 MiB).
const MAX_TEXT: u64 = 16 << 20;
/// Most LVs and segments accepted from one VG's metadata.
const MAX_LVS: usize = 4096;
const MAX_SEGMENTS: usize = 4096;
/// Deepest nesting of the text format (VG → logical_volumes → lv → segment is 4).
const MAX_DEPTH: usize = 16;
/// Most values parsed from one metadata text (a real VG with thousands of LVs has far fewer),
/// so a text of `1,1,1,…` cannot turn 16 MiB into half a gigabyte of tree.
const MAX_VALUES: usize = 1 << 20;

/// Whether `head` (the first 2 KiB or more of a volume) holds an LVM2 PV label.
pub fn detect(head: &[u8]) -> bool {
    (0..4).any(|s| {
        let at = s * SECTOR as usize;
        has_at(head, at, b"LABELONE") && has_at(head, at + 24, b"LVM2 001")
    })
}

/// A physical volume: its label and the newest metadata text it holds.
#[derive(Clone, Debug)]
pub struct PhysicalVolume {
    /// PV UUID as in the label: 32 characters, no dashes.
    pub uuid: String,
    /// The newest VG metadata text, if the PV has a metadata area with one.
    pub metadata: Option<String>,
}

/// Read the PV label and metadata of `pv`. `Ok(None)` when there is no LVM2 label.
pub fn read_pv(pv: &dyn BlockSource) -> Result<Option<PhysicalVolume>> {
    let mut head = [0u8; 2048];
    let n = head
        .len()
        .min(usize::try_from(pv.size()).unwrap_or(head.len()));
    pv.read_at(0, &mut head[..n])?;
    let Some(s) = (0..4).find(|s| {
        let at = s * SECTOR as usize;
        has_at(&head, at, b"LABELONE") && has_at(&head, at + 24, b"LVM2 001")
    }) else {
        return Ok(None);
    };
    let label = &head[s * 512..(s + 1) * 512];
    if le_u64(label, 8).unwrap_or(0) != s as u64 {
        return Err(DiskError::corrupt(WHAT, "label sector number mismatch"));
    }
    if lvm_crc(&label[20..]) != le_u32(label, 16).unwrap_or(0) {
        return Err(DiskError::corrupt(WHAT, "label checksum mismatch"));
    }
    let header = le_u32(label, 20).unwrap_or(0) as usize;
    if !(32..=512 - 40).contains(&header) {
        return Err(DiskError::corrupt(
            WHAT,
            format!("PV header offset {header}"),
        ));
    }
    let uuid: String = String::from_utf8_lossy(&label[header..header + 32]).into_owned();
    // Two lists of (offset, size), each ending with a zero entry: data areas, then metadata areas.
    let mut at = header + 40;
    let mut lists: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
    for list in &mut lists {
        loop {
            if at + 16 > label.len() {
                return Err(DiskError::corrupt(
                    WHAT,
                    "PV header area lists overrun the label",
                ));
            }
            let (offset, size) = (
                le_u64(label, at).unwrap_or(0),
                le_u64(label, at + 8).unwrap_or(0),
            );
            at += 16;
            if offset == 0 {
                break;
            }
            list.push((offset, size));
        }
    }
    let mut metadata = None;
    let mut last_error = None;
    for &(offset, size) in &lists[1] {
        match read_metadata_area(pv, offset, size) {
            Ok(Some(text)) => {
                metadata = Some(text);
                break;
            }
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
    }
    if metadata.is_none()
        && let Some(e) = last_error
    {
        return Err(e);
    }
    Ok(Some(PhysicalVolume { uuid, metadata }))
}

/// The newest metadata text in the area at `start` of `size` bytes, if any.
fn read_metadata_area(pv: &dyn BlockSource, start: u64, size: u64) -> Result<Option<String>> {
    let mut h = [0u8; 512];
    pv.read_at(start, &mut h)
        .map_err(|e| DiskError::corrupt(WHAT, format!("metadata area at {start}: {e}")))?;
    if !has_at(&h, 4, MDA_MAGIC) {
        return Err(DiskError::corrupt(WHAT, "metadata area header: bad magic"));
    }
    if lvm_crc(&h[4..]) != le_u32(&h, 0).unwrap_or(0) {
        return Err(DiskError::corrupt(
            WHAT,
            "metadata area header: checksum mismatch",
        ));
    }
    let offset = le_u64(&h, 40).unwrap_or(0);
    let len = le_u64(&h, 48).unwrap_or(0);
    let checksum = le_u32(&h, 56).unwrap_or(0);
    if offset == 0 || len == 0 {
        return Ok(None);
    }
    if len > MAX_TEXT || len > size || offset >= size || offset < SECTOR {
        return Err(DiskError::corrupt(
            WHAT,
            format!("metadata text at {offset} of {len} bytes in a {size}-byte area"),
        ));
    }
    // Circular buffer after the 512-byte header: the text may wrap to the start of the buffer.
    let text_at = start
        .checked_add(offset)
        .filter(|at| at.saturating_add(len.min(size - offset)) <= pv.size())
        .ok_or_else(|| DiskError::corrupt(WHAT, "metadata text is past the end of the PV"))?;
    let mut text = vec![0u8; len as usize];
    let first = (size - offset).min(len) as usize;
    pv.read_at(text_at, &mut text[..first])?;
    if first < text.len() {
        if SECTOR + (len - first as u64) > offset {
            return Err(DiskError::corrupt(
                WHAT,
                "wrapped metadata text overlaps itself",
            ));
        }
        pv.read_at(start + SECTOR, &mut text[first..])?;
    }
    if lvm_crc(&text) != checksum {
        return Err(DiskError::corrupt(WHAT, "metadata text checksum mismatch"));
    }
    let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
    text.truncate(end);
    Ok(Some(String::from_utf8_lossy(&text).into_owned()))
}

/// A volume group as its metadata describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeGroup {
    /// The VG's name (`rootvg`).
    pub name: String,
    /// Sequence number: the highest copy among PVs is the newest.
    pub seqno: u64,
    /// Extent size in bytes.
    pub extent_size: u64,
    /// PVs by their name in the metadata (`pv0`).
    pub pvs: HashMap<String, PvRef>,
    /// Visible logical volumes, in metadata order.
    pub lvs: Vec<LogicalVolume>,
}

/// A PV as the VG metadata names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvRef {
    /// UUID without dashes, as in the PV label.
    pub uuid: String,
    /// Byte offset of the first extent inside the PV.
    pub pe_start: u64,
}

/// A logical volume: its linear segments, or why it cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogicalVolume {
    /// The LV's name (`rootlv`).
    pub name: String,
    /// Its segments, or why it cannot be read (only linear LVs are: one stripe per segment).
    pub layout: std::result::Result<Vec<Segment>, String>,
}

/// Extents `[start_extent, start_extent + extent_count)` of an LV, stored on `pv` from
/// `pv_start_extent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First LV extent of the segment.
    pub start_extent: u64,
    /// Number of extents.
    pub extent_count: u64,
    /// The PV's name in the VG metadata (`pv0`).
    pub pv: String,
    /// First extent on that PV.
    pub pv_start_extent: u64,
}

impl VolumeGroup {
    /// Parse VG text metadata.
    pub fn parse(text: &str) -> Result<Self> {
        let root = parse_text(text)?;
        let (name, vg) = root
            .iter()
            .find_map(|(k, v)| match v {
                Value::Section(s) => Some((k.clone(), s)),
                _ => None,
            })
            .ok_or_else(|| DiskError::corrupt(WHAT, "metadata has no volume group section"))?;
        let extent_sectors = int(vg, "extent_size")
            .filter(|&e| e > 0)
            .ok_or_else(|| DiskError::corrupt(WHAT, "volume group has no extent_size"))?;
        let extent_size = extent_sectors
            .checked_mul(SECTOR)
            .ok_or_else(|| DiskError::corrupt(WHAT, "extent_size overflows"))?;
        let mut pvs = HashMap::new();
        for (pv_name, pv) in sections(vg, "physical_volumes") {
            let uuid = string(pv, "id").unwrap_or_default().replace('-', "");
            let pe_start = int(pv, "pe_start")
                .and_then(|s| s.checked_mul(SECTOR))
                .ok_or_else(|| DiskError::corrupt(WHAT, format!("PV {pv_name}: no pe_start")))?;
            pvs.insert(pv_name.clone(), PvRef { uuid, pe_start });
        }
        let mut lvs = Vec::new();
        for (lv_name, lv) in sections(vg, "logical_volumes") {
            if !flags(lv, "status").any(|f| f == "VISIBLE") {
                continue;
            }
            if lvs.len() >= MAX_LVS {
                return Err(DiskError::Limit(format!(
                    "more than {MAX_LVS} logical volumes"
                )));
            }
            lvs.push(LogicalVolume {
                name: lv_name.clone(),
                layout: linear_segments(lv),
            });
        }
        Ok(VolumeGroup {
            name,
            seqno: int(vg, "seqno").unwrap_or(0),
            extent_size,
            pvs,
            lvs,
        })
    }

    /// Open `lv` as a block source, given the PVs found on this disk by UUID.
    pub fn open_lv(
        &self,
        lv: &LogicalVolume,
        pvs: &HashMap<String, Arc<dyn BlockSource>>,
    ) -> Result<Arc<dyn BlockSource>> {
        let segments = lv
            .layout
            .as_ref()
            .map_err(|reason| DiskError::unsupported("lvm2 logical volume", reason.clone()))?;
        let mut pieces = Vec::with_capacity(segments.len());
        let mut next = 0u64;
        for seg in segments {
            if seg.start_extent != next {
                return Err(DiskError::corrupt(
                    WHAT,
                    format!("LV {}: segments leave a gap at extent {next}", lv.name),
                ));
            }
            let pv = self.pvs.get(&seg.pv).ok_or_else(|| {
                DiskError::corrupt(WHAT, format!("LV {}: unknown PV {}", lv.name, seg.pv))
            })?;
            let source = pvs.get(&pv.uuid).ok_or_else(|| {
                DiskError::NotFound(format!(
                    "LV {}: physical volume {} ({}) is not on this disk",
                    lv.name, seg.pv, pv.uuid
                ))
            })?;
            let overflow = || DiskError::corrupt(WHAT, format!("LV {}: extent overflow", lv.name));
            let offset = seg
                .pv_start_extent
                .checked_mul(self.extent_size)
                .and_then(|o| o.checked_add(pv.pe_start))
                .ok_or_else(overflow)?;
            let len = seg
                .extent_count
                .checked_mul(self.extent_size)
                .ok_or_else(overflow)?;
            pieces.push((source.clone(), offset, len));
            next = seg
                .start_extent
                .checked_add(seg.extent_count)
                .ok_or_else(overflow)?;
        }
        Ok(Arc::new(ConcatSource::new(pieces).map_err(|e| {
            DiskError::corrupt(WHAT, format!("LV {}: {e}", lv.name))
        })?))
    }
}

/// The segments of a linear LV, or why the LV is not linear.
fn linear_segments(lv: &[(String, Value)]) -> std::result::Result<Vec<Segment>, String> {
    let mut segs = Vec::new();
    for (_, seg) in lv.iter().filter(|(k, _)| k.starts_with("segment")) {
        let Value::Section(seg) = seg else { continue };
        if segs.len() >= MAX_SEGMENTS {
            return Err(format!("more than {MAX_SEGMENTS} segments"));
        }
        let kind = string(seg, "type").unwrap_or_default();
        let stripes = int(seg, "stripe_count").unwrap_or(0);
        if kind != "striped" || stripes != 1 {
            return Err(match kind {
                "striped" => format!("striped over {stripes} PVs, only linear volumes are read"),
                _ => format!("{kind} volume, only linear volumes are read"),
            });
        }
        let (Some(start_extent), Some(extent_count)) =
            (int(seg, "start_extent"), int(seg, "extent_count"))
        else {
            return Err("segment without start_extent or extent_count".into());
        };
        let Some(Value::List(stripe)) = get(seg, "stripes") else {
            return Err("segment without stripes".into());
        };
        let (Some(Value::Str(pv)), Some(Value::Int(pv_start))) = (stripe.first(), stripe.get(1))
        else {
            return Err("segment stripes are not [\"pvN\", extent]".into());
        };
        segs.push(Segment {
            start_extent,
            extent_count,
            pv: pv.clone(),
            pv_start_extent: u64::try_from(*pv_start).map_err(|_| "negative extent")?,
        });
    }
    if segs.is_empty() {
        return Err("no segments".into());
    }
    segs.sort_by_key(|s| s.start_extent);
    Ok(segs)
}

/// A value of the LVM text format.
#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(String),
    Int(i64),
    List(Vec<Value>),
    Section(Vec<(String, Value)>),
}

fn get<'a>(section: &'a [(String, Value)], key: &str) -> Option<&'a Value> {
    section.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn int(section: &[(String, Value)], key: &str) -> Option<u64> {
    match get(section, key)? {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

fn string<'a>(section: &'a [(String, Value)], key: &str) -> Option<&'a str> {
    match get(section, key)? {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

fn flags<'a>(section: &'a [(String, Value)], key: &str) -> impl Iterator<Item = &'a str> {
    let list = match get(section, key) {
        Some(Value::List(l)) => l.as_slice(),
        _ => &[],
    };
    list.iter().filter_map(|v| match v {
        Value::Str(s) => Some(s.as_str()),
        _ => None,
    })
}

fn sections<'a>(
    section: &'a [(String, Value)],
    key: &str,
) -> impl Iterator<Item = (&'a String, &'a [(String, Value)])> {
    let inner = match get(section, key) {
        Some(Value::Section(s)) => s.as_slice(),
        _ => &[],
    };
    inner.iter().filter_map(|(k, v)| match v {
        Value::Section(s) => Some((k, s.as_slice())),
        _ => None,
    })
}

/// Parse the LVM text format: `key = value`, `name { ... }`, values strings, integers and
/// `[ ... ]` lists, `#` comments.
fn parse_text(text: &str) -> Result<Vec<(String, Value)>> {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
        values: 0,
    };
    let items = p.section_body(0)?;
    p.skip_space();
    if p.pos < p.s.len() {
        return Err(p.error("unexpected '}'"));
    }
    Ok(items)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// Values and sections parsed so far, against [`MAX_VALUES`].
    values: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> DiskError {
        DiskError::corrupt(WHAT, format!("metadata text at byte {}: {what}", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'#' {
                while self.peek().is_some_and(|c| c != b'\n') {
                    self.pos += 1;
                }
            } else if c.is_ascii_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn ident(&mut self) -> Result<String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"_.+-".contains(&c))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("expected a name"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    /// Items until `}` (not consumed) or the end.
    fn section_body(&mut self, depth: usize) -> Result<Vec<(String, Value)>> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        let mut items = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                None | Some(b'}') => return Ok(items),
                _ => {}
            }
            let key = self.ident()?;
            self.count()?;
            self.skip_space();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    let body = self.section_body(depth + 1)?;
                    if self.peek() != Some(b'}') {
                        return Err(self.error("section not closed"));
                    }
                    self.pos += 1;
                    items.push((key, Value::Section(body)));
                }
                Some(b'=') => {
                    self.pos += 1;
                    let value = self.value(depth + 1)?;
                    items.push((key, value));
                }
                _ => return Err(self.error("expected '=' or '{'")),
            }
        }
    }

    fn count(&mut self) -> Result<()> {
        self.values += 1;
        if self.values > MAX_VALUES {
            return Err(DiskError::Limit(format!(
                "LVM metadata text holds more than {MAX_VALUES} values"
            )));
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.count()?;
        self.skip_space();
        match self.peek() {
            Some(b'"') => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        None => return Err(self.error("string not closed")),
                        Some(b'"') => {
                            self.pos += 1;
                            break;
                        }
                        Some(b'\\') => {
                            self.pos += 1;
                            if let Some(c) = self.peek() {
                                out.push(c);
                                self.pos += 1;
                            }
                        }
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
                Ok(Value::Str(String::from_utf8_lossy(&out).into_owned()))
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_space();
                    match self.peek() {
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Value::List(items));
                        }
                        Some(b',') => self.pos += 1,
                        None => return Err(self.error("list not closed")),
                        _ => items.push(self.value(depth + 1)?),
                    }
                }
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.pos;
                self.pos += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'.') {
                    self.pos += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or_default();
                // Floats (rare: only in unrelated settings) keep their integer part.
                let t = t.split('.').next().unwrap_or_default();
                t.parse()
                    .map(Value::Int)
                    .map_err(|_| self.error("bad number"))
            }
            _ => Err(self.error("expected a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = r#"vg0 {
id = "abc"
seqno = 4
format = "lvm2" # comment
status = ["RESIZEABLE", "READ", "WRITE"]
extent_size = 8
physical_volumes {
pv0 {
id = "AAAA-BBBB"
device = "/dev/loop0"
pe_start = 2
pe_count = 10
}
}
logical_volumes {
lv1 {
status = ["READ", "WRITE", "VISIBLE"]
segment_count = 2
segment1 {
start_extent = 0
extent_count = 1
type = "striped"
stripe_count = 1
stripes = [
"pv0", 3
]
}
segment2 {
start_extent = 1
extent_count = 2
type = "striped"
stripe_count = 1
stripes = ["pv0", 0]
}
}
thin1 {
status = ["READ", "VISIBLE"]
segment1 { start_extent = 0 extent_count = 1 type = "thin" }
}
hidden { status = ["READ"] }
}
}
contents = "Text Format Volume Group"
version = 1
"#;

    #[test]
    fn parses_vg_and_maps_segments() {
        let vg = VolumeGroup::parse(META).unwrap();
        assert_eq!(vg.name, "vg0");
        assert_eq!(vg.extent_size, 4096);
        assert_eq!(vg.lvs.len(), 2);
        assert!(vg.lvs[1].layout.as_ref().unwrap_err().contains("thin"));
        let pv_bytes: Vec<u8> = (0..20 * 4096u32).map(|i| (i / 4096) as u8).collect();
        let pv: Arc<dyn BlockSource> = Arc::new(crate::source::MemSource::new(pv_bytes));
        let pvs = HashMap::from([("AAAABBBB".to_string(), pv)]);
        let lv = vg.open_lv(&vg.lvs[0], &pvs).unwrap();
        assert_eq!(lv.size(), 3 * 4096);
        let mut b = [0u8; 1];
        // pe_start = 1024 bytes: extent 3 of the PV starts at 1024 + 3 * 4096.
        lv.read_at(0, &mut b).unwrap();
        assert_eq!(b[0], 3);
        lv.read_at(4096 + 3071, &mut b).unwrap();
        assert_eq!(b[0], 0);
        lv.read_at(4096 + 3072, &mut b).unwrap();
        assert_eq!(b[0], 1);
        assert!(vg.open_lv(&vg.lvs[1], &pvs).is_err());
        assert!(vg.open_lv(&vg.lvs[0], &HashMap::new()).is_err());
    }

    #[test]
    fn hostile_text_is_an_error() {
        let deep = "a {".repeat(10_000);
        assert!(parse_text(&deep).is_err());
        assert!(parse_text("a = [1, 2").is_err());
        assert!(parse_text("a = \"x").is_err());
        assert!(parse_text("}").is_err());
        assert!(VolumeGroup::parse("x = 1").is_err());
        let wide = format!("a = [{}]", "1,".repeat(MAX_VALUES + 1));
        assert!(matches!(parse_text(&wide), Err(DiskError::Limit(_))));
    }
}
