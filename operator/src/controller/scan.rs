//! Planning a scan, as pure functions: which machines get a Job next under the policy's
//! concurrency, and the counts for the policy status. (The ScannedMachines a policy's inventory
//! makes are [`super::inventory`]'s.)

use snapsentry_crds::{MachineCounts, MachinePhase, ScanPolicy, ScannedMachine};

/// Scanner Jobs running at once per policy when `spec.concurrency` is unset.
pub const DEFAULT_CONCURRENCY: u32 = 5;

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
            Some(MachinePhase::Incomplete) => c.incomplete += 1,
            Some(MachinePhase::Failed) => c.failed += 1,
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use snapsentry_crds::{Cloud, ScannedMachineStatus};

    use super::*;
    use crate::controller::inventory::desired_machine;
    use crate::controller::inventory::tests::{inv, policy};

    fn with_phase(mut m: ScannedMachine, phase: Option<MachinePhase>) -> ScannedMachine {
        m.status = phase.map(|p| ScannedMachineStatus {
            phase: Some(p),
            ..Default::default()
        });
        m
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
            mk("e", Some(MachinePhase::Incomplete)),
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
                counts.incomplete,
                counts.failed
            ),
            (5, 1, 2, 1, 1, 0)
        );
    }
}
