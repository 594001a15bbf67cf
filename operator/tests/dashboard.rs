//! The chart's Grafana dashboards (`charts/snapsentry/dashboards/*.json`) query only series the
//! operator exports: every PromQL expression of every panel is scanned for `snapsentry_*` names,
//! each checked against [`Metrics::series_names`] (derived from the registry, not a copy).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use snapsentry_operator::metrics::Metrics;

fn dashboards() -> Vec<(PathBuf, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/snapsentry/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("charts/snapsentry/dashboards") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let json =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path, json));
        }
    }
    assert!(!out.is_empty(), "no dashboard in {}", dir.display());
    out
}

/// Every panel, rows' nested panels included.
fn panels(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in v["panels"].as_array().into_iter().flatten() {
        out.push(p);
        out.extend(panels(p));
    }
    out
}

/// The metric names a PromQL expression selects: identifiers outside strings, `[…]` ranges and
/// `{…}` matchers that are not followed by `(` (functions) and are not keywords or labels of
/// `by (…)` / `without (…)`; only `snapsentry_*` ones are returned.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let (mut i, mut depth_brace, mut depth_bracket, mut in_string) = (0, 0, 0, None::<char>);
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = in_string {
            if c == '\\' {
                i += 1;
            } else if c == q {
                in_string = None;
            }
            i += 1;
            continue;
        }
        match c {
            '"' | '\'' | '`' => in_string = Some(c),
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            c if (c.is_ascii_alphabetic() || c == '_' || c == ':')
                && depth_brace == 0
                && depth_bracket == 0 =>
            {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if word.starts_with("snapsentry_") {
                    out.push(word);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[test]
fn every_query_names_an_exported_metric() {
    let exported: BTreeSet<String> = Metrics::series_names().into_iter().collect();
    let mut used = BTreeSet::new();
    for (path, dash) in dashboards() {
        let panels = panels(&dash);
        assert!(!panels.is_empty(), "{}: no panel", path.display());
        for p in panels.iter().filter(|p| p["type"] != "row") {
            let title = p["title"].as_str().unwrap_or("?");
            let targets = p["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert!(
                !targets.is_empty(),
                "{}: panel {title:?} has no query",
                path.display()
            );
            for t in targets {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{title}: no expr"));
                let names = metric_names(expr);
                assert!(
                    !names.is_empty(),
                    "{title}: {expr:?} selects no snapsentry metric"
                );
                for n in names {
                    assert!(
                        exported.contains(&n),
                        "{title}: {n} is not exported ({exported:?})"
                    );
                    used.insert(n);
                }
            }
        }
        // Variables' queries too.
        for v in dash["templating"]["list"].as_array().into_iter().flatten() {
            if let Some(q) = v["query"]["query"].as_str().or(v["definition"].as_str()) {
                for n in metric_names(q) {
                    assert!(exported.contains(&n), "variable {}: {n}", v["name"]);
                }
            }
        }
    }
    // What the dashboard promises: findings over time, scans, coverage, durations, snapshots.
    for n in [
        "snapsentry_findings",
        "snapsentry_scans_total",
        "snapsentry_machines_incomplete",
        "snapsentry_scan_duration_seconds_bucket",
        "snapsentry_active_snapshots",
    ] {
        assert!(used.contains(n), "no panel shows {n}");
    }
}

#[test]
fn the_query_scanner_skips_functions_labels_and_strings() {
    assert_eq!(
        metric_names(
            r#"sum by (severity) (rate(snapsentry_scans_total{policy="snapsentry_x"}[5m])) / snapsentry_b"#
        ),
        ["snapsentry_scans_total", "snapsentry_b"]
    );
    assert!(metric_names("label_values(up, job)").is_empty());
}
