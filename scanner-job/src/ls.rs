//! `snapsentry-scan ls`: volumes and files of an image, no detection.
//!
//! Prints every volume `open_disk` finds and every node of every scanned volume, as aligned
//! columns for people or as the JSON document `docs/cli.md` fixes for tools:
//! `{"volumes": [VolumeInfo…], "files": [{"volume","path","kind","size","mode","uid","gid",
//! "modified","accessed","sha256"}]}`.

use std::io::Write;
use std::ops::ControlFlow;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use snapsentry_disk::source::FileSource;
use snapsentry_disk::{FileKind, Filesystem, NodeId, Timestamp, VolumeInfo, WalkLimits, walk};

mod hash;

use hash::hash_files;

use crate::columns::write_columns;

/// Output format of `ls`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LsFormat {
    /// Aligned columns, for people.
    #[default]
    Table,
    /// One JSON document (`docs/cli.md`).
    Json,
}

/// Arguments of `ls`.
#[derive(clap::Args)]
pub struct LsArgs {
    /// Disk image (raw, qcow2, VHD, VHDX, VMDK) or block device.
    pub path: std::path::PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = LsFormat::Table)]
    pub format: LsFormat,
    /// Also print the SHA-256 of every regular file (reads every file).
    #[arg(long)]
    pub sha256: bool,
}

/// One node of a volume, as `ls --format json` prints it.
#[derive(Debug, Serialize)]
pub struct FileRow {
    /// Volume id (`p2`, `disk`, `p3/vg/lv`).
    pub volume: String,
    /// Absolute path inside the volume's filesystem.
    pub path: String,
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits (`mode & 0o7777`, so setuid/setgid/sticky included) as a 4-digit octal
    /// string, like `"0644"`; `null` where the filesystem keeps no mode (FAT, NTFS).
    pub mode: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// RFC 3339 UTC, nanoseconds shown when non-zero (see [`rfc3339`]).
    pub modified: Option<String>,
    pub accessed: Option<String>,
    /// Hex SHA-256 of the content: only with `--sha256`, only for regular files, `null` when the
    /// file could not be read.
    pub sha256: Option<String>,
    /// Symlink target as stored (not part of the JSON contract; the table shows it).
    #[serde(skip)]
    link_target: Option<String>,
    #[serde(skip)]
    node: NodeId,
    #[serde(skip)]
    volume_index: usize,
}

/// Rows walked, hashed and written per step of `ls --format json`: memory stays bounded by this
/// (and by the directory stack of the walk), whatever the number of files in the image.
const CHUNK_ROWS: usize = 4096;

pub fn run(args: &LsArgs) -> anyhow::Result<ExitCode> {
    crate::cli::check_image_input(&args.path)?;
    let disk = open(&args.path)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        // Streamed: a million-file volume must not mean a million rows in memory.
        LsFormat::Json => {
            let mut json = JsonWriter::start(&mut out, &disk)?;
            visit_rows(&disk, args.sha256, |rows| json.rows(rows))?;
            json.finish()?;
        }
        // Columns need their widest cell, so the table collects every row first.
        LsFormat::Table => {
            let mut files = Vec::new();
            visit_rows(&disk, args.sha256, |rows| {
                files.append(rows);
                Ok(())
            })?;
            print_table(&mut out, &disk, &files, args.sha256)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A disk opened down to its volumes, with every node of every scanned volume.
pub struct Listing {
    pub disk: snapsentry_disk::Disk,
    pub files: Vec<FileRow>,
}

/// Open the image or block device at `path` down to its volumes; an unusable input is an error.
pub fn open(path: &std::path::Path) -> anyhow::Result<snapsentry_disk::Disk> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}", path.display()))?;
    anyhow::ensure!(
        !meta.is_dir(),
        "{}: is a directory (ls reads disk images and block devices)",
        path.display()
    );
    let source = FileSource::open(path).with_context(|| format!("{}", path.display()))?;
    snapsentry_disk::open_disk(Arc::new(source))
        .with_context(|| format!("{}: unusable disk image", path.display()))
}

/// Open the image at `path` and collect every node of every scanned volume, hashing regular files
/// if `sha256`. Problems inside a volume are warnings on stderr; an unusable input is an error.
pub fn list(path: &std::path::Path, sha256: bool) -> anyhow::Result<Listing> {
    let disk = open(path)?;
    let mut files = Vec::new();
    visit_rows(&disk, sha256, |rows| {
        files.append(rows);
        Ok(())
    })?;
    Ok(Listing { disk, files })
}

