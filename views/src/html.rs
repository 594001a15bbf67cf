//! The self-contained HTML report: one page, inline CSS and SVG, no script and nothing fetched,
//! so it opens from a file or a mail attachment on a machine without network. Sections (each an
//! element with a fixed `id`, the structure tests and scripts rely on): `summary` (counts, most
//! common secrets, by cloud), `graph` (the attack graph), `paths` (the attack paths as chains),
//! `machines` (a `section.machine` per machine with a `table.findings`).

use crate::escape::html_escape as esc;
use crate::graph::{Graph, severity_color};
use crate::model::{Machine, Report};
use crate::summary::Summary;

const STYLE: &str = "\
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#263238;background:#fafafa}\
h1{margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #cfd8dc;padding-bottom:4px}\
.meta{color:#607d8b;font-size:13px}\
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}\
.card{background:#fff;border:1px solid #cfd8dc;border-radius:6px;padding:10px 16px;min-width:110px}\
.card b{display:block;font-size:24px}\
table{border-collapse:collapse;background:#fff;margin:8px 0;font-size:13px}\
th,td{border:1px solid #cfd8dc;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#eceff1}\
.sev{color:#fff;border-radius:3px;padding:1px 6px;font-size:11px;text-transform:uppercase}\
.new{background:#1565c0;color:#fff;border-radius:3px;padding:1px 5px;font-size:11px}\
.exposed{color:#c62828;font-weight:bold}\
.graph{background:#fff;border:1px solid #cfd8dc;overflow-x:auto;padding:8px}\
.closed td{color:#90a4ae}\
code{font-size:12px;word-break:break-all}\
ol.paths li{margin:4px 0}";

fn badge(severity: snapsentry_crds::Severity) -> String {
    format!(
        "<span class=\"sev\" style=\"background:{}\">{}</span>",
        severity_color(Some(severity)),
        severity.as_str()
    )
}

/// The report as one HTML document.
pub fn render(report: &Report) -> String {
    let summary = Summary::of(report);
    let mut out = String::with_capacity(16 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    // Nothing may load from anywhere: no script, no external resource, inline styles only.
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
    );
    out.push_str(&format!(
        "<title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&report.title)
    ));
    out.push_str(&format!(
        "<header><h1>{}</h1><div class=\"meta\">generated {} · snapsentry {} · no secret value is shown: findings carry a redacted prefix and a keyed fingerprint only</div></header>\n",
        esc(&report.title),
        esc(&report.generated_at),
        env!("CARGO_PKG_VERSION")
    ));
    summary_section(&mut out, &summary);
    out.push_str("<section id=\"graph\"><h2>Attack graph</h2><div class=\"graph\">\n");
    out.push_str(&Graph::of(report).svg());
    out.push_str("</div></section>\n");
    paths_section(&mut out, report);
    out.push_str("<section id=\"machines\"><h2>Machines</h2>\n");
    let mut machines: Vec<&Machine> = report.machines.iter().collect();
    let order: Vec<&str> = summary
        .by_machine
        .iter()
        .map(|r| r.machine.as_str())
        .collect();
    machines.sort_by_key(|m| order.iter().position(|n| *n == m.name));
    for m in machines {
        machine_section(&mut out, m);
    }
    out.push_str("</section>\n</body></html>\n");
    out
}

fn summary_section(out: &mut String, s: &Summary) {
    out.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">");
    for (label, n) in [
        ("open findings", s.open),
        ("machines with secrets", s.machines_with_findings),
        ("of them exposed", s.exposed_with_findings),
        ("machines", s.machines),
        ("not fully scanned", s.incomplete),
        ("attack paths", s.paths),
    ] {
        out.push_str(&format!("<div class=\"card\"><b>{n}</b>{label}</div>"));
    }
    out.push_str("</div>\n<table id=\"by-severity\"><tr>");
    for (sev, _) in &s.by_severity {
        out.push_str(&format!("<th>{}</th>", badge(*sev)));
    }
    out.push_str("</tr><tr>");
    for (_, n) in &s.by_severity {
        out.push_str(&format!("<td>{n}</td>"));
    }
    out.push_str("</tr></table>\n<h3>Most common secrets</h3><table id=\"by-type\"><tr><th>secret type</th><th>findings</th><th>machines</th><th>worst</th></tr>");
    for t in &s.by_type {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.secret_type),
            t.findings,
            t.machines,
            badge(t.worst)
        ));
    }
    out.push_str("</table>\n<h3>By cloud</h3><table id=\"by-cloud\"><tr><th>cloud</th><th>machines</th><th>with secrets</th><th>findings</th></tr>");
    for c in &s.by_cloud {
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.cloud.as_str(),
            c.machines,
            c.machines_with_findings,
            c.findings
        ));
    }
    out.push_str("</table></section>\n");
}

