//! Shared by the filesystem tests: a reference file tree built on the host, tools to turn it into
//! images with Debian's own mkfs tools, and a comparer that checks a [`Filesystem`] reader lists
//! exactly that tree — paths, kinds, sizes, modes, owners, times, link targets and content digests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::ops::ControlFlow;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use snapsentry_disk::fs::{ContentReader, DirEntry, FileKind, Filesystem, NodeId};
use snapsentry_disk::walk::{WalkLimits, walk};

/// What a filesystem can represent; the tree leaves out what it cannot.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub symlinks: bool,
    pub hard_links: bool,
    /// Modes, uid and gid (FAT and NTFS-without-ownership have none).
    pub unix_meta: bool,
    /// Names longer than 200 bytes.
    pub long_names: bool,
    /// Sparse files with many data islands (forces extent trees / long run lists).
    pub sparse: bool,
    /// Timestamps before 1980 (FAT cannot) and after 2038 (needs 64-bit or bigtime).
    pub wide_times: bool,
    /// Number of files in the big directory (forces htree / B+tree directories).
    pub big_dir_files: usize,
}

impl Features {
    /// Everything a POSIX filesystem keeps (ext4, XFS, btrfs).
    pub const POSIX: Features = Features {
        symlinks: true,
        hard_links: true,
        unix_meta: true,
        long_names: true,
        sparse: true,
        wide_times: true,
        big_dir_files: 3000,
    };
}

/// One node of the reference tree, as the host sees it after building.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefNode {
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits only (`0o7777` mask).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub sha256: Option<String>,
    pub link_target: Option<String>,
}

/// A tree on the host (in a temp dir) and what it holds, keyed by absolute in-image path.
pub struct RefTree {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<String, RefNode>,
}

impl RefTree {
    /// The host directory holding the tree.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Deterministic pseudo-random bytes (xorshift), so content is incompressible but reproducible.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn set_mtime(path: &Path, secs: i64) {
    let t = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    let f = fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| fs::File::open(path))
        .unwrap();
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

