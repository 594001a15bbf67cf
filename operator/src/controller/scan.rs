//! Planning a scan, as pure functions: the ScannedMachines a policy's inventory makes, which
//! machines get a Job next under the policy's concurrency, and the counts for the policy status.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use snapsentry_crds::{
    Cloud, MachineCounts, MachinePhase, ScanPolicy, ScannedMachine, ScannedMachineSpec, labels,
};

use crate::correlate::{MANAGER, short_hash, slugify};
use crate::error::{Error, Result};
use snapsentry_cloud::InventoryMachine;

/// Scanner Jobs running at once per policy when `spec.concurrency` is unset.
pub const DEFAULT_CONCURRENCY: u32 = 5;

/// ScannedMachine name for a machine of a policy: `<policy>-<machine>` as a DNS label (63
/// characters at most, a hash keeping cut names unique). Image machines are named by their
/// declared name, cloud machines by their instance id (display names are neither unique nor
/// stable).
pub fn machine_object_name(policy: &str, cloud: Cloud, machine: &InventoryMachine) -> String {
    let key = if cloud == Cloud::Image {
        &machine.name
    } else {
        &machine.id
    };
    let dns = |s: &str| slugify(s).replace(['.', '_'], "-");
    let full = format!("{}-{}", dns(policy), dns(key));
    if full.len() <= 63 {
        return full;
    }
    let hash = short_hash(&[policy, cloud.as_str(), key]);
    let head: String = full.chars().take(63 - hash.len() - 1).collect();
    format!("{}-{hash}", head.trim_end_matches('-'))
}

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
    let name = machine_object_name(policy_name, cloud, machine);
    let labels = BTreeMap::from([
        (labels::POLICY.to_owned(), slugify(policy_name)),
        (labels::MACHINE.to_owned(), name.clone()),
        (labels::CLOUD.to_owned(), cloud.as_str().to_owned()),
        (
            labels::EXPOSED.to_owned(),
            machine.exposure.internet_facing.to_string(),
        ),
        (labels::MANAGED_BY.to_owned(), MANAGER.to_owned()),
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
        },
        status: None,
    })
}

/// Which of the machines still waiting (`Pending`, in order) get a Job now, given how many of
/// the policy's Jobs run.
pub fn next_to_start<'a>(
    policy: &ScanPolicy,
    machines: &'a [ScannedMachine],
) -> Vec<&'a ScannedMachine> {
    let limit = policy.spec.concurrency.unwrap_or(DEFAULT_CONCURRENCY) as usize;
    let phase = |m: &ScannedMachine| m.status.as_ref().and_then(|s| s.phase);
    let running = machines
        .iter()
        .filter(|m| {
            matches!(
                phase(m),
                Some(MachinePhase::Snapshotting | MachinePhase::Scanning)
            )
        })
        .count();
    machines
        .iter()
        .filter(|m| matches!(phase(m), None | Some(MachinePhase::Pending)))
        .take(limit.saturating_sub(running))
        .collect()
}

/// `status.machines` of a policy.
pub fn machine_counts(machines: &[ScannedMachine]) -> MachineCounts {
    let mut c = MachineCounts {
        total: machines.len() as u32,
        ..Default::default()
    };
    for m in machines {
        match m.status.as_ref().and_then(|s| s.phase) {
            None | Some(MachinePhase::Pending) => c.pending += 1,
            Some(MachinePhase::Snapshotting | MachinePhase::Scanning) => c.scanning += 1,
            Some(MachinePhase::Scanned) => c.scanned += 1,
            Some(MachinePhase::Failed) => c.failed += 1,
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use snapsentry_crds::{Exposure, MachineDisk, ScanPolicySpec, ScannedMachineStatus};

    use super::*;

    fn policy(concurrency: Option<u32>) -> ScanPolicy {
        let mut p = ScanPolicy::new(
            "lab-images",
            ScanPolicySpec {
                providers: vec![],
                schedule: None,
                time_zone: None,
                suspend: false,
                concurrency,
                rules: None,
                exclusions: None,
                verification: None,
                scanner: None,
                resolved_retention: None,
            },
        );
        p.metadata.namespace = Some("snapsentry".into());
        p.metadata.uid = Some("uid-1".into());
        p
    }

    fn inv(id: &str, name: &str) -> InventoryMachine {
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
            }],
        }
    }

    fn with_phase(mut m: ScannedMachine, phase: Option<MachinePhase>) -> ScannedMachine {
        m.status = phase.map(|p| ScannedMachineStatus {
            phase: Some(p),
            ..Default::default()
        });
        m
    }

    #[test]
    fn names() {
        assert_eq!(
            machine_object_name("lab-images", Cloud::Image, &inv("web-01", "web-01")),
            "lab-images-web-01"
        );
        assert_eq!(
            machine_object_name("prod", Cloud::Aws, &inv("i-0abc123", "Web Server")),
            "prod-i-0abc123"
        );
        let long = machine_object_name(&"p".repeat(60), Cloud::Aws, &inv("i-0abc123", "x"));
        let long2 = machine_object_name(&"p".repeat(60), Cloud::Aws, &inv("i-0abc124", "x"));
        assert!(long.len() <= 63 && long2.len() <= 63);
        assert_ne!(long, long2);
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
    fn concurrency_limits_new_jobs() {
        let p = policy(Some(2));
        let mk = |id: &str, phase| {
            with_phase(
                desired_machine(&p, Cloud::Aws, &inv(id, id)).unwrap(),
                phase,
            )
        };
        let machines = vec![
            mk("a", Some(MachinePhase::Scanning)),
            mk("b", None),
            mk("c", Some(MachinePhase::Pending)),
            mk("d", Some(MachinePhase::Scanned)),
        ];
        let next: Vec<_> = next_to_start(&p, &machines)
            .iter()
            .map(|m| m.spec.instance_id.as_str())
            .collect();
        assert_eq!(next, ["b"]);
        assert_eq!(next_to_start(&policy(None), &machines).len(), 2);
        let counts = machine_counts(&machines);
        assert_eq!(
            (
                counts.total,
                counts.scanning,
                counts.pending,
                counts.scanned,
                counts.failed
            ),
            (4, 1, 2, 1, 0)
        );
    }
}
