//! The terminal renderings of `summary`, `machine`, `paths` and `diff`: aligned tables and
//! plain lines, nothing coloured (they are read in pipes and logs as often as in terminals).

use std::fmt::Write as _;

use snapsentry_views::{Finding, Machine, Report, Summary};

use crate::diff::MachineDiff;

/// Columns aligned under their headers, two spaces apart, trailing spaces trimmed.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let head: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for r in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (c, w) in r.iter().zip(&widths) {
            line.push_str(c);
            line.push_str(&" ".repeat(w - c.chars().count() + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `summary`.
pub fn summary(report: &Report) -> String {
    let s = Summary::of(report);
    let mut out = format!(
        "{}\n{} open finding(s) on {} of {} machine(s) ({} exposed to the internet); {} not fully scanned; {} attack path(s)\n",
        report.title,
        s.open,
        s.machines_with_findings,
        s.machines,
        s.exposed_with_findings,
        s.incomplete,
        s.paths
    );
    out.push_str("\nBY SEVERITY\n");
    let sev: Vec<Vec<String>> = vec![s.by_severity.iter().map(|(_, n)| n.to_string()).collect()];
    let head: Vec<String> = s
        .by_severity
        .iter()
        .map(|(v, _)| v.as_str().to_uppercase())
        .collect();
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    out.push_str(&table(&head, &sev));
    out.push_str("\nMOST COMMON SECRETS\n");
    let rows: Vec<Vec<String>> = s
        .by_type
        .iter()
        .map(|t| {
            vec![
                t.secret_type.clone(),
                t.findings.to_string(),
                t.machines.to_string(),
                t.worst.as_str().to_owned(),
            ]
        })
        .collect();
    out.push_str(&table(&["TYPE", "FINDINGS", "MACHINES", "WORST"], &rows));
    out.push_str("\nBY MACHINE\n");
    let rows: Vec<Vec<String>> = s
        .by_machine
        .iter()
        .map(|m| {
            let mut r = vec![
                m.machine.clone(),
                m.cloud.as_str().to_owned(),
                if m.exposed { "yes" } else { "no" }.to_owned(),
            ];
            r.extend(m.by_severity.iter().map(ToString::to_string));
            r.push(m.findings.to_string());
            r.push(m.coverage.clone().unwrap_or_else(|| "-".to_owned()));
            r
        })
        .collect();
    out.push_str(&table(
        &[
            "MACHINE", "CLOUD", "EXPOSED", "CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO", "TOTAL",
            "COVERAGE",
        ],
        &rows,
    ));
    out.push_str("\nBY CLOUD\n");
    let rows: Vec<Vec<String>> = s
        .by_cloud
        .iter()
        .map(|c| {
            vec![
                c.cloud.as_str().to_owned(),
                c.machines.to_string(),
                c.machines_with_findings.to_string(),
                c.findings.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["CLOUD", "MACHINES", "WITH SECRETS", "FINDINGS"],
        &rows,
    ));
    out
}

fn finding_rows(findings: &[&Finding]) -> Vec<Vec<String>> {
    findings
        .iter()
        .map(|f| {
            let mut location = f.locations.first().cloned().unwrap_or_default();
            if f.location_count > 1 {
                let _ = write!(location, " (+{})", f.location_count - 1);
            }
            vec![
                f.severity.as_str().to_uppercase(),
                f.secret_type.clone(),
                location,
                f.redacted.clone(),
                f.target
                    .as_ref()
                    .map(|t| t.label())
                    .unwrap_or_else(|| "-".to_owned()),
                f.verification.clone().unwrap_or_else(|| "-".to_owned()),
                f.state.clone(),
                f.first_seen.clone().unwrap_or_default(),
                if f.new { "yes" } else { "" }.to_owned(),
            ]
        })
        .collect()
}

const FINDING_HEADER: [&str; 9] = [
    "SEVERITY",
    "TYPE",
    "LOCATION",
    "REDACTED",
    "TARGET",
    "VERIFIED",
    "STATE",
    "FIRST SEEN",
    "NEW",
];

/// `machine NAME`: the machine's facts, its findings (open first, worst first), then each
/// finding's metadata.
pub fn machine(m: &Machine) -> String {
    let mut out = format!("{}  ({}", m.name, m.cloud.as_str());
    if m.exposed {
        out.push_str(", exposed to the internet");
    }
    out.push_str(")\n");
    for (k, v) in &m.facts {
        let _ = writeln!(out, "  {k:<10} {v}");
    }
    if let Some(c) = &m.coverage {
        let _ = writeln!(out, "  {:<10} {c}", "coverage");
    }
    for r in &m.exposure_reasons {
        let _ = writeln!(out, "  {:<10} {r}", "exposure");
    }
    let mut findings: Vec<&Finding> = m.findings.iter().collect();
    findings.sort_by(|a, b| {
        (
            !a.is_open(),
            std::cmp::Reverse(a.severity),
            &a.secret_type,
            &a.name,
        )
            .cmp(&(
                !b.is_open(),
                std::cmp::Reverse(b.severity),
                &b.secret_type,
                &b.name,
            ))
    });
    let open = findings.iter().filter(|f| f.is_open()).count();
    let _ = writeln!(out, "\n{} finding(s), {open} open", findings.len());
    if findings.is_empty() {
        return out;
    }
    out.push_str(&table(&FINDING_HEADER, &finding_rows(&findings)));
    out.push_str("\nDETAILS\n");
    for f in findings {
        let _ = writeln!(out, "{}  ({}, {})", f.name, f.rule_id, f.fingerprint);
        for l in f.locations.iter().skip(1) {
            let _ = writeln!(out, "  {:<14} {l}", "also at");
        }
        for (k, v) in &f.facts {
            let _ = writeln!(out, "  {k:<14} {v}");
        }
        if let Some(r) = f.risk_score {
            let _ = writeln!(out, "  {:<14} {r}", "risk");
        }
    }
    out
}

/// `paths`: numbered chains, worst first.
pub fn paths(report: &Report) -> String {
    if report.paths.is_empty() {
        return "No attack path.\n".to_owned();
    }
    let mut out = String::new();
    for (i, p) in report.paths.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}. [{}] {}\n   {}",
            i + 1,
            p.risk.as_str().to_uppercase(),
            p.title,
            p.chain()
        );
        if !p.exposure_reasons.is_empty() {
            let _ = writeln!(out, "   exposed: {}", p.exposure_reasons.join("; "));
        }
    }
    out
}

