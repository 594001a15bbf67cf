//! The fake ARM (`tests/azure/fake_arm.py`) against the shapes of Microsoft's documented examples
//! (`tests/azure/documented_shapes.json`): every response the Azure provider relies on has the documented field
//! names and JSON types, the long-running-operation dance (202 + `Azure-AsyncOperation` +
//! `Location`, InProgress, Succeeded) works for snapshot create, delete and SAS grants, lists page
//! with `nextLink`, and tokens, `api-version` and fault injection behave like ARM.

mod fixture;
pub(crate) mod shape;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use snapsentry_tests::fake_arm::{Error, FakeArm, Response, TENANT, TestCertificate};

use fixture::{
    COMPUTE_API, DISK_API, NETWORK_API, SUB, WEB_OS_SAS, expect, list_all, list_in_subscription,
    names, poll, rg_path, started,
};
use shape::{assert_shape, documented, example};

#[test]
fn tokens_and_api_version_are_required_like_arm() -> Result<()> {
    let (arm, token) = started(100)?;
    let path = format!("/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines");
    let with_version = format!("{path}?{COMPUTE_API}");
    for bad in [None, Some("not-the-token")] {
        let response = arm.request("GET", &with_version, bad, None)?;
        ensure!(response.status == 401, "token {bad:?}: {}", response.status);
        ensure!(response.json()?["error"]["code"].is_string());
    }
    let response = expect(
        arm.request("GET", &path, Some(&token), None)?,
        400,
        "no api-version",
    )?;
    ensure!(response.json()?["error"]["code"] == "MissingApiVersionParameter");
    let response = arm.request(
        "GET",
        &format!(
            "/subscriptions/not-mine/providers/Microsoft.Compute/virtualMachines?{COMPUTE_API}"
        ),
        Some(&token),
        None,
    )?;
    ensure!(response.status == 404 && response.json()?["error"]["code"] == "SubscriptionNotFound");
    let (subscriptions, _) = list_all(&arm, &token, "/subscriptions?api-version=2022-12-01")?;
    ensure!(subscriptions.len() == 1 && subscriptions[0]["subscriptionId"] == SUB);
    ensure!(arm.state()?["tokensIssued"] == 1);
    // A fleet naming its client secret refuses others, like Entra ID (AADSTS7000215).
    arm.load_fleet(&json!({"clientSecret": "not-what-the-harness-sends", "subscriptions": {}}))?;
    match arm.token() {
        Err(Error::Status {
            status: 401, body, ..
        }) => ensure!(body.contains("invalid_client")),
        other => bail!("a wrong client secret got {other:?}"),
    }
    Ok(())
}

/// A client-credentials form with a jwt-bearer client assertion for client `app-1`.
fn assertion_form(assertion: &str) -> String {
    format!(
        "grant_type=client_credentials&client_id=app-1&client_assertion_type=\
         urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=\
         {assertion}&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
    )
}

#[test]
fn workload_identity_assertions_must_be_the_federated_token() -> Result<()> {
    let arm = FakeArm::start()?;
    arm.load_fleet(
        &json!({"clientId": "app-1", "federatedToken": "federated-jwt",
                           "subscriptions": {}}),
    )?;
    let accepted = expect(
        arm.request_token(&assertion_form("federated-jwt"))?,
        200,
        "federated token",
    )?;
    ensure!(accepted.json()?["access_token"].is_string());
    let refused = expect(
        arm.request_token(&assertion_form("another-jwt"))?,
        401,
        "another assertion",
    )?;
    ensure!(refused.json()?["error"] == "invalid_client");
    let wrong_type =
        arm.request_token(&assertion_form("federated-jwt").replace("jwt-bearer", "x"))?;
    ensure!(
        wrong_type.status == 401,
        "assertion type: {}",
        wrong_type.status
    );
    // Another client id is refused before any assertion is looked at.
    let other = arm.request_token(&assertion_form("federated-jwt").replace("app-1", "app-2"))?;
    ensure!(other.status == 401 && other.json()?["error"] == "unauthorized_client");
    ensure!(arm.state()?["tokensIssued"] == 1);
    Ok(())
}