/// Build the reference tree for a filesystem with `features`.
///
/// Contents model a small Linux server: configs, an SSH key, a shell history, deep nesting,
/// long and non-ASCII names, empty, large and sparse files, hard links, symlinks, several modes
/// and owners, and old and far-future timestamps.
pub fn build_tree(features: Features) -> RefTree {
    let dir = tempfile::Builder::new()
        .prefix("snapsentry-tree-")
        .tempdir()
        .unwrap();
    let root = dir.path();
    // (path, content, perm, uid, gid, mtime)
    let mut files: Vec<(String, Vec<u8>, u32, u32, u32, i64)> = vec![
        ("/etc/hostname".into(), b"web-01\n".to_vec(), 0o644, 0, 0, 1_700_000_000),
        ("/etc/ssh/sshd_config".into(), b"PermitRootLogin no\n".repeat(40), 0o644, 0, 0, 1_600_000_000),
        ("/home/admin/.ssh/id_ed25519".into(), b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n".to_vec(), 0o600, 1000, 1000, 1_650_000_000),
        ("/home/admin/.bash_history".into(), b"ls -la\nsudo systemctl restart nginx\n".to_vec(), 0o600, 1000, 1000, 1_690_000_000),
        ("/srv/app/config/settings.yaml".into(), b"db:\n  host: db.internal\n".to_vec(), 0o640, 33, 33, 1_680_000_000),
        ("/deep/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/leaf.txt".into(), b"deep\n".to_vec(), 0o644, 0, 0, 1_500_000_000),
        ("/var/empty.log".into(), Vec::new(), 0o644, 0, 0, 1_700_000_000),
        ("/var/lib/blob.bin".into(), pseudo_random(1, 5 * 1024 * 1024 + 123), 0o644, 0, 0, 1_710_000_000),
        ("/usr/local/bin/tool".into(), pseudo_random(2, 70_000), 0o4755, 0, 0, 1_400_000_000),
        ("/opt/app/run.sh".into(), b"#!/bin/sh\nexec /opt/app/server\n".to_vec(), 0o755, 65534, 65534, 1_300_000_000),
        ("/données/résumé-日本語.txt".into(), "héllo wörld\n".as_bytes().to_vec(), 0o644, 1000, 1000, 1_600_000_000),
        // Small enough to be stored inline (ext4 inline_data, NTFS resident data, btrfs inline extents).
        ("/etc/tiny.conf".into(), b"x=1\n".to_vec(), 0o644, 0, 0, 1_600_000_000),
    ];
    if features.wide_times {
        files.push((
            "/var/old/1975.txt".into(),
            b"old\n".to_vec(),
            0o644,
            0,
            0,
            170_000_000,
        ));
        files.push((
            "/var/old/2040.txt".into(),
            b"future\n".to_vec(),
            0o644,
            0,
            0,
            2_210_000_000,
        ));
    }
    if features.long_names {
        let long = format!("/var/long/{}.txt", "n".repeat(200));
        files.push((long, b"long name\n".to_vec(), 0o644, 0, 0, 1_600_000_000));
    }
    for i in 0..features.big_dir_files {
        let name = format!("/var/spool/many/file-{i:05}.txt");
        files.push((
            name,
            format!("{i}\n").into_bytes(),
            0o644,
            0,
            0,
            1_600_000_000,
        ));
    }
    for (path, content, perm, uid, gid, mtime) in &files {
        let host = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        fs::write(&host, content).unwrap();
        if features.unix_meta {
            std::os::unix::fs::chown(&host, Some(*uid), Some(*gid)).unwrap();
            fs::set_permissions(&host, fs::Permissions::from_mode(*perm)).unwrap();
        }
        set_mtime(&host, *mtime);
    }
    if features.sparse {
        // 40 islands of 4 KiB, one every 256 KiB: more extents than an ext4 inode holds inline.
        let host = root.join("var/lib/sparse.img");
        let mut f = fs::File::create(&host).unwrap();
        for i in 0..40u64 {
            use std::io::{Seek, SeekFrom};
            f.seek(SeekFrom::Start(i * 256 * 1024)).unwrap();
            f.write_all(&pseudo_random(100 + i, 4096)).unwrap();
        }
        f.set_len(40 * 256 * 1024 + 1000).unwrap();
        drop(f);
        set_mtime(&host, 1_700_000_000);
    }
    if features.hard_links {
        fs::hard_link(
            root.join("usr/local/bin/tool"),
            root.join("usr/local/bin/tool-hardlink"),
        )
        .unwrap();
    }
    if features.symlinks {
        std::os::unix::fs::symlink("/usr/share/zoneinfo/UTC", root.join("etc/localtime")).unwrap();
        std::os::unix::fs::symlink(".ssh/id_ed25519", root.join("home/admin/key-link")).unwrap();
        let long_target = format!("/{}", "t".repeat(300));
        std::os::unix::fs::symlink(long_target, root.join("etc/long-link")).unwrap();
    }
    // Directory times last: creating children updates them.
    let nodes = scan_host(root, features);
    RefTree { dir, nodes }
}

/// Read back what the host holds under `root` — the expected listing.
fn scan_host(root: &Path, features: Features) -> BTreeMap<String, RefNode> {
    let mut nodes = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let host = entry.path();
            let meta = fs::symlink_metadata(&host).unwrap();
            let rel = format!("/{}", host.strip_prefix(root).unwrap().to_str().unwrap());
            let ft = meta.file_type();
            let (kind, sha256, link_target) = if ft.is_symlink() {
                (
                    FileKind::Symlink,
                    None,
                    Some(fs::read_link(&host).unwrap().to_str().unwrap().to_string()),
                )
            } else if ft.is_dir() {
                stack.push(host.clone());
                (FileKind::Dir, None, None)
            } else {
                (
                    FileKind::File,
                    Some(hex(&Sha256::digest(fs::read(&host).unwrap()))),
                    None,
                )
            };
            let size = if kind == FileKind::Dir { 0 } else { meta.len() };
            nodes.insert(
                rel,
                RefNode {
                    kind,
                    size,
                    perm: if features.unix_meta {
                        meta.mode() & 0o7777
                    } else {
                        0
                    },
                    uid: meta.uid(),
                    gid: meta.gid(),
                    mtime: meta.mtime(),
                    sha256,
                    link_target,
                },
            );
        }
    }
    nodes
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What to compare beyond paths, kinds, sizes and content.
#[derive(Clone, Copy, Debug)]
pub struct Checks {
    pub perm: bool,
    pub owner: bool,
    /// Compare file mtimes (seconds). Directory times are never compared: building the image
    /// may touch them.
    pub mtime: bool,
    /// Allowed mtime difference in seconds (FAT keeps 2-second resolution).
    pub mtime_slack: i64,
}

impl Checks {
    pub const ALL: Checks = Checks {
        perm: true,
        owner: true,
        mtime: true,
        mtime_slack: 0,
    };
}

