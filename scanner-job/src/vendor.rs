//! Vendor content: the dpkg database of each scanned root (a directory given to `dir`, a volume
//! of an image or snapshot), read from that root itself, tells which files a package installed
//! and with which checksum ([`snapsentry_engine::packages`]). Findings in a file that still has
//! its package's checksum drop to `info`; a package file changed since installation keeps its
//! severity. Both say which package in `metadata.package`. dpkg's own control area (maintainer
//! scripts, templates: `/var/lib/dpkg/info/<package>.<control file>`) is vendor content while not
//! written after its package's unpack, and a line of debconf's template cache is vendor text when
//! the package's `.templates` holds it ([`snapsentry_engine::packages::debconf`]).
//!
//! The listing notes where the database files are while it walks ([`PackageDb::note`]); the
//! database is read only when a file of that root first yields a finding (most roots of a
//! scan with nothing to report never read it), once, under [`DbLimits`]: a huge or malformed
//! database costs bounded memory and time and only leaves findings at their normal severity.

use std::sync::{Arc, OnceLock};

use snapsentry_disk::Filesystem;
use snapsentry_engine::Finding;
use snapsentry_engine::packages::debconf::{TemplateText, template_line};
use snapsentry_engine::packages::{
    DEBCONF_TEMPLATES, DPKG_INFO_DIR, DPKG_STATUS, DbLimits, PackageFileState, PackageIndex,
    info_file_kind,
};

use crate::scan::{Content, read_content};

/// One database file: where it is and how large the listing said it is.
struct DbFile {
    content: Content,
    size: u64,
    /// Its mtime, seconds since the epoch.
    modified: Option<i64>,
}

/// The dpkg database of one scanned root: where its files are, and the index once read.
#[derive(Default)]
pub(crate) struct PackageDb {
    status: Option<DbFile>,
    /// `/var/lib/dpkg/info/*.list` and `*.md5sums`, by file name.
    info: Vec<(String, DbFile)>,
    /// `/var/lib/dpkg/info/*.templates`, by package name.
    templates: Vec<(String, DbFile)>,
    index: OnceLock<PackageIndex>,
    template_text: OnceLock<TemplateText>,
}

impl PackageDb {
    /// Remember `path` (inside the root) if it is a file of the dpkg database the index reads.
    pub(crate) fn note(&mut self, path: &str, content: &Content, size: u64, modified: Option<i64>) {
        let file = || DbFile {
            content: content.clone(),
            size,
            modified,
        };
        if path == DPKG_STATUS {
            self.status = Some(file());
        } else if let Some(name) = path.strip_prefix(DPKG_INFO_DIR)
            && !name.contains('/')
            && info_file_kind(name).is_some()
            && self.info.len() < DbLimits::default().max_packages * 2
        {
            self.info.push((name.to_owned(), file()));
        } else if let Some(stem) = path
            .strip_prefix(DPKG_INFO_DIR)
            .and_then(|n| n.strip_suffix(".templates"))
            && !stem.contains('/')
            && self.templates.len() < DbLimits::default().max_packages
        {
            let package = stem.split(':').next().unwrap_or(stem);
            self.templates.push((package.to_owned(), file()));
        }
    }

    /// Record on `findings` of the file at `path` (content `data`, mtime `modified`) what it is
    /// to the package manager; unchanged vendor content drops to `info`.
    pub(crate) fn apply(
        &self,
        path: &str,
        data: &[u8],
        modified: Option<i64>,
        findings: &mut [Finding],
        filesystems: &[Arc<dyn Filesystem>],
    ) {
        let index = self.index(filesystems);
        if let Some(p) = index.classify(path, data, modified) {
            p.apply(findings);
        } else if path
            .strip_prefix(DEBCONF_TEMPLATES)
            .is_some_and(|rest| rest.is_empty() || rest == "-old")
            && !index.is_empty()
        {
            let text = self
                .template_text
                .get_or_init(|| self.read_templates(filesystems));
            for f in findings {
                let vendor = template_line(data, f.line)
                    .and_then(|(name, value)| text.vendor_of(&name, &value))
                    .and_then(|package| index.installed(package, PackageFileState::Control));
                if let Some(p) = vendor {
                    p.apply(std::slice::from_mut(f));
                }
            }
        }
    }

    /// The installed packages' debconf templates, read once, within the database's byte limits.
    fn read_templates(&self, filesystems: &[Arc<dyn Filesystem>]) -> TemplateText {
        let limits = DbLimits::default();
        let mut text =
            TemplateText::new(usize::try_from(limits.max_total_bytes).unwrap_or(usize::MAX));
        for (package, file) in &self.templates {
            if file.size > limits.max_file_bytes {
                continue;
            }
            match read_content(&file.content, filesystems, limits.max_file_bytes) {
                Ok(data) => text.add(package, &data),
                Err(e) => tracing::warn!(error = %e, "debconf templates file not readable"),
            }
        }
        text
    }

    /// The index of this root's database, read on first use (empty when there is none).
    fn index(&self, filesystems: &[Arc<dyn Filesystem>]) -> &PackageIndex {
        self.index.get_or_init(|| self.read(filesystems))
    }

    fn read(&self, filesystems: &[Arc<dyn Filesystem>]) -> PackageIndex {
        let limits = DbLimits::default();
        let mut index = PackageIndex::new(&limits);
        let mut budget = limits.max_total_bytes;
        let mut skipped = 0u64;
        let mut load = |file: &DbFile| -> Option<Vec<u8>> {
            if file.size > limits.max_file_bytes || file.size > budget {
                skipped += 1;
                return None;
            }
            budget -= file.size;
            match read_content(&file.content, filesystems, limits.max_file_bytes) {
                Ok(data) => Some(data),
                Err(e) => {
                    tracing::warn!(error = %e, "dpkg database file not readable");
                    skipped += 1;
                    None
                }
            }
        };
        if let Some(data) = self.status.as_ref().and_then(&mut load) {
            index.add_status(&data);
        }
        for (name, file) in &self.info {
            if let Some(data) = load(file) {
                index.add_info_file(name, &data, file.modified);
            }
        }
        if !index.is_empty() {
            tracing::info!(
                files = index.len(),
                truncated = index.truncated || skipped > 0,
                "dpkg database read: findings in unchanged package files are reported at info"
            );
        }
        index
    }
}
