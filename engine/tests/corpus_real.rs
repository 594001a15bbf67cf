//! Recall and precision on the real-software corpus (`tests/corpus-real/generate.py`): credential
//! files written by the programs that own them (`htpasswd`, `mkpasswd`, `openssl passwd`,
//! `git credential approve`) or in their documented formats, with look-alike non-secrets. Every
//! file is scanned by the engine under its server path; the test prints a per-family table and
//! fails below 0.9 file recall or 0.95 precision, or when weak passwords are not flagged
//! `weakPassword` (or strong ones are).
//!
//! The generator needs `python3`, `htpasswd` (apache2-utils), `mkpasswd` (whois), `openssl` and
//! `git`; without them this test fails — it never skips — and says to run `scripts/toolchain.sh`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use snapsentry_engine::{Engine, EngineConfig};

const MIN_FILE_RECALL: f64 = 0.9;
const MIN_PRECISION: f64 = 0.95;
const MIN_WEAK_ACCURACY: f64 = 0.9;
/// The corpus's size floor (issue 13): files holding a secret, software families among them.
const MIN_SECRET_FILES: usize = 120;
const MIN_FAMILIES: usize = 40;

#[derive(Deserialize)]
struct Truth {
    files: Vec<TruthFile>,
}

#[derive(Deserialize)]
struct TruthFile {
    path: String,
    family: String,
    secrets: Vec<Label>,
    decoys: Vec<Decoy>,
    /// In the held-out slice (`tests/corpus-real/heldout.py`): families no rule was written for.
    #[serde(default)]
    heldout: bool,
}

#[derive(Deserialize)]
struct Label {
    line: usize,
    weak: bool,
}

#[derive(Deserialize)]
struct Decoy {
    line: usize,
    kind: String,
}

#[derive(Default)]
struct Tally {
    files: usize,
    secret_files: usize,
    files_found: usize,
    lines: usize,
    lines_found: usize,
    false_positives: usize,
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 { 1.0 } else { n as f64 / d as f64 }
}