#[test]
fn certificate_assertions_are_verified_rs256_jwts() -> Result<()> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let arm = FakeArm::start()?;
    let dir = tempfile::tempdir()?;
    let cert = TestCertificate::generate(dir.path())?;
    arm.load_fleet(
        &json!({"clientId": "app-1", "certificate": {"modulus": cert.modulus},
                           "subscriptions": {}}),
    )?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let audience = format!("{}/{TENANT}/oauth2/v2.0/token", arm.endpoint());
    let jwt = |claims: Value| -> Result<String> {
        let input = format!(
            "{}.{}",
            B64.encode(json!({"alg": "RS256", "typ": "JWT", "x5t": "test"}).to_string()),
            B64.encode(claims.to_string())
        );
        let signature = cert.sign(input.as_bytes())?;
        Ok(format!("{input}.{}", B64.encode(signature)))
    };
    let claims = json!({"aud": audience, "iss": "app-1", "sub": "app-1", "jti": "1",
                        "nbf": now, "exp": now + 600});
    let good = jwt(claims.clone())?;
    expect(
        arm.request_token(&assertion_form(&good))?,
        200,
        "signed assertion",
    )?;
    // A signature over other claims (the first character of the signature changed).
    let (head, sig) = good.rsplit_once('.').context("jwt")?;
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let tampered = format!("{head}.{flipped}{}", &sig[1..]);
    let refused = expect(
        arm.request_token(&assertion_form(&tampered))?,
        401,
        "tampered",
    )?;
    ensure!(
        refused.json()?["error_description"]
            .as_str()
            .is_some_and(|d| d.starts_with("AADSTS700027")),
        "{}",
        refused.body
    );
    for (field, value) in [
        ("iss", json!("app-2")),
        ("exp", json!(now - 60)),
        ("aud", json!("https://elsewhere/oauth2/v2.0/token")),
    ] {
        let mut bad = claims.clone();
        bad[field] = value;
        let refused = arm.request_token(&assertion_form(&jwt(bad)?))?;
        ensure!(refused.status == 401, "{field}: {}", refused.status);
    }
    ensure!(arm.state()?["tokensIssued"] == 1);
    Ok(())
}

#[test]
fn managed_identity_tokens_come_from_imds() -> Result<()> {
    let arm = FakeArm::start()?;
    arm.load_fleet(&json!({"managedIdentityClientId": "mi-1",
                           "subscriptions": {SUB: {"resourceGroups": {}}}}))?;
    let query = "api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com";
    let answer = expect(arm.imds_token(query, true)?, 200, "IMDS")?.json()?;
    // IMDS sends expires_in as a string.
    ensure!(answer["expires_in"].is_string() && answer["token_type"] == "Bearer");
    let token = answer["access_token"].as_str().context("access_token")?;
    expect(
        arm.request(
            "GET",
            "/subscriptions?api-version=2022-12-01",
            Some(token),
            None,
        )?,
        200,
        "ARM with the IMDS token",
    )?;
    expect(
        arm.imds_token(&format!("{query}&client_id=mi-1"), true)?,
        200,
        "mi-1",
    )?;
    let refused = expect(arm.imds_token(query, false)?, 400, "no Metadata header")?;
    ensure!(refused.json()?["error"] == "invalid_request");
    expect(
        arm.imds_token(&format!("{query}&client_id=mi-2"), true)?,
        400,
        "mi-2",
    )?;
    expect(
        arm.imds_token("api-version=2018-02-01", true)?,
        400,
        "no resource",
    )?;
    ensure!(arm.state()?["tokensIssued"] == 2);
    Ok(())
}

