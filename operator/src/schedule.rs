//! When a policy scans: its 5-field cron `schedule` in `timeZone`, `suspend`, and the
//! `snapsentry.io/scan-now` annotation.
//!
//! Cron matching uses `croner` (maintained, OCPS-conformant, with explicit daylight-saving rules:
//! a fixed time that falls in a spring-forward gap runs right after the gap, one that occurs twice
//! in a fall-back overlap runs once) on `jiff` zoned times. jiff rather than chrono + chrono-tz
//! because k8s-openapi's `Time` is already a jiff `Timestamp`, so the operator has one time
//! library; its bundled tz database (`tzdb-bundle-always`) makes zones work in a distroless image
//! without `/usr/share/zoneinfo`.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use snapsentry_crds::ScanPolicy;
use snapsentry_crds::contract::annotations;

use crate::error::{Error, Result};

/// A parsed `schedule` + `timeZone`.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

impl Schedule {
    /// Parse a 5-field cron expression (minute hour day-of-month month day-of-week; names like
    /// `MON` and `JAN`, `@daily`-style nicknames accepted) in an IANA zone (default UTC).
    pub fn parse(expr: &str, time_zone: Option<&str>) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidSchedule {
            expr: expr.to_owned(),
            reason,
        };
        let fields = expr.split_whitespace().count();
        if !expr.trim_start().starts_with('@') && fields != 5 {
            return Err(invalid(format!(
                "expected 5 fields (minute hour day month weekday), found {fields}"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| invalid(e.to_string()))?;
        let tz = self::time_zone(time_zone)?;
        Ok(Self { cron, tz })
    }

    /// The first run strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Result<Timestamp> {
        let start = after.to_zoned(self.tz.clone());
        let next: Zoned =
            self.cron
                .find_next_occurrence(&start, false)
                .map_err(|e| Error::InvalidSchedule {
                    expr: self.cron.as_str().to_owned(),
                    reason: e.to_string(),
                })?;
        Ok(next.timestamp())
    }
}

/// Why a scan starts now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The `snapsentry.io/scan-now` annotation has a value not acted upon yet.
    ScanNow(String),
    /// The schedule came due.
    Schedule,
    /// No schedule: the policy was created or its spec changed.
    SpecChanged,
}

/// What the policy's timing says to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleDecision {
    /// Start a scan now, and why.
    pub start: Option<Trigger>,
    /// When the next scheduled scan is due (for `status.nextScanTime` and the requeue).
    pub next: Option<Timestamp>,
}

/// Decide whether `policy` should scan at `now`.
///
/// - A new `snapsentry.io/scan-now` value (different from `status.lastScanNow`) starts a scan even
///   when suspended: it is an explicit request.
/// - `suspend` stops scheduled (and spec-change) scans; `next` is then `None`.
/// - With a schedule, a scan is due when the first run after the last scan (or after creation)
///   is not in the future; missed runs collapse into one, like a CronJob's.
/// - Without a schedule, a scan starts when the spec generation was not scanned yet.
///
/// An invalid schedule or zone is an error, reported in the `Ready` condition.
pub fn decide(policy: &ScanPolicy, now: Timestamp) -> Result<ScheduleDecision> {
    let status = policy.status.as_ref();
    let scan_now = policy
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotations::SCAN_NOW))
        .filter(|v| status.and_then(|s| s.last_scan_now.as_ref()) != Some(*v))
        .map(|v| Trigger::ScanNow(v.clone()));
    let zone = policy.spec.time_zone.as_deref();
    let schedule = match policy.spec.schedule.as_deref() {
        Some(expr) => Some(Schedule::parse(expr, zone)?),
        None => {
            // Checked even without a schedule: a wrong zone is said at once, not when a
            // schedule is added.
            time_zone(zone)?;
            None
        }
    };
    if policy.spec.suspend {
        return Ok(ScheduleDecision {
            start: scan_now,
            next: None,
        });
    }
    let Some(schedule) = schedule else {
        let scanned_generation = status.and_then(|s| s.observed_generation);
        let changed = status.and_then(|s| s.last_scan_time.as_ref()).is_none()
            || scanned_generation != policy.metadata.generation;
        let start = scan_now.or(changed.then_some(Trigger::SpecChanged));
        return Ok(ScheduleDecision { start, next: None });
    };
    let since = status
        .and_then(|s| s.last_scan_time.as_ref())
        .or(policy.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    let due = schedule.next_after(since)?;
    if due <= now {
        Ok(ScheduleDecision {
            start: scan_now.or(Some(Trigger::Schedule)),
            next: Some(schedule.next_after(now)?),
        })
    } else {
        Ok(ScheduleDecision {
            start: scan_now,
            next: Some(due),
        })
    }
}

