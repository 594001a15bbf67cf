//! The fake Compute Engine (`tests/gcp/fake_gce.py`) against the record of Google's documented
//! response shapes (`tests/gcp/documented_shapes.json`): every response the GCP provider relies on
//! has the documented field names, JSON types and `kind`s; lists page with
//! `maxResults`/`nextPageToken` and filter on labels; mutating calls follow the operation dance
//! (PENDING, RUNNING, DONE); tokens come from the metadata server or are a service account's
//! verified self-signed JWT; faults (throttling, server errors, a disk quota) behave like Compute; and every disk
//! maps to its raw image file.

mod fixture;
mod operations;

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use snapsentry_tests::fake_arm::TestCertificate;
use snapsentry_tests::fake_gce::FakeGce;

use fixture::{PROJECT, check, compute, documented, expect, get, names, pages, started};

#[test]
fn calls_need_a_token_and_the_metadata_server_a_flavor_header() -> Result<()> {
    let (gce, token) = started(500)?;
    let path = compute("/aggregated/instances");
    for bad in [None, Some("ya29.not-issued")] {
        let refused = expect(gce.request("GET", &path, bad, None)?, 401, "no token")?;
        ensure!(refused.header("WWW-Authenticate").is_some());
        check(
            &documented("compute.error", "401")?,
            &refused.json()?,
            &[
                "/error/code",
                "/error/message",
                "/error/errors/0/reason",
                "/error/status",
            ],
        )?;
    }
    for path in [
        "/sql/v1beta4/projects/snapsentry-test/instances",
        "/storage/v1/b?project=x",
    ] {
        expect(gce.request("GET", path, None, None)?, 401, path)?;
    }
    let refused = gce.metadata_token(false)?;
    ensure!(
        refused.status == 403,
        "no Metadata-Flavor: {}",
        refused.status
    );
    let answer = expect(gce.metadata_token(true)?, 200, "metadata token")?;
    ensure!(answer.header("Metadata-Flavor") == Some("Google"));
    check(
        &documented("oauth2.token", "200")?,
        &answer.json()?,
        &["/access_token", "/expires_in", "/token_type"],
    )?;
    get(&gce, &token, &path)?;
    // Where the scanner's node runs, as text.
    let zone = expect(
        gce.metadata("/computeMetadata/v1/instance/zone", true)?,
        200,
        "zone",
    )?;
    ensure!(zone.body.starts_with("projects/") && zone.body.ends_with("/zones/us-east1-c"));
    let project = gce.metadata("/computeMetadata/v1/project/project-id", true)?;
    ensure!(project.body == PROJECT && project.header("Metadata-Flavor") == Some("Google"));
    // What google-cloud-auth asks the metadata server before its first call.
    let universe = gce.metadata("/computeMetadata/v1/universe/universe-domain", true)?;
    ensure!(universe.status == 200 && universe.body == "googleapis.com");
    ensure!(
        gce.metadata("/computeMetadata/v1/project/project-id", false)?
            .status
            == 403
    );
    let missing = gce.request("GET", "/compute/v1/projects/nope", Some(&token), None)?;
    ensure!(missing.status == 404 && missing.json()?["error"]["errors"][0]["reason"] == "notFound");
    ensure!(gce.state()?["tokensIssued"] == 2);
    Ok(())
}

#[test]
fn self_signed_service_account_jwts_are_verified_rs256() -> Result<()> {
    let gce = FakeGce::start()?;
    let dir = tempfile::tempdir()?;
    // A key made now with openssl; the fleet knows only its public modulus.
    let key = TestCertificate::generate(dir.path())?;
    let email = "scanner@snapsentry-test.iam.gserviceaccount.com";
    gce.load_fleet(
        &json!({"serviceAccount": {"email": email, "modulus": key.modulus},
                           "projects": {PROJECT: {}}}),
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let jwt = |claims: &Value| -> Result<String> {
        let input = format!(
            "{}.{}",
            B64.encode(json!({"alg": "RS256", "typ": "JWT", "kid": "test"}).to_string()),
            B64.encode(claims.to_string())
        );
        Ok(format!(
            "{input}.{}",
            B64.encode(key.sign(input.as_bytes())?)
        ))
    };
    // What google-cloud-auth signs for a key: the scope, iss = sub = the account, an hour.
    let claims = json!({"iss": email, "sub": email,
                        "scope": "https://www.googleapis.com/auth/cloud-platform",
                        "iat": now, "exp": now + 3600});
    let good = jwt(&claims)?;
    get(&gce, &good, &compute(""))?;
    ensure!(gce.state()?["selfSignedCalls"] == 1);

    let (head, signature) = good.rsplit_once('.').context("jwt")?;
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &signature[1..]);
    let refused = expect(
        gce.request("GET", &compute(""), Some(&tampered), None)?,
        401,
        "tampered",
    )?;
    ensure!(refused.json()?["error"]["errors"][0]["reason"] == "authError");
    for (field, value) in [
        ("iss", json!("other@x.iam.gserviceaccount.com")),
        ("sub", json!("other@x.iam.gserviceaccount.com")),
        ("exp", json!(now - 60)),
        ("exp", json!(now + 86_400)),
        ("scope", json!(null)),
    ] {
        let mut bad = claims.clone();
        bad[field] = value;
        let refused = gce.request("GET", &compute(""), Some(&jwt(&bad)?), None)?;
        ensure!(refused.status == 401, "{field}: {}", refused.status);
    }
    ensure!(gce.state()?["selfSignedCalls"] == 1 && gce.state()?["tokensIssued"] == 0);
    // No metadataServer in this fleet: the metadata server knows no zone.
    ensure!(
        gce.metadata("/computeMetadata/v1/instance/zone", true)?
            .status
            == 404
    );
    Ok(())
}

