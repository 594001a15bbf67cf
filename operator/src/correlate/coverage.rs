//! The coverage view: per cloud, one Recommendation `<policy>-coverage-<cloud>`, "… should be
//! fully scanned for secrets", listing the machines whose last scan was `Incomplete` (a volume
//! or disk not read) or `Failed`, with the volumes not read and steps per reason. Present only
//! while some machine needs it; the finish logic deletes it otherwise.

use std::collections::{BTreeMap, BTreeSet};

use snapsentry_crds::{
    AffectedResource, Cloud, MachineCoverage, MachinePhase, Recommendation, RecommendationSpec,
    RemediationSteps, ScannedMachine, Severity, SkipReason, limits,
};

use super::{CorrelationInput, SECURITY_CONTROL};

/// The coverage recommendation's title for a cloud, in Defender for Cloud's wording.
pub fn title(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Azure => "Machines should be fully scanned for secrets",
        Cloud::Aws => "EC2 instances should be fully scanned for secrets",
        Cloud::Gcp => "VM instances should be fully scanned for secrets",
        Cloud::Image => "Machines (disk images) should be fully scanned for secrets",
    }
}

/// The `secretType` of the steps for machines whose scan failed.
const FAILED: &str = "failed";

/// Steps for volumes not scanned for `reason` (`None`: the machine's scan failed).
pub fn steps(reason: Option<SkipReason>) -> Vec<String> {
    let steps: &[&str] = match reason {
        Some(SkipReason::Encrypted) => &[
            "The volume is encrypted (LUKS or BitLocker): no agentless scanner can read it, Defender for Cloud's included.",
            "Scan it where the key is available: on the machine, or with `snapsentry-scan dir` over the unlocked filesystem.",
            "Or accept the gap: note the machine as covered by disk encryption in your inventory.",
        ],
        Some(SkipReason::Unsupported) => &[
            "The volume or disk source is not read by this build. Supported: ext2/3/4, XFS, Btrfs, NTFS and FAT filesystems, on MBR or GPT partitions and LVM, in raw, qcow2, VHD, VHDX and VMDK images, EBS snapshots and Azure snapshots.",
            "Scan it with a tool that reads its format, or open an issue naming the format.",
        ],
        Some(SkipReason::Unreadable) => &[
            "The disk or volume could not be read: check the scanner Job's log and `status.lastScan.errors` for the error.",
            "Check the snapshot or image (damaged filesystem, truncated image, read grant expired) and scan again.",
        ],
        Some(SkipReason::NoFilesystem) => &[
            "No known filesystem was found: the volume may be empty, zeroed, or in a format the scanner does not know.",
            "If it holds data, find out its format on the machine (`lsblk -f`, `blkid`) and scan it there.",
        ],
        Some(SkipReason::Swap | SkipReason::Container) => &[],
        None => &[
            "The machine's scan failed: read the ScannedMachine's `Scanned` condition and the scanner Job's log.",
            "Fix the cause (snapshot or grant permissions, a deleted disk, a timeout) and let the next scan run.",
        ],
    };
    steps.iter().map(|s| (*s).to_owned()).collect()
}

