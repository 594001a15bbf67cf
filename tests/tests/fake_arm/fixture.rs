//! The fleet the fake ARM tests load, and the client side of ARM they drive: paged lists and
//! long-running-operation polls.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use snapsentry_tests::fake_arm::{FakeArm, Response};

/// The subscription of [`fleet`].
pub const SUB: &str = "11111111-2222-3333-4444-555555555555";
/// The `api-version`s of Compute (VMs), DiskRP (disks, snapshots) and Network.
pub const COMPUTE_API: &str = "api-version=2024-07-01";
pub const DISK_API: &str = "api-version=2024-03-02";
pub const NETWORK_API: &str = "api-version=2024-05-01";
/// The Azurite SAS URL of web-1's OS disk.
pub const WEB_OS_SAS: &str =
    "http://127.0.0.1:10000/devstoreaccount1/disks/web-os?sv=2023-11-03&sr=b&sp=r&sig=fake";

fn disk(name: &str) -> Value {
    json!({"name": name, "sizeGB": 2,
           "sas": format!("http://127.0.0.1:10000/devstoreaccount1/disks/{name}?sig=fake")})
}

/// Three VMs in two resource groups (a managed Linux one with a data disk, a public IP and a NIC
/// NSG; a deallocated Windows one behind a load balancer's NAT rule and a subnet NSG; one with an
/// unmanaged VHD) and one of each data service.
fn fleet(page_size: usize) -> Value {
    let services = |name: &str| {
        json!([{"name": name, "properties": {"fullyQualifiedDomainName":
        format!("{name}.example")}}])
    };
    json!({
        "pageSize": page_size,
        "subscriptions": {SUB: {"resourceGroups": {
            "rg-web": {
                "location": "eastus",
                "nsgs": [{"name": "web-nsg", "rules": [
                    {"name": "ssh", "port": 22, "source": "*", "priority": 100}]}],
                "vms": [{
                    "name": "web-1", "osType": "Linux", "tags": {"env": "prod"},
                    "osDisk": {"name": "web-os", "sizeGB": 4, "sas": WEB_OS_SAS},
                    "dataDisks": [disk("web-data")],
                    "nics": [{"name": "web-nic", "privateIp": "10.0.0.4", "nsg": "web-nsg",
                              "publicIp": {"name": "web-ip", "ip": "20.1.2.3"}}],
                }, {
                    "name": "legacy", "osType": "Linux",
                    "osDisk": {"name": "legacy-os",
                               "vhd": "https://legacyvhds.blob.core.windows.net/vhds/legacy.vhd"},
                }],
                "storageAccounts": [{"name": "webstore", "properties": {"primaryEndpoints":
                    {"blob": "http://127.0.0.1:10000/webstore/"}}}],
                "keyVaults": services("web-vault"),
            },
            "rg-db": {
                "location": "westeurope",
                "nsgs": [{"name": "db-subnet-nsg", "rules": [
                    {"name": "rdp", "port": 3389, "source": "Internet"}]}],
                "vms": [{
                    "name": "db-1", "osType": "Windows", "powerState": "deallocated",
                    "osDisk": disk("db-os"),
                    "nics": [{"name": "db-nic", "privateIp": "10.1.0.5", "vnet": "db-vnet",
                              "subnet": "data", "subnetNsg": "db-subnet-nsg"}],
                }],
                "loadBalancers": [{"name": "db-lb", "publicIp": "lb-ip", "inboundNatRules": [
                    {"name": "rdp", "frontendPort": 50001, "backendPort": 3389, "nic": "db-nic"}]}],
                "sqlServers": services("orders-sql"),
                "postgresFlexibleServers": services("orders-pg"),
                "mysqlFlexibleServers": services("orders-mysql"),
                "cosmosAccounts": services("orders-cosmos"),
            },
        }}},
    })
}

/// A fake with [`fleet`] loaded and a token.
pub fn started(page_size: usize) -> Result<(FakeArm, String)> {
    let arm = FakeArm::start()?;
    arm.load_fleet(&fleet(page_size))?;
    let token = arm.token()?;
    Ok((arm, token))
}

pub fn rg_path(rg: &str, rest: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/{rest}")
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

/// Every item of a list, following `nextLink`; returns the items and the number of pages.
pub fn list_all(arm: &FakeArm, token: &str, first: &str) -> Result<(Vec<Value>, usize)> {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut next = Some(first.to_owned());
    while let Some(url) = next {
        let page = expect(arm.request("GET", &url, Some(token), None)?, 200, &url)?.json()?;
        pages += 1;
        items.extend(page["value"].as_array().context("no value array")?.clone());
        next = page["nextLink"].as_str().map(str::to_owned);
    }
    Ok((items, pages))
}

/// Every `provider_type` (e.g. `Microsoft.Network/networkInterfaces`) of [`SUB`], all pages.
pub fn list_in_subscription(
    arm: &FakeArm,
    token: &str,
    provider_type: &str,
    api_version: &str,
) -> Result<Vec<Value>> {
    let url = format!("/subscriptions/{SUB}/providers/{provider_type}?{api_version}");
    list_all(arm, token, &url).map(|(items, _)| items)
}

pub fn names(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .filter_map(|item| item["name"].as_str())
        .collect()
}

/// Polls `Azure-AsyncOperation` of `accepted` until it is not InProgress; returns the last status
/// body and how many polls said InProgress.
pub fn poll(arm: &FakeArm, token: &str, accepted: &Response) -> Result<(Value, usize)> {
    let url = accepted
        .header("Azure-AsyncOperation")
        .context("no Azure-AsyncOperation header")?;
    ensure!(
        accepted.header("Location").is_some(),
        "no Location header on the 202"
    );
    let mut in_progress = 0;
    for _ in 0..10 {
        let status = expect(arm.request("GET", url, Some(token), None)?, 200, url)?.json()?;
        ensure!(status["startTime"].is_string(), "no startTime: {status}");
        match status["status"].as_str() {
            Some("InProgress") => in_progress += 1,
            Some(_) => return Ok((status, in_progress)),
            None => bail!("operation without status: {status}"),
        }
    }
    bail!("operation {url} still InProgress after 10 polls")
}
