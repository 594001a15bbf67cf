//! A moto server for AWS tests: EC2, EBS direct, RDS and S3 emulated on a free loopback port, with
//! the AWS-faithful patches and fault injection of `tests/moto/snapsentry_moto.py`, and the fleet
//! fixture of `tests/moto/fleet.py` that fills it with instances, volumes holding real disk images,
//! RDS instances and buckets.
//!
//! moto (and boto3) come from the Python venv that `scripts/toolchain.sh` creates in
//! `$SNAPSENTRY_CACHE/venv`; a missing venv is an error that names the script, never a skip.
//!
//! ```no_run
//! # fn example() -> Result<(), snapsentry_tests::moto::Error> {
//! use snapsentry_tests::Moto;
//!
//! let moto = Moto::start()?;
//! let snapshot_id = moto.upload_snapshot(std::path::Path::new("disk.raw"))?;
//! moto.set_faults(&serde_json::json!({"getSnapshotBlock": {"throttleEvery": 3}}))?;
//! // ... point an AWS SDK client at moto.endpoint() (or run a process with moto.env()) ...
//! let counters = moto.fault_counters()?;
//! # drop((snapshot_id, counters));
//! # Ok(())
//! # }
//! ```

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tracing::debug;

use crate::controlplane::cache_dir;
use crate::process::{Server, tied_to_this_process};

/// The region every moto resource of the tests lives in.
pub const REGION: &str = "us-east-1";

/// Lines of the server's log quoted in a startup error.
const LOG_TAIL_LINES: usize = 40;

/// Readiness polling interval; moto imports for about a second before it listens.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How long one control-API request may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why moto could not be started or a fixture call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The venv with moto is not there.
    #[error(
        "moto venv missing: {} does not exist; run scripts/toolchain.sh to create it",
        python.display()
    )]
    MissingVenv {
        /// The Python interpreter that was looked for.
        python: PathBuf,
    },
    /// A file system, process or socket operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The server exited while starting.
    #[error("moto exited during startup ({status}){hint}; last lines of {}:\n{tail}", log.display())]
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// A pointer at `scripts/toolchain.sh` when the venv lacks a module.
        hint: &'static str,
        /// Its log file (in the removed temporary directory).
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The server did not become ready in time.
    #[error("moto not ready after {timeout:?}; last lines of {}:\n{tail}", log.display())]
    NotReady {
        /// How long it was given.
        timeout: Duration,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// A control-API request got an unexpected answer.
    #[error("moto control API {request}: HTTP {status}: {body}")]
    Control {
        /// Method and path.
        request: String,
        /// The HTTP status (0 when the answer was not HTTP).
        status: u16,
        /// The response body.
        body: String,
    },
    /// A JSON body could not be parsed.
    #[error("{context}: invalid JSON")]
    Json {
        /// What was parsed.
        context: String,
        /// The underlying failure.
        #[source]
        source: serde_json::Error,
    },
    /// A fixture script (`tests/moto/fleet.py`) failed.
    #[error("{command} failed ({status}){hint}:\n{stderr}")]
    Fixture {
        /// The subcommand and its main argument.
        command: String,
        /// How it exited.
        status: ExitStatus,
        /// A pointer at `scripts/toolchain.sh` when the venv lacks a module.
        hint: &'static str,
        /// What it wrote to stderr.
        stderr: String,
    },
}

impl Error {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// The toolchain hint for a Python traceback that shows a missing module.
fn venv_hint(output: &str) -> &'static str {
    if output.contains("ModuleNotFoundError") {
        " (the venv lacks a module; run scripts/toolchain.sh)"
    } else {
        ""
    }
}

/// How to start moto; [`Options::default`] uses the venv of `scripts/toolchain.sh`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Python venv holding moto and boto3.
    pub venv: PathBuf,
    /// How long the server may take to listen.
    pub startup_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            venv: cache_dir().join("venv"),
            startup_timeout: Duration::from_secs(60),
        }
    }
}