#[test]
fn vm_lists_have_the_documented_shape_page_and_report_power_state() -> Result<()> {
    let (arm, token) = started(2)?;
    let documented = documented("VirtualMachine_ListBySubscription_ByLocation.json", "200")?;
    let path = format!("/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines");
    let (vms, pages) = list_all(
        &arm,
        &token,
        &format!("{path}?{COMPUTE_API}&statusOnly=true"),
    )?;
    ensure!(pages == 2, "3 VMs at page size 2 took {pages} pages");
    let mut found = names(&vms);
    found.sort_unstable();
    ensure!(found == ["db-1", "legacy", "web-1"], "{found:?}");
    for vm in &vms {
        assert_shape(
            &documented["value"][0],
            vm,
            &[
                "/id",
                "/name",
                "/type",
                "/location",
                "/tags",
                "/properties/vmId",
                "/properties/hardwareProfile/vmSize",
                "/properties/storageProfile/osDisk/osType",
                "/properties/storageProfile/osDisk/name",
                "/properties/storageProfile/osDisk/diskSizeGB",
                "/properties/storageProfile/dataDisks",
                "/properties/provisioningState",
            ],
        )?;
    }
    let by_name = |name: &str| vms.iter().find(|vm| vm["name"] == name).cloned();
    let web = by_name("web-1").context("web-1")?;
    assert_shape(
        &documented["value"][0],
        &web,
        &["/properties/networkProfile/networkInterfaces/0/id"],
    )?;
    ensure!(web["tags"]["env"] == "prod");
    // Managed disks: the documented VM with managed OS and data disks.
    assert_shape(
        &shape::documented("VirtualMachine_Get.json", "200")?,
        &web,
        &[
            "/properties/storageProfile/osDisk/managedDisk/id",
            "/properties/storageProfile/dataDisks/0/lun",
            "/properties/storageProfile/dataDisks/0/name",
            "/properties/storageProfile/dataDisks/0/diskSizeGB",
            "/properties/storageProfile/dataDisks/0/managedDisk/id",
        ],
    )?;
    let os = &web["properties"]["storageProfile"]["osDisk"];
    ensure!(os["managedDisk"]["id"] == rg_path("rg-web", "Microsoft.Compute/disks/web-os"));
    ensure!(web["properties"]["storageProfile"]["dataDisks"][0]["lun"] == 0);
    let legacy = by_name("legacy").context("legacy")?;
    assert_shape(
        &documented["value"][0],
        &legacy,
        &["/properties/storageProfile/osDisk/vhd/uri"],
    )?;
    let power = |vm: &Value| {
        vm["properties"]["instanceView"]["statuses"]
            .as_array()
            .and_then(|statuses| {
                statuses
                    .iter()
                    .filter_map(|status| status["code"].as_str())
                    .find(|code| code.starts_with("PowerState/"))
                    .map(str::to_owned)
            })
    };
    ensure!(power(&web).as_deref() == Some("PowerState/running"));
    let db = by_name("db-1").context("db-1")?;
    ensure!(power(&db).as_deref() == Some("PowerState/deallocated"));
    ensure!(db["properties"]["storageProfile"]["osDisk"]["osType"] == "Windows");

    // $expand=instanceView at resource-group scope: only that group, power state included.
    let rg_list = format!(
        "{}?{COMPUTE_API}&$expand=instanceView",
        rg_path("rg-db", "Microsoft.Compute/virtualMachines")
    );
    let (in_rg, _) = list_all(&arm, &token, &rg_list)?;
    ensure!(names(&in_rg) == ["db-1"] && power(&in_rg[0]).is_some());
    // Without either, no instance view.
    let (plain, _) = list_all(&arm, &token, &format!("{path}?{COMPUTE_API}"))?;
    ensure!(plain.iter().all(|vm| power(vm).is_none()));

    let disk_path = format!(
        "{}?{DISK_API}",
        rg_path("rg-web", "Microsoft.Compute/disks/web-os")
    );
    let web_os = expect(
        arm.request("GET", &disk_path, Some(&token), None)?,
        200,
        "disk",
    )?
    .json()?;
    ensure!(web_os["properties"]["diskSizeGB"] == 4 && web_os["properties"]["osType"] == "Linux");
    Ok(())
}

/// PUT an incremental copy of disk web-os as `name` with `tags`; returns the 202.
fn create_snapshot(arm: &FakeArm, token: &str, name: &str, source: &str) -> Result<Response> {
    let path = format!(
        "{}?{DISK_API}",
        rg_path("rg-web", &format!("Microsoft.Compute/snapshots/{name}"))
    );
    let body = json!({
        "location": "eastus",
        "tags": {"snapsentry.io/scan": "scan-1"},
        "properties": {
            "creationData": {"createOption": "Copy", "sourceResourceId": source},
            "incremental": true,
        },
    });
    expect(
        arm.request("PUT", &path, Some(token), Some(&body))?,
        202,
        "snapshot PUT",
    )
}

