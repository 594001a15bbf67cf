//! The operator's configuration, from the environment the Helm chart sets.

use std::net::SocketAddr;

use crate::error::{Error, Result};
use jiff::SignedDuration;
use k8s_openapi::api::core::v1::ResourceRequirements;
use snapsentry_crds::limits;

use crate::job::{DEFAULT_TIMEOUT_SECONDS, JobSettings, ScannerPodDefaults};

/// Default of [`Config::snapshot_ttl`].
pub const DEFAULT_SNAPSHOT_TTL: SignedDuration = SignedDuration::from_hours(24);

/// Default of [`Config::quota_wait`].
pub const DEFAULT_QUOTA_WAIT: SignedDuration = SignedDuration::from_mins(30);

/// Default of [`Config::write_concurrency`].
pub const DEFAULT_WRITE_CONCURRENCY: usize = 16;

/// Log output format (`SNAPSENTRY_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Everything the operator reads from its environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `SNAPSENTRY_NAMESPACE` (required): where the operator and the scanner Jobs run.
    pub namespace: String,
    /// `SNAPSENTRY_SCANNER_IMAGE` (required).
    pub scanner_image: String,
    /// `SNAPSENTRY_SCANNER_SERVICE_ACCOUNT` (default `snapsentry-scanner`).
    pub scanner_service_account: String,
    /// `SNAPSENTRY_FINGERPRINT_SECRET` (default `snapsentry-fingerprint`), key `key`.
    pub fingerprint_secret: String,
    /// `SNAPSENTRY_WATCH_NAMESPACES`: comma-separated; empty means every namespace.
    pub watch_namespaces: Vec<String>,
    /// `SNAPSENTRY_LOG`: a tracing filter (`info`, `snapsentry_operator=debug,kube=info`).
    pub log: String,
    /// `SNAPSENTRY_LOG_FORMAT`: `json` (default) or `text`.
    pub log_format: LogFormat,
    /// `SNAPSENTRY_LISTEN` (default `0.0.0.0:8080`): `/healthz`, `/readyz`, `/metrics`.
    pub listen: SocketAddr,
    /// `SNAPSENTRY_JOB_TTL_SECONDS` (default 3600): `ttlSecondsAfterFinished` of scanner Jobs.
    pub job_ttl_seconds: i32,
    /// `SNAPSENTRY_POD_NAME` (the chart sets it from `metadata.name`; default the host name):
    /// the leader Lease holder and the Events' reporting instance.
    pub pod_name: String,
    /// `SNAPSENTRY_LEADER_ELECTION` (default `true`): only the holder of the
    /// `snapsentry-operator` Lease in [`Self::namespace`] runs the controllers.
    pub leader_election: bool,
    /// `SNAPSENTRY_FINGERPRINT_SECRET_KEY` (default `key`): the key in the fingerprint Secret.
    pub fingerprint_secret_key: String,
    /// `SNAPSENTRY_SCANNER_RESOURCES`: scanner Job resources as JSON
    /// (`{"requests":{"cpu":"500m"}}`), used when a policy sets none.
    pub scanner_resources: Option<ResourceRequirements>,
    /// `SNAPSENTRY_SCANNER_POD`: scanner Job pods' pull secrets, placement, priority class,
    /// annotations and extra labels as JSON (the chart's `imagePullSecrets` and `scanner.*`).
    pub scanner_pod: ScannerPodDefaults,
    /// `SNAPSENTRY_SCANNER_TIMEOUT_SECONDS` (default 3600): scan timeout when a policy sets none.
    pub scanner_timeout_seconds: i64,
    /// `SNAPSENTRY_SNAPSHOT_TTL` (Go-style duration, default `24h`): snapshots a policy's scans
    /// left behind are deleted by the sweep at the next scan once they are this old.
    pub snapshot_ttl: SignedDuration,
    /// `SNAPSENTRY_QUOTA_WAIT` (Go-style duration, default `30m`): how long a scan waits for a
    /// ResourceQuota that refuses its scanner Jobs while other Jobs of the scan run (they free
    /// quota as they end); past it, or at once when none of the scan's Jobs runs, the refused
    /// machines fail (`QuotaExceeded`) and the scan goes on.
    pub quota_wait: SignedDuration,
    /// `SNAPSENTRY_SCANNER_AWS_CREDENTIALS_SECRET`: Secret in [`Self::namespace`] (keys
    /// `accessKeyId`, `secretAccessKey`, optional `sessionToken`) whose credentials scanner Jobs
    /// of AWS machines get; unset, they use their service account's identity (IRSA).
    pub scanner_aws_credentials_secret: Option<String>,
    /// `SNAPSENTRY_WRITE_CONCURRENCY` (default 16, at least 1): requests in flight at once while
    /// a finishing scan writes findings, AttackPaths, Recommendations and machine counts. The
    /// API server's priority and fairness still queues them under the operator's flow.
    pub write_concurrency: usize,
    /// `SNAPSENTRY_MAX_FINDINGS_PER_MACHINE` (default and most
    /// [`snapsentry_crds::limits::MAX_FINDINGS_PER_MACHINE`], 500): SecretFindings a scanner Job
    /// writes per machine, the most severe first; the rest are counted in the machine's
    /// `status.lastScan.findingsOverCap`.
    pub max_findings_per_machine: u32,
}

