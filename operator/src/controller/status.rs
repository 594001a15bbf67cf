//! The ScanPolicy status the reconciler wants, computed from the policy alone.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use snapsentry_crds::{ScanPolicy, ScanPolicyStatus};

use crate::error::Error;
use crate::schedule::{Trigger, decide};

/// Longest wait between two reconciles of a policy.
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);

/// What one reconcile of a policy should do.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The status to write (unchanged fields kept).
    pub status: ScanPolicyStatus,
    /// Start a scan, and why.
    pub start: Option<Trigger>,
    /// Reconcile again after this long (when the next scheduled scan is due, at most an hour).
    pub requeue: Duration,
}

/// Plan a reconcile at `now`: the `Ready` condition (false with the reason when the schedule,
/// zone or retention is invalid: the policy then starts no scan), `nextScanTime`, and whether a scan is due. `observedGeneration` in status is
/// left to the code that starts scans: it records the spec generation last scanned.
pub fn plan(policy: &ScanPolicy, now: Timestamp) -> Plan {
    let mut status = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;
    let decided = decide(policy, now).and_then(|d| {
        crate::correlate::parse_retention(policy.spec.resolved_retention.as_deref()).map(|_| d)
    });
    match decided {
        Ok(d) => {
            let (reason, message) = match (&policy.spec.schedule, policy.spec.suspend) {
                (_, true) => ("Suspended", "scheduled scans are suspended".to_owned()),
                (Some(s), false) => (
                    "Scheduled",
                    format!(
                        "scans on {s:?} in {}",
                        policy.spec.time_zone.as_deref().unwrap_or("UTC")
                    ),
                ),
                (None, false) => (
                    "Manual",
                    "scans when created, changed or annotated snapsentry.io/scan-now".to_owned(),
                ),
            };
            set_condition(
                &mut status.conditions,
                "Ready",
                "True",
                reason,
                &message,
                generation,
                now,
            );
            status.next_scan_time = d.next.map(Time);
            let requeue = d
                .next
                .map(|n| Duration::try_from(n.duration_since(now)).unwrap_or(Duration::ZERO))
                .unwrap_or(MAX_REQUEUE)
                .clamp(Duration::from_secs(1), MAX_REQUEUE);
            Plan {
                status,
                start: d.start,
                requeue,
            }
        }
        Err(e) => {
            let (reason, field) = match e {
                Error::InvalidTimeZone { .. } => ("InvalidTimeZone", "spec.timeZone"),
                Error::InvalidDuration { .. } => ("InvalidRetention", "spec.resolvedRetention"),
                _ => ("InvalidSchedule", "spec.schedule"),
            };
            set_condition(
                &mut status.conditions,
                "Ready",
                "False",
                reason,
                &format!("{field}: {e}"),
                generation,
                now,
            );
            status.next_scan_time = None;
            Plan {
                status,
                start: None,
                requeue: MAX_REQUEUE,
            }
        }
    }
}

/// The `Ready=False` condition of `new` when `old` did not already say the same: what deserves
/// a Warning Event (once, not at every reconcile).
pub fn newly_not_ready<'a>(
    old: Option<&ScanPolicyStatus>,
    new: &'a ScanPolicyStatus,
) -> Option<&'a Condition> {
    let ready = |s: &'a ScanPolicyStatus| s.conditions.iter().find(|c| c.type_ == "Ready");
    let now = ready(new).filter(|c| c.status == "False")?;
    let before = old.and_then(|o| o.conditions.iter().find(|c| c.type_ == "Ready"));
    let same = before.is_some_and(|b| {
        (&b.status, &b.reason, &b.message) == (&now.status, &now.reason, &now.message)
    });
    (!same).then_some(now)
}