/// Walk every scanned volume of `disk` and hand its nodes to `sink` in walk order, at most
/// [`CHUNK_ROWS`] at a time, each chunk hashed (in parallel) first when `sha256` is set. `sink`
/// may take the rows out of the vector.
fn visit_rows(
    disk: &snapsentry_disk::Disk,
    sha256: bool,
    mut sink: impl FnMut(&mut Vec<FileRow>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let filesystems: Vec<Option<&dyn Filesystem>> =
        disk.volumes.iter().map(|v| v.fs.as_deref()).collect();
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    let mut flush = |chunk: &mut Vec<FileRow>| -> std::io::Result<()> {
        if sha256 {
            hash_files(&filesystems, chunk);
        }
        sink(chunk)?;
        chunk.clear();
        Ok(())
    };
    let mut failed: Option<std::io::Error> = None;
    let limits = WalkLimits::default();
    for (volume_index, volume) in disk.volumes.iter().enumerate() {
        let Some(fs) = &volume.fs else { continue };
        let id = &volume.info.id;
        let summary = walk(fs.as_ref(), &limits, |e| {
            let m = &e.metadata;
            chunk.push(FileRow {
                volume: id.clone(),
                path: e.path,
                kind: m.kind,
                size: m.size,
                mode: m.mode.map(|mode| format!("{:04o}", mode & 0o7777)),
                uid: m.uid,
                gid: m.gid,
                modified: m.modified.and_then(rfc3339),
                accessed: m.accessed.and_then(rfc3339),
                sha256: None,
                link_target: e.link_target,
                node: e.node,
                volume_index,
            });
            if chunk.len() >= CHUNK_ROWS
                && let Err(e) = flush(&mut chunk)
            {
                failed = Some(e);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        });
        if let Some(e) = failed {
            return Err(e.into());
        }
        match summary {
            Ok(summary) => {
                for err in &summary.errors {
                    eprintln!("snapsentry-scan: warning: {id}:{}: {}", err.path, err.error);
                }
            }
            Err(e) => eprintln!("snapsentry-scan: warning: {id}: root directory unreadable: {e}"),
        }
    }
    flush(&mut chunk)?;
    Ok(())
}

/// Writes the `ls --format json` document piece by piece: the volumes first, then file rows as
/// they come, one per line.
struct JsonWriter<'a, W: Write> {
    out: &'a mut W,
    first: bool,
}

impl<'a, W: Write> JsonWriter<'a, W> {
    fn start(out: &'a mut W, disk: &snapsentry_disk::Disk) -> std::io::Result<Self> {
        let volumes: Vec<&VolumeInfo> = disk.volumes.iter().map(|v| &v.info).collect();
        out.write_all(b"{\"volumes\": ")?;
        serde_json::to_writer(&mut *out, &volumes)?;
        out.write_all(b",\n\"files\": [")?;
        Ok(JsonWriter { out, first: true })
    }

    fn rows(&mut self, rows: &[FileRow]) -> std::io::Result<()> {
        for row in rows.iter() {
            self.out
                .write_all(if self.first { b"\n" } else { b",\n" })?;
            self.first = false;
            serde_json::to_writer(&mut *self.out, row)?;
        }
        Ok(())
    }

    fn finish(self) -> std::io::Result<()> {
        self.out.write_all(b"\n]}\n")
    }
}

/// Print `listing` in `format`; `sha` adds the hash column to the table.
pub fn render(
    listing: &Listing,
    format: LsFormat,
    sha: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match format {
        LsFormat::Json => {
            let mut json = JsonWriter::start(out, &listing.disk)?;
            json.rows(&listing.files)?;
            json.finish()?;
        }
        LsFormat::Table => print_table(out, &listing.disk, &listing.files, sha)?,
    }
    Ok(())
}

fn print_table(
    out: &mut impl Write,
    disk: &snapsentry_disk::Disk,
    files: &[FileRow],
    sha: bool,
) -> std::io::Result<()> {
    writeln!(
        out,
        "format {}, {} bytes, partition table {}",
        disk.format, disk.size, disk.scheme
    )?;
    let dash = || "-".to_string();
    let mut volumes = vec![
        ["VOLUME", "FILESYSTEM", "LABEL", "SIZE", "SCANNED", "NOTE"]
            .map(String::from)
            .to_vec(),
    ];
    for v in &disk.volumes {
        let v = &v.info;
        volumes.push(vec![
            v.id.clone(),
            v.filesystem.clone().unwrap_or_else(dash),
            v.label.clone().unwrap_or_else(dash),
            v.size_bytes.to_string(),
            if v.scanned { "yes" } else { "no" }.into(),
            v.error.clone().unwrap_or_default(),
        ]);
    }
    write_columns(out, &volumes)?;
    if files.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut header = ["VOLUME", "KIND", "MODE", "UID", "GID", "SIZE", "MODIFIED"]
        .map(String::from)
        .to_vec();
    if sha {
        header.push("SHA256".into());
    }
    header.push("PATH".into());
    let mut table = vec![header];
    for f in files {
        let kind = match f.kind {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "link",
            FileKind::Other => "other",
        };
        let mut row = vec![
            f.volume.clone(),
            kind.into(),
            f.mode.clone().unwrap_or_else(dash),
            f.uid.map_or_else(dash, |u| u.to_string()),
            f.gid.map_or_else(dash, |g| g.to_string()),
            f.size.to_string(),
            f.modified.clone().unwrap_or_else(dash),
        ];
        if sha {
            row.push(f.sha256.clone().unwrap_or_else(dash));
        }
        row.push(match &f.link_target {
            Some(target) => format!("{} -> {target}", f.path),
            None => f.path.clone(),
        });
        table.push(row);
    }
    write_columns(out, &table)
}

/// RFC 3339 in UTC: `2024-05-01T12:34:56Z`, or `2024-05-01T12:34:56.000000001Z` when the
/// nanoseconds are non-zero. `None` for years outside 0000–9999, which RFC 3339 cannot write.
pub fn rfc3339(t: Timestamp) -> Option<String> {
    if t.nanos >= 1_000_000_000 {
        return None;
    }
    let utc = jiff::civil::date(1970, 1, 1)
        .at(0, 0, 0, 0)
        .checked_add(jiff::SignedDuration::from_secs(t.secs))
        .ok()?;
    if utc.year() < 0 {
        return None;
    }
    let frac = if t.nanos == 0 {
        String::new()
    } else {
        format!(".{:09}", t.nanos)
    };
    Some(format!("{}{frac}Z", utc.strftime("%Y-%m-%dT%H:%M:%S")))
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::*;

    #[test]
    fn rfc3339_formats_utc_with_optional_nanos() {
        let f = |s, n| rfc3339(Timestamp::new(s, n));
        assert_eq!(f(0, 0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(f(951_782_400, 0).unwrap(), "2000-02-29T00:00:00Z");
        assert_eq!(
            f(1_700_000_000, 5).unwrap(),
            "2023-11-14T22:13:20.000000005Z"
        );
        assert_eq!(f(-1, 0).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(f(-62_167_219_200, 0).unwrap(), "0000-01-01T00:00:00Z");
        assert_eq!(
            f(253_402_300_799, 999_999_999).unwrap(),
            "9999-12-31T23:59:59.999999999Z"
        );
        assert_eq!(f(253_402_300_800, 0), None);
        assert_eq!(f(i64::MIN, 0), None);
        assert_eq!(f(i64::MAX, 0), None);
        assert_eq!(f(0, 1_000_000_000), None);
    }

    /// Run a tool, failing with its name when it is missing or fails.
    fn tool(cmd: &str, args: &[&str]) {
        let out = std::process::Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd} is required for this test: {e}"));
        assert!(
            out.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A temporary directory removed on drop (this crate has no tempfile dependency).
    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// JSON is written in chunks of [`CHUNK_ROWS`]: a volume with more files than that must still
    /// come out as one valid document listing every file once, with every hash.
    #[test]
    fn json_streams_across_chunk_boundaries() {
        let dir =
            TempDir(std::env::temp_dir().join(format!("ss-ls-chunks-{}", std::process::id())));
        let tree = dir.0.join("tree/many");
        std::fs::create_dir_all(&tree).unwrap();
        let n = CHUNK_ROWS + 100;
        for i in 0..n {
            std::fs::write(tree.join(format!("f{i}")), format!("{i}\n")).unwrap();
        }
        let img = dir.0.join("fs.img");
        tool(
            "mkfs.ext4",
            &[
                "-q",
                "-N",
                "8192",
                "-d",
                dir.0.join("tree").to_str().unwrap(),
                img.to_str().unwrap(),
                "64M",
            ],
        );
        let disk = open(&img).unwrap();
        let mut out = Vec::new();
        let mut json = JsonWriter::start(&mut out, &disk).unwrap();
        visit_rows(&disk, true, |rows| json.rows(rows)).unwrap();
        json.finish().unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let files: Vec<_> = doc["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["path"].as_str().unwrap().starts_with("/many/"))
            .collect();
        assert_eq!(files.len(), n);
        let f7 = files.iter().find(|f| f["path"] == "/many/f7").unwrap();
        assert_eq!(f7["sha256"], hash::hex(&sha2::Sha256::digest(b"7\n")));
        assert!(files.iter().all(|f| f["sha256"].is_string()));
    }

    #[test]
    fn lists_a_partitioned_qcow2_as_json() {
        let dir = TempDir(std::env::temp_dir().join(format!("ss-ls-{}", std::process::id())));
        let d = &dir.0;
        let tree = d.join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        let secret = tree.join("etc/app.conf");
        std::fs::write(&secret, b"password = hunter2\n").unwrap();
        tool("chmod", &["0640", secret.to_str().unwrap()]);
        tool("chown", &["1000:1001", secret.to_str().unwrap()]);
        tool(
            "touch",
            &["-d", "2024-05-01T12:34:56Z", secret.to_str().unwrap()],
        );
        std::os::unix::fs::symlink("app.conf", tree.join("etc/link")).unwrap();
        let (raw, part) = (d.join("disk.raw"), d.join("p1.img"));
        std::fs::write(&raw, vec![0u8; 24 << 20]).unwrap();
        std::fs::write(&part, vec![0u8; 16 << 20]).unwrap();
        let mut sfdisk = std::process::Command::new("sfdisk")
            .args(["-q", raw.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk is required for this test");
        sfdisk
            .stdin
            .take()
            .unwrap()
            .write_all(b"label: gpt\nstart=2048, size=16M\n")
            .unwrap();
        assert!(sfdisk.wait().unwrap().success());
        tool(
            "mkfs.ext4",
            &[
                "-q",
                "-I",
                "256",
                "-L",
                "root",
                "-d",
                tree.to_str().unwrap(),
                part.to_str().unwrap(),
            ],
        );
        tool(
            "dd",
            &[
                &format!("if={}", part.display()),
                &format!("of={}", raw.display()),
                "bs=1M",
                "seek=1",
                "conv=notrunc",
                "status=none",
            ],
        );
        let qcow2 = d.join("disk.qcow2");
        tool(
            "qemu-img",
            &[
                "convert",
                "-O",
                "qcow2",
                raw.to_str().unwrap(),
                qcow2.to_str().unwrap(),
            ],
        );

        // (mkfs.ext4 -d keeps whole seconds only; nanoseconds are covered by the unit test above.)
        let listing = list(&qcow2, true).unwrap();
        let mut out = Vec::new();
        render(&listing, LsFormat::Json, true, &mut out).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["volumes"][0]["id"], "p1");
        assert_eq!(doc["volumes"][0]["filesystem"], "ext4");
        assert_eq!(doc["volumes"][0]["label"], "root");
        let files = doc["files"].as_array().unwrap();
        let conf = files.iter().find(|f| f["path"] == "/etc/app.conf").unwrap();
        assert_eq!(conf["volume"], "p1");
        assert_eq!(conf["kind"], "file");
        assert_eq!(conf["size"], 19);
        assert_eq!(conf["mode"], "0640");
        assert_eq!(
            (conf["uid"].as_u64(), conf["gid"].as_u64()),
            (Some(1000), Some(1001))
        );
        assert_eq!(conf["modified"], "2024-05-01T12:34:56Z");
        assert_eq!(
            conf["sha256"],
            hash::hex(&sha2::Sha256::digest(b"password = hunter2\n"))
        );
        let etc = files.iter().find(|f| f["path"] == "/etc").unwrap();
        assert_eq!(etc["kind"], "dir");
        assert!(etc["sha256"].is_null());
        let mut table = Vec::new();
        render(&listing, LsFormat::Table, false, &mut table).unwrap();
        let table = String::from_utf8(table).unwrap();
        assert!(table.contains("/etc/app.conf"), "{table}");
        assert!(table.contains("/etc/link -> app.conf"), "{table}");
        assert!(list(d, false).is_err(), "a directory is not a disk");
    }
}