#[test]
fn aggregated_instances_page_by_zone_in_the_documented_shape() -> Result<()> {
    let (gce, token) = started(500)?;
    let documented_list = documented("compute.instances.aggregatedList", "200")?;
    let documented_instance = documented("compute.instances.get", "200")?;
    let first = format!("{}?maxResults=1", compute("/aggregated/instances"));
    let pages = pages(&gce, &token, &first)?;
    ensure!(
        pages.len() == 3,
        "3 instances at maxResults=1 took {} pages",
        pages.len()
    );
    let mut instances = Vec::new();
    for page in &pages {
        check(
            &documented_list,
            page,
            &["/kind", "/id", "/items", "/selfLink"],
        )?;
        let items = page["items"].as_object().context("items map")?;
        let mut scopes: Vec<&String> = items.keys().collect();
        scopes.sort_unstable();
        ensure!(
            scopes
                == [
                    "zones/europe-west1-b",
                    "zones/us-central1-a",
                    "zones/us-east1-c"
                ]
        );
        for scoped in items.values() {
            let pointer = if scoped.get("instances").is_some() {
                "/instances"
            } else {
                "/warning/code"
            };
            check(&documented_list["items"]["zones/ZONE"], scoped, &[pointer])?;
            if let Some(warning) = scoped.get("warning") {
                ensure!(
                    warning["code"] == "NO_RESULTS_ON_PAGE" && warning["data"][0]["key"] == "scope"
                );
            }
            instances.extend(scoped["instances"].as_array().cloned().unwrap_or_default());
        }
    }
    let mut found = names(&instances);
    found.sort_unstable();
    ensure!(found == ["db-1", "web-1", "win-1"], "{found:?}");
    for instance in &instances {
        check(
            &documented_instance,
            instance,
            &[
                "/kind",
                "/id",
                "/name",
                "/status",
                "/zone",
                "/selfLink",
                "/labels",
                "/networkInterfaces/0/network",
                "/networkInterfaces/0/networkIP",
                "/disks/0/source",
                "/disks/0/deviceName",
                "/disks/0/index",
                "/disks/0/boot",
                "/disks/0/licenses",
                "/disks/0/guestOsFeatures/0/type",
                "/metadata/items",
                "/tags",
            ],
        )?;
    }
    let by_name = |name: &str| instances.iter().find(|i| i["name"] == name).cloned();
    let web = by_name("web-1").context("web-1")?;
    check(
        &documented_instance,
        &web,
        &[
            "/networkInterfaces/0/accessConfigs/0/natIP",
            "/networkInterfaces/0/ipv6AccessConfigs/0/externalIpv6",
            "/tags/items",
            "/serviceAccounts/0/email",
            "/metadata/items/0/key",
        ],
    )?;
    check(
        &documented_instance["disks"][0],
        &web["disks"][1],
        &["/source", "/index", "/boot"],
    )?;
    ensure!(web["networkInterfaces"][0]["accessConfigs"][0]["natIP"] == "34.1.2.3");
    ensure!(web["tags"]["items"] == json!(["ssh-open"]) && web["labels"]["env"] == "prod");
    ensure!(
        web["metadata"]["items"][0]
            == json!({"key": "ssh-keys",
        "value": "deploy:ssh-ed25519 AAAAC3Nzb deploy@web"})
    );
    ensure!(web["disks"][1]["boot"] == false && web["disks"][1]["index"] == 1);
    let boot_link = web["disks"][0]["source"].as_str().context("source")?;
    ensure!(
        boot_link
            == format!(
                "{}{}",
                gce.endpoint(),
                compute("/zones/us-central1-a/disks/web-1-boot")
            )
    );
    let win = by_name("win-1").context("win-1")?;
    let features = &win["disks"][0]["guestOsFeatures"];
    ensure!(
        features
            .as_array()
            .is_some_and(|f| f.contains(&json!({"type": "WINDOWS"})))
    );
    ensure!(
        win["disks"][0]["licenses"][0]
            .as_str()
            .is_some_and(|l| l.contains("windows-cloud"))
    );
    ensure!(win["networkInterfaces"][0].get("accessConfigs").is_none());
    ensure!(by_name("db-1").context("db-1")?["status"] == "TERMINATED");

    // The zonal list and get, a filter, a missing instance.
    let zonal = format!(
        "{}?filter=status%20%3D%20RUNNING",
        compute("/zones/us-central1-a/instances")
    );
    let listed = get(&gce, &token, &zonal)?;
    check(
        &documented("compute.instances.list", "200")?,
        &listed,
        &["/kind", "/items"],
    )?;
    ensure!(names(listed["items"].as_array().context("items")?) == ["web-1", "win-1"]);
    let empty = get(
        &gce,
        &token,
        &format!("{zonal}%20labels.env%3Dprod%20name%20!%3D%20web-1"),
    )?;
    ensure!(
        empty.get("items").is_none(),
        "an empty page has no items: {empty}"
    );
    let one = get(
        &gce,
        &token,
        &compute("/zones/europe-west1-b/instances/db-1"),
    )?;
    ensure!(one["name"] == "db-1");
    let missing = gce.request(
        "GET",
        &compute("/zones/us-central1-a/instances/db-1"),
        Some(&token),
        None,
    )?;
    ensure!(missing.status == 404);
    let bad_filter = gce.request("GET", &format!("{zonal}%20%3D%3D"), Some(&token), None)?;
    ensure!(
        bad_filter.status == 400,
        "a filter it cannot parse: {}",
        bad_filter.status
    );
    Ok(())
}