fn paths_section(out: &mut String, report: &Report) {
    out.push_str("<section id=\"paths\"><h2>Attack paths</h2>");
    if report.paths.is_empty() {
        out.push_str("<p>No attack path.</p>");
    } else {
        out.push_str("<ol class=\"paths\">");
        for p in &report.paths {
            out.push_str(&format!(
                "<li>{} {}<br><code>{}</code></li>",
                badge(p.risk),
                esc(&p.title),
                esc(&p.chain())
            ));
        }
        out.push_str("</ol>");
    }
    out.push_str("</section>\n");
}

fn machine_section(out: &mut String, m: &Machine) {
    out.push_str(&format!(
        "<section class=\"machine\" id=\"machine-{}\"><h3>{}{}</h3><div class=\"meta\">cloud {}",
        esc(&m.name),
        esc(&m.name),
        if m.exposed {
            " <span class=\"exposed\">exposed</span>"
        } else {
            ""
        },
        m.cloud.as_str()
    ));
    for (k, v) in &m.facts {
        out.push_str(&format!(" · {} {}", esc(k), esc(v)));
    }
    if let Some(c) = &m.coverage {
        out.push_str(&format!(" · coverage {}", esc(c)));
    }
    if !m.exposure_reasons.is_empty() {
        out.push_str(&format!(
            " · exposure: {}",
            esc(&m.exposure_reasons.join("; "))
        ));
    }
    out.push_str("</div>");
    if m.findings.is_empty() {
        out.push_str("<p>No finding.</p></section>\n");
        return;
    }
    out.push_str("<table class=\"findings\"><tr><th>severity</th><th>secret type</th><th>location</th><th>redacted</th><th>target</th><th>verified</th><th>state</th><th>first seen</th><th>details</th></tr>");
    let mut findings: Vec<_> = m.findings.iter().collect();
    findings.sort_by(|a, b| {
        (!a.is_open(), std::cmp::Reverse(a.severity), &a.secret_type).cmp(&(
            !b.is_open(),
            std::cmp::Reverse(b.severity),
            &b.secret_type,
        ))
    });
    for f in findings {
        let mut locations: Vec<String> = f.locations.iter().map(|l| esc(l)).collect();
        if f.location_count as usize > f.locations.len() {
            locations.push(format!(
                "… {} more",
                f.location_count as usize - f.locations.len()
            ));
        }
        let details: Vec<String> = f
            .facts
            .iter()
            .map(|(k, v)| format!("{} {}", esc(k), esc(v)))
            .chain(f.risk_score.map(|r| format!("risk {r}")))
            .collect();
        out.push_str(&format!(
            "<tr class=\"finding{}\"><td>{}</td><td>{}{}</td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if f.is_open() { "" } else { " closed" },
            badge(f.severity),
            esc(&f.secret_type),
            if f.new { " <span class=\"new\">new</span>" } else { "" },
            locations.join("<br>"),
            esc(&f.redacted),
            f.target.as_ref().map(|t| esc(&t.label())).unwrap_or_default(),
            esc(f.verification.as_deref().unwrap_or("")),
            esc(&f.state),
            esc(f.first_seen.as_deref().unwrap_or("")),
            details.join("<br>")
        ));
    }
    out.push_str("</table></section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::*;

    #[test]
    fn sections_tables_and_the_graph_inline() {
        let html = render(&lab());
        for id in [
            "id=\"summary\"",
            "id=\"graph\"",
            "id=\"paths\"",
            "id=\"machines\"",
            "id=\"by-type\"",
            "id=\"machine-lab-web-01\"",
            "id=\"machine-lab-app-01\"",
            "id=\"machine-lab-db-01\"",
        ] {
            assert!(html.contains(id), "{id}");
        }
        assert_eq!(html.matches("<section class=\"machine\"").count(), 3);
        assert_eq!(html.matches("<table class=\"findings\"").count(), 2);
        assert_eq!(html.matches("<tr class=\"finding").count(), 5);
        assert_eq!(html.matches("<svg ").count(), 1);
        assert!(html.contains("internet → lab-web-01 → SSH private key (/home/alice/.ssh/id_ed25519) → vm lab-db-01 (as bob)"));
        assert!(html.contains("<span class=\"new\">new</span>"));
        // Most common first.
        let aws = html.find("<td>AWS access key</td><td>2</td>").unwrap();
        let ssh = html.find("<td>SSH private key</td><td>1</td>").unwrap();
        assert!(aws < ssh);
    }

    #[test]
    fn self_contained_and_escaped() {
        let html = render(&lab());
        assert!(
            !html.contains("<script"),
            "markup from a disk became markup"
        );
        assert!(html.contains("/srv/app/&lt;script&gt;alert(1)&lt;/script&gt;.env:2"));
        for fetch in ["src=", "href=", "url(http", "@import"] {
            assert!(!html.contains(fetch), "{fetch}");
        }
    }
}