/// The IANA zone `zone` names (UTC when unset or blank).
fn time_zone(zone: Option<&str>) -> Result<TimeZone> {
    match zone.map(str::trim).filter(|z| !z.is_empty()) {
        None => Ok(TimeZone::UTC),
        Some(zone) => TimeZone::get(zone).map_err(|e| Error::InvalidTimeZone {
            zone: zone.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Scan id for a scan started at `at`: `YYYYMMDD-HHMMSS` in UTC, a valid label value that sorts
/// by time.
pub fn scan_id(at: Timestamp) -> String {
    at.strftime("%Y%m%d-%H%M%S").to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use snapsentry_crds::{ScanPolicySpec, ScanPolicyStatus};

    use super::*;
    use crate::correlate::testing::policy_spec;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(expr: &str, zone: &str, after: &str) -> String {
        Schedule::parse(expr, Some(zone))
            .unwrap()
            .next_after(t(after))
            .unwrap()
            .to_string()
    }

    #[test]
    fn utc_by_default() {
        let s = Schedule::parse("0 3 * * *", None).unwrap();
        assert_eq!(
            s.next_after(t("2026-11-22T14:00:00Z")).unwrap(),
            t("2026-11-23T03:00:00Z")
        );
        // Strictly after.
        assert_eq!(
            s.next_after(t("2026-11-23T03:00:00Z")).unwrap(),
            t("2026-11-24T03:00:00Z")
        );
    }

    #[test]
    fn in_a_time_zone() {
        // Paris is UTC+1 in winter, UTC+2 in summer.
        assert_eq!(
            next("0 3 * * *", "Europe/Paris", "2026-11-22T14:00:00Z"),
            "2026-11-23T02:00:00Z"
        );
        assert_eq!(
            next("0 3 * * *", "Europe/Paris", "2026-07-01T14:00:00Z"),
            "2026-07-02T01:00:00Z"
        );
        assert_eq!(
            next(
                "30 9 * * MON-FRI",
                "America/New_York",
                "2026-11-21T00:00:00Z"
            ),
            "2026-11-23T14:30:00Z"
        );
    }

    #[test]
    fn dst_spring_forward_gap_runs_right_after_the_gap() {
        // 2026-03-29 in Paris: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist.
        assert_eq!(
            next("30 2 * * *", "Europe/Paris", "2026-03-28T12:00:00Z"),
            "2026-03-29T01:00:00Z"
        );
        // The day after, 02:30 CEST again.
        assert_eq!(
            next("30 2 * * *", "Europe/Paris", "2026-03-29T02:00:00Z"),
            "2026-03-30T00:30:00Z"
        );
    }

    #[test]
    fn dst_fall_back_overlap_runs_once() {
        // 2026-10-25 in Paris: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let first = next("30 2 * * *", "Europe/Paris", "2026-10-24T12:00:00Z");
        assert_eq!(first, "2026-10-25T00:30:00Z");
        assert_eq!(
            next("30 2 * * *", "Europe/Paris", &first),
            "2026-10-26T01:30:00Z"
        );
    }

    #[test]
    fn invalid_cron_is_an_error_for_status() {
        for bad in [
            "",
            "* * * *",
            "0 0 3 * * *",
            "61 * * * *",
            "* 25 * * *",
            "every day",
            "0 3 * * FOO",
        ] {
            let err = Schedule::parse(bad, None).unwrap_err();
            assert!(
                matches!(err, Error::InvalidSchedule { .. }),
                "{bad:?}: {err}"
            );
            assert!(err.to_string().starts_with("invalid schedule"), "{err}");
        }
        assert!(Schedule::parse("@daily", None).is_ok());
    }

    #[test]
    fn invalid_zone_is_an_error_for_status() {
        let err = Schedule::parse("0 3 * * *", Some("Mars/Olympus_Mons")).unwrap_err();
        assert!(matches!(err, Error::InvalidTimeZone { .. }), "{err}");
        assert!(err.to_string().contains("Mars/Olympus_Mons"));
    }

    fn policy(schedule: Option<&str>) -> ScanPolicy {
        let mut p = ScanPolicy::new(
            "prod",
            ScanPolicySpec {
                schedule: schedule.map(str::to_owned),
                ..policy_spec()
            },
        );
        p.metadata.generation = Some(1);
        p.metadata.creation_timestamp = Some(Time(t("2026-11-22T10:00:00Z")));
        p
    }

    fn scanned(mut p: ScanPolicy, at: &str) -> ScanPolicy {
        p.status = Some(ScanPolicyStatus {
            last_scan_time: Some(Time(t(at))),
            observed_generation: Some(1),
            ..Default::default()
        });
        p
    }

    #[test]
    fn scheduled_scans_come_due() {
        let p = scanned(policy(Some("0 3 * * *")), "2026-11-22T03:00:00Z");
        let d = decide(&p, t("2026-11-22T14:00:00Z")).unwrap();
        assert_eq!(
            d,
            ScheduleDecision {
                start: None,
                next: Some(t("2026-11-23T03:00:00Z"))
            }
        );
        let d = decide(&p, t("2026-11-23T03:00:05Z")).unwrap();
        assert_eq!(d.start, Some(Trigger::Schedule));
        assert_eq!(d.next, Some(t("2026-11-24T03:00:00Z")));
        // Two missed runs make one scan.
        let d = decide(&p, t("2026-11-25T12:00:00Z")).unwrap();
        assert_eq!(d.start, Some(Trigger::Schedule));
        // A new policy waits for its first run after creation.
        let d = decide(&policy(Some("0 3 * * *")), t("2026-11-22T14:00:00Z")).unwrap();
        assert_eq!(
            d,
            ScheduleDecision {
                start: None,
                next: Some(t("2026-11-23T03:00:00Z"))
            }
        );
    }

    #[test]
    fn suspend_stops_scheduled_scans_but_not_scan_now() {
        let mut p = scanned(policy(Some("0 3 * * *")), "2026-11-20T03:00:00Z");
        p.spec.suspend = true;
        assert_eq!(
            decide(&p, t("2026-11-22T14:00:00Z")).unwrap(),
            ScheduleDecision {
                start: None,
                next: None
            }
        );
        p.metadata.annotations = Some(BTreeMap::from([(
            annotations::SCAN_NOW.to_owned(),
            "1".to_owned(),
        )]));
        assert_eq!(
            decide(&p, t("2026-11-22T14:00:00Z")).unwrap().start,
            Some(Trigger::ScanNow("1".into()))
        );
    }

    #[test]
    fn scan_now_starts_once_per_value() {
        let mut p = scanned(policy(Some("0 3 * * *")), "2026-11-22T03:00:00Z");
        p.metadata.annotations = Some(BTreeMap::from([(
            annotations::SCAN_NOW.to_owned(),
            "2026-11-22T14:00".to_owned(),
        )]));
        let now = t("2026-11-22T14:00:00Z");
        assert_eq!(
            decide(&p, now).unwrap().start,
            Some(Trigger::ScanNow("2026-11-22T14:00".into()))
        );
        p.status.as_mut().unwrap().last_scan_now = Some("2026-11-22T14:00".into());
        assert_eq!(decide(&p, now).unwrap().start, None);
        p.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(annotations::SCAN_NOW.into(), "again".into());
        assert_eq!(
            decide(&p, now).unwrap().start,
            Some(Trigger::ScanNow("again".into()))
        );
    }

    #[test]
    fn without_schedule_scans_on_create_and_change() {
        let now = t("2026-11-22T14:00:00Z");
        assert_eq!(
            decide(&policy(None), now).unwrap().start,
            Some(Trigger::SpecChanged)
        );
        let p = scanned(policy(None), "2026-11-22T11:00:00Z");
        assert_eq!(
            decide(&p, now).unwrap(),
            ScheduleDecision {
                start: None,
                next: None
            }
        );
        let mut changed = p.clone();
        changed.metadata.generation = Some(2);
        assert_eq!(
            decide(&changed, now).unwrap().start,
            Some(Trigger::SpecChanged)
        );
    }

    #[test]
    fn decide_reports_bad_schedules() {
        let mut p = policy(Some("0 3 * *"));
        assert!(decide(&p, t("2026-11-22T14:00:00Z")).is_err());
        p.spec.schedule = Some("0 3 * * *".into());
        p.spec.time_zone = Some("Nowhere/Land".into());
        assert!(matches!(
            decide(&p, t("2026-11-22T14:00:00Z")),
            Err(Error::InvalidTimeZone { .. })
        ));
    }

    #[test]
    fn scan_ids_are_label_values() {
        assert_eq!(scan_id(t("2026-11-22T14:05:09Z")), "20261122-140509");
    }
}
