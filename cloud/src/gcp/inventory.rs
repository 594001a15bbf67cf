//! The instances of a GCP provider: Compute Engine's aggregated instance list of each project,
//! selected by labels, ids or names, statuses and excluded labels; boot and data disks in index
//! order; the OS from the boot disk's licenses and guest OS features; exposure from the project's
//! firewall rules ([`super::exposure`]); the SSH keys the project's and each instance's metadata
//! authorize ([`super::metadata`]). The client's typed answers are read as their REST JSON
//! (what they serialize to), the shape the functions here take.

use std::collections::BTreeMap;

use serde_json::Value;
use snapsentry_crds::{InstanceSelector, MachineDisk};

use super::compute::{Compute, PAGE_SIZE, failure};
use super::exposure::{InstanceNetwork, exposure, resource_path};
use super::provider::GcpProvider;
use crate::error::Result;
use crate::{Inventory, InventoryMachine, ProviderContext};

/// Instance statuses selected when the selector names none (as AWS's running and stopped).
pub const DEFAULT_STATES: [&str; 2] = ["RUNNING", "TERMINATED"];
/// Bytes per GB as Compute Engine counts disk sizes (GiB).
const GIB: u64 = 1 << 30;

/// The last segment of a link (`…/zones/us-central1-a` → `us-central1-a`).
pub fn last_segment(link: &str) -> &str {
    link.rsplit('/').next().unwrap_or(link)
}

/// Whether `selector` selects an instance: `ids` match its numeric id or name
/// (case-insensitive), `tags` and `excludeTags` its labels, `states` its status
/// (case-insensitive; default [`DEFAULT_STATES`]).
pub fn selects(
    selector: &InstanceSelector,
    id: &str,
    name: &str,
    status: &str,
    labels: &BTreeMap<&str, &str>,
) -> bool {
    let id_ok = selector.ids.is_empty()
        || selector
            .ids
            .iter()
            .any(|i| i.eq_ignore_ascii_case(id) || i.eq_ignore_ascii_case(name));
    let states = if selector.states.is_empty() {
        DEFAULT_STATES
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect()
    } else {
        selector
            .states
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect()
    };
    let rest = InstanceSelector {
        ids: Vec::new(),
        states,
        ..selector.clone()
    };
    id_ok && crate::aws::selects(&rest, id, Some(&status.to_ascii_lowercase()), labels)
}

