//! A fake cloud control plane written in Python (standard library only) on a free loopback port:
//! the process, its readiness, and plain HTTP exchanges with it. The fake ARM
//! ([`crate::fake_arm`]) and the fake Compute Engine ([`crate::fake_gce`]) are two; each script
//! binds port 0, writes the port it got to a file (so there is no race for it) and serves a
//! control API under `/_snapsentry/` (`GET /_snapsentry/state` answers once it is ready).
//!
//! The interpreter is the venv's of `scripts/toolchain.sh` when there is one, else `python3` on
//! `PATH`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::controlplane::cache_dir;
use crate::process::{Server, tied_to_this_process};

/// Lines of the server's log quoted in an error.
const LOG_TAIL_LINES: usize = 40;

/// Readiness polling interval.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// How long the server may take to listen.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a fake could not be started or a request to it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    #[error("{fake} exited during startup ({status}); last lines of its log:\n{tail}")]
    Exited {
        /// Which fake.
        fake: &'static str,
        /// How it exited.
        status: ExitStatus,
        /// The end of its log.
        tail: String,
    },
    /// The server did not become ready in time.
    #[error("{fake} not ready after {STARTUP_TIMEOUT:?}; last lines of its log:\n{tail}")]
    NotReady {
        /// Which fake.
        fake: &'static str,
        /// The end of its log.
        tail: String,
    },
    /// A request got an unexpected answer.
    #[error("{request}: HTTP {status}: {body}")]
    Status {
        /// The fake, method and path.
        request: String,
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
    /// A body was not the JSON expected.
    #[error("{context}: invalid JSON")]
    Json {
        /// What was parsed.
        context: String,
        /// The underlying failure.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// One HTTP answer of a fake.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_str(&self.body).map_err(|source| Error::Json {
            context: format!("HTTP {} body", self.status),
            source,
        })
    }
}

/// A running fake; dropping it kills the server and removes its directory.
#[derive(Debug)]
pub struct PythonFake {
    server: Server,
    port: u16,
    name: &'static str,
}

impl PythonFake {
    /// Starts `script` (relative to the tests crate, e.g. `gcp/fake_gce.py`) as the fake `name`
    /// (for messages), its log `log_name` in a fresh directory `prefix…`, and waits until it
    /// answers.
    pub fn start(
        name: &'static str,
        script: &str,
        prefix: &str,
        log_name: &str,
    ) -> Result<Self, Error> {
        let started = Instant::now();
        let server = Server::spawn(prefix, log_name, |dir| {
            let mut command = tied_to_this_process(python());
            command
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
                .arg("--port-file")
                .arg(dir.join("port"))
                .env("PYTHONUNBUFFERED", "1")
                // No __pycache__ beside the scripts in the source tree.
                .env("PYTHONDONTWRITEBYTECODE", "1");
            command
        })
        .map_err(Error::io(format!(
            "starting the {name} through setpriv (util-linux)"
        )))?;
        let port_file = server.dir.path().join("port");
        let mut fake = PythonFake {
            server,
            port: 0,
            name,
        };
        fake.wait_ready(&port_file, started + STARTUP_TIMEOUT)?;
        debug!(fake = name, endpoint = %fake.endpoint(), elapsed = ?started.elapsed(), "ready");
        Ok(fake)
    }

    fn wait_ready(&mut self, port_file: &Path, deadline: Instant) -> Result<(), Error> {
        let fake = self.name;
        loop {
            if let Some(status) = self
                .server
                .child
                .try_wait()
                .map_err(Error::io(format!("waiting for the {fake}")))?
            {
                let tail = self.log_tail();
                return Err(Error::Exited { fake, status, tail });
            }
            if self.port == 0 {
                self.port = fs::read_to_string(port_file)
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                    .unwrap_or(0);
            }
            if self.port != 0 && self.control("GET", "/_snapsentry/state", None).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let tail = self.log_tail();
                return Err(Error::NotReady { fake, tail });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A call of the control API (no token): the JSON of its 200 answer.
    pub fn control(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, Error> {
        let body = body.map(ToString::to_string).unwrap_or_default();
        let response =
            self.exchange(method, path, &[("Content-Type", "application/json")], &body)?;
        self.expect_ok(response, &format!("{method} {path}"))
    }

    /// The JSON body of a 200 answer to `what`, or an error quoting the answer.
    pub fn expect_ok(&self, response: Response, what: &str) -> Result<serde_json::Value, Error> {
        if response.status != 200 {
            return Err(Error::Status {
                request: format!("{} {what}", self.name),
                status: response.status,
                body: response.body,
            });
        }
        response.json()
    }

    /// A minimal HTTP/1.1 exchange (the tests crate has no HTTP client dependency): one request
    /// per connection, read to EOF. `target` may be a full URL on this server (a link the fake
    /// answered).
    pub fn exchange(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Response, Error> {
        let path = target.strip_prefix(&self.endpoint()).unwrap_or(target);
        let r = crate::http::request(
            self.port,
            method,
            path,
            headers,
            body.as_bytes(),
            REQUEST_TIMEOUT,
        )
        .map_err(Error::io(format!("{} {method} {path}", self.name)))?;
        Ok(Response {
            status: r.status,
            body: r.text(),
            headers: r.headers,
        })
    }

    /// The server's log so far (requests, tracebacks), for a failing test to print.
    pub fn log_tail(&self) -> String {
        self.server.log_tail(LOG_TAIL_LINES)
    }

    /// The temporary directory of this server (its log is there).
    pub fn dir(&self) -> &Path {
        self.server.dir.path()
    }
}

/// The venv's interpreter when `scripts/toolchain.sh` made one, else `python3` from `PATH`.
fn python() -> PathBuf {
    let venv = cache_dir().join("venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}
