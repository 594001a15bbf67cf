//! The fingerprint key: findings carry HMAC-SHA256(key, secret), so the same secret on two
//! machines correlates while the fingerprint alone reveals nothing. In a cluster the operator
//! passes a per-installation key in `SNAPSENTRY_FINGERPRINT_KEY`; the standalone CLI creates a
//! random key on first use in `$XDG_CONFIG_HOME/snapsentry/fingerprint.key` (mode 0600).

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use anyhow::Context;

/// Environment variable holding the key (any non-empty string).
pub const KEY_ENV: &str = "SNAPSENTRY_FINGERPRINT_KEY";

/// The key from the environment, else from (or newly written to) the key file.
pub fn fingerprint_key() -> anyhow::Result<Vec<u8>> {
    if let Some(k) = std::env::var_os(KEY_ENV).filter(|k| !k.is_empty()) {
        return Ok(k.into_encoded_bytes());
    }
    let path = key_path()
        .context("no fingerprint key: set SNAPSENTRY_FINGERPRINT_KEY, XDG_CONFIG_HOME or HOME")?;
    load_or_create(&path).with_context(|| format!("fingerprint key {}", path.display()))
}

fn key_path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(config.join("snapsentry").join("fingerprint.key"))
}

fn load_or_create(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let key = text.trim();
        anyhow::ensure!(key.len() >= 32, "too short (want at least 32 characters)");
        return Ok(key.as_bytes().to_vec());
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(hex.as_bytes())?;
            f.write_all(b"\n")?;
            tracing::info!(path = %path.display(), "created a new fingerprint key");
            Ok(hex.into_bytes())
        }
        // Another process won the race: use its key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path)?.trim().as_bytes().to_vec())
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_once_with_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapsentry/fingerprint.key");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