/// `windows` when the boot disk carries a Windows license (`projects/windows-cloud/…`) or the
/// `WINDOWS` guest OS feature, else `linux`.
pub fn platform(instance: &Value) -> &'static str {
    let boot = instance["disks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["boot"].as_bool().unwrap_or(false));
    let windows = boot.is_some_and(|d| {
        d["licenses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(|l| l.contains("/windows-cloud/"))
            || d["guestOsFeatures"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| f["type"] == "WINDOWS")
    });
    if windows { "windows" } else { "linux" }
}

/// The instance's disks in index order: id `projects/P/zones/Z/disks/NAME` (also the CSI volume
/// handle form), device name, size; a regional disk (`projects/P/regions/R/disks/NAME`) is
/// reported as not supported.
pub fn disks(instance: &Value) -> Vec<MachineDisk> {
    let mut disks: Vec<(i64, MachineDisk)> = instance["disks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let source = d["source"].as_str()?;
            let index = d["index"].as_i64().unwrap_or(i64::MAX);
            let size = d["diskSizeGb"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .or_else(|| d["diskSizeGb"].as_u64());
            let id = resource_path(source).to_owned();
            // Regional disks are snapshotted through regionDisks, not handled yet.
            let unsupported = id
                .contains("/regions/")
                .then(|| "regional persistent disk: not supported yet".to_owned());
            Some((
                index,
                MachineDisk {
                    id,
                    device: d["deviceName"].as_str().map(str::to_owned),
                    size_bytes: size.map(|gb| gb * GIB),
                    unsupported,
                },
            ))
        })
        .collect();
    disks.sort_by_key(|(i, _)| *i);
    disks.into_iter().map(|(_, d)| d).collect()
}

/// The labels of a resource body.
pub fn labels(body: &Value) -> BTreeMap<&str, &str> {
    body["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect()
}

/// One inventory machine of an instance body listed in `zone`, when `selector` selects it.
pub fn machine(
    selector: &InstanceSelector,
    zone: &str,
    instance: &Value,
    firewalls: &[Value],
) -> Option<InventoryMachine> {
    let id = instance["id"].as_str()?.to_owned();
    let name = instance["name"].as_str()?.to_owned();
    let status = instance["status"].as_str().unwrap_or("UNKNOWN");
    if !selects(selector, &id, &name, status, &labels(instance)) {
        return None;
    }
    Some(InventoryMachine {
        id,
        name,
        region: Some(zone.to_owned()),
        platform: Some(platform(instance).to_owned()),
        state: Some(status.to_ascii_lowercase()),
        exposure: exposure(&InstanceNetwork::of(instance), firewalls),
        disks: disks(instance),
        authorized_keys: Vec::new(),
    })
}

/// A typed answer as its REST JSON.
fn json_of(answer: &impl serde::Serialize, operation: &str) -> Result<Value> {
    serde_json::to_value(answer).map_err(|e| failure(operation, format!("unreadable answer: {e}")))
}

/// The firewall rules of `project`.
async fn firewalls(compute: &Compute, project: &str) -> Result<Vec<Value>> {
    let pages = compute
        .pages("firewalls.list", |token| {
            compute
                .firewalls
                .list()
                .set_project(project)
                .set_max_results(PAGE_SIZE)
                .set_page_token(token)
                .send()
        })
        .await?;
    pages
        .iter()
        .flat_map(|p| &p.items)
        .map(|rule| json_of(rule, "firewalls.list"))
        .collect()
}

/// Every instance of `project` with its scope (`zones/Z`), from the aggregated list.
async fn instances(compute: &Compute, project: &str) -> Result<Vec<(String, Value)>> {
    let pages = compute
        .pages("instances.aggregatedList", |token| {
            compute
                .instances
                .aggregated_list()
                .set_project(project)
                .set_max_results(PAGE_SIZE)
                .set_page_token(token)
                .send()
        })
        .await?;
    pages
        .iter()
        .flat_map(|p| &p.items)
        .flat_map(|(scope, list)| list.instances.iter().map(move |i| (scope, i)))
        .map(|(scope, i)| Ok((scope.clone(), json_of(i, "instances.aggregatedList")?)))
        .collect()
}

/// The common instance metadata of `project` (`projects.get`), as its REST JSON.
async fn project_metadata(compute: &Compute, project: &str) -> Result<Value> {
    let answer = compute
        .call("projects.get", || {
            compute.projects.get().set_project(project).send()
        })
        .await?;
    json_of(&answer.common_instance_metadata, "projects.get")
}

/// The (key, value) items of a Compute `Metadata` body (`{"items": [{"key", "value"}]}`).
fn metadata_items(metadata: &Value) -> Vec<(&str, &str)> {
    metadata["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| Some((i["key"].as_str()?, i["value"].as_str()?)))
        .collect()
}

/// The selected instances of `project`, with the SSH keys their metadata and the project's
/// authorize ([`super::metadata`]).
pub(super) async fn project_machines(
    compute: &Compute,
    project: &str,
    zones: &[String],
    selector: &InstanceSelector,
) -> Result<Vec<InventoryMachine>> {
    let project_metadata = project_metadata(compute, project).await?;
    let project_items = metadata_items(&project_metadata);
    let now = jiff::Timestamp::now();
    let firewalls = firewalls(compute, project).await?;
    let instances = instances(compute, project).await?;
    Ok(instances
        .iter()
        .filter_map(|(scope, instance)| {
            let zone = instance["zone"]
                .as_str()
                .map_or_else(|| last_segment(scope), last_segment);
            if !zones.is_empty() && !zones.iter().any(|z| z == zone) {
                return None;
            }
            let mut m = machine(selector, zone, instance, &firewalls)?;
            m.authorized_keys = super::metadata::authorized_keys(
                &project_items,
                &metadata_items(&instance["metadata"]),
                m.platform.as_deref() == Some("windows"),
                now,
            );
            Some(m)
        })
        .collect())
}

impl GcpProvider {
    pub(super) async fn inventory_impl(&self, ctx: &ProviderContext) -> Result<Inventory> {
        let clients = self.client(ctx).await?;
        let mut inventory = Inventory::default();
        for project in &self.spec.projects {
            let machines = project_machines(
                &clients.compute,
                project,
                &self.spec.zones,
                &self.spec.selector,
            )
            .await?;
            tracing::debug!(%project, machines = machines.len(), "GCP instances listed");
            inventory.machines.extend(machines);
        }
        inventory.targets = super::services::targets(&clients.rest, &self.spec.projects).await;
        Ok(inventory)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vm(status: &str, windows: bool) -> Value {
        let boot = if windows {
            json!({"boot": true, "index": 0, "source": "https://x/compute/v1/projects/p/zones/z/disks/boot",
                   "deviceName": "persistent-disk-0", "diskSizeGb": "50",
                   "licenses": ["https://x/compute/v1/projects/windows-cloud/global/licenses/windows-server-2022-dc"],
                   "guestOsFeatures": [{"type": "WINDOWS"}]})
        } else {
            json!({"boot": true, "index": 0, "source": "https://x/compute/v1/projects/p/zones/z/disks/boot",
                   "diskSizeGb": "10"})
        };
        json!({"id": "123", "name": "web-1", "status": status, "labels": {"env": "prod"},
               "zone": "https://x/compute/v1/projects/p/zones/z",
               "disks": [{"index": 1, "source": "https://x/compute/v1/projects/p/zones/z/disks/data",
                          "diskSizeGb": "20"}, boot]})
    }

    #[test]
    fn instances_with_disks_in_index_order_and_their_os() {
        let m = machine(
            &InstanceSelector::default(),
            "z",
            &vm("RUNNING", false),
            &[],
        )
        .unwrap();
        assert_eq!(m.id, "123");
        assert_eq!(m.state.as_deref(), Some("running"));
        assert_eq!(m.platform.as_deref(), Some("linux"));
        assert_eq!(m.region.as_deref(), Some("z"));
        let ids: Vec<_> = m.disks.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "projects/p/zones/z/disks/boot",
                "projects/p/zones/z/disks/data"
            ]
        );
        assert_eq!(m.disks[1].size_bytes, Some(20 * GIB));
        let w = machine(
            &InstanceSelector::default(),
            "z",
            &vm("TERMINATED", true),
            &[],
        )
        .unwrap();
        assert_eq!(w.platform.as_deref(), Some("windows"));
        assert_eq!(w.disks[0].device.as_deref(), Some("persistent-disk-0"));
    }

    #[test]
    fn selection_by_status_labels_and_ids() {
        let sel = |f: fn(&mut InstanceSelector)| {
            let mut s = InstanceSelector::default();
            f(&mut s);
            s
        };
        let pick =
            |s: &InstanceSelector, status: &str| machine(s, "z", &vm(status, false), &[]).is_some();
        assert!(pick(&InstanceSelector::default(), "RUNNING"));
        assert!(pick(&InstanceSelector::default(), "TERMINATED"));
        assert!(!pick(&InstanceSelector::default(), "SUSPENDED"));
        assert!(pick(
            &sel(|s| s.states = vec!["suspended".into()]),
            "SUSPENDED"
        ));
        assert!(pick(&sel(|s| s.ids = vec!["WEB-1".into()]), "RUNNING"));
        assert!(pick(&sel(|s| s.ids = vec!["123".into()]), "RUNNING"));
        assert!(!pick(&sel(|s| s.ids = vec!["other".into()]), "RUNNING"));
        assert!(pick(
            &sel(|s| {
                s.tags.insert("env".into(), "*".into());
            }),
            "RUNNING"
        ));
        assert!(!pick(
            &sel(|s| {
                s.tags.insert("env".into(), "dev".into());
            }),
            "RUNNING"
        ));
        assert!(!pick(
            &sel(|s| {
                s.exclude_tags.insert("env".into(), "prod".into());
            }),
            "RUNNING"
        ));
    }
}
