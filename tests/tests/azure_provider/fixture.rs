//! The fleet the Azure provider tests load into the fake ARM, the provider and contexts they
//! drive it with, and their own calls to the fake.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::{Value, json};
use snapsentry_cloud::azure::{AzureEnvironment, AzureProvider, Retry};
use snapsentry_cloud::{InventoryMachine, Provider, ProviderContext, SnapshotRef, SnapshotWait};
use snapsentry_crds::{AzureProvider as AzureSpec, InstanceSelector};
use snapsentry_tests::controlplane::{ControlPlane, create_namespace};
use snapsentry_tests::fake_arm::{FakeArm, TENANT};

pub const SUB_A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
pub const SUB_B: &str = "bbbbbbbb-0000-0000-0000-000000000002";
pub const CLIENT_ID: &str = "app-snapsentry";
pub const CLIENT_SECRET: &str = "fake-client-secret-value";

/// A placeholder SAS URL of a disk (never read in these tests).
pub fn sas(name: &str) -> String {
    format!("http://127.0.0.1:9/devstoreaccount1/disks/{name}?sv=2023-11-03&sr=b&sp=r&sig=fake")
}

pub fn disk(name: &str) -> Value {
    json!({"name": name, "sizeGB": 2, "sas": sas(name)})
}

pub fn vm(name: &str, os: &str, power: &str, tags: Value) -> Value {
    json!({"name": name, "osType": os, "powerState": power, "tags": tags,
           "osDisk": disk(&format!("{name}-os"))})
}

/// Two subscriptions: in A, web-1 (Linux, running, an OS and a data disk), db-1 (Windows,
/// deallocated) and legacy (an unmanaged VHD) in rg-web; in B, old-1 (stopped), skip-1
/// (excluded by tag) and dev-1 (another env) in rg-b. A storage account in each.
pub fn fleet(extra: Value) -> Value {
    let prod = json!({"env": "prod"});
    let mut web = vm(
        "web-1",
        "Linux",
        "running",
        json!({"env": "prod", "team": "web"}),
    );
    web["dataDisks"] = json!([disk("web-1-data")]);
    let mut legacy = vm("legacy", "Linux", "running", prod.clone());
    legacy["osDisk"] =
        json!({"name": "legacy-os", "vhd": "https://legacyvhds.blob.core.windows.net/vhds/l.vhd"});
    let mut spec = json!({
        "pageSize": 1,
        "tenant": TENANT,
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
        "subscriptions": {
            SUB_A: {"resourceGroups": {"rg-web": {
                "location": "eastus",
                "vms": [web, vm("db-1", "Windows", "deallocated", prod.clone()), legacy],
                "storageAccounts": [{"name": "webstore"}],
            }}},
            SUB_B: {"resourceGroups": {"rg-b": {
                "location": "westeurope",
                "vms": [
                    vm("old-1", "Linux", "stopped", prod.clone()),
                    vm("skip-1", "Linux", "running", json!({"env": "prod", "snapsentry-skip": "yes"})),
                    vm("dev-1", "Linux", "running", json!({"env": "dev"})),
                ],
                "storageAccounts": [{"name": "bstore"}],
            }}},
        },
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    spec
}

pub fn selector(tags: &[(&str, &str)], ids: &[&str], states: &[&str]) -> InstanceSelector {
    InstanceSelector {
        tags: tags
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
        ids: ids.iter().map(|s| (*s).into()).collect(),
        states: states.iter().map(|s| (*s).into()).collect(),
        exclude_tags: BTreeMap::from([("snapsentry-skip".to_owned(), "*".to_owned())]),
    }
}

pub fn spec(arm: &FakeArm, selector: InstanceSelector) -> AzureSpec {
    AzureSpec {
        subscriptions: vec![SUB_A.into(), SUB_B.into()],
        resource_groups: vec![],
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT_ID.into()),
        credentials_secret: None,
        arm_endpoint: Some(arm.endpoint()),
        authority_host: Some(arm.endpoint()),
        selector,
        snapshot_strategy: None,
    }
}

/// Managed identity through the fake's IMDS route: no Kubernetes needed.
pub fn env(arm: &FakeArm) -> AzureEnvironment {
    AzureEnvironment {
        imds_endpoint: Some(format!("{}/metadata/identity/oauth2/token", arm.endpoint())),
        ..Default::default()
    }
}

pub fn provider(arm: &FakeArm, spec: AzureSpec) -> AzureProvider {
    AzureProvider::new(spec)
        .with_environment(env(arm))
        .with_snapshot_wait(SnapshotWait {
            timeout: Duration::from_secs(30),
            first_poll: Duration::from_millis(50),
            max_poll: Duration::from_millis(500),
        })
        .with_retry(Retry {
            attempts: 6,
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
        })
}

pub fn context(policy: &str) -> ProviderContext {
    ProviderContext {
        policy: policy.into(),
        namespace: "security".into(),
        client: None,
    }
}

pub fn names(machines: &[InventoryMachine]) -> Vec<&str> {
    let mut n: Vec<&str> = machines.iter().map(|m| m.name.as_str()).collect();
    n.sort_unstable();
    n
}

pub fn vm_id(sub: &str, rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"
    )
}

/// A namespace with a credentials Secret holding `key: value`, and a context for it.
pub async fn secret_context(namespace: &str, key: &str, value: &str) -> Result<ProviderContext> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    create_namespace(&client, namespace).await?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("azure-credentials".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            key.to_owned(),
            ByteString(value.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(ProviderContext {
        policy: "fleet".into(),
        namespace: namespace.into(),
        client: Some(client),
    })
}

/// A token for the test's own ARM calls (the fleet's app registration is the provider's).
pub fn test_token(arm: &FakeArm) -> Result<String> {
    let answer = arm.imds_token(
        "api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com",
        true,
    )?;
    ensure!(answer.status == 200, "IMDS: HTTP {}", answer.status);
    Ok(answer.json()?["access_token"]
        .as_str()
        .context("access_token")?
        .to_owned())
}

/// web-1 of the fleet as the inventory reports it.
pub async fn web_1(p: &AzureProvider, ctx: &ProviderContext) -> Result<InventoryMachine> {
    p.inventory(ctx)
        .await?
        .machines
        .into_iter()
        .find(|m| m.name == "web-1")
        .context("web-1")
}

pub fn ids(refs: &[SnapshotRef]) -> Vec<String> {
    refs.iter().map(|r| r.snapshot_id.clone()).collect()
}
