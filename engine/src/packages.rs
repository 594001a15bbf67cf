//! Which files are vendor content, as the OS package manager's own records on the scanned disk
//! say: dpkg's `/var/lib/dpkg/status` (installed packages, their versions and conffiles with
//! checksums) and `/var/lib/dpkg/info/<package>.list` / `.md5sums` (the files each package
//! installed and their MD5 sums).
//!
//! A finding in a file a package installed whose content still has the package's checksum is
//! vendor content: the secret shipped with the software (a test key compiled into a library,
//! an example in a standard library's sources), reported at `info` with the package's name. A
//! package file whose content no longer matches was changed after installation: it keeps its
//! severity and says so ([`PackageFileState::Modified`]).
//!
//! dpkg keeps no checksum of its own control area: the maintainer scripts, templates and other
//! control files it copies from each package into `/var/lib/dpkg/info/` when it unpacks it, and
//! debconf's cache of the templates (`/var/cache/debconf/templates.dat`). Those are vendor
//! content too — a maintainer script is the same on every machine with that package version — and
//! what is left to tell a changed one is when it was written: dpkg keeps the mtime the package
//! built it with, before the package's `.list` (written at unpack), so a control file written
//! after its package's `.list` was changed afterwards ([`PackageFileState::Modified`]); a debconf
//! template line is vendor text when the package's own `.templates` file holds it
//! ([`TemplateText`]). What users answered (`config.dat`, `passwords.dat`) is never vendor.
//!
//! The database is on the disk being scanned, so it is hostile input: every parser here is
//! linear in its input, skips what it cannot read, and the index stops growing at
//! [`DbLimits`] (a truncated index only leaves findings at their normal severity). rpm's
//! database (sqlite or Berkeley DB) is not read: RHEL-family images keep their findings'
//! severities.

pub mod debconf;

use std::collections::HashMap;

use md5::{Digest, Md5};
use serde::Serialize;

use crate::{Finding, Severity};

/// Where dpkg keeps its database, from the root of the scanned filesystem.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// The directory of dpkg's per-package `.list` and `.md5sums` files.
pub const DPKG_INFO_DIR: &str = "/var/lib/dpkg/info/";
/// debconf's cache of the installed packages' templates (and its previous copy, `-old`).
pub const DEBCONF_TEMPLATES: &str = "/var/cache/debconf/templates.dat";

/// The control files dpkg copies from a package into [`DPKG_INFO_DIR`] (deb-control(5) and its
/// siblings: maintainer scripts, debconf templates and config script, triggers, library data).
const CONTROL_FILES: &[&str] = &[
    "preinst",
    "postinst",
    "prerm",
    "postrm",
    "config",
    "templates",
    "triggers",
    "conffiles",
    "shlibs",
    "symbols",
    "md5sums",
    "list",
];

/// How long after a package's `.list` one of its control files may have been written and still
/// count as written by that unpack (file systems with coarse timestamps; dpkg renames the
/// extracted control files into place after writing the `.list`).
const CONTROL_SLACK_SECS: i64 = 10;

/// Bounds on what is read of a package database and kept of it.
#[derive(Clone, Debug)]
pub struct DbLimits {
    /// Most bytes read of one database file (a larger one is skipped).
    pub max_file_bytes: u64,
    /// Most bytes read of all database files together.
    pub max_total_bytes: u64,
    /// Most file paths kept in the index.
    pub max_paths: usize,
    /// Most packages kept in the index.
    pub max_packages: usize,
}

impl Default for DbLimits {
    fn default() -> Self {
        DbLimits {
            max_file_bytes: 64 << 20,
            max_total_bytes: 512 << 20,
            max_paths: 2_000_000,
            max_packages: 100_000,
        }
    }
}

/// Longest line a parser considers (a longer one is skipped): no real path is this long.
const MAX_LINE: usize = 8192;

/// What a finding's file is to the package manager (`metadata.package`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PackageFile {
    /// The package that installed the file (`libgnutls30`).
    pub name: String,
    /// Its installed version, from dpkg's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether the content is still what the package shipped.
    pub state: PackageFileState,
}

