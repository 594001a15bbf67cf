//! Inventory and ScannedMachines: the one mapping between a provider's [`InventoryMachine`] and
//! the ScannedMachine that stands for it (both directions, and the provider index it came
//! from), taking a policy's inventory into ScannedMachines at the start of a scan, and the
//! target inventory correlation verifies against.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use snapsentry_crds::contract::{self, annotations};
use snapsentry_crds::label_value::slugify;
use snapsentry_crds::{Cloud, ScanPolicy, ScannedMachine, ScannedMachineSpec, labels};

use super::scope::{Scope, delete_if_present, server_side_apply};
use super::snapshots;
use crate::correlate::TargetInventory;
use crate::error::{Error, Result};
use snapsentry_cloud::InventoryMachine;

/// The ScannedMachine (spec and metadata; status is the scan's) for one inventory machine.
pub fn desired_machine(
    policy: &ScanPolicy,
    cloud: Cloud,
    machine: &InventoryMachine,
) -> Result<ScannedMachine> {
    let policy_name = policy.metadata.name.as_deref().ok_or(Error::MissingField {
        kind: "ScanPolicy",
        field: "metadata.name",
    })?;
    let name = contract::machine_name(policy_name, cloud, &machine.id, &machine.name);
    let labels = BTreeMap::from([
        (labels::POLICY.to_owned(), slugify(policy_name)),
        (labels::MACHINE.to_owned(), name.clone()),
        (labels::CLOUD.to_owned(), cloud.as_str().to_owned()),
        (
            labels::EXPOSED.to_owned(),
            machine.exposure.internet_facing.to_string(),
        ),
        (labels::MANAGED_BY.to_owned(), contract::OPERATOR.to_owned()),
    ]);
    Ok(ScannedMachine {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: policy.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: policy.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: ScannedMachineSpec {
            policy: policy_name.to_owned(),
            cloud,
            instance_id: machine.id.clone(),
            display_name: (machine.name != machine.id).then(|| machine.name.clone()),
            region: machine.region.clone(),
            platform: machine.platform.clone(),
            state: machine.state.clone(),
            exposure: machine.exposure.clone(),
            disks: machine.disks.iter().take(32).cloned().collect(),
            cloud_authorized_keys: machine.authorized_keys.iter().take(200).cloned().collect(),
        },
        status: None,
    })
}

/// The inventory entry a ScannedMachine was made from.
pub fn inventory_machine(m: &ScannedMachine) -> InventoryMachine {
    InventoryMachine {
        id: m.spec.instance_id.clone(),
        name: m
            .spec
            .display_name
            .clone()
            .unwrap_or_else(|| m.spec.instance_id.clone()),
        region: m.spec.region.clone(),
        platform: m.spec.platform.clone(),
        state: m.spec.state.clone(),
        exposure: m.spec.exposure.clone(),
        authorized_keys: m.spec.cloud_authorized_keys.clone(),
        disks: m.spec.disks.clone(),
    }
}

/// Record which `spec.providers[]` entry a machine came from.
fn set_provider_index(m: &mut ScannedMachine, index: usize) {
    m.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(annotations::PROVIDER_INDEX.to_owned(), index.to_string());
}

