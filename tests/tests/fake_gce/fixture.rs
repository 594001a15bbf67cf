//! The fleet the fake GCE tests load, the record of Google's documented shapes, and the client
//! side of Compute they drive: paged lists and operation polls.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use snapsentry_tests::fake_gce::{FakeGce, Response};

use crate::fake_arm::shape::assert_shape;

/// The project of [`fleet`].
pub const PROJECT: &str = "snapsentry-test";
/// The zones of [`fleet`]: web-1 and win-1 in the first, db-1 in the second, none in the third.
pub const ZONES: [&str; 3] = ["us-central1-a", "europe-west1-b", "us-east1-c"];
/// The raw disk image file behind web-1's boot disk (the fake never opens it).
pub const WEB_IMAGE: &str = "/images/web-1-boot.img";

/// `/compute/v1/projects/{PROJECT}{rest}`.
pub fn compute(rest: &str) -> String {
    format!("/compute/v1/projects/{PROJECT}{rest}")
}

/// A Debian instance exposed through an external IP and an open firewall rule (with a data
/// disk), a Windows one, a stopped one authorising its key through project metadata in another
/// zone, a third zone with nothing, one Cloud SQL instance and one bucket.
pub fn fleet(page_size: usize) -> Value {
    let disk = |name: &str| json!({"name": name, "image": format!("/images/{name}.img")});
    json!({
        "pageSize": page_size,
        "metadataServer": {"projectId": PROJECT, "zone": ZONES[2],
                           "email": "scanner@snapsentry-test.iam.gserviceaccount.com"},
        "projects": {PROJECT: {
            "zones": [ZONES[2]],
            "commonMetadata": {"ssh-keys": "admin:ssh-ed25519 AAAAC3Nza admin@example"},
            "instances": [{
                "name": "web-1", "zone": ZONES[0], "labels": {"env": "prod"},
                "tags": ["ssh-open"], "serviceAccounts": ["web@snapsentry-test.iam.gserviceaccount.com"],
                "externalIp": "34.1.2.3", "externalIpv6": "2600:1900:4000:1::",
                "metadata": {"ssh-keys": "deploy:ssh-ed25519 AAAAC3Nzb deploy@web"},
                "disks": [{"name": "web-1-boot", "image": WEB_IMAGE, "sizeGb": 20},
                          disk("web-1-data")],
            }, {
                "name": "win-1", "zone": ZONES[0], "os": "WINDOWS", "disks": [disk("win-1-boot")],
            }, {
                "name": "db-1", "zone": ZONES[1], "status": "TERMINATED",
                "disks": [disk("db-1-boot")],
            }],
            "firewalls": [
                {"name": "allow-ssh", "sourceRanges": ["0.0.0.0/0"], "targetTags": ["ssh-open"],
                 "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]},
                {"name": "deny-rdp", "deny": true, "sourceRanges": ["::/0"], "priority": 100,
                 "allowed": [{"IPProtocol": "tcp", "ports": ["3389"]}], "disabled": true},
            ],
            "sqlInstances": [{"name": "orders", "region": "us-central1",
                              "ipAddresses": [{"type": "PRIMARY", "ipAddress": "35.1.1.1"}]}],
            "buckets": [{"name": "snapsentry-test-assets"}],
        }},
    })
}

/// A fake with [`fleet`] loaded and a metadata-server token.
pub fn started(page_size: usize) -> Result<(FakeGce, String)> {
    let gce = FakeGce::start()?;
    gce.load_fleet(&fleet(page_size))?;
    let token = gce.token()?;
    Ok((gce, token))
}

pub fn expect(response: Response, status: u16, what: &str) -> Result<Response> {
    ensure!(
        response.status == status,
        "{what}: HTTP {} (expected {status}): {}",
        response.status,
        response.body
    );
    Ok(response)
}

/// `GET target` answered 200, its JSON.
pub fn get(gce: &FakeGce, token: &str, target: &str) -> Result<Value> {
    expect(gce.request("GET", target, Some(token), None)?, 200, target)?
        .json()
        .map_err(Into::into)
}

/// Every page of a list, following `nextPageToken`.
pub fn pages(gce: &FakeGce, token: &str, first: &str) -> Result<Vec<Value>> {
    let mut pages = Vec::new();
    let mut url = first.to_owned();
    loop {
        let page = get(gce, token, &url)?;
        let next = page["nextPageToken"].as_str().map(str::to_owned);
        pages.push(page);
        let Some(next) = next else { return Ok(pages) };
        let separator = if first.contains('?') { '&' } else { '?' };
        url = format!("{first}{separator}pageToken={next}");
    }
}

/// The items of every page of a (non-aggregated) list.
pub fn list_all(gce: &FakeGce, token: &str, first: &str) -> Result<Vec<Value>> {
    Ok(pages(gce, token, first)?
        .iter()
        .flat_map(|page| page["items"].as_array().cloned().unwrap_or_default())
        .collect())
}

pub fn names(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .filter_map(|item| item["name"].as_str())
        .collect()
}

/// Polls the operation `started` (a mutating call's answer) through its selfLink, alternating
/// `GET` and `POST .../wait`, until DONE; the last body and how many polls said RUNNING.
pub fn poll(gce: &FakeGce, token: &str, started: &Value) -> Result<(Value, usize)> {
    ensure!(
        started["kind"] == "compute#operation",
        "not an operation: {started}"
    );
    ensure!(
        started["status"] == "PENDING",
        "a new operation is PENDING: {started}"
    );
    let link = started["selfLink"].as_str().context("operation selfLink")?;
    let mut running = 0;
    for round in 0..10 {
        let response = if round % 2 == 0 {
            gce.request("GET", link, Some(token), None)?
        } else {
            gce.request("POST", &format!("{link}/wait"), Some(token), None)?
        };
        let op = expect(response, 200, link)?.json()?;
        check(
            &documented("compute.zoneOperations.get", "200")?,
            &op,
            &[
                "/kind",
                "/name",
                "/status",
                "/targetLink",
                "/selfLink",
                "/progress",
            ],
        )?;
        match op["status"].as_str() {
            Some("RUNNING") => running += 1,
            Some("DONE") => return Ok((op, running)),
            other => bail!("operation status {other:?}: {op}"),
        }
    }
    bail!("operation {link} not DONE after 10 polls")
}

/// The documented body of `method` (e.g. `compute.disks.get`) for HTTP `status`, from
/// `tests/gcp/documented_shapes.json`.
pub fn documented(method: &str, status: &str) -> Result<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("gcp/documented_shapes.json");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let shapes: Value = serde_json::from_str(&text)?;
    shapes[method][status]
        .get("body")
        .cloned()
        .with_context(|| format!("{method} {status}: not in {}", path.display()))
}

/// [`assert_shape`], and every documented constant `kind` (and `status` of an error) is the
/// fake's too.
pub fn check(documented: &Value, fake: &Value, relied_on: &[&str]) -> Result<()> {
    assert_shape(documented, fake, relied_on)?;
    constants(documented, fake, "")
}

fn constants(documented: &Value, fake: &Value, at: &str) -> Result<()> {
    match (documented, fake) {
        (Value::Object(doc), Value::Object(ours)) => {
            for (key, value) in doc {
                let Some(other) = ours.get(key) else { continue };
                let constant = matches!(key.as_str(), "kind" | "status" | "reason" | "token_type")
                    && value.as_str().is_some_and(|v| v != "string");
                ensure!(
                    !constant || value == other,
                    "{at}/{key}: documented {value}, fake {other}"
                );
                constants(value, other, &format!("{at}/{key}"))?;
            }
        }
        (Value::Array(doc), Value::Array(ours)) => {
            if let Some(first) = doc.first() {
                for (i, other) in ours.iter().enumerate() {
                    constants(first, other, &format!("{at}/{i}"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}
