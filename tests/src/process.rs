//! Child processes of the harness (control plane servers, moto, the operator binary of the scale
//! benchmark) that die with the test process, however it ends, and their log files.

use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};

/// A command that runs `program` so that it dies with this process, however the process ends
/// (panic, SIGKILL, a test harness timeout); spawn it with [`spawn_on_long_lived_thread`] when the
/// process may outlive the thread starting it.
///
/// The program runs under `setpriv --pdeathsig KILL` (util-linux, on every Debian): the kernel sends
/// it SIGKILL when its parent goes away. That needs no `unsafe` `pre_exec` hook (the workspace denies
/// unsafe code), no extra crate and no watchdog process.
pub fn tied_to_this_process(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--pdeathsig", "KILL", "--"]).arg(program);
    command
}

/// Spawns `command` from a thread that lives as long as the process. The "parent" whose death
/// triggers `--pdeathsig` is the spawning *thread*, and a test thread may end while the server it
/// started (a shared control plane, moto) lives on.
pub fn spawn_on_long_lived_thread(command: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("harness-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("spawning the harness spawner thread");
        Mutex::new(sender)
    });
    let gone = || io::Error::other("the harness spawner thread is gone");
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((command, reply))
        .map_err(|_| gone())?;
    answer.recv().map_err(|_| gone())?
}

/// A loopback server the harness started (moto, the fake ARM, Azurite): the process, tied to this
/// one, and the temporary directory holding its log. Dropping it kills the server — its state
/// lives in memory — before the directory goes.
#[derive(Debug)]
pub struct Server {
    /// The server process.
    pub child: Child,
    /// Its standard output and error.
    pub log: PathBuf,
    /// Its working directory (the log, a port file).
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts the command `program_and_args` returns for the server's fresh working directory
    /// (named `prefix…`), tied to this process, with standard input closed and standard output
    /// and error in `log_name` there.
    pub fn spawn(
        prefix: &str,
        log_name: &str,
        program_and_args: impl FnOnce(&Path) -> Command,
    ) -> io::Result<Server> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let log = dir.path().join(log_name);
        let stdout = File::create(&log)?;
        let stderr = stdout.try_clone()?;
        let mut command = program_and_args(dir.path());
        command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = spawn_on_long_lived_thread(command)?;
        Ok(Server { child, log, dir })
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill() {
            tracing::debug!(%error, log = %self.log.display(), "kill server");
        }
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of the log file `log`, each indented by two spaces, for an error message.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(log) else {
        return String::from("(log unreadable)");
    };
    let all: Vec<&str> = text.lines().collect();
    let mut tail = String::new();
    for line in &all[all.len().saturating_sub(lines)..] {
        let _ = writeln!(tail, "  {line}");
    }
    tail
}

/// A command that exited unsuccessfully, with what it printed.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed: {stdout}{stderr}")]
pub struct Failed {
    /// What was run.
    pub what: String,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// The standard output of the command `what` that exited with `out`, or, when it failed, an error
/// quoting both its outputs.
pub fn ok(out: Output, what: &str) -> Result<String, Failed> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(Failed {
            what: what.to_owned(),
            stdout: text(&out.stdout),
            stderr: text(&out.stderr),
        })
    }
}

/// The directories under the temp dir named `<prefix><pid>-…` whose process `pid` is gone: what
/// test processes that were killed left behind (a killed process drops nothing).
pub fn orphaned_temp_dirs(prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_prefix(prefix))
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .map(|entry| entry.path())
        .collect()
}