/// The content of a package file compared with the package's checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PackageFileState {
    /// Matches the package's checksum: vendor content, reported at `info`.
    Unchanged,
    /// Differs from the package's checksum: changed after installation, normal severity.
    Modified,
    /// The package lists the file without a checksum: normal severity.
    Unverified,
    /// dpkg's copy of the package's control data (a maintainer script, a debconf template) not
    /// written since the package was unpacked, or a line of debconf's template cache that the
    /// package's templates hold: vendor content, reported at `info`. dpkg has no checksum for
    /// these; a control file written after the package's unpack is [`Self::Modified`].
    Control,
}

impl PackageFile {
    /// Record this on every finding of one file; unchanged vendor content drops to `info`.
    pub fn apply(&self, findings: &mut [Finding]) {
        for f in findings {
            if matches!(
                self.state,
                PackageFileState::Unchanged | PackageFileState::Control
            ) {
                f.severity = Severity::Info;
            }
            f.metadata.package = Some(self.clone());
        }
    }
}

/// One paragraph of dpkg's status file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusEntry {
    /// `Package:`.
    pub name: String,
    /// `Architecture:`.
    pub architecture: Option<String>,
    /// `Version:`.
    pub version: Option<String>,
    /// Its files may be on disk (`Status:` neither `not-installed` nor `config-files`).
    pub present: bool,
    /// `Conffiles:`: absolute path and MD5 (none for `newconffile` and other markers).
    pub conffiles: Vec<(String, Option<[u8; 16]>)>,
}

/// The lines of `data`, without their `\n` (and `\r`), skipping lines longer than [`MAX_LINE`].
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == b'\n')
        .filter(|l| l.len() <= MAX_LINE)
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

/// Parse 32 hex digits.
fn md5_hex(s: &[u8]) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

