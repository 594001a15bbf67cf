//! `--format html` opened in headless Chromium (scripts/toolchain.sh installs it): the report of
//! an ext4 image with the planted secrets, as the browser parsed it — its sections, one
//! `section.machine`, one row per secret (per rule and fingerprint, as in `--format json`) —
//! a screenshot of the requested size, and no planted value in the file or the DOM. A file whose
//! name is markup stays text.

use std::collections::BTreeSet;

use snapsentry_tests::browser::Browser;

use super::*;

#[test]
fn html_report_renders_in_a_browser() {
    require("mke2fs", "e2fsprogs");
    let browser = Browser::find().unwrap();
    let tree = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    plant(tree.path());
    write(
        tree.path(),
        "/srv/<img src=x onerror=alert(1)>/.env",
        format!("DB_PASSWORD={DB_PASSWORD}\n").as_bytes(),
    );
    let raw = work.path().join("web-01.raw");
    snapsentry_tests::image::ext4(tree.path(), &raw, 64).unwrap();
    let scan = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_snapsentry-scan"))
            .arg("image")
            .arg(&raw)
            .args(args)
            .env("XDG_CONFIG_HOME", config.path())
            .env_remove("SNAPSENTRY_FINGERPRINT_KEY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let json: Value = serde_json::from_slice(&scan(&["--format", "json"]).stdout).unwrap();
    let secrets: BTreeSet<(String, String)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["ruleId"].to_string(), f["fingerprint"].to_string()))
        .collect();
    assert!(secrets.len() >= 5, "{json}");

    let page = work.path().join("report.html");
    let out = scan(&["--format", "html", "-o", page.to_str().unwrap()]);
    assert_no_leak("html stderr", &out.stderr);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_no_leak("the html file", html.as_bytes());
    let dom = browser.dump_dom(&page).unwrap();
    assert_no_leak("the DOM", dom.as_bytes());
    for id in [
        "summary",
        "graph",
        "paths",
        "machines",
        "machine-web-01",
        "by-type",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no #{id} in the DOM");
    }
    assert_eq!(dom.matches("<section class=\"machine\"").count(), 1);
    assert_eq!(dom.matches("<tr class=\"finding").count(), secrets.len());
    assert!(dom.contains("/home/ubuntu/.aws/credentials"));
    assert!(dom.contains("<svg ") && dom.contains("class=\"node secret\""));
    // The directory named like an element is text, in the DOM as in the file.
    assert!(
        !dom.contains("<img"),
        "markup from the disk became an element"
    );
    assert!(dom.contains("/srv/&lt;img src=x onerror=alert(1)&gt;/.env"));
    browser
        .screenshot(&page, &work.path().join("report.png"), 1280, 1400)
        .unwrap();
}