/// Set a condition, keeping its `lastTransitionTime` when its status does not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: Timestamp,
) {
    let transition = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation,
        last_transition_time: transition,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

#[cfg(test)]
mod tests {
    use snapsentry_crds::ScanPolicySpec;

    use super::*;
    use crate::correlate::testing::policy_spec;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn policy(schedule: Option<&str>, zone: Option<&str>) -> ScanPolicy {
        let mut p = ScanPolicy::new(
            "prod",
            ScanPolicySpec {
                schedule: schedule.map(str::to_owned),
                time_zone: zone.map(str::to_owned),
                ..policy_spec()
            },
        );
        p.metadata.generation = Some(3);
        p.metadata.creation_timestamp = Some(Time(t("2026-11-22T10:00:00Z")));
        p
    }

    #[test]
    fn ready_with_next_scan_and_requeue() {
        let p = plan(&policy(Some("0 15 * * *"), None), t("2026-11-22T14:00:00Z"));
        let ready = &p.status.conditions[0];
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            ("Ready", "True", "Scheduled")
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(
            p.status.next_scan_time,
            Some(Time(t("2026-11-22T15:00:00Z")))
        );
        assert_eq!(p.requeue, Duration::from_secs(3600));
        assert_eq!(p.start, None);
        let p = plan(
            &policy(Some("10 14 * * *"), None),
            t("2026-11-22T14:00:00Z"),
        );
        assert_eq!(p.requeue, Duration::from_secs(600));
    }

    #[test]
    fn an_invalid_retention_or_zone_without_schedule_is_not_ready_and_warned_once() {
        let mut p = policy(None, None);
        p.spec.resolved_retention = Some("30 days".into());
        let planned = plan(&p, t("2026-11-22T14:00:00Z"));
        let ready = &planned.status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidRetention")
        );
        assert!(
            ready.message.starts_with("spec.resolvedRetention: "),
            "{}",
            ready.message
        );
        // A first scan would start without a schedule; not with an invalid spec.
        assert_eq!(planned.start, None);
        assert!(newly_not_ready(None, &planned.status).is_some());
        // Said once: the same condition again is no news.
        assert!(newly_not_ready(Some(&planned.status), &planned.status).is_none());

        let planned = plan(
            &policy(None, Some("Mars/Olympus")),
            t("2026-11-22T14:00:00Z"),
        );
        assert_eq!(planned.status.conditions[0].reason, "InvalidTimeZone");
        let fine = plan(&policy(None, None), t("2026-11-22T14:00:00Z"));
        assert!(newly_not_ready(Some(&planned.status), &fine.status).is_none());
    }

    #[test]
    fn invalid_schedule_is_not_ready() {
        let p = plan(&policy(Some("0 3 * *"), None), t("2026-11-22T14:00:00Z"));
        let ready = &p.status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSchedule")
        );
        assert!(ready.message.contains("0 3 * *"), "{}", ready.message);
        assert_eq!(p.start, None);
        let p = plan(
            &policy(Some("0 3 * * *"), Some("Moon/Base")),
            t("2026-11-22T14:00:00Z"),
        );
        assert_eq!(p.status.conditions[0].reason, "InvalidTimeZone");
    }

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let mut pol = policy(Some("0 3 * * *"), None);
        let first = plan(&pol, t("2026-11-22T14:00:00Z"));
        pol.status = Some(first.status.clone());
        let second = plan(&pol, t("2026-11-22T15:00:00Z"));
        assert_eq!(
            second.status.conditions[0].last_transition_time,
            Time(t("2026-11-22T14:00:00Z"))
        );
        pol.spec.schedule = Some("bad".into());
        let third = plan(&pol, t("2026-11-22T16:00:00Z"));
        assert_eq!(
            third.status.conditions[0].last_transition_time,
            Time(t("2026-11-22T16:00:00Z"))
        );
    }

    #[test]
    fn a_new_policy_without_schedule_scans_now() {
        let p = plan(&policy(None, None), t("2026-11-22T14:00:00Z"));
        assert_eq!(p.start, Some(Trigger::SpecChanged));
        assert_eq!(p.status.conditions[0].reason, "Manual");
    }
}
