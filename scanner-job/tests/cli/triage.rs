//! The CLI in a triage workflow: the config file, the ignore file (with reasons and expiry), the
//! baseline, the severity filter, `--exit-code` with `--exit-on`, `--quiet`, and `rules
//! list|show`, per docs/cli.md. Every finding left out is counted, never silently gone.

use super::*;

/// `snapsentry-scan dir ROOT ARGS…` run in `cwd` (where `snapsentry.yaml` and
/// `.snapsentryignore` are looked for).
fn scan_in(cwd: &Path, root: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
        .current_dir(cwd)
        .arg("dir")
        .arg(root)
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env_remove("SNAPSENTRY_FINGERPRINT_KEY")
        .env_remove("SNAPSENTRY_LOG")
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn findings(v: &Value) -> Vec<Value> {
    v["findings"].as_array().unwrap().clone()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

fn rank(severity: &Value) -> usize {
    SEVERITIES
        .iter()
        .position(|s| severity == *s)
        .unwrap_or_else(|| panic!("{severity} is not a severity"))
}

/// A planted tree, a key directory and a working directory, and the full JSON report.
struct Setup {
    tree: tempfile::TempDir,
    keys: tempfile::TempDir,
    cwd: tempfile::TempDir,
    all: Value,
}

impl Setup {
    fn new() -> Self {
        let (tree, keys, cwd) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        plant(tree.path());
        let out = scan_in(cwd.path(), tree.path(), keys.path(), &["--format", "json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let all = json_of(&out);
        assert!(findings(&all).len() >= 6, "{all:#}");
        assert_eq!(
            all["suppressed"],
            serde_json::json!({"ignored": 0, "baseline": 0, "severity": 0})
        );
        Setup {
            tree,
            keys,
            cwd,
            all,
        }
    }

    fn scan(&self, args: &[&str]) -> Output {
        scan_in(self.cwd.path(), self.tree.path(), self.keys.path(), args)
    }

    fn cwd_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.cwd.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

#[test]
fn severity_filter_and_exit_code_by_severity() {
    let s = Setup::new();
    let all = findings(&s.all);
    let high = all.iter().filter(|f| rank(&f["severity"]) >= 3).count();
    let highest = all.iter().map(|f| rank(&f["severity"])).max().unwrap();
    assert!(
        high > 0 && high < all.len(),
        "the tree has findings on both sides of high"
    );

    let v = json_of(&s.scan(&["--format", "json", "--severity", "high,CRITICAL"]));
    let kept = findings(&v);
    assert_eq!(kept.len(), high);
    assert!(kept.iter().all(|f| rank(&f["severity"]) >= 3));
    assert_eq!(v["suppressed"]["severity"], all.len() - high);
    let sarif = json_of(&s.scan(&["--format", "sarif", "--severity", "high,critical"]));
    let run = &sarif["runs"][0];
    assert_eq!(run["results"].as_array().unwrap().len(), high);
    assert_eq!(run["properties"]["suppressed"], v["suppressed"]);
    let v = json_of(&s.scan(&[
        "--format",
        "json",
        "--severity",
        "medium",
        "--severity",
        "low",
    ]));
    assert!(
        findings(&v)
            .iter()
            .all(|f| f["severity"] == "medium" || f["severity"] == "low")
    );

    // --exit-code applies to reported findings at or above --exit-on.
    assert_eq!(s.scan(&["--exit-code", "9"]).status.code(), Some(9));
    let at = SEVERITIES[highest];
    assert_eq!(
        s.scan(&["--exit-code", "9", "--exit-on", at]).status.code(),
        Some(9)
    );
    if highest < 4 {
        let above = SEVERITIES[highest + 1];
        assert_eq!(
            s.scan(&["--exit-code", "9", "--exit-on", above])
                .status
                .code(),
            Some(0)
        );
    }
    // What --severity leaves out does not count either.
    let below = all.iter().map(|f| rank(&f["severity"])).min().unwrap();
    let out = s.scan(&[
        "--exit-code",
        "9",
        "--severity",
        SEVERITIES[below],
        "--exit-on",
        "high",
    ]);
    assert_eq!(out.status.code(), Some(if below >= 3 { 9 } else { 0 }));
    let out = s.scan(&["--severity", "severe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not a severity"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn quiet_prints_the_findings_alone_and_table_is_sorted_by_severity() {
    let s = Setup::new();
    let table = text(&s.scan(&[]).stdout);
    let ranks: Vec<usize> = table
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            rank(&Value::from(
                l.split_whitespace().next().unwrap().to_lowercase(),
            ))
        })
        .collect();
    assert_eq!(ranks.len(), findings(&s.all).len(), "{table}");
    assert!(
        ranks.windows(2).all(|w| w[0] >= w[1]),
        "most severe first:\n{table}"
    );
    assert!(table.contains("\nSSH PRIVATE KEYS\nLOCATION "), "{table}");
    assert!(table.contains("\nSSH AUTHORIZED KEYS"), "{table}");

    let out = s.scan(&["--quiet"]);
    assert!(out.status.success());
    let quiet = text(&out.stdout);
    assert!(quiet.starts_with("SEVERITY "), "{quiet}");
    assert_eq!(quiet.lines().count(), ranks.len() + 1, "{quiet}");
    assert!(
        !quiet.contains("coverage:") && !quiet.contains("SSH PRIVATE KEYS"),
        "{quiet}"
    );
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    // Nothing to report: nothing printed.
    let out = s.scan(&["-q", "--severity", "info"]);
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        text(&out.stdout)
    );
    // jsonl keeps its stderr summary unless quiet.
    let out = s.scan(&["--format", "jsonl", "--severity", "critical"]);
    assert!(
        text(&out.stderr).contains("coverage: complete"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("outside --severity"),
        "{}",
        text(&out.stderr)
    );
    let out = s.scan(&["--format", "jsonl", "-q"]);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn ignore_file_entries_with_reasons_and_expiry() {
    let s = Setup::new();
    let all = findings(&s.all);
    let aws = all
        .iter()
        .find(|f| f["ruleId"] == "aws-access-key")
        .unwrap();
    let fp = aws["fingerprint"].as_str().unwrap();
    let count = |pred: &dyn Fn(&Value) -> bool| all.iter().filter(|f| pred(f)).count();
    let same_fp = count(&|f| f["fingerprint"] == fp);
    let github = count(&|f| f["ruleId"] == "github-token");
    let under_srv = count(&|f| {
        f["path"].as_str().unwrap().starts_with("/srv/")
            && f["fingerprint"] != fp
            && f["ruleId"] != "github-token"
    });
    let under_opt = count(&|f| f["path"].as_str().unwrap().starts_with("/opt/"));
    assert!(same_fp > 0 && github > 0 && under_srv > 0 && under_opt > 0);
    let ignore = format!(
        "# reviewed 2026-12-01
- fingerprint: {fp}
  reason: rotated on 2026-11-30
- rule: github-token
  reason: a revoked token kept for the incident report
  expires: 2999-12-31
- path: /srv/**
  reason: the demo app's fake credentials
- path: /opt/*.sh
  reason: was accepted until the migration
  expires: 2020-01-31
- rule: github-tokn
  reason: a typo
"
    );
    // Found in the working directory by default.
    s.cwd_file(".snapsentryignore", &ignore);
    let out = s.scan(&["--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = json_of(&out);
    let ignored = same_fp + github + under_srv;
    assert_eq!(v["suppressed"]["ignored"], ignored, "{:#}", v["suppressed"]);
    assert_eq!(findings(&v).len(), all.len() - ignored);
    assert!(
        findings(&v)
            .iter()
            .any(|f| f["path"].as_str().unwrap().starts_with("/opt/"))
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("warning: .snapsentryignore: entry 4 (path /opt/*.sh) expired after 2020-01-31; it no longer ignores anything"),
        "{stderr}"
    );
    assert!(
        stderr.contains("warning: .snapsentryignore: entry 5 names rule github-tokn, which is not loaded; it matches nothing"),
        "{stderr}"
    );
    // The table counts them too.
    let table = text(&s.scan(&[]).stdout);
    assert!(
        table.contains(&format!("not reported: {ignored} ignored")),
        "{table}"
    );

    // --ignore-file names another file; an explicit missing file, an entry without a reason or
    // an unknown key is an error.
    std::fs::remove_file(s.cwd.path().join(".snapsentryignore")).unwrap();
    let other = s.cwd_file("accepted.yaml", &ignore);
    let v = json_of(&s.scan(&["--format", "json", "--ignore-file", other.to_str().unwrap()]));
    assert_eq!(v["suppressed"]["ignored"], ignored);
    let v = json_of(&s.scan(&["--format", "json"]));
    assert_eq!(
        v["suppressed"]["ignored"], 0,
        "no ignore file in the working directory"
    );
    for (bad, says) in [
        ("- rule: github-token\n", "entry 1 has no reason"),
        (
            "- rule: github-token\n  reason: x\n  until: 2027-01-01\n",
            "unknown field `until`",
        ),
        (
            "- rule: github-token\n  reason: x\n  expires: soon\n",
            "is not a date",
        ),
    ] {
        let path = s.cwd_file("bad.yaml", bad);
        let out = s.scan(&["--ignore-file", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty());
    }
    let out = s.scan(&["--ignore-file", "missing.yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn baseline_reports_only_new_secrets() {
    let s = Setup::new();
    // The previous report, before the SAS URL was written.
    let sync = s.tree.path().join("opt/sync.sh");
    let script = std::fs::read(&sync).unwrap();
    std::fs::remove_file(&sync).unwrap();
    let before = s.scan(&["--format", "json", "-o", "previous.json"]);
    assert!(before.status.success(), "{}", text(&before.stderr));
    let previous = json_of(&Output {
        stdout: std::fs::read(s.cwd.path().join("previous.json")).unwrap(),
        ..before
    });
    std::fs::write(&sync, script).unwrap();

    let out = s.scan(&[
        "--format",
        "json",
        "--baseline",
        "previous.json",
        "--exit-code",
        "7",
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "something new: {}",
        text(&out.stderr)
    );
    let v = json_of(&out);
    let new = findings(&v);
    assert!(!new.is_empty());
    assert!(new.iter().all(|f| f["path"] == "/opt/sync.sh"), "{new:#?}");
    assert!(new.iter().any(|f| f["ruleId"] == "azure-sas-token"));
    assert_eq!(
        v["suppressed"]["baseline"],
        findings(&previous).len(),
        "everything of the previous scan is in the baseline"
    );
    // Against a baseline of this very scan, nothing is new.
    let now = s.scan(&["--format", "json", "-o", "now.json"]);
    assert!(now.status.success());
    let out = s.scan(&["--baseline", "now.json", "--exit-code", "7"]);
    assert_eq!(out.status.code(), Some(0));
    let table = text(&out.stdout);
    assert!(table.contains("\n0 finding(s) in "), "{table}");
    assert!(
        table.contains(&format!(
            "not reported: {} in the baseline",
            findings(&s.all).len()
        )),
        "{table}"
    );
    // Only the JSON report is a baseline.
    let jsonl = s.scan(&["--format", "jsonl", "-o", "report.jsonl"]);
    assert!(jsonl.status.success());
    for bad in ["report.jsonl", "missing.json"] {
        let out = s.scan(&["--baseline", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            text(&out.stderr).contains(&format!("baseline {bad}")),
            "{}",
            text(&out.stderr)
        );
    }
}

#[test]
fn config_file_sets_flags_which_override_it() {
    let s = Setup::new();
    let all = findings(&s.all);
    let github = all.iter().filter(|f| f["ruleId"] == "github-token").count();
    std::fs::create_dir(s.cwd.path().join("conf")).unwrap();
    std::fs::write(
        s.cwd.path().join("conf/accepted.yaml"),
        "- rule: github-token\n  reason: revoked\n",
    )
    .unwrap();
    // Found in the working directory; relative paths are relative to the file.
    s.cwd_file(
        "snapsentry.yaml",
        "format: json\nexit-code: 5\nexit-on: critical\nseverity: [high, critical]\nignore-file: conf/accepted.yaml\nno-progress: true\n",
    );
    let out = s.scan(&[]);
    let v = json_of(&out);
    let high = all.iter().filter(|f| rank(&f["severity"]) >= 3).count();
    assert_eq!(findings(&v).len(), high - github);
    assert_eq!(v["suppressed"]["ignored"], github);
    let critical = findings(&v).iter().any(|f| f["severity"] == "critical");
    assert_eq!(out.status.code(), Some(if critical { 5 } else { 0 }));
    // Flags win.
    let out = s.scan(&[
        "--format",
        "jsonl",
        "--exit-on",
        "info",
        "--severity",
        "low,medium,high,critical",
    ]);
    assert_eq!(out.status.code(), Some(5));
    assert!(
        text(&out.stdout)
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );
    // --no-config leaves it out; --config names another.
    let out = s.scan(&["--no-config"]);
    assert!(
        text(&out.stdout).starts_with("SEVERITY"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(0));
    std::fs::write(s.cwd.path().join("conf/ci.yaml"), "format: sarif\n").unwrap();
    let out = s.scan(&["--config", "conf/ci.yaml"]);
    assert_eq!(json_of(&out)["version"], "2.1.0");
    // An unknown key is an error naming it; so is a missing --config file.
    s.cwd_file("snapsentry.yaml", "format: json\nexit_code: 1\n");
    let out = s.scan(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr
            .starts_with("snapsentry-scan: config file snapsentry.yaml: unknown field `exit_code`"),
        "{stderr}"
    );
    let out = s.scan(&["--config", "nowhere.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nowhere.yaml"));
}

#[test]
fn rules_list_and_show_come_from_the_rule_data() {
    let rules = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
            .arg("rules")
            .args(args)
            .output()
            .unwrap()
    };
    let out = rules(&["list"]);
    assert!(out.status.success());
    let list = text(&out.stdout);
    let aws = list
        .lines()
        .find(|l| l.starts_with("aws-access-key "))
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(
        aws.split_whitespace().take(3).collect::<Vec<_>>(),
        ["aws-access-key", "high", "high"]
    );
    let json: Value = serde_json::from_slice(&rules(&["list", "--format", "json"]).stdout).unwrap();
    let all = json.as_array().unwrap();
    assert!(list.contains(&format!("\n{} rule(s)\n", all.len())));
    let ids: Vec<&str> = all.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by id");
    let spec = &all[ids.iter().position(|i| *i == "aws-access-key").unwrap()];
    assert_eq!(spec["file"], "aws.yaml");
    assert_eq!(spec["secretType"], "AWS access key");

    let out = rules(&["show", "aws-access-key"]);
    assert!(out.status.success());
    let show = text(&out.stdout);
    assert!(show.starts_with("id:           aws-access-key\n"), "{show}");
    assert!(
        show.contains("\nvalidators:   aws-key-id, entropy:3.5\n"),
        "{show}"
    );
    // The examples, as the rule file has them.
    let examples = &spec["examples"];
    assert!(show.contains("\nExamples it finds:\n"), "{show}");
    assert!(show.contains("\nExamples it does not find:\n"), "{show}");
    for e in examples["positive"]
        .as_array()
        .unwrap()
        .iter()
        .chain(examples["negative"].as_array().unwrap())
    {
        let text = e.as_str().or_else(|| e["text"].as_str()).unwrap();
        for line in text.lines() {
            assert!(
                show.contains(&format!("    {line}\n")),
                "{line:?} missing from\n{show}"
            );
        }
    }
    let one: Value =
        serde_json::from_slice(&rules(&["show", "aws-access-key", "--format", "json"]).stdout)
            .unwrap();
    assert_eq!(&one, spec);

    // Rules of a --rules file are listed too; an unknown id is exit 2.
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("extra.yaml");
    std::fs::write(
        &extra,
        "rules:\n  - id: internal-token\n    title: Internal token\n    secretType: Internal token\n    severity: low\n    keywords: [itk_]\n    regex: '\\b(itk_[a-z0-9]{20})\\b'\n    examples:\n      positive: ['token = itk_q8wm2rx9vlkt4nb7cd1e']\n",
    )
    .unwrap();
    let out = rules(&["show", "internal-token", "--rules", extra.to_str().unwrap()]);
    assert!(
        text(&out.stdout).contains(&format!("file:         {}\n", extra.display())),
        "{}",
        text(&out.stdout)
    );
    let out = rules(&["show", "no-such-rule"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no rule \"no-such-rule\""));
}