/// Walk `fs` and check it lists exactly `tree` (ignoring the paths `ignore` accepts, such as
/// `/lost+found` or NTFS metadata files). Panics with every mismatch listed.
pub fn assert_matches(
    fs: &dyn Filesystem,
    tree: &RefTree,
    checks: Checks,
    ignore: impl Fn(&str) -> bool,
) {
    let mut seen = BTreeMap::new();
    let summary = walk(fs, &WalkLimits::default(), |e| {
        if !ignore(&e.path) {
            seen.insert(e.path.clone(), e);
        }
        ControlFlow::Continue(())
    })
    .expect("walk from the root");
    let mut problems = Vec::new();
    for err in &summary.errors {
        problems.push(format!("walk error at {}: {}", err.path, err.error));
    }
    for (path, want) in &tree.nodes {
        let Some(got) = seen.get(path) else {
            problems.push(format!("missing: {path}"));
            continue;
        };
        let m = &got.metadata;
        if m.kind != want.kind {
            problems.push(format!("{path}: kind {:?}, want {:?}", m.kind, want.kind));
            continue;
        }
        if want.kind != FileKind::Dir && m.size != want.size {
            problems.push(format!("{path}: size {}, want {}", m.size, want.size));
        }
        if checks.perm && m.mode.map(|x| x & 0o7777) != Some(want.perm) {
            problems.push(format!(
                "{path}: mode {:?}, want {:o}",
                m.mode.map(|x| format!("{x:o}")),
                want.perm
            ));
        }
        if checks.owner && (m.uid != Some(want.uid) || m.gid != Some(want.gid)) {
            problems.push(format!(
                "{path}: owner {:?}:{:?}, want {}:{}",
                m.uid, m.gid, want.uid, want.gid
            ));
        }
        if checks.mtime && want.kind == FileKind::File {
            match m.modified {
                Some(t) if (t.secs - want.mtime).abs() <= checks.mtime_slack => {}
                other => problems.push(format!("{path}: mtime {other:?}, want {}", want.mtime)),
            }
        }
        if want.kind == FileKind::Symlink && got.link_target != want.link_target {
            problems.push(format!(
                "{path}: link {:?}, want {:?}",
                got.link_target, want.link_target
            ));
        }
        if let Some(want_sha) = &want.sha256 {
            match fs.open(got.node) {
                Ok(content) => {
                    let mut hasher = Sha256::new();
                    match std::io::copy(&mut ContentReader::new(content), &mut hasher) {
                        Ok(_) => {
                            let got_sha = hex(&hasher.finalize());
                            if &got_sha != want_sha {
                                problems.push(format!("{path}: content sha256 differs"));
                            }
                        }
                        Err(e) => problems.push(format!("{path}: read failed: {e}")),
                    }
                }
                Err(e) => problems.push(format!("{path}: open failed: {e}")),
            }
        }
    }
    for path in seen.keys() {
        if !tree.nodes.contains_key(path) {
            problems.push(format!("unexpected: {path}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A mounted filesystem, unmounted on drop so that a failing test leaves no mount behind.
pub struct Mount(pub PathBuf);

impl Mount {
    /// Unmount now; whether `umount` succeeded.
    pub fn unmount(self) -> bool {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        std::mem::forget(self);
        ok
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Loop-mount `image` on `mnt` (created here) with `mount -o loop<,options>`, or `None` where
/// this machine does not allow it (the caller then skips what needs the mount).
pub fn try_loop_mount(image: &Path, mnt: &Path, options: &str) -> Option<Mount> {
    fs::create_dir(mnt).unwrap();
    let options = if options.is_empty() {
        "loop".to_string()
    } else {
        format!("loop,{options}")
    };
    Command::new("mount")
        .args(["-o", &options])
        .arg(image)
        .arg(mnt)
        .output()
        .is_ok_and(|o| o.status.success())
        .then(|| Mount(mnt.to_path_buf()))
}

/// The entry `name` of directory `dir`; panics when there is none.
pub fn entry(fs: &dyn Filesystem, dir: NodeId, name: &str) -> DirEntry {
    fs.read_dir(dir)
        .unwrap()
        .into_iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name} in directory node {dir}"))
}

/// The node at absolute `path`; panics naming the missing part.
pub fn lookup(fs: &dyn Filesystem, path: &str) -> NodeId {
    let mut node = fs.root();
    for part in path.trim_start_matches('/').split('/') {
        node = entry(fs, node, part).node;
    }
    node
}

/// The first `len` bytes of file `node`, in as many `read_at` calls as it takes; each must return
/// some bytes (the buffer starts as `0xAA`, so a byte never written shows).
pub fn read_exact(fs: &dyn Filesystem, node: NodeId, len: usize) -> Vec<u8> {
    let mut c = fs.open(node).unwrap();
    let mut got = vec![0xAAu8; len];
    let mut done = 0;
    while done < got.len() {
        let n = c.read_at(done as u64, &mut got[done..]).unwrap();
        assert!(n > 0);
        done += n;
    }
    got
}

/// What [`read_everything`] met on the way.
#[derive(Debug, Default)]
pub struct ReadAll {
    /// Regular files that would not open.
    pub open_errors: usize,
    /// Problems the walk reported (when it finished).
    pub walk_errors: usize,
    /// Symlinks listed without a target.
    pub unread_links: usize,
}

/// Walk `fs` with the default limits and read every regular file (its first 4 MiB, in 64 KiB
/// reads, stopping at the first read error): for hostile images, where it must not panic or hang.
pub fn read_everything(fs: &dyn Filesystem) -> ReadAll {
    let mut met = ReadAll::default();
    let summary = walk(fs, &WalkLimits::default(), |e| {
        if e.metadata.kind == FileKind::File {
            match fs.open(e.node) {
                Ok(mut c) => {
                    let mut buf = vec![0u8; 65536];
                    let mut off = 0;
                    while off < 4 << 20 {
                        match c.read_at(off, &mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => off += n as u64,
                        }
                    }
                }
                Err(_) => met.open_errors += 1,
            }
        }
        if e.metadata.kind == FileKind::Symlink && e.link_target.is_none() {
            met.unread_links += 1;
        }
        ControlFlow::Continue(())
    });
    if let Ok(s) = summary {
        met.walk_errors = s.errors.len();
    }
    met
}

/// Run a tool, panicking with its name and stderr when it is missing or fails.
pub fn run(cmd: &mut Command) -> String {
    run_with_input(cmd, None)
}

/// [`run`] with `stdin` written to the tool's standard input (closed when `None`).
pub fn run_with_input(cmd: &mut Command, stdin: Option<&str>) -> String {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{name}` ({e}); run scripts/toolchain.sh to install the test tools")
        });
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let args: Vec<_> = cmd.get_args().collect();
    assert!(
        out.status.success(),
        "`{name}` {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run the tool `name` with `args` (see [`run`]).
pub fn tool(name: &str, args: &[&str]) -> String {
    run(Command::new(name).args(args))
}

/// Run the tool `name` with `args`, feeding it `stdin` (see [`run_with_input`]).
pub fn tool_with_input(name: &str, args: &[&str], stdin: &str) -> String {
    run_with_input(Command::new(name).args(args), Some(stdin))
}

/// A sparse image file of `size` bytes in `dir`.
pub fn blank_image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    let f = fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    path
}

/// A sparse image file of `size` bytes in `dir` whose first 64 bytes of every 4 KiB block are
/// pseudo-random (seeded by `size`), so offsets can be told apart.
pub fn noisy_image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let path = dir.join(name);
    let mut data = vec![0u8; size as usize];
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ size;
    for chunk in data.chunks_mut(4096) {
        for b in chunk.iter_mut().take(64) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
    fs::write(&path, &data).unwrap();
    path
}

/// Overwrite the bytes at `offset` of the file at `path` with `bytes`.
pub fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// `SystemTime` → seconds, for tests that set times themselves.
pub fn secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

/// A cheap stand-in for cargo-fuzz that runs on every `cargo test`: every seed of
/// `fuzz/corpus/<target>/`, mutated deterministically (mostly in the first 96 KiB, where the
/// metadata is), through `entry`, which must never panic or hang. `MUTATION_ROUNDS` (default 300)
/// sets rounds per seed for longer local runs.
pub fn run_mutated_seeds(target: &str, entry: fn(&[u8])) {
    let rounds: usize = std::env::var("MUTATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    for seed_file in fs::read_dir(&dir).unwrap() {
        let seed = fs::read(seed_file.unwrap().path()).unwrap();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..rounds {
            let mut data = seed.clone();
            for _ in 0..1 + (x % 24) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let span = if x.is_multiple_of(4) {
                    data.len()
                } else {
                    data.len().min(96 * 1024)
                };
                let at = (x >> 8) as usize % span;
                data[at] = (x >> 40) as u8;
            }
            entry(&data);
        }
    }
}
