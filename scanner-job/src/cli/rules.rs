//! `snapsentry-scan rules list` and `rules show ID`: the detection rules the scanner runs (the
//! built-in rules and any `--rules` files), straight from the engine's rule data — so what is
//! printed is what is matched, examples included.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use snapsentry_engine::Rule;
use snapsentry_engine::rules::load_rules;

use super::read_rule_files;
use crate::columns::write_columns;

/// Arguments of `rules`.
#[derive(clap::Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
}

#[derive(clap::Subcommand)]
enum RulesCommand {
    /// List every rule: id, severity, confidence, secret type and title, by id.
    List(Common),
    /// Show one rule: what it matches, where, how findings are checked, and its examples.
    Show {
        /// The rule's id (as `rules list` prints it).
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

/// What both subcommands take.
#[derive(clap::Args)]
struct Common {
    /// Also load this rule file (same YAML format as the built-in rules); repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RulesFormat::Table)]
    format: RulesFormat,
}

/// Output format of `rules`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RulesFormat {
    /// Text for people.
    Table,
    /// JSON: the rules as written (the rule file format, camelCase) plus `file`.
    Json,
}

/// Run `rules list` or `rules show`.
pub fn run(args: &RulesArgs) -> anyhow::Result<ExitCode> {
    let (common, id) = match &args.command {
        RulesCommand::List(common) => (common, None),
        RulesCommand::Show { id, common } => (common, Some(id)),
    };
    let rules = load_rules(&read_rule_files(&common.rules)?, &[])?;
    let mut out = Vec::new();
    match id {
        None => list(&mut out, &rules, common.format)?,
        Some(id) => {
            let rule = rules.iter().find(|r| r.id() == id).with_context(|| {
                format!("no rule {id:?} (`snapsentry-scan rules list` lists them)")
            })?;
            show(&mut out, rule, common.format)?;
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A rule as JSON: its spec as written, `confidence` as it applies, and the file it came from.
fn rule_json(rule: &Rule) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(&rule.spec)?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("confidence".into(), serde_json::to_value(rule.confidence)?);
        obj.insert("file".into(), rule.file.clone().into());
    }
    Ok(v)
}

fn list(out: &mut Vec<u8>, rules: &[Rule], format: RulesFormat) -> anyhow::Result<()> {
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by(|a, b| a.id().cmp(b.id()));
    match format {
        RulesFormat::Json => {
            let all = sorted
                .iter()
                .map(|r| rule_json(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            serde_json::to_writer_pretty(&mut *out, &all)?;
            out.push(b'\n');
        }
        RulesFormat::Table => {
            let mut rows = vec![
                ["ID", "SEVERITY", "CONFIDENCE", "TYPE", "TITLE"]
                    .map(String::from)
                    .to_vec(),
            ];
            for r in &sorted {
                rows.push(vec![
                    r.id().to_owned(),
                    r.spec.severity.as_str().to_owned(),
                    serde_name(&r.confidence),
                    r.spec.secret_type.clone(),
                    r.spec.title.clone(),
                ]);
            }
            write_columns(out, &rows)?;
            writeln!(out, "\n{} rule(s)", sorted.len())?;
        }
    }
    Ok(())
}

fn show(out: &mut Vec<u8>, rule: &Rule, format: RulesFormat) -> anyhow::Result<()> {
    if format == RulesFormat::Json {
        serde_json::to_writer_pretty(&mut *out, &rule_json(rule)?)?;
        out.push(b'\n');
        return Ok(());
    }
    let s = &rule.spec;
    let list = |v: &[String], none: &str| {
        if v.is_empty() {
            none.to_owned()
        } else {
            v.join(", ")
        }
    };
    let mut rows: Vec<Vec<String>> = vec![
        vec!["id".into(), s.id.clone()],
        vec!["title".into(), s.title.clone()],
        vec!["secret type".into(), s.secret_type.clone()],
        vec!["severity".into(), s.severity.as_str().to_owned()],
        vec!["confidence".into(), serde_name(&rule.confidence)],
        vec!["file".into(), rule.file.clone()],
        vec!["keywords".into(), list(&s.keywords, "(none: a path rule)")],
        vec!["regex".into(), s.regex.clone()],
        vec!["paths".into(), list(&s.paths, "(any file)")],
    ];
    if !s.exclude_paths.is_empty() {
        rows.push(vec!["never in".into(), list(&s.exclude_paths, "")]);
    }
    rows.push(vec!["validators".into(), list(&s.validators, "(none)")]);
    if let Some(t) = &s.target {
        rows.push(vec!["target".into(), serde_name(&t.kind)]);
    }
    let mut notes = Vec::new();
    if rule.window != snapsentry_engine::rules::DEFAULT_WINDOW {
        notes.push(format!("searches {} bytes around keywords", rule.window));
    }
    if !rule.check_placeholder {
        notes.push("no placeholder check".to_owned());
    }
    if s.credential_field {
        notes.push("credential field: weak values are reported as weak passwords".to_owned());
    }
    if let Some(d) = s.decode {
        notes.push(format!("decodes the secret ({})", serde_name(&d)));
    }
    if s.ssh_private_key {
        notes.push("SSH private keys (key facts reported)".to_owned());
    }
    if !notes.is_empty() {
        rows.push(vec!["notes".into(), notes.join("; ")]);
    }
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|mut r| {
            r[0].push(':');
            r
        })
        .collect();
    write_columns(out, &rows)?;
    for (title, examples) in [
        ("Examples it finds", &s.examples.positive),
        ("Examples it does not find", &s.examples.negative),
    ] {
        if examples.is_empty() {
            continue;
        }
        writeln!(out, "\n{title}:")?;
        for e in examples {
            writeln!(out, "  as {}:", e.path())?;
            for line in e.text().lines() {
                writeln!(out, "    {line}")?;
            }
        }
    }
    Ok(())
}

/// The name serde gives a unit variant (`storage-account`, `high`).
fn serde_name(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}
