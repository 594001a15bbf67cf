//! Precision of the engine on the planted corpus (`tests/corpus/generate.py`), where the generic
//! rules (`engine/rules/generic.yaml`) meet every kind of file a VM holds: each file of the four
//! trees is scanned under its path (test and fixture directories skipped, as the scanner does by
//! default) and `scripts/score.py` must report precision of at least 0.95 and recall of at least
//! 0.95, and no finding may sit on a decoy line (a placeholder, a commented template, a
//! documentation key, …). `snapsentry-scanner`'s `corpus` test scores the real binary on the same
//! corpus; this one keeps the rules honest without building it.
//!
//! Needs `python3`, `ssh-keygen` and `puttygen` (scripts/toolchain.sh); fails without them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use snapsentry_engine::{Engine, EngineConfig, paths};

const TREES: [&str; 4] = ["web-01", "db-01", "ci-01", "win-01"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every regular file under `dir` (symlinks are not followed).
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files(&entry.path(), out);
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
}

#[test]
fn planted_corpus_precision_with_generic_rules() {
    let work = tempfile::tempdir().unwrap();
    let corpus = work.path().join("corpus");
    let out = Command::new("python3")
        .arg(repo().join("tests/corpus/generate.py"))
        .arg(&corpus)
        .output()
        .expect("python3 is not installed: run scripts/toolchain.sh");
    assert!(
        out.status.success(),
        "tests/corpus/generate.py failed (ssh-keygen/puttygen missing? run scripts/toolchain.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let engine = Engine::new(EngineConfig::with_key(b"corpus".to_vec())).unwrap();
    let findings = work.path().join("findings.jsonl");
    let mut jsonl = std::fs::File::create(&findings).unwrap();
    for tree in TREES {
        let root = corpus.join(tree);
        let mut all = Vec::new();
        files(&root, &mut all);
        for file in all {
            let path = format!("/{}", file.strip_prefix(&root).unwrap().display());
            if paths::is_test_path(&path) {
                continue;
            }
            let data = std::fs::read(&file).unwrap();
            for f in engine.scan(&path, &data).findings {
                let line = serde_json::json!({
                    "tree": tree, "path": path, "line": f.line, "type": f.rule_id,
                });
                writeln!(jsonl, "{line}").unwrap();
            }
        }
    }
    drop(jsonl);
    let out = Command::new("python3")
        .arg(repo().join("scripts/score.py"))
        .arg("--labels")
        .arg(corpus.join("labels.json"))
        .arg("--findings-jsonl")
        .arg(&findings)
        .args(["--min-precision", "0.95", "--min-recall", "0.95", "-v"])
        .output()
        .expect("python3 scripts/score.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "planted corpus below 0.95:\n{text}");
    let on_decoys: Vec<&str> = text.lines().filter(|l| l.contains("(decoy:")).collect();
    assert!(
        on_decoys.is_empty(),
        "findings on decoy lines:\n{}",
        on_decoys.join("\n")
    );
}