impl Config {
    /// Read the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read configuration through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |k: &str| var(k).ok_or_else(|| Error::Config(format!("{k} is not set")));
        let log_format = match var("SNAPSENTRY_LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("text") => LogFormat::Text,
            Some(other) => {
                return Err(Error::Config(format!(
                    "SNAPSENTRY_LOG_FORMAT must be json or text, not {other:?}"
                )));
            }
        };
        let listen = var("SNAPSENTRY_LISTEN")
            .unwrap_or_else(|| "0.0.0.0:8080".to_owned())
            .parse()
            .map_err(|e| Error::Config(format!("SNAPSENTRY_LISTEN: {e}")))?;
        let job_ttl_seconds = var("SNAPSENTRY_JOB_TTL_SECONDS")
            .map(|v| {
                v.parse()
                    .map_err(|e| Error::Config(format!("SNAPSENTRY_JOB_TTL_SECONDS: {e}")))
            })
            .transpose()?
            .unwrap_or(3600);
        let leader_election = match var("SNAPSENTRY_LEADER_ELECTION").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(Error::Config(format!(
                    "SNAPSENTRY_LEADER_ELECTION must be true or false, not {other:?}"
                )));
            }
        };
        let scanner_resources = var("SNAPSENTRY_SCANNER_RESOURCES")
            .map(|v| {
                serde_json::from_str(&v)
                    .map_err(|e| Error::Config(format!("SNAPSENTRY_SCANNER_RESOURCES: {e}")))
            })
            .transpose()?;
        let scanner_timeout_seconds = var("SNAPSENTRY_SCANNER_TIMEOUT_SECONDS")
            .map(|v| {
                v.parse()
                    .map_err(|e| Error::Config(format!("SNAPSENTRY_SCANNER_TIMEOUT_SECONDS: {e}")))
            })
            .transpose()?
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS);
        let go_duration = |k: &str, default: SignedDuration| -> Result<SignedDuration> {
            var(k).map_or(Ok(default), |v| {
                crate::correlate::parse_go_duration(&v)
                    .map_err(|e| Error::Config(format!("{k}: {e}")))
            })
        };
        let snapshot_ttl = go_duration("SNAPSENTRY_SNAPSHOT_TTL", DEFAULT_SNAPSHOT_TTL)?;
        let quota_wait = go_duration("SNAPSENTRY_QUOTA_WAIT", DEFAULT_QUOTA_WAIT)?;
        let scanner_pod = var("SNAPSENTRY_SCANNER_POD")
            .map(|v| {
                ScannerPodDefaults::from_json(&v)
                    .map_err(|e| Error::Config(format!("SNAPSENTRY_SCANNER_POD: {e}")))
            })
            .transpose()?
            .unwrap_or_default();
        let positive = |k: &str, default: usize| -> Result<usize> {
            match var(k) {
                None => Ok(default),
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(Error::Config(format!(
                        "{k} must be a positive integer, not {v:?}"
                    ))),
                },
            }
        };
        let write_concurrency =
            positive("SNAPSENTRY_WRITE_CONCURRENCY", DEFAULT_WRITE_CONCURRENCY)?;
        let max_findings = limits::MAX_FINDINGS_PER_MACHINE;
        let max_findings_per_machine =
            positive("SNAPSENTRY_MAX_FINDINGS_PER_MACHINE", max_findings)?;
        if max_findings_per_machine > max_findings {
            return Err(Error::Config(format!(
                "SNAPSENTRY_MAX_FINDINGS_PER_MACHINE is at most {max_findings}"
            )));
        }
        let pod_name = var("SNAPSENTRY_POD_NAME")
            .or_else(|| var("HOSTNAME"))
            .unwrap_or_else(|| format!("snapsentry-operator-{}", std::process::id()));
        Ok(Self {
            fingerprint_secret_key: var("SNAPSENTRY_FINGERPRINT_SECRET_KEY")
                .unwrap_or_else(|| "key".to_owned()),
            scanner_resources,
            scanner_pod,
            scanner_timeout_seconds,
            snapshot_ttl,
            quota_wait,
            scanner_aws_credentials_secret: var("SNAPSENTRY_SCANNER_AWS_CREDENTIALS_SECRET")
                .filter(|s| !s.is_empty()),
            pod_name,
            leader_election,
            namespace: required("SNAPSENTRY_NAMESPACE")?,
            scanner_image: required("SNAPSENTRY_SCANNER_IMAGE")?,
            scanner_service_account: var("SNAPSENTRY_SCANNER_SERVICE_ACCOUNT")
                .unwrap_or_else(|| "snapsentry-scanner".to_owned()),
            fingerprint_secret: var("SNAPSENTRY_FINGERPRINT_SECRET")
                .unwrap_or_else(|| "snapsentry-fingerprint".to_owned()),
            watch_namespaces: var("SNAPSENTRY_WATCH_NAMESPACES")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            log: var("SNAPSENTRY_LOG").unwrap_or_else(|| "info".to_owned()),
            log_format,
            listen,
            job_ttl_seconds,
            write_concurrency,
            max_findings_per_machine: max_findings_per_machine as u32,
        })
    }

    /// Settings for scanner Jobs.
    pub fn job_settings(&self) -> JobSettings {
        JobSettings {
            namespace: self.namespace.clone(),
            image: self.scanner_image.clone(),
            service_account: self.scanner_service_account.clone(),
            fingerprint_secret: self.fingerprint_secret.clone(),
            fingerprint_secret_key: self.fingerprint_secret_key.clone(),
            ttl_seconds_after_finished: self.job_ttl_seconds,
            default_resources: self.scanner_resources.clone(),
            default_timeout_seconds: self.scanner_timeout_seconds,
            aws_credentials_secret: self.scanner_aws_credentials_secret.clone(),
            pod_defaults: self.scanner_pod.clone(),
            max_findings: self.max_findings_per_machine,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let map: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        ("SNAPSENTRY_NAMESPACE", "snapsentry"),
        (
            "SNAPSENTRY_SCANNER_IMAGE",
            "ghcr.io/snapsentry/snapsentry-scan:0.1.0",
        ),
    ];

    #[test]
    fn defaults() {
        let c = config(&BASE).unwrap();
        assert_eq!(c.namespace, "snapsentry");
        assert_eq!(c.scanner_service_account, "snapsentry-scanner");
        assert_eq!(c.fingerprint_secret, "snapsentry-fingerprint");
        assert!(c.watch_namespaces.is_empty());
        assert_eq!((c.log.as_str(), c.log_format), ("info", LogFormat::Json));
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.job_settings().ttl_seconds_after_finished, 3600);
        assert_eq!(c.snapshot_ttl, SignedDuration::from_hours(24));
        assert_eq!(c.quota_wait, SignedDuration::from_mins(30));
        assert_eq!(c.write_concurrency, DEFAULT_WRITE_CONCURRENCY);
        assert_eq!(c.job_settings().max_findings, 500);
    }

    #[test]
    fn as_the_chart_sets_it() {
        let mut vars = BASE.to_vec();
        vars.extend([
            ("SNAPSENTRY_WATCH_NAMESPACES", "team-a, team-b,"),
            (
                "SNAPSENTRY_SCANNER_SERVICE_ACCOUNT",
                "rel-snapsentry-scanner",
            ),
            ("SNAPSENTRY_FINGERPRINT_SECRET", "rel-fp"),
            ("SNAPSENTRY_LOG", "debug"),
            ("SNAPSENTRY_LOG_FORMAT", "text"),
            ("SNAPSENTRY_FINGERPRINT_SECRET_KEY", "hmac"),
            (
                "SNAPSENTRY_SCANNER_RESOURCES",
                r#"{"requests":{"cpu":"500m","memory":"256Mi"},"limits":{"memory":"1Gi"}}"#,
            ),
            ("SNAPSENTRY_SCANNER_TIMEOUT_SECONDS", "600"),
            ("SNAPSENTRY_JOB_TTL_SECONDS", "60"),
            ("SNAPSENTRY_SNAPSHOT_TTL", "90m"),
            ("SNAPSENTRY_QUOTA_WAIT", "5m"),
            (
                "SNAPSENTRY_SCANNER_POD",
                r#"{"imagePullSecrets":[{"name":"regcred"}],"priorityClassName":""}"#,
            ),
            ("SNAPSENTRY_WRITE_CONCURRENCY", "4"),
            ("SNAPSENTRY_MAX_FINDINGS_PER_MACHINE", "100"),
        ]);
        let c = config(&vars).unwrap();
        assert_eq!(c.watch_namespaces, ["team-a", "team-b"]);
        assert_eq!(c.log_format, LogFormat::Text);
        let s = c.job_settings();
        assert_eq!(
            (s.service_account.as_str(), s.fingerprint_secret.as_str()),
            ("rel-snapsentry-scanner", "rel-fp")
        );
        assert_eq!(s.fingerprint_secret_key, "hmac");
        assert_eq!(
            (s.default_timeout_seconds, s.ttl_seconds_after_finished),
            (600, 60)
        );
        let r = s.default_resources.unwrap();
        assert_eq!(r.limits.unwrap()["memory"].0, "1Gi");
        assert_eq!(s.pod_defaults.image_pull_secrets[0].name, "regcred");
        assert!(c.leader_election);
        assert_eq!(c.snapshot_ttl, SignedDuration::from_mins(90));
        assert_eq!(c.quota_wait, SignedDuration::from_mins(5));
        assert_eq!((c.write_concurrency, s.max_findings), (4, 100));
        // The chart renders an empty list as "".
        let mut vars = BASE.to_vec();
        vars.push(("SNAPSENTRY_WATCH_NAMESPACES", ""));
        assert!(config(&vars).unwrap().watch_namespaces.is_empty());
    }

    #[test]
    fn errors() {
        let e = config(&BASE[..1]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "configuration: SNAPSENTRY_SCANNER_IMAGE is not set"
        );
        let mut vars = BASE.to_vec();
        vars.push(("SNAPSENTRY_LOG_FORMAT", "xml"));
        assert!(config(&vars).is_err());
        let mut vars = BASE.to_vec();
        vars.push(("SNAPSENTRY_SCANNER_POD", r#"{"tolerationz":[]}"#));
        let e = config(&vars).unwrap_err().to_string();
        assert!(
            e.contains("SNAPSENTRY_SCANNER_POD") && e.contains("tolerationz"),
            "{e}"
        );
        for (k, v) in [
            ("SNAPSENTRY_WRITE_CONCURRENCY", "0"),
            ("SNAPSENTRY_QUOTA_WAIT", "soon"),
            ("SNAPSENTRY_MAX_FINDINGS_PER_MACHINE", "501"),
            ("SNAPSENTRY_MAX_FINDINGS_PER_MACHINE", "many"),
        ] {
            let mut vars = BASE.to_vec();
            vars.push((k, v));
            assert!(config(&vars).is_err(), "{k}={v}");
        }
    }
}
