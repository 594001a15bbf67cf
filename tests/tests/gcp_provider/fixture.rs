//! The fleet the GCP provider tests load into the fake Compute Engine, and the provider and
//! contexts they drive it with.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::{Value, json};
use snapsentry_cloud::azure::Retry;
use snapsentry_cloud::gcp::GcpProvider;
use snapsentry_cloud::{InventoryMachine, Provider, ProviderContext, SnapshotWait};
use snapsentry_crds::{GcpProvider as GcpSpec, InstanceSelector};
use snapsentry_tests::controlplane::{ControlPlane, create_namespace};
use snapsentry_tests::fake_gce::FakeGce;

pub const PROJECT: &str = "snapsentry-gcp";
pub const OTHER_PROJECT: &str = "snapsentry-gcp-2";
pub const SCANNER_ZONE: &str = "europe-west1-b";
pub const EMAIL: &str = "scanner@snapsentry-gcp.iam.gserviceaccount.com";
/// The raw disk image behind web-1's boot disk (nothing opens it here).
pub const WEB_IMAGE: &str = "/images/web-1-boot.img";

/// web-1: Debian, external IPv4, reached by the open `allow-ssh` rule through its network tag,
/// with a data disk; win-1: Windows, external IP but no rule for it; db-1: stopped
/// (TERMINATED), in another zone; idle-1: SUSPENDED; app-1 in a second project, labelled
/// `env=dev`. A higher-priority deny rule stops `allow-all` from exposing win-1.
pub fn fleet(service_account_modulus: Option<&str>) -> Value {
    let disk = |name: &str| json!({"name": name, "image": format!("/images/{name}.img")});
    let mut spec = json!({
        "pageSize": 1,
        "metadataServer": {"projectId": PROJECT, "zone": SCANNER_ZONE, "email": EMAIL},
        "projects": {
            PROJECT: {
                "zones": [SCANNER_ZONE],
                "instances": [{
                    "name": "web-1", "zone": "us-central1-a", "labels": {"env": "prod"},
                    "tags": ["ssh-open"], "externalIp": "34.1.2.3",
                    "disks": [{"name": "web-1-boot", "image": WEB_IMAGE, "sizeGb": 20},
                              disk("web-1-data")],
                }, {
                    "name": "win-1", "zone": "us-central1-a", "os": "WINDOWS",
                    "labels": {"env": "prod"}, "externalIp": "34.1.2.4",
                    "tags": ["rdp"], "disks": [disk("win-1-boot")],
                }, {
                    "name": "db-1", "zone": "us-east1-c", "status": "TERMINATED",
                    "labels": {"env": "prod", "skip": "yes"}, "disks": [disk("db-1-boot")],
                }, {
                    "name": "idle-1", "zone": "us-east1-c", "status": "SUSPENDED",
                    "labels": {"env": "prod"}, "disks": [disk("idle-1-boot")],
                }],
                "firewalls": [
                    {"name": "allow-ssh", "sourceRanges": ["0.0.0.0/0"],
                     "targetTags": ["ssh-open"],
                     "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]},
                    {"name": "allow-rdp", "sourceRanges": ["0.0.0.0/0"], "targetTags": ["rdp"],
                     "allowed": [{"IPProtocol": "tcp", "ports": ["3389"]}]},
                    {"name": "deny-rdp", "deny": true, "priority": 100,
                     "sourceRanges": ["0.0.0.0/0"], "targetTags": ["rdp"],
                     "allowed": [{"IPProtocol": "tcp", "ports": ["3389"]}]},
                ],
                "sqlInstances": [{"name": "orders", "region": "us-central1",
                                  "ipAddresses": [{"type": "PRIMARY", "ipAddress": "35.1.1.1"}]}],
                "buckets": [{"name": "shop-exports", "location": "US"}],
            },
            OTHER_PROJECT: {
                "buckets": [{"name": "app-media", "location": "EU"}],
                "instances": [{"name": "app-1", "zone": "us-central1-b", "labels": {"env": "dev"},
                               "disks": [disk("app-1-boot")]}],
            },
        },
    });
    if let Some(modulus) = service_account_modulus {
        spec["serviceAccount"] = json!({"email": EMAIL, "modulus": modulus});
    }
    spec
}

/// A spec of both projects pointed at `gce`, credentials from the metadata server.
pub fn spec(gce: &FakeGce, selector: InstanceSelector) -> GcpSpec {
    GcpSpec {
        projects: vec![PROJECT.into(), OTHER_PROJECT.into()],
        zones: vec![],
        credentials_secret: None,
        scanner_zones: vec![SCANNER_ZONE.into()],
        endpoint_url: Some(gce.endpoint()),
        selector,
        snapshot_strategy: None,
    }
}

/// The provider of `spec`, its metadata server the fake's, no key file (whatever
/// `GOOGLE_APPLICATION_CREDENTIALS` says), waiting and retrying briefly.
pub fn provider(gce: &FakeGce, spec: GcpSpec) -> GcpProvider {
    let host = gce.endpoint().trim_start_matches("http://").to_owned();
    GcpProvider::new(spec)
        .with_metadata_host(&host)
        .with_key_file(None)
        .with_snapshot_wait(SnapshotWait {
            timeout: Duration::from_secs(30),
            first_poll: Duration::from_millis(20),
            max_poll: Duration::from_millis(200),
        })
        .with_retry(Retry {
            attempts: 4,
            first: Duration::from_millis(50),
            max: Duration::from_millis(200),
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

/// `name` of the inventory of `p`.
pub async fn machine(
    p: &GcpProvider,
    ctx: &ProviderContext,
    name: &str,
) -> Result<InventoryMachine> {
    p.inventory(ctx)
        .await?
        .machines
        .into_iter()
        .find(|m| m.name == name)
        .with_context(|| format!("{name} not in the inventory"))
}

/// A namespace with Secret `gcp-credentials` holding `serviceAccountKey: key`, and a context.
pub async fn secret_context(namespace: &str, key: &str) -> Result<ProviderContext> {
    let cp = ControlPlane::shared().await?;
    let client = cp.client().await?;
    create_namespace(&client, namespace).await?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("gcp-credentials".into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "serviceAccountKey".to_owned(),
            ByteString(key.as_bytes().to_vec()),
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