#[test]
fn real_software_corpus_recall_and_precision() {
    let generator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus-real/generate.py");
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("corpus");
    let run = Command::new("python3")
        .arg(&generator)
        .arg(&out)
        .output()
        .expect("python3 is not installed: run scripts/toolchain.sh");
    assert!(
        run.status.success(),
        "tests/corpus-real/generate.py failed (run scripts/toolchain.sh for its tools):\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let truth: Truth =
        serde_yaml::from_str(&std::fs::read_to_string(out.join("truth.json")).unwrap()).unwrap();
    let engine = Engine::new(EngineConfig::with_key(b"corpus-real".to_vec())).unwrap();

    let mut families: BTreeMap<String, Tally> = BTreeMap::new();
    // The held-out slice again on its own, and its true and reported lines.
    let mut heldout = Tally::default();
    let (mut heldout_located, mut heldout_true) = (0, 0);
    let (mut located, mut true_locations) = (0, 0);
    let (mut weak_right, mut weak_total) = (0, 0);
    let mut problems = Vec::new();
    for file in &truth.files {
        let data = std::fs::read(out.join(file.path.trim_start_matches('/'))).unwrap();
        let scan = engine.scan(&file.path, &data);
        let lines: BTreeSet<usize> = scan.findings.iter().map(|f| f.line).collect();
        let expected: BTreeMap<usize, bool> =
            file.secrets.iter().map(|l| (l.line, l.weak)).collect();
        let t = families.entry(file.family.clone()).or_default();
        t.files += 1;
        t.lines += expected.len();
        if !expected.is_empty() {
            t.secret_files += 1;
            if lines.iter().any(|l| expected.contains_key(l)) {
                t.files_found += 1;
            }
        }
        if file.heldout {
            heldout.files += 1;
            heldout.lines += expected.len();
            heldout.lines_found += lines.iter().filter(|l| expected.contains_key(l)).count();
            heldout_located += lines.len();
            heldout_true += lines.iter().filter(|l| expected.contains_key(l)).count();
            if !expected.is_empty() {
                heldout.secret_files += 1;
                if lines.iter().any(|l| expected.contains_key(l)) {
                    heldout.files_found += 1;
                }
            }
        }
        for line in &lines {
            located += 1;
            if expected.contains_key(line) {
                true_locations += 1;
                t.lines_found += 1;
            } else {
                t.false_positives += 1;
                let kind = file
                    .decoys
                    .iter()
                    .find(|d| d.line == *line)
                    .map_or("unlabelled", |d| d.kind.as_str());
                problems.push(format!("false positive {}:{line} ({kind})", file.path));
            }
        }
        for (line, weak) in &expected {
            let found: Vec<_> = scan.findings.iter().filter(|f| f.line == *line).collect();
            if found.is_empty() {
                problems.push(format!("missed {}:{line}", file.path));
                continue;
            }
            weak_total += 1;
            if found.iter().any(|f| f.metadata.weak_password) == *weak {
                weak_right += 1;
            } else {
                problems.push(format!(
                    "{}:{line}: weakPassword should be {weak}",
                    file.path
                ));
            }
        }
    }

    let total = |f: fn(&Tally) -> usize| families.values().map(f).sum::<usize>();
    eprintln!(
        "{:<22} {:>5} {:>7} {:>6} {:>7} {:>6} {:>4}",
        "family", "files", "secret", "found", "lines", "found", "fp"
    );
    for (name, t) in &families {
        eprintln!(
            "{name:<22} {:>5} {:>7} {:>6} {:>7} {:>6} {:>4}",
            t.files, t.secret_files, t.files_found, t.lines, t.lines_found, t.false_positives
        );
    }
    // The corpus itself must stay what issue 13 asks for: enough files and families, a third of
    // the secret files with weak passwords, and at least as many look-alike files as secret ones.
    let secret_files = truth.files.iter().filter(|f| !f.secrets.is_empty());
    let weak_files = secret_files
        .clone()
        .filter(|f| f.secrets.iter().any(|s| s.weak))
        .count();
    let secret_families: BTreeSet<&str> = secret_files.clone().map(|f| f.family.as_str()).collect();
    let secret_files = secret_files.count();
    let lookalike_files = truth.files.len() - secret_files;
    assert!(
        secret_files >= MIN_SECRET_FILES
            && secret_families.len() >= MIN_FAMILIES
            && weak_files * 3 >= secret_files
            && lookalike_files >= secret_files,
        "the corpus shrank: {secret_files} secret files (min {MIN_SECRET_FILES}) in {} families \
         (min {MIN_FAMILIES}), {weak_files} with weak passwords (min a third), {lookalike_files} \
         look-alike files (min as many as secret files)",
        secret_families.len()
    );
    let file_recall = ratio(total(|t| t.files_found), total(|t| t.secret_files));
    let line_recall = ratio(total(|t| t.lines_found), total(|t| t.lines));
    let precision = ratio(true_locations, located);
    let weak_accuracy = ratio(weak_right, weak_total);
    eprintln!(
        "{} files ({} with secrets) in {} families: file recall {file_recall:.3}, line recall \
         {line_recall:.3}, precision {precision:.3}, weakPassword right on {weak_right}/{weak_total}",
        truth.files.len(),
        total(|t| t.secret_files),
        families.len()
    );
    // Reported, not asserted: how the rules do on files they were not written against.
    eprintln!(
        "held-out slice: {} files ({} with secrets): file recall {:.3}, line recall {:.3}, \
         precision {:.3}",
        heldout.files,
        heldout.secret_files,
        ratio(heldout.files_found, heldout.secret_files),
        ratio(heldout.lines_found, heldout.lines),
        ratio(heldout_true, heldout_located)
    );
    for p in &problems {
        eprintln!("  {p}");
    }
    assert!(
        file_recall >= MIN_FILE_RECALL
            && precision >= MIN_PRECISION
            && weak_accuracy >= MIN_WEAK_ACCURACY,
        "real-software corpus: file recall {file_recall:.3} (min {MIN_FILE_RECALL}), precision \
         {precision:.3} (min {MIN_PRECISION}), weakPassword accuracy {weak_accuracy:.3} (min \
         {MIN_WEAK_ACCURACY}); see the table and list above"
    );
}
