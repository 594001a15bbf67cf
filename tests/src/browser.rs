//! Headless Chromium (the Debian `chromium` package, installed by `scripts/toolchain.sh`), for
//! tests that must see a page as a browser does: the DOM after parsing (`--dump-dom`) and a
//! screenshot (`--screenshot`). Every run gets its own profile directory and no network: host
//! names resolve to nothing, so a page that needed one would show it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What can go wrong running the browser.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No browser on PATH.
    #[error("chromium is not installed: run scripts/toolchain.sh (or apt-get install chromium)")]
    Missing,
    /// A file operation.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The browser exited unsuccessfully.
    #[error("chromium {args}: {stderr}")]
    Failed {
        /// Its arguments.
        args: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// The screenshot is not a PNG of the asked size.
    #[error("{0}: not a PNG of the requested size")]
    BadScreenshot(PathBuf),
}

/// A headless Chromium.
#[derive(Debug)]
pub struct Browser {
    program: PathBuf,
    profile: tempfile::TempDir,
}

impl Browser {
    /// `$CHROMIUM`, else `chromium` on PATH.
    pub fn find() -> Result<Self, Error> {
        let program = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("chromium"));
        let works = Command::new(&program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !works {
            return Err(Error::Missing);
        }
        let profile = tempfile::tempdir().map_err(|source| Error::Io {
            what: "creating a browser profile directory".into(),
            source,
        })?;
        Ok(Self { program, profile })
    }

    fn run(&self, extra: &[String], page: &Path) -> Result<Vec<u8>, Error> {
        let page = page.canonicalize().map_err(|source| Error::Io {
            what: format!("opening {}", page.display()),
            source,
        })?;
        let mut args: Vec<String> = vec![
            "--headless".into(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--hide-scrollbars".into(),
            "--no-first-run".into(),
            "--disable-extensions".into(),
            "--host-resolver-rules=MAP * ~NOTFOUND".into(),
            format!("--user-data-dir={}", self.profile.path().display()),
        ];
        args.extend_from_slice(extra);
        args.push(format!("file://{}", page.display()));
        let out = Command::new(&self.program)
            .args(&args)
            .output()
            .map_err(|source| Error::Io {
                what: format!("running {}", self.program.display()),
                source,
            })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
            return Err(Error::Failed {
                args: args.join(" "),
                stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            });
        }
        Ok(out.stdout)
    }

    /// The page's DOM as the browser built it, serialised.
    pub fn dump_dom(&self, page: &Path) -> Result<String, Error> {
        let out = self.run(&["--dump-dom".into()], page)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// A `width`×`height` PNG of the page at `png`; checks the file is a PNG of that size.
    pub fn screenshot(
        &self,
        page: &Path,
        png: &Path,
        width: u32,
        height: u32,
    ) -> Result<(), Error> {
        self.run(
            &[
                format!("--screenshot={}", png.display()),
                format!("--window-size={width},{height}"),
            ],
            page,
        )?;
        let bytes = std::fs::read(png).map_err(|source| Error::Io {
            what: format!("reading {}", png.display()),
            source,
        })?;
        if png_size(&bytes) != Some((width, height)) {
            return Err(Error::BadScreenshot(png.to_owned()));
        }
        Ok(())
    }
}

/// Width and height from a PNG's IHDR chunk.
pub fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Some((be(&bytes[16..20]), be(&bytes[20..24])))
}