#[test]
fn snapshot_create_follows_the_documented_long_running_operation() -> Result<()> {
    let (arm, token) = started(1)?;
    let disk_id = rg_path("rg-web", "Microsoft.Compute/disks/web-os");
    let accepted = create_snapshot(&arm, &token, "snap-1", &disk_id)?;
    let created = accepted.json()?;
    assert_shape(
        &documented("Snapshot_Create_FromAnExistingSnapshot.json", "202")?,
        &created,
        &[
            "/id",
            "/name",
            "/location",
            "/properties/provisioningState",
            "/properties/creationData/createOption",
            "/properties/creationData/sourceResourceId",
        ],
    )?;
    ensure!(created["properties"]["provisioningState"] == "Updating");

    let (status, in_progress) = poll(&arm, &token, &accepted)?;
    ensure!(in_progress == 1, "InProgress {in_progress} times");
    ensure!(status["status"] == "Succeeded" && status["endTime"].is_string());
    // The Location poll now answers the created resource.
    let location = accepted.header("Location").context("Location")?;
    let done = expect(
        arm.request("GET", location, Some(&token), None)?,
        200,
        "Location",
    )?;
    ensure!(done.json()?["name"] == "snap-1");

    let snapshot_path = format!(
        "{}?{DISK_API}",
        rg_path("rg-web", "Microsoft.Compute/snapshots/snap-1")
    );
    let snapshot = expect(
        arm.request("GET", &snapshot_path, Some(&token), None)?,
        200,
        "GET",
    )?
    .json()?;
    let relied_on = [
        "/id",
        "/name",
        "/type",
        "/location",
        "/tags",
        "/properties/creationData/createOption",
        "/properties/creationData/sourceResourceId",
        "/properties/creationData/sourceUniqueId",
        "/properties/incremental",
        "/properties/diskSizeGB",
        "/properties/diskSizeBytes",
        "/properties/uniqueId",
        "/properties/timeCreated",
        "/properties/provisioningState",
        "/properties/diskState",
        "/properties/osType",
    ];
    let documented_get = documented("Snapshot_GetIncrementalSnapshot.json", "200")?;
    assert_shape(&documented_get, &snapshot, &relied_on)?;
    ensure!(snapshot["properties"]["provisioningState"] == "Succeeded");
    ensure!(snapshot["properties"]["incremental"] == true);
    ensure!(snapshot["properties"]["creationData"]["sourceResourceId"] == disk_id);
    ensure!(snapshot["tags"]["snapsentry.io/scan"] == "scan-1");

    // A copy of the snapshot (no leading slash, as in the documented request), then both listed
    // with their tags, by resource group and by subscription, one per page.
    let copy = create_snapshot(
        &arm,
        &token,
        "snap-2",
        snapshot["id"]
            .as_str()
            .context("id")?
            .trim_start_matches('/'),
    )?;
    poll(&arm, &token, &copy)?;
    let by_rg = format!(
        "{}?{DISK_API}",
        rg_path("rg-web", "Microsoft.Compute/snapshots")
    );
    let by_sub = format!("/subscriptions/{SUB}/providers/Microsoft.Compute/snapshots?{DISK_API}");
    for url in [by_rg, by_sub] {
        let (listed, pages) = list_all(&arm, &token, &url)?;
        ensure!(
            names(&listed) == ["snap-1", "snap-2"] && pages == 2,
            "{url}"
        );
        for item in &listed {
            assert_shape(&documented_get, item, &relied_on)?;
        }
    }
    let missing = create_snapshot(&arm, &token, "snap-3", &disk_id.replace("web-os", "nope"));
    ensure!(
        missing.is_err(),
        "a snapshot of a missing disk was accepted"
    );
    ensure!(arm.state()?["snapshots"].as_array().map(Vec::len) == Some(2));
    Ok(())
}

