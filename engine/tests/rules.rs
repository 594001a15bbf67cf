//! Every rule's examples, run through the real engine: positives must produce a finding of that
//! rule, negatives none. All failures are reported at once.

use snapsentry_engine::{Engine, EngineConfig, rules};

#[test]
fn every_rule_example_behaves() {
    let engine = Engine::new(EngineConfig::with_key(b"test-key".to_vec())).expect("rules load");
    let mut failures = engine.check_examples();
    // Every embedded rule documents itself with at least two examples each way.
    for rule in engine.rules() {
        let ex = &rule.spec.examples;
        if ex.positive.len() < 2 || ex.negative.len() < 2 {
            failures.push(format!(
                "{}: rule {}: needs >= 2 positive and >= 2 negative examples (has {} / {})",
                rule.file,
                rule.id(),
                ex.positive.len(),
                ex.negative.len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rule example failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn embedded_rules_load_and_are_many() {
    let files = rules::embedded_rule_files();
    let engine = Engine::new(EngineConfig::with_key(b"k".to_vec())).expect("rules load");
    eprintln!("{} rule files, {} rules", files.len(), engine.rules().len());
    assert!(!files.is_empty());
}

#[test]
fn disable_and_extra_rules() {
    let extra = "rules:\n  - id: extra-demo\n    title: Extra\n    secretType: Extra\n    severity: low\n    keywords: [xtra_]\n    regex: '\\b(xtra_[a-z0-9]{16})\\b'\n";
    let cfg = EngineConfig {
        extra_rules: vec![("extra.yaml".into(), extra.into())],
        disabled: vec![],
        fingerprint_key: b"k".to_vec(),
    };
    let engine = Engine::new(cfg.clone()).unwrap();
    let scan = engine.scan("/a", b"v=xtra_q8wm2rx9vlkt4nb7\n");
    assert_eq!(scan.findings.len(), 1);
    let engine = Engine::new(EngineConfig {
        disabled: vec!["extra-demo".into()],
        ..cfg.clone()
    })
    .unwrap();
    assert!(
        engine
            .scan("/a", b"v=xtra_q8wm2rx9vlkt4nb7\n")
            .findings
            .is_empty()
    );
    let err = Engine::new(EngineConfig {
        disabled: vec!["nope".into()],
        ..cfg
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "--disable nope: no such rule");
}