#[test]
fn firewalls_project_metadata_sql_and_buckets_have_the_documented_shape() -> Result<()> {
    let (gce, token) = started(1)?;
    let firewalls = pages(&gce, &token, &compute("/global/firewalls"))?;
    ensure!(
        firewalls.len() == 2,
        "pageSize 1: {} pages",
        firewalls.len()
    );
    let documented_firewalls = documented("compute.firewalls.list", "200")?;
    for page in &firewalls {
        check(
            &documented_firewalls,
            page,
            &[
                "/kind",
                "/items/0/name",
                "/items/0/network",
                "/items/0/direction",
                "/items/0/priority",
                "/items/0/sourceRanges",
                "/items/0/disabled",
            ],
        )?;
    }
    let allow = &firewalls[0]["items"][0];
    check(
        &documented_firewalls["items"][0],
        allow,
        &["/allowed/0/IPProtocol", "/allowed/0/ports", "/targetTags"],
    )?;
    ensure!(allow["sourceRanges"] == json!(["0.0.0.0/0"]) && allow["direction"] == "INGRESS");
    ensure!(allow["priority"] == 1000 && allow["disabled"] == false);
    let deny = &firewalls[1]["items"][0];
    check(
        &documented_firewalls["items"][0],
        deny,
        &["/denied/0/IPProtocol"],
    )?;
    ensure!(deny["disabled"] == true && deny.get("allowed").is_none());

    let project = get(&gce, &token, &compute(""))?;
    check(
        &documented("compute.projects.get", "200")?,
        &project,
        &[
            "/kind",
            "/name",
            "/commonInstanceMetadata/items/0/key",
            "/commonInstanceMetadata/items/0/value",
        ],
    )?;
    ensure!(project["commonInstanceMetadata"]["items"][0]["key"] == "ssh-keys");

    let sql = get(
        &gce,
        &token,
        &format!("/sql/v1beta4/projects/{PROJECT}/instances"),
    )?;
    check(
        &documented("sql.instances.list", "200")?,
        &sql,
        &[
            "/kind",
            "/items/0/name",
            "/items/0/connectionName",
            "/items/0/ipAddresses/0/ipAddress",
            "/items/0/ipAddresses/0/type",
        ],
    )?;
    ensure!(sql["items"][0]["connectionName"] == "snapsentry-test:us-central1:orders");
    let buckets = get(&gce, &token, &format!("/storage/v1/b?project={PROJECT}"))?;
    check(
        &documented("storage.buckets.list", "200")?,
        &buckets,
        &["/kind", "/items/0/name", "/items/0/id", "/items/0/location"],
    )?;
    ensure!(buckets["items"][0]["name"] == "snapsentry-test-assets");
    expect(
        gce.request("GET", "/storage/v1/b", Some(&token), None)?,
        400,
        "no project",
    )?;
    Ok(())
}