/// `tests/moto/`, where the Python side of the harness lives.
fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("moto")
}

/// A running moto server; dropping it kills the server and removes its directory.
#[derive(Debug)]
pub struct Moto {
    server: Server,
    port: u16,
    python: PathBuf,
}

impl Moto {
    /// Starts moto with [`Options::default`] and waits until it answers.
    pub fn start() -> Result<Self, Error> {
        Self::start_with(Options::default())
    }

    /// Starts moto from `options.venv` on a free loopback port (the server binds port 0 and writes
    /// the port it got to a file, so there is no race for it) and waits until it answers.
    pub fn start_with(options: Options) -> Result<Self, Error> {
        let python = options.venv.join("bin/python");
        if !python.is_file() {
            return Err(Error::MissingVenv { python });
        }
        let started = Instant::now();
        let server = Server::spawn("snapsentry-moto-", "moto.log", |dir| {
            let mut command = tied_to_this_process(&python);
            command
                .arg(scripts_dir().join("snapsentry_moto.py"))
                .arg("--port-file")
                .arg(dir.join("port"))
                .env("PYTHONUNBUFFERED", "1");
            command
        })
        .map_err(Error::io("starting moto through setpriv (util-linux)"))?;
        let port_file = server.dir.path().join("port");
        let mut moto = Moto {
            server,
            port: 0,
            python,
        };
        moto.wait_ready(
            &port_file,
            started + options.startup_timeout,
            options.startup_timeout,
        )?;
        debug!(endpoint = %moto.endpoint(), elapsed = ?started.elapsed(), "moto ready");
        Ok(moto)
    }

