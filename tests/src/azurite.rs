//! An Azurite blob server for Azure data-plane tests: `azurite-blob` (in memory) on a free loopback
//! port, page blob uploads that stay sparse, read-only service SAS URLs signed with Azurite's
//! well-known development account key, and a fault proxy that answers some ranged GETs with 503 or
//! 429.
//!
//! Azurite comes from npm into `$SNAPSENTRY_CACHE/azurite`, installed by `scripts/toolchain.sh`; a
//! missing install is an error that names the script, never a skip.
//!
//! ```no_run
//! # fn example() -> Result<(), snapsentry_tests::azurite::Error> {
//! use snapsentry_tests::azurite::Azurite;
//!
//! let azurite = Azurite::start()?;
//! azurite.create_container("disks")?;
//! azurite.upload_page_blob("disks", "disk.vhd", std::path::Path::new("disk.vhd"))?;
//! let expiry = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
//! let url = azurite.read_sas_url("disks", "disk.vhd", expiry);
//! # drop(url);
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::debug;

use crate::controlplane::cache_dir;
use crate::process::{Server, tied_to_this_process};

/// Azurite's development storage account.
pub const ACCOUNT: &str = "devstoreaccount1";
/// Its well-known key (public, in Azure's documentation; not a secret).
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The service version of the harness's requests and signatures.
const VERSION: &str = "2021-08-06";
/// Largest Put Page (the service's limit).
const PAGE_CHUNK: usize = 4 << 20;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Why Azurite could not be started or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Azurite is not installed.
    #[error("Azurite missing: {} does not exist; run scripts/toolchain.sh to install it", bin.display())]
    Missing {
        /// The program looked for.
        bin: PathBuf,
    },
    /// A file, process or socket operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
    /// The server did not come up.
    #[error(
        "Azurite exited, or did not listen within {STARTUP_TIMEOUT:?}; last lines of its log:\n{tail}"
    )]
    NotReady {
        /// The end of its log.
        tail: String,
    },
    /// A request got an unexpected answer.
    #[error("Azurite {request}: HTTP {status}: {body}")]
    Http {
        /// What was asked.
        request: String,
        /// The status.
        status: u16,
        /// The body.
        body: String,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// A running `azurite-blob`; dropping it kills the server.
#[derive(Debug)]
pub struct Azurite {
    server: Server,
    port: u16,
}

impl Azurite {
    /// Starts `azurite-blob` in memory on a free loopback port and waits until it listens; blob
    /// contents may take up to 1 GiB of memory.
    pub fn start() -> Result<Self, Error> {
        Self::start_with_memory(1024)
    }

    /// [`Azurite::start`] with room for `mib` MiB of blob contents in memory (benchmarks of
    /// multi-GB disks).
    pub fn start_with_memory(mib: u64) -> Result<Self, Error> {
        let bin = cache_dir().join("azurite/node_modules/.bin/azurite-blob");
        if !bin.is_file() {
            return Err(Error::Missing { bin });
        }
        let limit = mib.to_string();
        let server = Server::spawn("snapsentry-azurite-", "azurite.log", |_| {
            let mut command = tied_to_this_process(&bin);
            command
                // In memory (which excludes --location); the working directory is a fresh one.
                .args(["--blobHost", "127.0.0.1", "--blobPort", "0"])
                .args([
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--inMemoryPersistence",
                    "--extentMemoryLimit",
                    &limit,
                    "--disableProductStyleUrl",
                    "--silent",
                ]);
            command
        })
        .map_err(io_error(
            "starting azurite-blob through setpriv (util-linux)",
        ))?;
        let log = server.log.clone();
        let mut azurite = Azurite { server, port: 0 };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while azurite.port == 0 {
            let exited = azurite.server.child.try_wait().ok().flatten().is_some();
            if exited || Instant::now() >= deadline {
                return Err(Error::NotReady {
                    tail: azurite.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
            // "Azurite Blob service successfully listens on http://127.0.0.1:PORT"
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            azurite.port = text
                .split("listens on http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|port| port.parse().ok())
                .unwrap_or(0);
        }
        debug!(port = azurite.port, "Azurite ready");
        Ok(azurite)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        self.server.log_tail(40)
    }

    /// Creates the container `name`.
    pub fn create_container(&self, name: &str) -> Result<(), Error> {
        let path = format!("/{ACCOUNT}/{name}?restype=container&{}", self.account_sas());
        self.expect("Create Container", "PUT", &path, &[], &[], 201)
    }

    /// Uploads `image` as the page blob `container/blob` (Put Blob, then Put Page in chunks of at
    /// most 4 MiB), skipping all-zero chunks so that the blob stays sparse. The image's size must
    /// be a multiple of 512 (a fixed VHD's is). Returns the bytes written.
    pub fn upload_page_blob(
        &self,
        container: &str,
        blob: &str,
        image: &Path,
    ) -> Result<u64, Error> {
        let mut file =
            File::open(image).map_err(io_error(format!("opening {}", image.display())))?;
        let size = file
            .metadata()
            .map_err(io_error("reading the image's size"))?
            .len();
        let path = format!("/{ACCOUNT}/{container}/{blob}");
        let length = size.to_string();
        self.expect(
            "Put Blob",
            "PUT",
            &format!("{path}?{}", self.account_sas()),
            &[
                ("x-ms-blob-type", "PageBlob"),
                ("x-ms-blob-content-length", &length),
            ],
            &[],
            201,
        )?;
        let mut written = 0;
        let mut offset = 0u64;
        let mut chunk = vec![0u8; PAGE_CHUNK];
        while offset < size {
            let n = (size - offset).min(PAGE_CHUNK as u64) as usize;
            file.read_exact(&mut chunk[..n])
                .map_err(io_error("reading the image"))?;
            if chunk[..n].iter().any(|&b| b != 0) {
                let range = format!("bytes={}-{}", offset, offset + n as u64 - 1);
                self.expect(
                    "Put Page",
                    "PUT",
                    &format!("{path}?comp=page&{}", self.account_sas()),
                    &[("x-ms-page-write", "update"), ("x-ms-range", &range)],
                    &chunk[..n],
                    201,
                )?;
                written += n as u64;
            }
            offset += n as u64;
        }
        Ok(written)
    }

    /// A read-only service SAS URL of `container/blob` valid until `expiry` (in the past for an
    /// expired one), on this server's port.
    pub fn read_sas_url(&self, container: &str, blob: &str, expiry: SystemTime) -> String {
        self.read_sas_url_on(self.port, container, blob, expiry)
    }

    /// [`Self::read_sas_url`] on another port (a [`FaultProxy`] in front of this server).
    pub fn read_sas_url_on(
        &self,
        port: u16,
        container: &str,
        blob: &str,
        expiry: SystemTime,
    ) -> String {
        let se = iso8601(expiry);
        let resource = format!("/blob/{ACCOUNT}/{container}/{blob}");
        // Service SAS, version 2020-12-06 and later: permissions, start, expiry, resource,
        // identifier, IP, protocol, version, resource type, snapshot time, encryption scope, and
        // the five response header overrides.
        let to_sign = format!("r\n\n{se}\n{resource}\n\n\nhttp\n{VERSION}\nb\n\n\n\n\n\n\n");
        let sig = sign(&to_sign);
        format!(
            "http://127.0.0.1:{port}/{ACCOUNT}/{container}/{blob}?sv={VERSION}&spr=http&se={}&sr=b&sp=r&sig={}",
            encode(&se),
            encode(&sig)
        )
    }

    /// An account SAS for the harness's own writes (create, write, read, list; a year long).
    fn account_sas(&self) -> String {
        let se = iso8601(SystemTime::now() + Duration::from_secs(365 * 86_400));
        // Account SAS, version 2020-12-06 and later.
        let to_sign = format!("{ACCOUNT}\nracwdl\nb\nsco\n\n{se}\n\nhttp\n{VERSION}\n\n");
        format!(
            "sv={VERSION}&ss=b&srt=sco&sp=racwdl&spr=http&se={}&sig={}",
            encode(&se),
            encode(&sign(&to_sign))
        )
    }

    fn expect(
        &self,
        what: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        status: u16,
    ) -> Result<(), Error> {
        let (got, answer) = http(self.port, method, path, headers, body)
            .map_err(io_error(format!("{what} on Azurite")))?;
        if got == status {
            Ok(())
        } else {
            Err(Error::Http {
                request: what.to_owned(),
                status: got,
                body: String::from_utf8_lossy(&answer).into_owned(),
            })
        }
    }
}

/// HMAC-SHA256 of `text` with the account key, base64.
fn sign(text: &str) -> String {
    let key = BASE64
        .decode(ACCOUNT_KEY)
        .expect("the dev account key is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(text.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Percent-encoding for a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC) of `time`.
fn iso8601(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// One request to Azurite on 127.0.0.1:`port` (with its `x-ms-version`): status and body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, Vec<u8>)> {
    let mut all = vec![("x-ms-version", VERSION)];
    all.extend_from_slice(headers);
    let response = crate::http::request(port, method, path, &all, body, IO_TIMEOUT)?;
    Ok((response.status, response.body))
}

fn connect(port: u16) -> io::Result<TcpStream> {
    let stream =
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A loopback proxy in front of Azurite that answers every `every`-th ranged GET (a GET with an
/// `x-ms-range` or `Range` header) with 503 `ServerBusy`, alternating with 429, or holds each
/// ranged GET until a given time (a read slowed past its SAS's expiry); it forwards everything
/// else. One request per connection (`Connection: close` both ways). Runs until the test process
/// ends.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    ranged: Arc<AtomicU64>,
    faults: Arc<AtomicU64>,
}

/// What the proxy does to ranged GETs.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// Every n-th answered 503 or 429.
    Every(u64),
    /// Each forwarded once this time has passed.
    HoldUntil(SystemTime),
}

impl FaultProxy {
    /// Starts the proxy in front of `azurite`, faulting every `every`-th ranged GET.
    pub fn start(azurite: &Azurite, every: u64) -> Result<Self, Error> {
        Self::with_plan(azurite, Plan::Every(every.max(1)))
    }

    /// Starts a proxy in front of `azurite` that forwards each ranged GET only once `until` has
    /// passed (and everything else at once): with `until` after a SAS's expiry, the reads of a
    /// blob opened in time fail as the SAS expires in the middle of the scan.
    pub fn holding_reads_until(azurite: &Azurite, until: SystemTime) -> Result<Self, Error> {
        Self::with_plan(azurite, Plan::HoldUntil(until))
    }

    fn with_plan(azurite: &Azurite, plan: Plan) -> Result<Self, Error> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(io_error("binding the fault proxy"))?;
        let port = listener
            .local_addr()
            .map_err(io_error("the fault proxy's address"))?
            .port();
        let (ranged, faults) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let upstream = azurite.port;
        let (r, f) = (ranged.clone(), faults.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, f) = (r.clone(), f.clone());
                std::thread::spawn(move || {
                    if let Err(error) = proxy_one(stream, upstream, plan, &r, &f) {
                        debug!(%error, "fault proxy connection");
                    }
                });
            }
        });
        Ok(FaultProxy {
            port,
            ranged,
            faults,
        })
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Ranged GETs seen (faulted ones included).
    pub fn ranged_gets(&self) -> u64 {
        self.ranged.load(Ordering::SeqCst)
    }

    /// Faults injected.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::SeqCst)
    }
}

fn proxy_one(
    mut client: TcpStream,
    upstream: u16,
    plan: Plan,
    ranged: &AtomicU64,
    faults: &AtomicU64,
) -> io::Result<()> {
    client.set_read_timeout(Some(IO_TIMEOUT))?;
    // The request head (the blob reader's requests have no body).
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while find(&request, b"\r\n\r\n").is_none() {
        if client.read(&mut byte)? == 0 {
            return Ok(());
        }
        request.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&request).into_owned();
    let is_ranged = head.starts_with("GET ")
        && head.lines().any(|l| {
            l.to_ascii_lowercase().starts_with("x-ms-range:")
                || l.to_ascii_lowercase().starts_with("range:")
        });
    if is_ranged {
        let n = ranged.fetch_add(1, Ordering::SeqCst) + 1;
        if let Plan::HoldUntil(until) = plan
            && let Ok(wait) = until.duration_since(SystemTime::now())
        {
            std::thread::sleep(wait);
        }
        if let Plan::Every(every) = plan
            && n.is_multiple_of(every)
        {
            let fault = faults.fetch_add(1, Ordering::SeqCst);
            let status = if fault.is_multiple_of(2) {
                "503 Service Unavailable"
            } else {
                "429 Too Many Requests"
            };
            return client.write_all(
                format!("HTTP/1.1 {status}\r\nx-ms-error-code: ServerBusy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    }
    let forwarded: String = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect::<String>()
        + "Connection: close\r\n\r\n";
    let mut server = connect(upstream)?;
    server.write_all(forwarded.as_bytes())?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    let end = find(&response, b"\r\n\r\n").unwrap_or(response.len());
    let response_head: String = String::from_utf8_lossy(&response[..end])
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("connection:") && !l.starts_with("keep-alive:")
        })
        .map(|l| format!("{l}\r\n"))
        .collect();
    client.write_all(response_head.as_bytes())?;
    client.write_all(b"Connection: close\r\n\r\n")?;
    client.write_all(response.get(end + 4..).unwrap_or_default())?;
    client.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_formats_utc() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_515_200 + 3661);
        assert_eq!(iso8601(t), "2026-12-06T01:01:01Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00Z");
    }
}
