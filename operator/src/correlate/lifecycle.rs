//! Finding lifecycle: `Active` → `Resolved` when a later successful scan of its machine no longer
//! sees it → deleted after the retention.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use snapsentry_crds::{FindingState, ScannedMachine};

use super::FindingRecord;
use crate::error::{Error, Result};

/// Resolved findings are kept this long unless the policy says otherwise (`720h`, 30 days).
pub const DEFAULT_RETENTION: SignedDuration = SignedDuration::from_hours(720);

/// A finding's state and, when resolved, since when.
///
/// A finding is `Resolved` when its machine's last scan succeeded, was a different scan than the
/// one that last saw the finding (`spec.scanId ≠ status.lastScan.scanId`), and is not older than
/// the finding's `lastSeen` (so a finding written by a scan still running, while `lastScan` still
/// describes the previous scan, stays `Active`). A failed scan resolves nothing: it may simply
/// not have reached the file. A finding seen again (the scanner moved its `scanId` to the last
/// scan) is `Active` again. A finding whose machine is gone keeps `Active`: the machine's
/// deletion is what removes it. A finding resolved before keeps its `resolvedAt`.
pub fn finding_state(
    f: &FindingRecord,
    machine: Option<&ScannedMachine>,
    now: Timestamp,
) -> (FindingState, Option<Time>) {
    let Some(last) = machine.and_then(|m| m.status.as_ref()?.last_scan.as_ref()) else {
        return (FindingState::Active, None);
    };
    let scan_time = last.finished_at.as_ref().or(last.started_at.as_ref());
    let later = scan_time.is_none_or(|t| t.0 >= f.last_seen);
    if !(last.succeeded && last.scan_id != *f.scan_id && later) {
        return (FindingState::Active, None);
    }
    let resolved_at = f
        .resolved_at
        .filter(|_| f.state == Some(FindingState::Resolved))
        .map(Time)
        .or_else(|| scan_time.cloned())
        .unwrap_or(Time(now));
    (FindingState::Resolved, Some(resolved_at))
}

/// Whether a finding resolved at `resolved_at` has outlived the retention.
pub fn past_retention(resolved_at: &Time, now: Timestamp, retention: SignedDuration) -> bool {
    now.duration_since(resolved_at.0) > retention
}

/// The retention from `spec.resolvedRetention`: a Go-style duration (`720h`, `36h30m`, `90s`,
/// `1.5h`; units `h`, `m`, `s`, `ms`), [`DEFAULT_RETENTION`] when unset.
pub fn parse_retention(value: Option<&str>) -> Result<SignedDuration> {
    match value {
        None => Ok(DEFAULT_RETENTION),
        Some(v) => parse_go_duration(v),
    }
}

/// Parse a non-negative Go-style duration.
pub fn parse_go_duration(value: &str) -> Result<SignedDuration> {
    let err = |reason: &str| Error::InvalidDuration {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let s = value.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    if s == "0" {
        return Ok(SignedDuration::ZERO);
    }
    let mut rest = s;
    let mut total_ms: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("missing unit"))?;
        if num_len == 0 {
            return Err(err("expected a number"));
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| err("bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ms_per_unit = match &rest[..unit_len] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1_000.0,
            "ms" => 1.0,
            _ => return Err(err("unknown unit (use h, m, s or ms)")),
        };
        rest = &rest[unit_len..];
        total_ms += n * ms_per_unit;
    }
    // Ten years is far beyond any sensible retention and keeps the cast below exact.
    if total_ms > 315_576_000_000.0 {
        return Err(err("longer than ten years"));
    }
    Ok(SignedDuration::from_millis(total_ms as i64))
}

#[cfg(test)]
mod tests {
    use snapsentry_crds::SecretFindingStatus;

    use super::*;
    use crate::correlate::testing::*;

    #[test]
    fn a_later_successful_scan_that_did_not_see_it_resolves_it() {
        let f = finding("a", "k1", "scan-1", ts(100));
        let m = machine_scanned("a", "scan-2", true, ts(200));
        let (state, at) = finding_state(&record(&f), Some(&m), ts(300));
        assert_eq!(state, FindingState::Resolved);
        assert_eq!(at, Some(Time(ts(200))));
    }

    #[test]
    fn the_same_scan_keeps_it_active() {
        let f = finding("a", "k1", "scan-2", ts(100));
        let m = machine_scanned("a", "scan-2", true, ts(200));
        assert_eq!(
            finding_state(&record(&f), Some(&m), ts(300)),
            (FindingState::Active, None)
        );
    }

    #[test]
    fn a_failed_scan_resolves_nothing() {
        let f = finding("a", "k1", "scan-1", ts(100));
        let m = machine_scanned("a", "scan-2", false, ts(200));
        assert_eq!(
            finding_state(&record(&f), Some(&m), ts(300)).0,
            FindingState::Active
        );
    }

    #[test]
    fn a_scan_still_running_does_not_resolve_what_it_just_wrote() {
        // The finding was written by scan-3 (running) after scan-2 finished.
        let f = finding("a", "k1", "scan-3", ts(250));
        let m = machine_scanned("a", "scan-2", true, ts(200));
        assert_eq!(
            finding_state(&record(&f), Some(&m), ts(300)).0,
            FindingState::Active
        );
    }

    #[test]
    fn no_machine_or_no_scan_keeps_it_active() {
        let f = finding("a", "k1", "scan-1", ts(100));
        assert_eq!(
            finding_state(&record(&f), None, ts(300)).0,
            FindingState::Active
        );
        let mut m = machine_scanned("a", "scan-2", true, ts(200));
        m.status = None;
        assert_eq!(
            finding_state(&record(&f), Some(&m), ts(300)).0,
            FindingState::Active
        );
    }

    #[test]
    fn resolved_at_is_kept_across_reconciles() {
        // Resolved by scan-2 at 200; scan-3 at 900 did not see it either.
        let mut f = finding("a", "k1", "scan-1", ts(100));
        let m = machine_scanned("a", "scan-3", true, ts(900));
        f.status = Some(SecretFindingStatus {
            state: Some(FindingState::Resolved),
            resolved_at: Some(Time(ts(200))),
            ..Default::default()
        });
        let (_, at) = finding_state(&record(&f), Some(&m), ts(1000));
        assert_eq!(at, Some(Time(ts(200))));
    }

    #[test]
    fn retention() {
        let day = SignedDuration::from_hours(24);
        assert!(!past_retention(&Time(ts(0)), ts(86_400), day));
        assert!(past_retention(&Time(ts(0)), ts(86_401), day));
    }

    #[test]
    fn go_durations() {
        assert_eq!(
            parse_retention(None).unwrap(),
            SignedDuration::from_hours(720)
        );
        assert_eq!(
            parse_go_duration("720h").unwrap(),
            SignedDuration::from_hours(720)
        );
        assert_eq!(
            parse_go_duration("1h30m").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(
            parse_go_duration("90s").unwrap(),
            SignedDuration::from_secs(90)
        );
        assert_eq!(parse_go_duration("0").unwrap(), SignedDuration::ZERO);
        for bad in ["", "10", "h", "10d", "-1h", "1h x", "99999999h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_go_duration("10d")
                .unwrap_err()
                .to_string()
                .contains("10d")
        );
    }
}
