//! The summary view: open findings counted by secret type, machine, cloud and severity.

use std::collections::{BTreeMap, BTreeSet};

use snapsentry_crds::{Cloud, Severity};

use crate::model::{Report, SEVERITIES};

/// Open findings of a report, counted four ways.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Machines in the report.
    pub machines: usize,
    /// Machines holding at least one open finding.
    pub machines_with_findings: usize,
    /// Of those, machines reachable from the internet.
    pub exposed_with_findings: usize,
    /// Machines not fully scanned (coverage other than `complete`).
    pub incomplete: usize,
    /// Open findings.
    pub open: usize,
    /// Attack paths.
    pub paths: usize,
    /// By secret type, most common first (then worst first, then by name).
    pub by_type: Vec<TypeRow>,
    /// By machine, worst first.
    pub by_machine: Vec<MachineRow>,
    /// By cloud.
    pub by_cloud: Vec<CloudRow>,
    /// By severity, worst first, every severity (zero counts included).
    pub by_severity: Vec<(Severity, usize)>,
}

/// Open findings of one secret type.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeRow {
    /// Secret type in words.
    pub secret_type: String,
    /// Open findings of the type.
    pub findings: usize,
    /// Machines holding one.
    pub machines: usize,
    /// Worst severity among them.
    pub worst: Severity,
}

/// Open findings of one machine.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineRow {
    /// Machine name.
    pub machine: String,
    /// Its cloud.
    pub cloud: Cloud,
    /// Reachable from the internet.
    pub exposed: bool,
    /// Open findings by severity, worst first (as [`Summary::by_severity`]).
    pub by_severity: [usize; 5],
    /// Open findings.
    pub findings: usize,
    /// Coverage, when known.
    pub coverage: Option<String>,
}

/// Machines and open findings of one cloud.
#[derive(Clone, Debug, PartialEq)]
pub struct CloudRow {
    /// The cloud.
    pub cloud: Cloud,
    /// Machines of the cloud in the report.
    pub machines: usize,
    /// Of those, holding an open finding.
    pub machines_with_findings: usize,
    /// Open findings.
    pub findings: usize,
}

fn rank(s: Severity) -> usize {
    SEVERITIES.iter().position(|x| *x == s).unwrap_or(4)
}

impl Summary {
    /// Count a report's open findings.
    pub fn of(report: &Report) -> Self {
        let mut out = Summary {
            machines: report.machines.len(),
            paths: report.paths.len(),
            ..Default::default()
        };
        let mut types: BTreeMap<&str, (usize, BTreeSet<&str>, Severity)> = BTreeMap::new();
        let mut clouds: BTreeMap<Cloud, CloudRow> = BTreeMap::new();
        let mut severities = [0usize; 5];
        for m in &report.machines {
            let cloud = clouds.entry(m.cloud).or_insert(CloudRow {
                cloud: m.cloud,
                machines: 0,
                machines_with_findings: 0,
                findings: 0,
            });
            cloud.machines += 1;
            if m.coverage.as_deref().is_some_and(|c| c != "complete") {
                out.incomplete += 1;
            }
            let mut row = MachineRow {
                machine: m.name.clone(),
                cloud: m.cloud,
                exposed: m.exposed,
                by_severity: [0; 5],
                findings: 0,
                coverage: m.coverage.clone(),
            };
            for f in m.findings.iter().filter(|f| f.is_open()) {
                row.by_severity[rank(f.severity)] += 1;
                row.findings += 1;
                severities[rank(f.severity)] += 1;
                let t = types
                    .entry(&f.secret_type)
                    .or_insert((0, BTreeSet::new(), f.severity));
                t.0 += 1;
                t.1.insert(&m.name);
                t.2 = t.2.max(f.severity);
            }
            if row.findings > 0 {
                out.machines_with_findings += 1;
                cloud.machines_with_findings += 1;
                if m.exposed {
                    out.exposed_with_findings += 1;
                }
            }
            cloud.findings += row.findings;
            out.open += row.findings;
            out.by_machine.push(row);
        }
        out.by_type = types
            .into_iter()
            .map(|(t, (n, machines, worst))| TypeRow {
                secret_type: t.to_owned(),
                findings: n,
                machines: machines.len(),
                worst,
            })
            .collect();
        out.by_type.sort_by(|a, b| {
            (b.findings, b.worst, b.machines)
                .cmp(&(a.findings, a.worst, a.machines))
                .then_with(|| a.secret_type.cmp(&b.secret_type))
        });
        out.by_machine.sort_by(|a, b| {
            (b.by_severity, b.findings, b.exposed)
                .cmp(&(a.by_severity, a.findings, a.exposed))
                .then_with(|| a.machine.cmp(&b.machine))
        });
        out.by_cloud = clouds.into_values().collect();
        out.by_severity = SEVERITIES.iter().copied().zip(severities).collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::*;

    #[test]
    fn counts_open_findings_most_common_type_first() {
        let r = lab();
        let s = Summary::of(&r);
        assert_eq!((s.machines, s.machines_with_findings, s.open), (3, 2, 4));
        assert_eq!(s.exposed_with_findings, 1);
        assert_eq!(s.incomplete, 1);
        let types: Vec<(&str, usize, usize)> = s
            .by_type
            .iter()
            .map(|t| (t.secret_type.as_str(), t.findings, t.machines))
            .collect();
        assert_eq!(
            types,
            [
                ("AWS access key", 2, 2),
                ("SSH private key", 1, 1),
                ("Generic password", 1, 1)
            ]
        );
        assert_eq!(s.by_machine[0].machine, "lab-web-01");
        assert_eq!(s.by_machine[0].by_severity, [1, 1, 0, 0, 0]);
        assert_eq!(s.by_severity[0], (Severity::Critical, 1));
        assert_eq!(s.by_severity[1], (Severity::High, 2));
        let clouds: Vec<(Cloud, usize, usize)> = s
            .by_cloud
            .iter()
            .map(|c| (c.cloud, c.machines, c.findings))
            .collect();
        assert_eq!(clouds, [(Cloud::Aws, 2, 2), (Cloud::Azure, 1, 2)]);
    }
}