#[test]
fn sas_grants_and_deletes_follow_the_documented_operations() -> Result<()> {
    let (arm, token) = started(100)?;
    let disk_id = rg_path("rg-web", "Microsoft.Compute/disks/web-os");
    poll(
        &arm,
        &token,
        &create_snapshot(&arm, &token, "snap", &disk_id)?,
    )?;
    let snapshot = rg_path("rg-web", "Microsoft.Compute/snapshots/snap");
    let grant = json!({"access": "Read", "durationInSeconds": 3600});
    let begin = expect(
        arm.request(
            "POST",
            &format!("{snapshot}/beginGetAccess?{DISK_API}"),
            Some(&token),
            Some(&grant),
        )?,
        202,
        "beginGetAccess",
    )?;
    ensure!(begin.body.is_empty(), "beginGetAccess body: {}", begin.body);
    let state = arm.state()?;
    ensure!(state["activeGrants"] == 1 && state["grants"][0] == snapshot);
    let (status, _) = poll(&arm, &token, &begin)?;
    ensure!(status["status"] == "Succeeded");
    let output = &status["properties"]["output"];
    assert_shape(
        &documented("Snapshot_BeginGetAccess.json", "200")?,
        output,
        &["/accessSAS"],
    )?;
    ensure!(
        output["accessSAS"] == WEB_OS_SAS,
        "the SAS is the disk's blob"
    );
    // The Location poll answers the documented 200 body.
    let location = begin.header("Location").context("Location")?;
    let result = expect(
        arm.request("GET", location, Some(&token), None)?,
        200,
        "Location",
    )?;
    ensure!(result.json()?["accessSAS"] == WEB_OS_SAS);
    let delete_path = format!("{snapshot}?{DISK_API}");
    let refused = arm.request("DELETE", &delete_path, Some(&token), None)?;
    ensure!(
        refused.status == 409,
        "delete during a grant: {}",
        refused.status
    );

    let end = expect(
        arm.request(
            "POST",
            &format!("{snapshot}/endGetAccess?{DISK_API}"),
            Some(&token),
            None,
        )?,
        202,
        "endGetAccess",
    )?;
    let documented_end = example("Snapshot_EndGetAccess.json")?;
    ensure!(documented_end["responses"]["202"]["headers"]["Location"].is_string());
    ensure!(end.header("Location").is_some());
    ensure!(poll(&arm, &token, &end)?.0["status"] == "Succeeded");
    let state = arm.state()?;
    ensure!(
        state["activeGrants"] == 0 && state["grantsEver"] == 1,
        "{state}"
    );

    let deleted = expect(
        arm.request("DELETE", &delete_path, Some(&token), None)?,
        202,
        "DELETE",
    )?;
    ensure!(poll(&arm, &token, &deleted)?.0["status"] == "Succeeded");
    ensure!(arm.state()?["snapshots"] == json!([]));
    let gone = arm.request("GET", &delete_path, Some(&token), None)?;
    ensure!(gone.status == 404 && gone.json()?["error"]["code"] == "ResourceNotFound");
    Ok(())
}