/// Parse dpkg's status file (RFC 822-style paragraphs), at most `max_packages` of them.
pub fn parse_status(data: &[u8], max_packages: usize) -> Vec<StatusEntry> {
    let mut out = Vec::new();
    let mut cur = StatusEntry::default();
    let mut in_conffiles = false;
    let flush = |cur: &mut StatusEntry, out: &mut Vec<StatusEntry>| {
        let e = std::mem::take(cur);
        if !e.name.is_empty() && out.len() < max_packages {
            out.push(e);
        }
    };
    for line in lines(data) {
        if line.iter().all(u8::is_ascii_whitespace) {
            flush(&mut cur, &mut out);
            in_conffiles = false;
            continue;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            in_conffiles = false;
            continue;
        };
        if line.starts_with([' ', '\t']) {
            if in_conffiles {
                let mut parts = line.split_ascii_whitespace();
                if let (Some(path), Some(sum)) = (parts.next(), parts.next())
                    && path.starts_with('/')
                    && cur.conffiles.len() < MAX_CONFFILES
                {
                    cur.conffiles
                        .push((path.to_owned(), md5_hex(sum.as_bytes())));
                }
            }
            continue;
        }
        in_conffiles = false;
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match field.to_ascii_lowercase().as_str() {
            "package" => cur.name = value.to_owned(),
            "version" => cur.version = Some(value.to_owned()),
            "architecture" => cur.architecture = Some(value.to_owned()),
            "status" => {
                let state = value.split_ascii_whitespace().last().unwrap_or("");
                cur.present = !matches!(state, "not-installed" | "config-files" | "");
            }
            "conffiles" => in_conffiles = true,
            _ => {}
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// Most conffiles kept of one package.
const MAX_CONFFILES: usize = 10_000;

/// Parse a `.md5sums` file: `<32 hex>  <path relative to />` lines; yields absolute paths.
pub fn parse_md5sums(data: &[u8]) -> impl Iterator<Item = ([u8; 16], String)> + '_ {
    lines(data).filter_map(|line| {
        let sum = md5_hex(line.get(..32)?)?;
        let rest = line.get(32..)?;
        // Two spaces (text mode) or a space and `*` (binary mode).
        let path = rest
            .strip_prefix(b"  ")
            .or_else(|| rest.strip_prefix(b" *"))?;
        let path = std::str::from_utf8(path).ok()?;
        let path = path.trim_start_matches("./").trim_start_matches('/');
        (!path.is_empty()).then(|| (sum, format!("/{path}")))
    })
}

/// Parse a `.list` file: one absolute path a line (directories included).
pub fn parse_list(data: &[u8]) -> impl Iterator<Item = &str> {
    lines(data)
        .filter_map(|l| std::str::from_utf8(l).ok())
        .filter(|l| l.starts_with('/') && l.len() > 1)
}

/// The package a `/var/lib/dpkg/info/` file name belongs to and what it is: `libc6:amd64.list`
/// → (`libc6`, `list`).
pub fn info_file_kind(file_name: &str) -> Option<(&str, InfoFile)> {
    let (stem, kind) = if let Some(s) = file_name.strip_suffix(".md5sums") {
        (s, InfoFile::Md5sums)
    } else if let Some(s) = file_name.strip_suffix(".list") {
        (s, InfoFile::List)
    } else {
        return None;
    };
    let name = stem.split(':').next().unwrap_or(stem);
    (!name.is_empty()).then_some((name, kind))
}

/// The package a control file of [`DPKG_INFO_DIR`] belongs to: `/var/lib/dpkg/info/mariadb-server.postinst`
/// → `mariadb-server`; `None` for any other path or a file name that is not a control file.
pub fn control_file_package(path: &str) -> Option<&str> {
    let name = path.strip_prefix(DPKG_INFO_DIR)?;
    let (stem, kind) = name.rsplit_once('.')?;
    if name.contains('/') || !CONTROL_FILES.contains(&kind) {
        return None;
    }
    let package = stem.split(':').next().unwrap_or(stem);
    (!package.is_empty()).then_some(package)
}

/// The per-package files of dpkg's database the index reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InfoFile {
    /// `<package>.list`: the paths the package installed.
    List,
    /// `<package>.md5sums`: the MD5 of each regular file but the conffiles.
    Md5sums,
}

#[derive(Debug)]
struct Owned {
    package: u32,
    md5: Option<[u8; 16]>,
}

/// One package of the index.
#[derive(Debug, Default)]
struct Package {
    name: String,
    version: Option<String>,
    /// dpkg's status says its files are on disk.
    installed: bool,
    /// When its `.list` was written (its last unpack), seconds since the epoch.
    unpacked_at: Option<i64>,
}

/// Package-owned files of one filesystem, from its dpkg database.
#[derive(Debug, Default)]
pub struct PackageIndex {
    packages: Vec<Package>,
    by_name: HashMap<String, u32>,
    files: HashMap<String, Owned>,
    max_paths: usize,
    max_packages: usize,
    /// Some records were left out (a limit was reached).
    pub truncated: bool,
}

impl PackageIndex {
    /// An empty index that keeps at most what `limits` say.
    pub fn new(limits: &DbLimits) -> Self {
        PackageIndex {
            max_paths: limits.max_paths,
            max_packages: limits.max_packages,
            ..PackageIndex::default()
        }
    }

    /// Number of files known.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// No file is known (no dpkg database, or an empty one).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn package(&mut self, name: &str) -> Option<u32> {
        if let Some(&i) = self.by_name.get(name) {
            return Some(i);
        }
        if self.packages.len() >= self.max_packages {
            self.truncated = true;
            return None;
        }
        let i = u32::try_from(self.packages.len()).ok()?;
        self.packages.push(Package {
            name: name.to_owned(),
            ..Package::default()
        });
        self.by_name.insert(name.to_owned(), i);
        Some(i)
    }

    fn add_file(&mut self, package: u32, path: String, md5: Option<[u8; 16]>) {
        if let Some(o) = self.files.get_mut(&path) {
            if o.md5.is_none() && md5.is_some() {
                *o = Owned { package, md5 };
            }
            return;
        }
        if self.files.len() >= self.max_paths {
            self.truncated = true;
            return;
        }
        self.files.insert(path, Owned { package, md5 });
    }

    /// Add dpkg's status file: package versions and conffiles with their checksums.
    pub fn add_status(&mut self, data: &[u8]) {
        for e in parse_status(data, self.max_packages) {
            if !e.present {
                continue;
            }
            let Some(p) = self.package(&e.name) else {
                continue;
            };
            let package = &mut self.packages[p as usize];
            package.installed = true;
            if package.version.is_none() {
                package.version = e.version;
            }
            for (path, md5) in e.conffiles {
                self.add_file(p, path, md5);
            }
        }
    }

    /// Add one file of `/var/lib/dpkg/info/` by its name (`.list` and `.md5sums`; others are
    /// ignored) and its mtime (seconds since the epoch, where the file system keeps one): a
    /// `.list` is written when its package is unpacked.
    pub fn add_info_file(&mut self, file_name: &str, data: &[u8], modified: Option<i64>) {
        let Some((name, kind)) = info_file_kind(file_name) else {
            return;
        };
        let Some(p) = self.package(name) else { return };
        match kind {
            InfoFile::Md5sums => {
                for (md5, path) in parse_md5sums(data) {
                    self.add_file(p, path, Some(md5));
                }
            }
            InfoFile::List => {
                self.packages[p as usize].unpacked_at = modified;
                for path in parse_list(data) {
                    self.add_file(p, path.to_owned(), None);
                }
            }
        }
    }

    fn owner(&self, path: &str) -> Option<&Owned> {
        self.files.get(path).or_else(|| {
            // Merged /usr: packages list `/lib/…`, `/bin/…`, the file is found under `/usr/…`
            // (the top-level directories are symlinks, which a scan does not follow), and
            // newer packages the other way round.
            match path.strip_prefix("/usr") {
                Some(rest) if is_merged_dir(rest) => self.files.get(rest),
                _ if is_merged_dir(path) => self.files.get(&format!("/usr{path}")),
                _ => None,
            }
        })
    }

    /// What `path`, whose content is `content` and mtime `modified` (seconds since the epoch),
    /// is to the package manager; `None` when no package installed it.
    pub fn classify(
        &self,
        path: &str,
        content: &[u8],
        modified: Option<i64>,
    ) -> Option<PackageFile> {
        let Some(owned) = self.owner(path) else {
            return self.classify_control(path, modified);
        };
        let package = self.packages.get(owned.package as usize)?;
        let state = match owned.md5 {
            None => PackageFileState::Unverified,
            Some(sum) if Md5::digest(content).as_slice() == sum => PackageFileState::Unchanged,
            Some(_) => PackageFileState::Modified,
        };
        Some(package.file(state))
    }

    /// A control file of an installed package in dpkg's info directory: vendor content unless
    /// written after the package's unpack (its `.list`); without both times, unverified.
    fn classify_control(&self, path: &str, modified: Option<i64>) -> Option<PackageFile> {
        let name = control_file_package(path)?;
        let package = self.packages.get(*self.by_name.get(name)? as usize)?;
        if !package.installed {
            return None;
        }
        let state = match (modified, package.unpacked_at) {
            (Some(m), Some(u)) if m <= u.saturating_add(CONTROL_SLACK_SECS) => {
                PackageFileState::Control
            }
            (Some(_), Some(_)) => PackageFileState::Modified,
            _ => PackageFileState::Unverified,
        };
        Some(package.file(state))
    }

    /// The installed package called `name`, as a [`PackageFile`] in `state`.
    pub fn installed(&self, name: &str, state: PackageFileState) -> Option<PackageFile> {
        let package = self.packages.get(*self.by_name.get(name)? as usize)?;
        package.installed.then(|| package.file(state))
    }
}

