//! Metadata the engine derives without any network access, and the path policies.

use snapsentry_engine::{Confidence, Engine, EngineConfig, Finding, TargetKind, paths};

fn engine() -> Engine {
    Engine::new(EngineConfig::with_key(b"k".to_vec())).unwrap()
}

fn only(findings: &[Finding], rule: &str) -> Finding {
    let matching: Vec<_> = findings.iter().filter(|f| f.rule_id == rule).collect();
    assert_eq!(matching.len(), 1, "{rule}: {findings:#?}");
    matching[0].clone()
}

#[test]
fn aws_pair_carries_the_account_id_and_is_reported_once() {
    let text = "[default]\naws_access_key_id = ASIAY34FZKBOKMUTVV7A\naws_secret_access_key = ZYn9ZhyiA4uoRgnatmUdjAWtGSU8po/799NksnRH\n";
    let scan = engine().scan("/home/u/.aws/credentials", text.as_bytes());
    // The pair rule and the single-secret rule both match; one finding remains.
    assert_eq!(scan.findings.len(), 1, "{:#?}", scan.findings);
    let f = &scan.findings[0];
    assert_eq!(f.rule_id, "aws-access-key");
    assert_eq!(f.line, 3);
    assert_eq!(f.metadata.aws_account_id.as_deref(), Some("609629065308"));
    assert_eq!(f.redacted, "ZYn9…(40)");
}

#[test]
fn expiry_and_targets() {
    let e = engine();
    let sas = "https://prodbackups01.blob.core.windows.net/d?sv=2022-11-02&se=2026-12-31T23:59:59Z&sp=r&sig=bM6JOF8EFd0Nhcy%2B1kGD2VD%2BeR1UYzaLiA%2BzNyD7CHL%3D\n";
    let f = only(
        &e.scan("/opt/a.sh", sas.as_bytes()).findings,
        "azure-sas-token",
    );
    assert_eq!(
        f.metadata.expires_at.as_deref(),
        Some("2026-12-31T23:59:59Z")
    );
    let t = f.metadata.target.unwrap();
    assert_eq!(
        (t.kind, t.name.as_deref()),
        (TargetKind::StorageAccount, Some("prodbackups01"))
    );

    let s3 = "https://b.s3.amazonaws.com/k?X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=08e800ad0967ea4a2ff13b6a6b0b90894d0a5c325766db843178fce323f55bda\n";
    let f = only(
        &e.scan("/opt/a.sh", s3.as_bytes()).findings,
        "aws-s3-presigned-url",
    );
    assert_eq!(
        f.metadata.expires_at.as_deref(),
        Some("2025-01-01T01:00:00Z")
    );

    let rds = "DATABASE_URL=postgres://billing:qHOBSWhgetH8LmyqoYMa@billing.c9akciq32xyz.eu-west-1.rds.amazonaws.com:5432/billing\n";
    let f = only(
        &e.scan("/srv/app/config.env", rds.as_bytes()).findings,
        "aws-rds-uri",
    );
    let t = f.metadata.target.unwrap();
    assert_eq!(t.kind, TargetKind::Rds);
    assert_eq!(t.name.as_deref(), Some("billing"));
    assert_eq!(
        t.host.as_deref(),
        Some("billing.c9akciq32xyz.eu-west-1.rds.amazonaws.com")
    );

    let sql = "Server=tcp:shop-sql-prod.database.windows.net,1433;Initial Catalog=shop;User ID=a;Password=h#JUq%BlIFXZ53;\n";
    let f = only(
        &e.scan("/srv/app/conn.txt", sql.as_bytes()).findings,
        "azure-sql-connection-string",
    );
    let t = f.metadata.target.unwrap();
    assert_eq!(
        (t.kind, t.name.as_deref()),
        (TargetKind::SqlDatabase, Some("shop-sql-prod"))
    );
}

#[test]
fn package_trees_lower_confidence_and_tests_are_recognised() {
    let e = engine();
    let text = b"GITHUB_TOKEN=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\n";
    assert_eq!(
        e.scan("/home/u/notes", text).findings[0].confidence,
        Confidence::High
    );
    assert_eq!(
        e.scan("/usr/share/doc/x/README", text).findings[0].confidence,
        Confidence::Medium
    );
    assert!(paths::is_test_path("/srv/app/tests/fixtures/.env"));
    assert!(paths::is_test_path("/usr/lib/node_modules/pkg/test/x.js"));
    assert!(!paths::is_test_path("/srv/app/.env"));
}

#[test]
fn binary_files_get_keyword_rules_but_not_path_rules() {
    let e = engine();
    let mut blob =
        b"\x7fELF\x00\x00\x00\x00junk GITHUB_TOKEN=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\x00"
            .to_vec();
    blob.extend_from_slice(b"\nDB_PASSWORD=h#JUq%BlIFXZ53\n");
    let scan = e.scan("/srv/app/.env", &blob);
    assert_eq!(
        scan.encoding,
        Some(snapsentry_engine::encoding::TextKind::Binary)
    );
    assert!(scan.findings.iter().any(|f| f.rule_id == "github-token"));
    assert!(!scan.findings.iter().any(|f| f.rule_id == "dotenv-secret"));
}