/// The coverage Recommendations of the policy, one per cloud with a machine `Incomplete` or
/// `Failed`.
pub fn recommendations(
    input: &CorrelationInput<'_>,
    machines: &BTreeMap<&str, &ScannedMachine>,
) -> Vec<Recommendation> {
    let mut by_cloud: BTreeMap<Cloud, Vec<AffectedResource>> = BTreeMap::new();
    for (name, m) in machines {
        let Some(st) = m.status.as_ref() else {
            continue;
        };
        let phase = match st.phase {
            Some(p @ (MachinePhase::Incomplete | MachinePhase::Failed)) => p,
            _ => continue,
        };
        let coverage = st
            .coverage
            .clone()
            .or_else(|| st.last_scan.as_ref().map(MachineCoverage::of));
        let reason = (phase == MachinePhase::Failed)
            .then(|| {
                st.conditions
                    .iter()
                    .find(|c| c.type_ == "Scanned")
                    .map(|c| c.message.clone())
            })
            .flatten();
        by_cloud
            .entry(m.spec.cloud)
            .or_default()
            .push(AffectedResource {
                machine: (*name).to_owned(),
                instance_id: m.spec.instance_id.clone(),
                phase: Some(phase),
                reason,
                not_scanned: coverage.map(|c| c.skipped).unwrap_or_default(),
                ..Default::default()
            });
    }
    let mut out = Vec::new();
    for (cloud, mut affected) in by_cloud {
        // Failed first (nothing read), then by name.
        affected.sort_by(|a, b| {
            (b.phase == Some(MachinePhase::Failed))
                .cmp(&(a.phase == Some(MachinePhase::Failed)))
                .then(a.machine.cmp(&b.machine))
        });
        let affected_count = affected.len() as u32;
        let failed = affected
            .iter()
            .filter(|a| a.phase == Some(MachinePhase::Failed))
            .count();
        let mut reasons: BTreeSet<SkipReason> = BTreeSet::new();
        for a in &affected {
            for s in &a.not_scanned {
                reasons.insert(s.reason);
            }
        }
        affected.truncate(limits::MAX_AFFECTED);
        let mut remediation: Vec<RemediationSteps> = reasons
            .into_iter()
            .map(|r| RemediationSteps {
                secret_type: r.as_str().to_owned(),
                steps: steps(Some(r)),
            })
            .collect();
        if failed > 0 {
            remediation.push(RemediationSteps {
                secret_type: FAILED.to_owned(),
                steps: steps(None),
            });
        }
        let spec = RecommendationSpec {
            cloud,
            title: title(cloud).to_owned(),
            security_control: SECURITY_CONTROL.to_owned(),
            severity: Severity::Medium,
            description: format!(
                "{affected_count} {} selected by policy {} could not be fully scanned \
                 ({} incomplete, {failed} failed): secrets on the volumes not read are not \
                 reported, so no finding there does not mean no secret there.",
                super::recommend::machines_noun(cloud),
                input.policy,
                affected_count as usize - failed,
            ),
            affected_count,
            affected_resources: affected,
            remediation,
        };
        out.push(super::recommendation(input, "coverage", spec));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use snapsentry_crds::{ScanSummary, ScannedMachineStatus, VolumeResult};

    use super::*;
    use crate::correlate::testing::{machine, machine_in};

    fn with(
        mut m: ScannedMachine,
        phase: MachinePhase,
        volumes: Vec<VolumeResult>,
    ) -> ScannedMachine {
        m.status = Some(ScannedMachineStatus {
            phase: Some(phase),
            last_scan: Some(ScanSummary {
                scan_id: "s".into(),
                succeeded: phase != MachinePhase::Failed,
                volumes,
                ..Default::default()
            }),
            ..Default::default()
        });
        m
    }

    fn volume(id: &str, reason: Option<SkipReason>) -> VolumeResult {
        VolumeResult {
            id: id.into(),
            filesystem: None,
            scanned: reason.is_none(),
            error: reason.map(|r| format!("{} volume", r.as_str())),
            skip_reason: reason,
        }
    }

    fn input<'a>(
        machines: &'a [ScannedMachine],
        targets: &'a crate::correlate::TargetInventory,
    ) -> CorrelationInput<'a> {
        CorrelationInput {
            policy: "prod",
            namespace: "ns",
            owner: None,
            machines,
            findings: &[],
            targets,
            now: crate::correlate::testing::ts(0),
            retention: crate::correlate::DEFAULT_RETENTION,
        }
    }

    fn by_name(machines: &[ScannedMachine]) -> BTreeMap<&str, &ScannedMachine> {
        machines
            .iter()
            .map(|m| (m.metadata.name.as_deref().unwrap(), m))
            .collect()
    }

    #[test]
    fn absent_while_every_machine_is_fully_scanned() {
        let machines = vec![
            with(
                machine("a", false),
                MachinePhase::Scanned,
                vec![volume("disk0/p1", None)],
            ),
            machine("b", false),
        ];
        assert!(
            recommendations(&input(&machines, &Default::default()), &by_name(&machines)).is_empty()
        );
    }

    #[test]
    fn lists_incomplete_and_failed_machines_with_steps_per_reason() {
        let machines = vec![
            with(
                machine("a", false),
                MachinePhase::Incomplete,
                vec![
                    volume("disk0/p1", None),
                    volume("disk0/p2", Some(SkipReason::Encrypted)),
                    volume("disk0/p3", Some(SkipReason::Swap)),
                ],
            ),
            with(machine("b", false), MachinePhase::Failed, vec![]),
            with(
                machine("c", false),
                MachinePhase::Scanned,
                vec![volume("disk0/p1", None)],
            ),
            with(
                machine_in(Cloud::Azure, "d", false),
                MachinePhase::Incomplete,
                vec![
                    volume("disk0/p1", None),
                    volume("disk1", Some(SkipReason::Unreadable)),
                ],
            ),
        ];
        let recs = recommendations(&input(&machines, &Default::default()), &by_name(&machines));
        let names: Vec<_> = recs
            .iter()
            .map(|r| r.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["prod-coverage-aws", "prod-coverage-azure"]);
        let aws = &recs[0].spec;
        assert_eq!(
            aws.title,
            "EC2 instances should be fully scanned for secrets"
        );
        assert_eq!(aws.affected_count, 2);
        let listed: Vec<_> = aws
            .affected_resources
            .iter()
            .map(|a| (a.machine.as_str(), a.phase))
            .collect();
        assert_eq!(
            listed,
            [
                ("b", Some(MachinePhase::Failed)),
                ("a", Some(MachinePhase::Incomplete))
            ]
        );
        let a = &aws.affected_resources[1];
        assert_eq!(a.not_scanned.len(), 1, "swap loses no coverage");
        assert_eq!(a.not_scanned[0].reason, SkipReason::Encrypted);
        assert_eq!(a.not_scanned[0].error.as_deref(), Some("encrypted volume"));
        let kinds: Vec<_> = aws
            .remediation
            .iter()
            .map(|r| r.secret_type.as_str())
            .collect();
        assert_eq!(kinds, ["encrypted", "failed"]);
        assert!(aws.remediation[0].steps[0].contains("Defender"));
        assert_eq!(recs[1].spec.remediation[0].secret_type, "unreadable");
    }
}