    fn wait_ready(
        &mut self,
        port_file: &Path,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), Error> {
        loop {
            if let Some(status) = self
                .server
                .child
                .try_wait()
                .map_err(Error::io("waiting for moto"))?
            {
                let tail = self.log_tail();
                return Err(Error::Exited {
                    status,
                    hint: venv_hint(&tail),
                    log: self.server.log.clone(),
                    tail,
                });
            }
            if self.port == 0 {
                self.port = fs::read_to_string(port_file)
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                    .unwrap_or(0);
            }
            if self.port != 0 && self.fault_counters().is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    timeout,
                    log: self.server.log.clone(),
                    tail: self.log_tail(),
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL for every AWS service.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment for a process (or an SDK config loaded from the environment) that talks to
    /// this server: test credentials, [`REGION`], no instance metadata, and `AWS_ENDPOINT_URL`.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .chain([("AWS_ENDPOINT_URL".to_owned(), self.endpoint())])
        .collect()
    }

    /// Replaces the fault plan and zeroes the counters, e.g.
    /// `{"getSnapshotBlock": {"throttleEvery": 3, "serverErrorEvery": 5, "serverErrorStatus": 503}}`:
    /// every 3rd GetSnapshotBlock from now answers 400 `RequestThrottledException`, every 5th of the
    /// others 503 `InternalServerException`. The faultable APIs are `getSnapshotBlock`,
    /// `listSnapshotBlocks`, `listChangedBlocks` and `putSnapshotBlock`.
    pub fn set_faults(&self, plan: &serde_json::Value) -> Result<(), Error> {
        self.control("POST", "/_snapsentry/faults", Some(plan))
            .map(drop)
    }

    /// Calls per EBS direct API since the last [`Self::set_faults`] / [`Self::reset_faults`]:
    /// `{"getSnapshotBlock": {"calls": n, "throttled": n, "serverErrors": n}, ...}`; an API not
    /// called since is absent. `calls` includes the faulted calls.
    pub fn fault_counters(&self) -> Result<serde_json::Value, Error> {
        self.control("GET", "/_snapsentry/faults", None)
    }

    /// No faults from now on, counters zeroed.
    pub fn reset_faults(&self) -> Result<(), Error> {
        self.control("DELETE", "/_snapsentry/faults", None)
            .map(drop)
    }

    /// Makes DescribeDBInstances report `address` as the endpoint of the RDS instance `db_id`
    /// (moto's own is `<id>.aaaaaaaaaa.<region>.rds.amazonaws.com`).
    pub fn plant_rds_address(&self, db_id: &str, address: &str) -> Result<(), Error> {
        let body = serde_json::json!({ db_id: address });
        self.control("POST", "/_snapsentry/rds-addresses", Some(&body))
            .map(drop)
    }

    /// Uploads a raw disk image as an EBS snapshot through the EBS direct write API (only the
    /// non-zero 512 KiB blocks, each with its SHA256) and returns the snapshot id. qcow2 images are
    /// converted with `qemu-img` first.
    pub fn upload_snapshot(&self, image: &Path) -> Result<String, Error> {
        let image_arg = image.display().to_string();
        let output = self.fleet_py(["upload-snapshot", "--image", image_arg.as_str()], None)?;
        Ok(output.trim().to_owned())
    }

    /// Creates the machines, RDS instances and buckets of `spec` (see `tests/moto/fleet.py`) and
    /// returns the ids of everything created.
    pub fn create_fleet(&self, spec: &serde_json::Value) -> Result<serde_json::Value, Error> {
        let output = self.fleet_py(["fleet", "--spec", "-"], Some(spec))?;
        serde_json::from_str(&output).map_err(|source| Error::Json {
            context: "fleet.py output".into(),
            source,
        })
    }

    /// Runs `tests/moto/fleet.py ARGS --endpoint E --region R`, `stdin` as its standard input;
    /// returns its standard output.
    fn fleet_py<const N: usize>(
        &self,
        args: [&str; N],
        stdin: Option<&serde_json::Value>,
    ) -> Result<String, Error> {
        let mut child = Command::new(&self.python)
            .arg(scripts_dir().join("fleet.py"))
            .args(args)
            .args(["--endpoint", &self.endpoint(), "--region", REGION])
            .envs(self.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(Error::io("running tests/moto/fleet.py"))?;
        let mut input = child.stdin.take();
        if let (Some(input), Some(spec)) = (input.as_mut(), stdin) {
            input
                .write_all(spec.to_string().as_bytes())
                .map_err(Error::io("writing the fleet spec to fleet.py"))?;
        }
        drop(input);
        let output = child
            .wait_with_output()
            .map_err(Error::io("waiting for tests/moto/fleet.py"))?;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if !output.status.success() {
            return Err(Error::Fixture {
                command: format!("fleet.py {}", args.join(" ")),
                status: output.status,
                hint: venv_hint(&stderr),
                stderr,
            });
        }
        String::from_utf8(output.stdout).map_err(|error| Error::Io {
            context: "reading fleet.py output".into(),
            source: io::Error::new(io::ErrorKind::InvalidData, error),
        })
    }

    /// One HTTP/1.1 request to the control API; returns the JSON body of a 200 answer.
    fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        let request_name = format!("{method} {path}");
        let (status, text) = http_request(self.port, method, path, body)
            .map_err(Error::io(format!("moto control API {request_name}")))?;
        if status != 200 {
            return Err(Error::Control {
                request: request_name,
                status,
                body: text,
            });
        }
        serde_json::from_str(&text).map_err(|source| Error::Json {
            context: request_name,
            source,
        })
    }

    /// The server's log so far (requests, tracebacks), for a failing test to print.
    pub fn log_tail(&self) -> String {
        self.server.log_tail(LOG_TAIL_LINES)
    }

    /// The temporary directory of this server (its log is `moto.log` there).
    pub fn dir(&self) -> &Path {
        self.server.dir.path()
    }
}

/// One JSON request to the loopback control API: status and body text.
fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> io::Result<(u16, String)> {
    let body = body.map(ToString::to_string).unwrap_or_default();
    let response = crate::http::request(
        port,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
        CONTROL_TIMEOUT,
    )?;
    Ok((response.status, response.text()))
}
