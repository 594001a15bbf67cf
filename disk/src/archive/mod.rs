//! Files inside archives: tar, gzip (a compressed tar or one compressed file) and zip (also
//! `.jar`, `.war`, `.ear`), nested up to a small depth, each entry handed to a visitor with its
//! path at every level (`backup.tar.gz` → `etc/app/.env`; `a.zip` → `lib/app.jar` →
//! `application.properties`).
//!
//! Archives come from the disk, so they are hostile input like every other structure here. Every
//! cost is bounded ([`ArchiveLimits`]): entries per archive, bytes of one entry, bytes inflated
//! out of one top-level archive across all its levels (at most `max_ratio` times its size, at
//! most `max_total_bytes`), nesting depth and entry name length. What a limit, damage or an
//! unsupported format left unread is counted in [`ArchiveStats`], never silently dropped. Entry
//! names are labels only: nothing here touches a filesystem.
//!
//! Which files are archives is decided by their bytes ([`detect`]); the formats are read by the
//! `tar`, `flate2` (pure-Rust backend) and `zip` crates.

mod budget;
mod detect;
mod gzip;
mod tarball;
mod zipfile;

pub use detect::{Detected, Format, Unsupported, detect};

use budget::Budget;

/// How much of an archive is read.
#[derive(Clone, Debug)]
pub struct ArchiveLimits {
    /// Archive levels opened: 1 reads the entries of a top-level archive only; an archive nested
    /// deeper is counted in [`ArchiveStats::too_deep`]. 0 opens nothing.
    pub max_depth: u32,
    /// Entries (files) read from one top-level archive, all levels together.
    pub max_entries: u64,
    /// Bytes of one entry; a larger entry is counted in [`ArchiveStats::too_large`].
    pub max_entry_size: u64,
    /// Bytes inflated out of one top-level archive, all levels together.
    pub max_total_bytes: u64,
    /// Inflated bytes allowed per byte of the top-level archive (counted from 1 MiB up).
    pub max_ratio: u64,
    /// Bytes of an entry name kept (longer names are cut).
    pub max_name_len: usize,
}

/// Default [`ArchiveLimits::max_depth`].
pub const DEFAULT_MAX_DEPTH: u32 = 3;

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_entries: 10_000,
            max_entry_size: 64 << 20,
            max_total_bytes: 1 << 30,
            max_ratio: 100,
            max_name_len: 1024,
        }
    }
}

/// What reading one top-level archive did and did not read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    /// Files handed to the visitor.
    pub entries: u64,
    /// Entries larger than [`ArchiveLimits::max_entry_size`], not read.
    pub too_large: u64,
    /// Archives nested deeper than [`ArchiveLimits::max_depth`], not opened.
    pub too_deep: u64,
    /// Entries in a compressed format, compression method or encryption this build does not
    /// read.
    pub unsupported: u64,
    /// Archives (this one or nested ones) damaged or truncated: read as far as they go.
    pub corrupt: u64,
    /// Reading stopped at a limit (inflated bytes, ratio or entry count): a zip bomb, a gzip
    /// bomb or an absurd archive. What was read before is reported.
    pub limited: bool,
    /// Bytes inflated.
    pub inflated: u64,
}

impl ArchiveStats {
    /// Whether anything in the archive was left unread.
    pub fn incomplete(&self) -> bool {
        self.too_large + self.too_deep + self.unsupported + self.corrupt > 0 || self.limited
    }
}

/// One file inside an archive.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Its path at each level: `["etc/app/.env"]`, or `["lib/app.jar", "application.properties"]`
    /// when nested. Relative, `/`-separated, attacker-chosen (cut to the name limit, control
    /// characters replaced).
    pub path: &'a [String],
    /// Its content (at most [`ArchiveLimits::max_entry_size`] bytes).
    pub data: &'a [u8],
}

