//! The versions pinned in `tests/controlplane/versions.env` and where `scripts/toolchain.sh` puts
//! the binaries built from them.

use std::path::PathBuf;
use std::sync::LazyLock;

use super::Error;

/// `tests/controlplane/versions.env`, the one place the control plane's versions are pinned; the
/// toolchain script sources the same file.
const VERSIONS_ENV: &str = include_str!("../../controlplane/versions.env");

/// The versions pinned in `tests/controlplane/versions.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// Kubernetes release, e.g. `v1.37.2`.
    pub kubernetes: String,
    /// etcd server release.
    pub etcd: String,
    /// helm release.
    pub helm: String,
    /// The single-node cluster's pod sandbox image, built locally (`scripts/toolchain.sh --cluster`).
    pub pause_image: String,
}

impl Versions {
    /// Parses `KEY=value` lines; blank lines and `#` comments are ignored.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut kubernetes = None;
        let mut etcd = None;
        let mut helm = None;
        let mut pause_image = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| Error::Versions(format!("not a KEY=value line: {line:?}")))?;
            let slot = match key {
                "KUBERNETES_VERSION" => &mut kubernetes,
                "ETCD_VERSION" => &mut etcd,
                "HELM_VERSION" => &mut helm,
                "PAUSE_IMAGE" => &mut pause_image,
                _ => continue,
            };
            *slot = Some(value.to_owned());
        }
        let required = |value: Option<String>, key: &str| {
            value.ok_or_else(|| Error::Versions(format!("{key} is not set")))
        };
        Ok(Versions {
            kubernetes: required(kubernetes, "KUBERNETES_VERSION")?,
            etcd: required(etcd, "ETCD_VERSION")?,
            helm: required(helm, "HELM_VERSION")?,
            pause_image: required(pause_image, "PAUSE_IMAGE")?,
        })
    }

    /// The pinned versions. The file is compiled in, so a malformed one fails every caller the same
    /// way, and the `versions_env_parses` unit test catches it first.
    pub fn pinned() -> &'static Versions {
        static PINNED: LazyLock<Versions> = LazyLock::new(|| {
            Versions::parse(VERSIONS_ENV).expect("tests/controlplane/versions.env is malformed")
        });
        &PINNED
    }

    /// Major and minor of the Kubernetes version, as `kube-apiserver` reports them in `/version`.
    pub fn kubernetes_major_minor(&self) -> (&str, &str) {
        let version = self.kubernetes.trim_start_matches('v');
        let mut parts = version.split('.');
        (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
    }
}

/// The snapsentry cache: `$SNAPSENTRY_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry`, as in
/// `scripts/toolchain.sh`.
pub fn cache_dir() -> PathBuf {
    let non_empty = |key: &str| std::env::var_os(key).filter(|value| !value.is_empty());
    if let Some(dir) = non_empty("SNAPSENTRY_CACHE") {
        return PathBuf::from(dir);
    }
    let base = non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(non_empty("HOME").unwrap_or_else(|| "/root".into())).join(".cache")
        });
    base.join("snapsentry")
}

/// Where `scripts/toolchain.sh` puts kube-apiserver, kubectl, etcd and helm.
pub fn toolchain_dir() -> PathBuf {
    cache_dir().join(format!("k8s-{}", Versions::pinned().kubernetes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_env_parses() {
        let versions = Versions::pinned();
        assert!(versions.kubernetes.starts_with('v'), "{versions:?}");
        let (major, minor) = versions.kubernetes_major_minor();
        assert!(
            major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok(),
            "{versions:?}"
        );
    }

    #[test]
    fn versions_parse_reports_missing_keys() {
        let error = Versions::parse("KUBERNETES_VERSION=v1.2.3\n").unwrap_err();
        assert!(error.to_string().contains("ETCD_VERSION"), "{error}");
    }
}