/// `diff`: per machine, its latest scan's new, resolved and changed findings.
pub fn diff(diffs: &[MachineDiff]) -> String {
    if diffs.is_empty() {
        return "No machine has finished a scan.\n".to_owned();
    }
    let mut out = String::new();
    let (mut n, mut r, mut c) = (0, 0, 0);
    for d in diffs {
        let _ = write!(
            out,
            "{}  scan {} (started {}): ",
            d.machine, d.scan_id, d.since
        );
        if d.new.is_empty() && d.resolved.is_empty() && d.changed.is_empty() {
            out.push_str("no change\n");
            continue;
        }
        let _ = writeln!(
            out,
            "{} new, {} resolved, {} changed",
            d.new.len(),
            d.resolved.len(),
            d.changed.len()
        );
        for (sign, list) in [("+", &d.new), ("-", &d.resolved), ("~", &d.changed)] {
            for f in list {
                let _ = writeln!(
                    out,
                    "  {sign} {:<8} {}  {}  {}",
                    f.severity.as_str().to_uppercase(),
                    f.secret_type,
                    f.locations.first().map(String::as_str).unwrap_or(""),
                    f.name
                );
            }
        }
        n += d.new.len();
        r += d.resolved.len();
        c += d.changed.len();
    }
    let _ = writeln!(out, "\n{n} new, {r} resolved, {c} changed");
    out
}
