//! Prometheus metrics, served as text on `/metrics`.
//!
//! The metrics, their types and labels are listed in docs/api.md ("Metrics").
//!
//! Built on `prometheus-client` (the Prometheus project's Rust client); the exposition is the
//! OpenMetrics text format, which Prometheus scrapes natively. Labels carry rule names and
//! severities, never anything from a secret.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use snapsentry_crds::Severity;

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct FindingLabels {
    policy: String,
    severity: String,
    secret_type: String,
}

/// How a machine's scan ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the variant names are the label values
pub enum ScanResult {
    succeeded,
    /// The Job succeeded but a volume or disk could not be read (phase `Incomplete`).
    incomplete,
    failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: ScanResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    findings: Family<FindingLabels, Gauge>,
    /// Series set per policy, to drop the ones that went to zero.
    findings_series: Mutex<BTreeMap<String, BTreeSet<FindingLabels>>>,
    scans: Family<ResultLabels, Counter>,
    scan_duration: Histogram,
    bytes_read: Counter<u64, AtomicU64>,
    active_snapshots: Gauge,
    /// Active snapshots per policy (`namespace/name`); the gauge is their sum.
    policy_snapshots: Mutex<BTreeMap<String, i64>>,
    reconcile_errors: Family<PolicyLabels, Counter>,
    machines_incomplete: Family<PolicyLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("snapsentry");
        let findings = Family::<FindingLabels, Gauge>::default();
        registry.register(
            "findings",
            "Open secret findings by policy, severity and secret type",
            findings.clone(),
        );
        let scans = Family::<ResultLabels, Counter>::default();
        registry.register("scans", "Machine scans finished, by result", scans.clone());
        // 1 s … ~2.3 h: small images take seconds, large cloud disks an hour or more.
        let scan_duration = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register_with_unit(
            "scan_duration",
            "Duration of one machine's scan",
            Unit::Seconds,
            scan_duration.clone(),
        );
        let bytes_read = Counter::<u64, AtomicU64>::default();
        registry.register_with_unit(
            "bytes_read",
            "Disk bytes read by scanners",
            Unit::Bytes,
            bytes_read.clone(),
        );
        let active_snapshots = Gauge::default();
        registry.register(
            "active_snapshots",
            "Cloud snapshots existing for running scans",
            active_snapshots.clone(),
        );
        let reconcile_errors = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed ScanPolicy reconciles (each is retried), by policy namespace/name",
            reconcile_errors.clone(),
        );
        let machines_incomplete = Family::<PolicyLabels, Gauge>::default();
        registry.register(
            "machines_incomplete",
            "Machines not fully scanned (phase Incomplete) in the last finished scan, by policy namespace/name",
            machines_incomplete.clone(),
        );
        Self {
            registry,
            machines_incomplete,
            findings,
            findings_series: Mutex::default(),
            scans,
            scan_duration,
            bytes_read,
            active_snapshots,
            policy_snapshots: Mutex::default(),
            reconcile_errors,
        }
    }

    /// Replace a policy's open-finding counts: (severity, secret type) → count.
    pub fn set_findings(&self, policy: &str, counts: &BTreeMap<(Severity, String), u64>) {
        let mut series = self
            .findings_series
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let previous = series.remove(policy).unwrap_or_default();
        let mut now = BTreeSet::new();
        for ((severity, secret_type), n) in counts {
            let labels = FindingLabels {
                policy: policy.to_owned(),
                severity: severity.as_str().to_owned(),
                secret_type: secret_type.clone(),
            };
            self.findings.get_or_create(&labels).set(*n as i64);
            now.insert(labels);
        }
        for gone in previous.difference(&now) {
            self.findings.remove(gone);
        }
        series.insert(policy.to_owned(), now);
    }

    /// Count a finished machine scan.
    pub fn scan_finished(&self, result: ScanResult, duration_seconds: f64, bytes_read: u64) {
        self.scans.get_or_create(&ResultLabels { result }).inc();
        self.scan_duration.observe(duration_seconds);
        self.bytes_read.inc_by(bytes_read);
    }

    /// Set the number of snapshots existing for running scans.
    pub fn set_active_snapshots(&self, n: i64) {
        self.active_snapshots.set(n);
    }

    /// Set the number of snapshots existing for one policy's running scan; the gauge shows the
    /// sum over policies.
    pub fn set_policy_snapshots(&self, policy: &str, n: i64) {
        let mut per = self
            .policy_snapshots
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if n == 0 {
            per.remove(policy);
        } else {
            per.insert(policy.to_owned(), n);
        }
        self.active_snapshots.set(per.values().sum());
    }

    /// Count a failed reconcile of `policy` (`namespace/name`).
    pub fn reconcile_failed(&self, policy: &str) {
        self.reconcile_errors
            .get_or_create(&PolicyLabels {
                policy: policy.to_owned(),
            })
            .inc();
    }

    /// Set the number of `Incomplete` machines of `policy` (`namespace/name`) after a scan;
    /// 0 removes the series.
    pub fn set_machines_incomplete(&self, policy: &str, n: u32) {
        let labels = PolicyLabels {
            policy: policy.to_owned(),
        };
        if n == 0 {
            self.machines_incomplete.remove(&labels);
        } else {
            self.machines_incomplete
                .get_or_create(&labels)
                .set(i64::from(n));
        }
    }

    /// Every series name a query can select, derived from the registry (so dashboards and
    /// alerts are checked against what is exported, not a copy): a gauge's name, a counter's
    /// `_total`, a histogram's `_bucket`, `_sum` and `_count`, with the unit suffix. Families
    /// without samples are not encoded, so it fills one sample into each through the setters.
    pub fn series_names() -> Vec<String> {
        let m = Metrics::new();
        m.set_findings(
            "p",
            &BTreeMap::from([((Severity::Info, "t".to_owned()), 1)]),
        );
        m.scan_finished(ScanResult::succeeded, 1.0, 1);
        m.set_active_snapshots(1);
        m.reconcile_failed("p");
        m.set_machines_incomplete("p", 1);
        let mut out = Vec::new();
        for line in m.encode().lines() {
            let Some(rest) = line.strip_prefix("# TYPE ") else {
                continue;
            };
            let Some((name, kind)) = rest.split_once(' ') else {
                continue;
            };
            match kind {
                "counter" => out.push(format!("{name}_total")),
                "histogram" => {
                    out.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}")))
                }
                _ => out.push(name.to_owned()),
            }
        }
        out.sort();
        out
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_exposition() {
        let m = Metrics::new();
        m.set_findings(
            "prod",
            &BTreeMap::from([
                ((Severity::Critical, "ssh-private-key".to_owned()), 2),
                ((Severity::High, "aws-access-key".to_owned()), 1),
            ]),
        );
        m.scan_finished(ScanResult::succeeded, 3.5, 1000);
        m.scan_finished(ScanResult::succeeded, 70.0, 24);
        m.scan_finished(ScanResult::failed, 0.5, 0);
        m.scan_finished(ScanResult::incomplete, 0.0, 0);
        m.set_active_snapshots(4);
        m.set_machines_incomplete("a/prod", 2);
        m.set_machines_incomplete("b/dev", 1);
        m.set_machines_incomplete("b/dev", 0);
        let text = m.encode();
        let has = |line: &str| {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            )
        };
        has("# TYPE snapsentry_findings gauge");
        has(
            r#"snapsentry_findings{policy="prod",severity="critical",secret_type="ssh-private-key"} 2"#,
        );
        has(r#"snapsentry_findings{policy="prod",severity="high",secret_type="aws-access-key"} 1"#);
        has("# TYPE snapsentry_scans counter");
        has(r#"snapsentry_scans_total{result="succeeded"} 2"#);
        has(r#"snapsentry_scans_total{result="failed"} 1"#);
        has(r#"snapsentry_scans_total{result="incomplete"} 1"#);
        has("# TYPE snapsentry_machines_incomplete gauge");
        has(r#"snapsentry_machines_incomplete{policy="a/prod"} 2"#);
        assert!(!text.contains("b/dev"), "{text}");
        has("# TYPE snapsentry_scan_duration_seconds histogram");
        has("# UNIT snapsentry_scan_duration_seconds seconds");
        has("snapsentry_scan_duration_seconds_count 4");
        has("snapsentry_scan_duration_seconds_sum 74.0");
        has(r#"snapsentry_scan_duration_seconds_bucket{le="1.0"} 2"#);
        has(r#"snapsentry_scan_duration_seconds_bucket{le="4.0"} 3"#);
        has(r#"snapsentry_scan_duration_seconds_bucket{le="+Inf"} 4"#);
        has("snapsentry_bytes_read_bytes_total 1024");
        has("snapsentry_active_snapshots 4");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn series_names_cover_every_family() {
        let names = Metrics::series_names();
        for n in [
            "snapsentry_findings",
            "snapsentry_scans_total",
            "snapsentry_scan_duration_seconds_bucket",
            "snapsentry_scan_duration_seconds_count",
            "snapsentry_bytes_read_bytes_total",
            "snapsentry_active_snapshots",
            "snapsentry_reconcile_errors_total",
            "snapsentry_machines_incomplete",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} not in {names:?}");
        }
    }

    #[test]
    fn active_snapshots_sum_over_policies() {
        let m = Metrics::new();
        m.set_policy_snapshots("a/prod", 3);
        m.set_policy_snapshots("b/dev", 2);
        assert!(m.encode().contains("snapsentry_active_snapshots 5\n"));
        m.set_policy_snapshots("a/prod", 0);
        assert!(m.encode().contains("snapsentry_active_snapshots 2\n"));
    }

    #[test]
    fn reconcile_errors_count_per_policy() {
        let m = Metrics::new();
        m.reconcile_failed("a/prod");
        m.reconcile_failed("a/prod");
        m.reconcile_failed("b/dev");
        let text = m.encode();
        assert!(
            text.contains("# TYPE snapsentry_reconcile_errors counter\n"),
            "{text}"
        );
        assert!(
            text.contains("snapsentry_reconcile_errors_total{policy=\"a/prod\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("snapsentry_reconcile_errors_total{policy=\"b/dev\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn finding_series_that_went_away_are_dropped() {
        let m = Metrics::new();
        m.set_findings(
            "prod",
            &BTreeMap::from([((Severity::High, "aws-access-key".to_owned()), 1)]),
        );
        m.set_findings(
            "dev",
            &BTreeMap::from([((Severity::Low, "github-token".to_owned()), 5)]),
        );
        m.set_findings("prod", &BTreeMap::new());
        let text = m.encode();
        assert!(!text.contains("aws-access-key"), "{text}");
        assert!(text.contains(
            r#"snapsentry_findings{policy="dev",severity="low",secret_type="github-token"} 5"#
        ));
    }
}