#[test]
fn utf16_powershell_history() {
    let text =
        "Get-Date\r\n$p = ConvertTo-SecureString \"Ncqe28ajY75FnCtq\" -AsPlainText -Force\r\n";
    for le in [true, false] {
        let mut data = if le {
            vec![0xFF, 0xFE]
        } else {
            vec![0xFE, 0xFF]
        };
        for u in text.encode_utf16() {
            data.extend_from_slice(&if le { u.to_le_bytes() } else { u.to_be_bytes() });
        }
        let scan = engine().scan("/Users/a/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt", &data);
        let f = only(&scan.findings, "powershell-securestring-plaintext");
        assert_eq!(f.line, 2);
        assert_eq!(f.redacted, "Ncqe…(16)");
    }
}

#[test]
fn findings_never_hold_the_value() {
    let secret = "ZYn9ZhyiA4uoRgnatmUdjAWtGSU8po/799NksnRH";
    let text =
        format!("aws_access_key_id = AKIAWB5WKH7DNSIPZZ7F\naws_secret_access_key = {secret}\n");
    let scan = engine().scan("/home/u/.aws/credentials", text.as_bytes());
    assert!(!scan.findings.is_empty());
    let debug = format!("{:?}", scan.findings);
    assert!(!debug.contains(secret) && !debug.contains(&secret[..12]));
}

#[test]
fn weak_passwords_in_credential_fields_are_reported_and_flagged() {
    let e = engine();
    // Placeholder words and test values in a field that is certainly a password: weak, low.
    for (path, text, rule) in [
        (
            "/home/app/.pgpass",
            "db01:5432:*:app:password\n",
            "pgpass-password",
        ),
        (
            "/var/www/html/wp-config.php",
            "define( 'DB_PASSWORD', 'sunshine' );\n",
            "wordpress-db-password",
        ),
        (
            "/home/dev/.config/filezilla/sitemanager.xml",
            // base64 of "test123"
            "<Server><Pass encoding=\"base64\">dGVzdDEyMw==</Pass></Server>\n",
            "filezilla-password",
        ),
        (
            "/root/.my.cnf",
            "[client]\npassword=example\n",
            "mysql-client-password",
        ),
    ] {
        let f = only(&e.scan(path, text.as_bytes()).findings, rule);
        assert!(f.metadata.weak_password, "{path}");
        assert_eq!(f.confidence, Confidence::Low, "{path}");
    }
    // A random password in the same field: not weak, the rule's confidence.
    let f = only(
        &e.scan(
            "/home/app/.pgpass",
            b"db01:5432:*:app:qHOBSWhgetH8LmyqoYMa\n",
        )
        .findings,
        "pgpass-password",
    );
    assert!(!f.metadata.weak_password);
    assert_eq!(f.confidence, Confidence::High);
    // Templates and instructions stay dropped even there.
    for text in [
        "db01:5432:*:app:${PGPASSWORD}\n",
        "db01:5432:*:app:<password>\n",
        "db01:5432:*:app:changeme\n",
        "db01:5432:*:app:***\n",
    ] {
        assert!(
            e.scan("/home/app/.pgpass", text.as_bytes())
                .findings
                .is_empty(),
            "{text}"
        );
    }
    // A password-named key is a credential field too (the generic rules): a word there is a weak
    // password; in a template file (`.env.example`) it is a placeholder.
    let f = only(
        &e.scan("/srv/app/.env", b"DB_PASSWORD=password\n").findings,
        "generic-password-config",
    );
    assert!(f.metadata.weak_password);
    assert!(
        e.scan("/srv/app/.env.example", b"DB_PASSWORD=password\n")
            .findings
            .is_empty()
    );
    // Outside a credential field a word is still a placeholder.
    assert!(
        e.scan("/srv/app/.env", b"API_TOKEN=password\n")
            .findings
            .is_empty()
    );
}

#[test]
fn crypt_hashes_outside_shadow_and_shadow_stays_low() {
    let e = engine();
    let line = "admin:$6$Zq8wM2rX$kT4nB7cD1eF3gH5jK6mP9sQ2vX5yZ8bC1eF4hJ7kM0pR3tU6wY9zB2dF5gH8jK1mN4qS7uV0xA3cE6fI9lO2";
    let f = only(
        &e.scan("/etc/apache2/.htpasswd", line.as_bytes()).findings,
        "crypt-password-hash",
    );
    assert_eq!(f.severity, snapsentry_engine::Severity::Medium);
    let shadow = format!("{line}:19500:0:99999:7:::\n");
    let scan = e.scan("/etc/shadow", shadow.as_bytes());
    assert_eq!(scan.findings.len(), 1, "{:#?}", scan.findings);
    assert_eq!(scan.findings[0].rule_id, "shadow-password-hash");
}

#[test]
fn quoted_netrc_password_is_the_whole_value() {
    let e = engine();
    let quoted = e.scan(
        "/home/ops/.netrc",
        b"machine a.contoso.com login ops password \"N8yZbzYzv6 BzsfJpzk19\"\n",
    );
    let f = only(&quoted.findings, "netrc-password");
    assert_eq!(f.redacted, "N8yZ…(21)");
}