#[test]
fn network_lists_have_the_documented_shape() -> Result<()> {
    let (arm, token) = started(100)?;
    let list = |rtype: &str| {
        list_in_subscription(
            &arm,
            &token,
            &format!("Microsoft.Network/{rtype}"),
            NETWORK_API,
        )
    };
    let nics = list("networkInterfaces")?;
    let documented_nics = documented("NetworkInterfaceListAll.json", "200")?;
    let web_nic = nics
        .iter()
        .find(|nic| nic["name"] == "web-nic")
        .context("web-nic")?;
    assert_shape(
        &documented_nics["value"][0],
        web_nic,
        &[
            "/id",
            "/properties/ipConfigurations/0/properties/privateIPAddress",
            "/properties/ipConfigurations/0/properties/publicIPAddress/id",
            "/properties/ipConfigurations/0/properties/subnet/id",
            "/properties/networkSecurityGroup/id",
            "/properties/virtualMachine/id",
        ],
    )?;
    let db_nic = nics
        .iter()
        .find(|nic| nic["name"] == "db-nic")
        .context("db-nic")?;
    assert_shape(&documented_nics["value"][1], db_nic, &["/id"])?;
    ensure!(db_nic["properties"]["networkSecurityGroup"].is_null());

    let nsgs = list("networkSecurityGroups")?;
    let documented_nsg = &documented("NetworkSecurityGroupListAll.json", "200")?["value"][0];
    for nsg in &nsgs {
        assert_shape(documented_nsg, nsg, &["/id", "/properties/securityRules"])?;
        // securityRules and defaultSecurityRules are both SecurityRule lists; the documented
        // example has only default ones.
        assert_shape(
            &documented_nsg["properties"]["defaultSecurityRules"][0],
            &nsg["properties"]["securityRules"][0],
            &[
                "/name",
                "/properties/protocol",
                "/properties/destinationPortRange",
                "/properties/sourceAddressPrefix",
                "/properties/access",
                "/properties/priority",
                "/properties/direction",
            ],
        )?;
    }
    let ips = list("publicIPAddresses")?;
    ensure!(names(&ips) == ["web-ip"] && ips[0]["properties"]["ipAddress"] == "20.1.2.3");
    // The documented second address is the one with an ipAddress.
    assert_shape(
        &documented("PublicIpAddressListAll.json", "200")?["value"][1],
        &ips[0],
        &[
            "/id",
            "/name",
            "/properties/ipAddress",
            "/properties/ipConfiguration/id",
        ],
    )?;
    let subnets = list("virtualNetworks")?;
    ensure!(
        subnets[0]["properties"]["subnets"][0]["properties"]["networkSecurityGroup"]["id"]
            == rg_path(
                "rg-db",
                "Microsoft.Network/networkSecurityGroups/db-subnet-nsg"
            )
    );
    let balancers = list("loadBalancers")?;
    let nat = &balancers[0]["properties"]["inboundNatRules"][0]["properties"];
    ensure!(nat["frontendPort"] == 50001 && nat["backendPort"] == 3389);
    ensure!(
        nat["backendIPConfiguration"]["id"]
            == rg_path(
                "rg-db",
                "Microsoft.Network/networkInterfaces/db-nic/ipConfigurations/ipconfig1"
            )
    );
    Ok(())
}

#[test]
fn data_service_lists_have_the_documented_shape() -> Result<()> {
    let (arm, token) = started(100)?;
    let list =
        |provider: &str| list_in_subscription(&arm, &token, provider, "api-version=2023-05-01");
    let accounts = list("Microsoft.Storage/storageAccounts")?;
    assert_shape(
        &documented("StorageAccountList.json", "200")?["value"][0],
        &accounts[0],
        &[
            "/id",
            "/name",
            "/location",
            "/properties/primaryEndpoints/blob",
        ],
    )?;
    for (provider, name) in [
        ("Microsoft.Sql/servers", "orders-sql"),
        ("Microsoft.DBforPostgreSQL/flexibleServers", "orders-pg"),
        ("Microsoft.DBforMySQL/flexibleServers", "orders-mysql"),
        ("Microsoft.DocumentDB/databaseAccounts", "orders-cosmos"),
        ("Microsoft.KeyVault/vaults", "web-vault"),
    ] {
        let items = list(provider)?;
        ensure!(names(&items) == [name], "{provider}: {:?}", names(&items));
        ensure!(items[0]["type"] == provider);
    }
    Ok(())
}

#[test]
fn faults_throttle_and_fail_every_nth_call() -> Result<()> {
    let (arm, token) = started(100)?;
    arm.set_faults(&json!({"virtualMachines.list":
        {"throttleEvery": 2, "serverErrorEvery": 2, "serverErrorStatus": 503}}))?;
    let url =
        format!("/subscriptions/{SUB}/providers/Microsoft.Compute/virtualMachines?{COMPUTE_API}");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = arm.request("GET", &url, Some(&token), None)?;
        if response.status == 429 {
            ensure!(response.header("Retry-After") == Some("1"));
            ensure!(response.json()?["error"]["code"] == "TooManyRequests");
        }
        statuses.push(response.status);
    }
    ensure!(statuses == [200, 429, 503, 429], "{statuses:?}");
    let counters = arm.fault_counters()?;
    ensure!(
        counters["virtualMachines.list"] == json!({"calls": 4, "throttled": 2, "serverErrors": 1}),
        "{counters}"
    );
    arm.set_faults(&json!({}))?;
    expect(
        arm.request("GET", &url, Some(&token), None)?,
        200,
        "after reset",
    )?;
    Ok(())
}