impl Package {
    fn file(&self, state: PackageFileState) -> PackageFile {
        PackageFile {
            name: self.name.clone(),
            version: self.version.clone(),
            state,
        }
    }
}

/// `/bin/…`, `/sbin/…`, `/lib…/…`: the directories merged into `/usr`.
fn is_merged_dir(path: &str) -> bool {
    let top = path.trim_start_matches('/').split('/').next().unwrap_or("");
    path.starts_with('/') && (matches!(top, "bin" | "sbin") || top.starts_with("lib"))
}

/// Fuzzing entry point for the dpkg parsers: the input as a status file, an `.md5sums` and a
/// `.list` file into a small index, then classified. Must never panic.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let limits = DbLimits {
        max_paths: 10_000,
        max_packages: 100,
        ..DbLimits::default()
    };
    let mut idx = PackageIndex::new(&limits);
    idx.add_status(data);
    idx.add_info_file("p:amd64.md5sums", data, None);
    idx.add_info_file("p.list", data, None);
    for path in parse_list(data).take(16) {
        let _ = idx.classify(path, data, None);
    }
    let _ = idx.classify("/usr/bin/x", data, None);
    let _ = idx.classify("/var/lib/dpkg/info/p.postinst", data, Some(1));
    let mut text = debconf::TemplateText::new(1 << 16);
    text.add("p", data);
    for line in 1..4 {
        if let Some((name, value)) = debconf::template_line(data, line) {
            let _ = text.vendor_of(&name, &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &[u8] = b"Package: openssh-server\n\
Status: install ok installed\n\
Architecture: amd64\n\
Version: 1:9.2p1-2+deb12u5\n\
Conffiles:\n /etc/ssh/moduli 8d1b4d2b4ee3bde0c2a6e6e0d1a2e5c4\n /etc/pam.d/sshd newconffile\n\
Description: secure shell\n continued\n\
\n\
Package: gone\n\
Status: deinstall ok config-files\n\
Version: 1.0\n\
\n\
Package: libc6\n\
Status: install ok installed\n\
Version: 2.36-9\n";

    fn md5(data: &[u8]) -> String {
        Md5::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn status_paragraphs() {
        let s = parse_status(STATUS, 10);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "openssh-server");
        assert_eq!(s[0].version.as_deref(), Some("1:9.2p1-2+deb12u5"));
        assert_eq!(s[0].architecture.as_deref(), Some("amd64"));
        assert!(s[0].present);
        assert_eq!(s[0].conffiles.len(), 2);
        assert_eq!(s[0].conffiles[0].0, "/etc/ssh/moduli");
        assert!(s[0].conffiles[0].1.is_some());
        assert_eq!(s[0].conffiles[1].1, None);
        assert!(!s[1].present);
        assert_eq!(s[2].name, "libc6");
        assert_eq!(parse_status(STATUS, 1).len(), 1);
    }

    #[test]
    fn md5sums_and_lists() {
        let sums = format!(
            "{}  usr/lib/x86_64-linux-gnu/libgnutls.so.30\n{} *./usr/share/doc/a\nbad line\n\n",
            md5(b"a"),
            md5(b"b")
        );
        let got: Vec<_> = parse_md5sums(sums.as_bytes()).map(|(_, p)| p).collect();
        assert_eq!(
            got,
            [
                "/usr/lib/x86_64-linux-gnu/libgnutls.so.30",
                "/usr/share/doc/a"
            ]
        );
        let list: Vec<_> = parse_list(b"/.\n/usr\n/usr/bin/x\r\nrelative\n").collect();
        assert_eq!(list, ["/.", "/usr", "/usr/bin/x"]);
        assert_eq!(
            info_file_kind("libc6:amd64.md5sums"),
            Some(("libc6", InfoFile::Md5sums))
        );
        assert_eq!(info_file_kind("x.postinst"), None);
        assert_eq!(info_file_kind(".list"), None);
    }

    #[test]
    fn classify_unchanged_modified_unverified() {
        let mut idx = PackageIndex::new(&DbLimits::default());
        idx.add_status(STATUS);
        let sums = format!(
            "{}  usr/lib/x86_64-linux-gnu/libgnutls.so.30\n{}  usr/share/doc/x\n",
            md5(b"vendor"),
            md5(b"doc")
        );
        idx.add_info_file("libgnutls30:amd64.md5sums", sums.as_bytes(), None);
        idx.add_info_file(
            "libgnutls30:amd64.list",
            b"/usr/lib/x86_64-linux-gnu/libgnutls.so.30\n/usr/lib/nosum\n",
            None,
        );
        idx.add_info_file(
            "openssh-server.list",
            b"/etc/ssh/moduli\n/etc/pam.d/sshd\n",
            None,
        );
        idx.add_info_file("openssh-server.postinst", b"ignored", None);

        let f = idx
            .classify("/usr/lib/x86_64-linux-gnu/libgnutls.so.30", b"vendor", None)
            .unwrap();
        assert_eq!(f.name, "libgnutls30");
        assert_eq!(f.version, None);
        assert_eq!(f.state, PackageFileState::Unchanged);
        // Merged /usr both ways.
        let f = idx
            .classify("/lib/x86_64-linux-gnu/libgnutls.so.30", b"vendor", None)
            .unwrap();
        assert_eq!(f.state, PackageFileState::Unchanged);
        let f = idx
            .classify(
                "/usr/lib/x86_64-linux-gnu/libgnutls.so.30",
                b"changed",
                None,
            )
            .unwrap();
        assert_eq!(f.state, PackageFileState::Modified);
        assert_eq!(
            idx.classify("/usr/lib/nosum", b"x", None).unwrap().state,
            PackageFileState::Unverified
        );
        // A conffile is checked against the checksum in dpkg's status.
        let f = idx.classify("/etc/ssh/moduli", b"x", None).unwrap();
        assert_eq!(f.name, "openssh-server");
        assert_eq!(f.version.as_deref(), Some("1:9.2p1-2+deb12u5"));
        assert_eq!(f.state, PackageFileState::Modified);
        assert_eq!(
            idx.classify("/etc/pam.d/sshd", b"x", None).unwrap().state,
            PackageFileState::Unverified
        );
        assert_eq!(idx.classify("/etc/shadow", b"x", None), None);
        assert_eq!(idx.classify("/usr/share/doc/y", b"doc", None), None);
        assert!(!idx.truncated);
    }

    #[test]
    fn control_files_of_installed_packages_by_their_write_time() {
        let mut idx = PackageIndex::new(&DbLimits::default());
        idx.add_status(STATUS);
        // Unpacked (its `.list` written) at 1000; its control files keep the build's mtime.
        idx.add_info_file("openssh-server.list", b"/etc/ssh/moduli\n", Some(1000));
        idx.add_info_file("gone.list", b"/etc/gone\n", Some(1000));
        let postinst = "/var/lib/dpkg/info/openssh-server.postinst";
        let f = idx.classify(postinst, b"x", Some(900)).unwrap();
        assert_eq!(f.name, "openssh-server");
        assert_eq!(f.state, PackageFileState::Control);
        assert_eq!(
            idx.classify(
                "/var/lib/dpkg/info/openssh-server:amd64.templates",
                b"x",
                Some(1005)
            )
            .unwrap()
            .state,
            PackageFileState::Control
        );
        // Written after the unpack: changed since.
        assert_eq!(
            idx.classify(postinst, b"x", Some(5000)).unwrap().state,
            PackageFileState::Modified
        );
        // No time to compare: unverified (its rule's severity).
        assert_eq!(
            idx.classify(postinst, b"x", None).unwrap().state,
            PackageFileState::Unverified
        );
        // Not a control file, a package not installed, or no package at all: not vendor.
        assert_eq!(
            idx.classify("/var/lib/dpkg/info/openssh-server.bak", b"x", Some(1)),
            None
        );
        assert_eq!(
            idx.classify("/var/lib/dpkg/info/gone.postinst", b"x", Some(1)),
            None
        );
        assert_eq!(
            idx.classify("/var/lib/dpkg/info/nobody.postinst", b"x", Some(1)),
            None
        );
        assert_eq!(
            control_file_package("/var/lib/dpkg/info/sub/x.postinst"),
            None
        );
        assert_eq!(control_file_package("/var/lib/dpkg/info/.postinst"), None);
        assert_eq!(
            control_file_package("/var/lib/dpkg/info/libc6:amd64.shlibs"),
            Some("libc6")
        );
        // Control facts lower the severity as unchanged ones do.
        let mut findings = vec![Finding {
            rule_id: "r".into(),
            title: "t".into(),
            secret_type: "s".into(),
            severity: Severity::High,
            confidence: crate::Confidence::High,
            line: 1,
            fingerprint: "f".into(),
            redacted: "x".into(),
            metadata: Default::default(),
        }];
        idx.installed("openssh-server", PackageFileState::Control)
            .unwrap()
            .apply(&mut findings);
        assert_eq!(findings[0].severity, Severity::Info);
        assert!(idx.installed("gone", PackageFileState::Control).is_none());
    }

    #[test]
    fn limits_bound_the_index() {
        let mut idx = PackageIndex::new(&DbLimits {
            max_paths: 3,
            max_packages: 2,
            ..DbLimits::default()
        });
        idx.add_info_file("a.list", b"/1\n/2\n", None);
        idx.add_info_file("b.list", b"/3\n/4\n/5\n", None);
        idx.add_info_file("c.list", b"/6\n", None);
        assert_eq!(idx.len(), 3);
        assert!(idx.truncated);
        assert!(idx.classify("/6", b"", None).is_none());
    }

    #[test]
    fn unchanged_vendor_findings_drop_to_info() {
        let mut findings = vec![Finding {
            rule_id: "r".into(),
            title: "t".into(),
            secret_type: "s".into(),
            severity: Severity::Critical,
            confidence: crate::Confidence::High,
            line: 1,
            fingerprint: "f".into(),
            redacted: "x".into(),
            metadata: Default::default(),
        }];
        let mut pf = PackageFile {
            name: "p".into(),
            version: None,
            state: PackageFileState::Modified,
        };
        pf.apply(&mut findings);
        assert_eq!(findings[0].severity, Severity::Critical);
        assert_eq!(findings[0].metadata.package.as_ref(), Some(&pf));
        pf.state = PackageFileState::Unchanged;
        pf.apply(&mut findings);
        assert_eq!(findings[0].severity, Severity::Info);
    }
}