/// The `spec.providers[]` entry a machine came from (the first when unrecorded).
pub fn provider_index(m: &ScannedMachine) -> usize {
    m.annotations()
        .get(annotations::PROVIDER_INDEX)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Inventory every provider of the policy (sweeping each one's leftover snapshots), apply one
/// ScannedMachine per machine and delete the policy's others; returns how many machines the
/// scan has.
pub(super) async fn take_inventory(scope: &Scope<'_>, now: Timestamp) -> Result<usize> {
    let pctx = scope.provider_ctx();
    let mut desired = Vec::new();
    for index in 0..scope.providers.len() {
        let provider = scope.providers.get(index)?;
        let inventory = provider.inventory(&pctx).await?;
        snapshots::sweep(scope, provider.as_ref(), now, scope.ctx.config.snapshot_ttl).await;
        for machine in &inventory.machines {
            let mut m = desired_machine(scope.policy, provider.cloud(), machine)?;
            set_provider_index(&mut m, index);
            desired.push(m);
        }
    }
    let api = scope.api::<ScannedMachine>();
    let wanted: BTreeSet<String> = desired.iter().map(|m| m.name_any()).collect();
    for m in &desired {
        server_side_apply(&api, m).await?;
    }
    for stale in scope.machines().await? {
        if !wanted.contains(&stale.name_any()) {
            delete_if_present(&api, &stale.name_any()).await?;
        }
    }
    Ok(desired.len())
}

/// Targets the providers list (databases, storage accounts), for verification. A provider
/// failing here leaves its targets unknown rather than failing the scan.
pub(super) async fn target_inventory(scope: &Scope<'_>) -> TargetInventory {
    let pctx = scope.provider_ctx();
    let mut targets = TargetInventory::default();
    for index in 0..scope.providers.len() {
        let inventory = match scope.providers.get(index) {
            Ok(p) => p.inventory(&pctx).await.map_err(Error::from),
            Err(e) => Err(e),
        };
        match inventory {
            Ok(i) => targets.extend(i.targets),
            Err(e) => {
                tracing::warn!(policy = %scope.name, error = %e, "target inventory failed")
            }
        }
    }
    targets
}

#[cfg(test)]
pub(crate) mod tests {
    use snapsentry_crds::{Exposure, MachineDisk, ScanPolicySpec};

    use super::*;
    use crate::correlate::testing::policy_spec;

    /// A policy `snapsentry/lab-images` without providers.
    pub(crate) fn policy(concurrency: Option<u32>) -> ScanPolicy {
        let mut p = ScanPolicy::new(
            "lab-images",
            ScanPolicySpec {
                concurrency,
                ..policy_spec()
            },
        );
        p.metadata.namespace = Some("snapsentry".into());
        p.metadata.uid = Some("uid-1".into());
        p
    }

    /// An internet-facing Linux machine with one disk.
    pub(crate) fn inv(id: &str, name: &str) -> InventoryMachine {
        InventoryMachine {
            id: id.into(),
            name: name.into(),
            region: Some("eu-west-1".into()),
            platform: Some("linux".into()),
            state: Some("running".into()),
            exposure: Exposure {
                internet_facing: true,
                reasons: vec!["public IP".into()],
            },
            disks: vec![MachineDisk {
                id: "vol-1".into(),
                device: Some("/dev/xvda".into()),
                size_bytes: Some(8 << 30),
                unsupported: None,
            }],
            authorized_keys: Vec::new(),
        }
    }

    #[test]
    fn desired_machine_from_inventory() {
        let m = desired_machine(&policy(None), Cloud::Aws, &inv("i-0abc123", "web")).unwrap();
        assert_eq!(m.metadata.name.as_deref(), Some("lab-images-i-0abc123"));
        assert_eq!(m.metadata.namespace.as_deref(), Some("snapsentry"));
        assert_eq!(
            m.metadata.owner_references.as_ref().unwrap()[0].uid,
            "uid-1"
        );
        let l = m.metadata.labels.as_ref().unwrap();
        assert_eq!(
            (
                l["snapsentry.io/cloud"].as_str(),
                l["snapsentry.io/exposed"].as_str()
            ),
            ("aws", "true")
        );
        assert_eq!(m.spec.instance_id, "i-0abc123");
        assert_eq!(m.spec.display_name.as_deref(), Some("web"));
        assert!(m.spec.exposure.internet_facing);
        assert_eq!(m.spec.disks.len(), 1);
    }

    #[test]
    fn inventory_machine_round_trips() {
        for machine in [inv("i-0abc123", "web"), inv("db", "db")] {
            let mut m = desired_machine(&policy(None), Cloud::Aws, &machine).unwrap();
            assert_eq!(inventory_machine(&m), machine);
            assert_eq!(provider_index(&m), 0);
            set_provider_index(&mut m, 2);
            assert_eq!(provider_index(&m), 2);
        }
    }
}
