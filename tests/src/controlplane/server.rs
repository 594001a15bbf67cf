//! The control plane's server processes (etcd, kube-apiserver; the cluster's too): started tied to the test process,
//! their output in a log file, watched for an early exit; the loopback ports they listen on; and
//! the removal of directories left by dead test processes.

use std::collections::HashSet;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{DIR_PREFIX, Error, POLL_INTERVAL};
use crate::process::{log_tail, orphaned_temp_dirs, spawn_on_long_lived_thread};

/// Lines of a component's log quoted in a startup error.
const LOG_TAIL_LINES: usize = 40;

/// One server process, its output captured in a log file.
#[derive(Debug)]
pub(crate) struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    pub(crate) fn spawn(
        name: &'static str,
        mut command: Command,
        dir: &Path,
    ) -> Result<Self, Error> {
        let log = dir.join(format!("{name}.log"));
        let stdout =
            File::create(&log).map_err(Error::io(format!("creating {}", log.display())))?;
        let stderr = stdout
            .try_clone()
            .map_err(Error::io("duplicating a log file handle"))?;
        command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = spawn_on_long_lived_thread(command).map_err(Error::io(format!(
            "starting {name} through setpriv (util-linux)"
        )))?;
        debug!(name, pid = child.id(), "started");
        Ok(Server { name, child, log })
    }

    /// Fails when the process has exited; a server of the control plane never exits on its own.
    pub(crate) fn check_running(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                name: self.name,
                status,
                log: self.log.clone(),
                tail: self.log_tail(),
            }),
            Err(source) => Err(Error::Io {
                context: format!("waiting for {}", self.name),
                source,
            }),
        }
    }

    pub(crate) async fn wait_for_port(
        &mut self,
        port: u16,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), Error> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        loop {
            self.check_running()?;
            match tokio::net::TcpStream::connect(address).await {
                Ok(_) => return Ok(()),
                Err(error) if Instant::now() >= deadline => {
                    let probe = format!("connecting to {address}: {error}");
                    return Err(self.not_ready(timeout, probe));
                }
                Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }

    pub(crate) fn not_ready(&self, timeout: Duration, last_probe: String) -> Error {
        Error::NotReady {
            name: self.name,
            timeout,
            last_probe,
            log: self.log.clone(),
            tail: self.log_tail(),
        }
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log, LOG_TAIL_LINES)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL: neither server has state worth a graceful shutdown, and a stuck one must not
        // hold up the test.
        if let Err(error) = self.child.kill() {
            debug!(name = self.name, %error, "kill");
        }
        let _ = self.child.wait();
    }
}

/// Three distinct free loopback ports. A port is free when picked, not when used; a server that
/// loses the race fails fast with "address already in use" and the start is retried. Ports handed
/// out earlier in this process are never handed out again, so control planes of one test process
/// do not race each other.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N], Error> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // Holding every listener until all are picked keeps the kernel from returning one port twice.
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0; N];
    let mut picked = 0;
    while picked < N {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(Error::io("binding a loopback port"))?;
        let port = listener
            .local_addr()
            .map_err(Error::io("reading a bound port"))?
            .port();
        listeners.push(listener);
        if handed_out.insert(port) {
            ports[picked] = port;
            picked += 1;
        }
    }
    Ok(ports)
}

/// Removes the directories of control planes whose test process is gone (a shared control plane is
/// never dropped, and a killed process drops nothing).
pub(super) fn remove_stale_dirs() {
    for dir in orphaned_temp_dirs(DIR_PREFIX) {
        debug!(dir = %dir.display(), "removing stale control plane directory");
        let _ = fs::remove_dir_all(dir);
    }
}