/// Read the archive `data` (whose file is called `name`), calling `visit` for every file in it
/// and in the archives nested in it. `None` when `data` is no archive (scan it as a file); an
/// unsupported compressed format yields stats with `unsupported` 1 and no entry.
pub fn read_archive(
    name: &str,
    data: &[u8],
    limits: &ArchiveLimits,
    visit: &mut dyn FnMut(Entry<'_>),
) -> Option<ArchiveStats> {
    let detected = detect(name, data)?;
    let mut stats = ArchiveStats::default();
    match detected {
        Detected::Unsupported(_) => stats.unsupported += 1,
        Detected::Archive(_) if limits.max_depth == 0 => stats.too_deep += 1,
        Detected::Archive(format) => {
            let budget = Budget::new(budget::allowance(
                data.len() as u64,
                limits.max_ratio,
                limits.max_total_bytes,
            ));
            let mut walker = Walker {
                limits,
                budget: &budget,
                stats: ArchiveStats::default(),
                visit,
                path: Vec::new(),
                seen: 0,
            };
            walker.open(name, data, format);
            stats = walker.stats;
            stats.inflated = budget.used();
            stats.limited |= budget.exhausted();
        }
    }
    Some(stats)
}

/// The state of one top-level archive's reading, shared by the format readers.
pub(crate) struct Walker<'a, 'b> {
    pub(crate) limits: &'a ArchiveLimits,
    pub(crate) budget: &'b Budget,
    pub(crate) stats: ArchiveStats,
    visit: &'a mut dyn FnMut(Entry<'_>),
    /// Entry names of the archives being read, outermost first.
    path: Vec<String>,
    /// Entries met, all levels.
    seen: u64,
}

impl Walker<'_, '_> {
    /// Read the archive `data` of format `format` at the current level.
    fn open(&mut self, name: &str, data: &[u8], format: Format) {
        match format {
            Format::Tar => tarball::read(self, data),
            Format::Gzip => gzip::read(self, name, data),
            Format::Zip => zipfile::read(self, data),
        }
    }

    /// Whether reading must stop (a limit was hit).
    pub(crate) fn stopped(&self) -> bool {
        self.stats.limited || self.budget.exhausted()
    }

    /// Count one more entry; `false` (and the archive marked limited) past the entry limit.
    pub(crate) fn admit(&mut self) -> bool {
        self.seen += 1;
        if self.seen > self.limits.max_entries {
            self.stats.limited = true;
            return false;
        }
        true
    }

    /// Record that a reader failed: the budget ran out (limited) or the archive is damaged.
    pub(crate) fn failed(&mut self) {
        if self.budget.exhausted() {
            self.stats.limited = true;
        } else {
            self.stats.corrupt += 1;
        }
    }

    /// One file of the archive being read: a nested archive is opened (down to the depth
    /// limit), anything else is visited.
    pub(crate) fn file(&mut self, name: String, data: &[u8]) {
        if self.stopped() {
            return;
        }
        let detected = detect(&name, data);
        self.path.push(name);
        match detected {
            Some(Detected::Archive(format)) => {
                if self.path.len() >= self.limits.max_depth as usize {
                    self.stats.too_deep += 1;
                } else {
                    let name = self.path.last().cloned().unwrap_or_default();
                    self.open(&name, data, format);
                }
            }
            Some(Detected::Unsupported(_)) => self.stats.unsupported += 1,
            None => {
                self.stats.entries += 1;
                (self.visit)(Entry {
                    path: &self.path,
                    data,
                });
            }
        }
        self.path.pop();
    }

    /// An entry name as a label: lossy UTF-8, at most `max_name_len` bytes, leading `./` and
    /// `/` dropped, control characters replaced by `?`.
    pub(crate) fn entry_name(&self, raw: &[u8]) -> String {
        let raw = &raw[..raw.len().min(self.limits.max_name_len)];
        let text = String::from_utf8_lossy(raw);
        let mut name = text.as_ref();
        loop {
            let trimmed = name.trim_start_matches("./").trim_start_matches('/');
            if trimmed.len() == name.len() {
                break;
            }
            name = trimmed;
        }
        name.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect()
    }
}
