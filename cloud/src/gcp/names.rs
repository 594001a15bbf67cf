//! The names and labels of what a scan creates in GCP, and the ids the provider parses back.
//!
//! Names are deterministic — the snapshot of a disk from the scan and the disk, the scanner's
//! disk from the snapshot id alone — so that an operator restarted mid-scan finds and reuses
//! them, and [`GcpProvider::release_snapshots`](crate::Provider::release_snapshots) finds the
//! disk after a restart. Labels (`snapsentry-io-managed-by=snapsentry`, `snapsentry-io-policy`,
//! `snapsentry-io-scan-id`, `snapsentry-io-machine`) follow GCP's rules for keys and values:
//! lowercase letters, digits, `-` and `_`, at most 63 characters.

use crate::{ProviderContext, SnapshotRef};

/// Label marking what snapsentry created.
pub const MANAGED_BY_LABEL: &str = "snapsentry-io-managed-by";
/// Its value.
pub const MANAGED_BY_VALUE: &str = "snapsentry";
/// Label naming the policy ([`policy_label`]).
pub const POLICY_LABEL: &str = "snapsentry-io-policy";
/// Label naming the scan.
pub const SCAN_ID_LABEL: &str = "snapsentry-io-scan-id";
/// Label naming the instance (its numeric id).
pub const MACHINE_LABEL: &str = "snapsentry-io-machine";
/// Most characters of a resource name or label value.
const MAX_LEN: usize = 63;

/// Hex SHA-256 of `parts` joined by newlines, cut to `len` characters.
fn digest(parts: &[&str], len: usize) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, parts.join("\n").as_bytes());
    d.as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..len]
        .to_owned()
}

/// `value` as a GCP label value: lowercase, other characters than letters, digits, `-` and `_`
/// as `-`; past 63 characters, cut and ended with a digest of the whole so values stay distinct.
pub fn label_value(value: &str) -> String {
    let clean: String = value
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.len() <= MAX_LEN {
        clean
    } else {
        format!("{}-{}", &clean[..MAX_LEN - 13], digest(&[value], 12))
    }
}

/// The policy label's value: `<namespace>_<policy>` (`_` cannot occur in either name, so two
/// policies never share a value), as a [`label_value`].
pub fn policy_label(ctx: &ProviderContext) -> String {
    label_value(&format!("{}_{}", ctx.namespace, ctx.policy))
}

/// Labels of what a scan creates.
pub(super) type Labels = Vec<(&'static str, String)>;

/// The labels of what scan `scan_id` of the policy of `ctx` creates for `machine`.
pub(super) fn scan_labels(ctx: &ProviderContext, scan_id: &str, machine: &str) -> Labels {
    vec![
        (MANAGED_BY_LABEL, MANAGED_BY_VALUE.to_owned()),
        (POLICY_LABEL, policy_label(ctx)),
        (SCAN_ID_LABEL, label_value(scan_id)),
        (MACHINE_LABEL, label_value(machine)),
    ]
}

/// The name of the snapshot of `disk_id` for `scan_id` (`snapsentry-<40 hex>`).
pub fn snapshot_name(scan_id: &str, disk_id: &str) -> String {
    format!("snapsentry-{}", digest(&[scan_id, disk_id], 40))
}

/// The name of the scanner's disk made from `snapshot_id` (`snapsentry-d-<40 hex>`).
pub fn disk_name(snapshot_id: &str) -> String {
    format!("snapsentry-d-{}", digest(&[snapshot_id], 40))
}

/// `projects/P/global/snapshots/NAME` → (`P`, `NAME`).
pub fn parse_snapshot_id(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("projects/")?;
    let (project, name) = rest.split_once("/global/snapshots/")?;
    (!project.is_empty() && !name.is_empty() && !name.contains('/')).then_some((project, name))
}

/// `projects/P/zones/Z/disks/NAME` → (`P`, `Z`, `NAME`).
pub fn parse_disk_id(id: &str) -> Option<(&str, &str, &str)> {
    let rest = id.strip_prefix("projects/")?;
    let (project, rest) = rest.split_once("/zones/")?;
    let (zone, name) = rest.split_once("/disks/")?;
    Some((project, zone, name))
}

/// The CSI volume handle of the scanner's disk for `snapshot` (`projects/P/zones/Z/disks/N`),
/// when its id and zone are known.
pub fn volume_handle(snapshot: &SnapshotRef) -> Option<String> {
    let (project, _) = parse_snapshot_id(&snapshot.snapshot_id)?;
    let zone = snapshot.region.as_deref()?;
    Some(format!(
        "projects/{project}/zones/{zone}/disks/{}",
        disk_name(&snapshot.snapshot_id)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_deterministic_and_distinct() {
        let re = |s: &str| {
            s.len() <= 63
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        let a = snapshot_name("scan-1", "projects/p/zones/z/disks/d");
        assert!(re(&a), "{a}");
        assert_eq!(a, snapshot_name("scan-1", "projects/p/zones/z/disks/d"));
        assert_ne!(a, snapshot_name("scan-2", "projects/p/zones/z/disks/d"));
        let id = format!("projects/p/global/snapshots/{a}");
        let d = disk_name(&id);
        assert!(re(&d), "{d}");
        assert_ne!(d, disk_name("projects/q/global/snapshots/x"));
        assert_eq!(parse_snapshot_id(&id), Some(("p", a.as_str())));
        assert_eq!(parse_snapshot_id("projects/p/zones/z/disks/d"), None);
        assert_eq!(
            parse_disk_id("projects/p/zones/z/disks/d"),
            Some(("p", "z", "d"))
        );
        let s = SnapshotRef {
            disk_id: String::new(),
            snapshot_id: id.clone(),
            region: Some("europe-west1-b".into()),
            created: true,
        };
        assert_eq!(
            volume_handle(&s).unwrap(),
            format!("projects/p/zones/europe-west1-b/disks/{d}")
        );
    }

    #[test]
    fn label_values_follow_gcp_rules() {
        assert_eq!(
            label_value("Scan.2026-12-06T10:00Z"),
            "scan-2026-12-06t10-00z"
        );
        let long = "x".repeat(100);
        let v = label_value(&long);
        assert_eq!(v.len(), 63);
        assert_ne!(v, label_value(&"x".repeat(101)));
        let ctx = ProviderContext {
            policy: "nightly".into(),
            namespace: "team-a".into(),
            client: None,
        };
        assert_eq!(policy_label(&ctx), "team-a_nightly");
    }
}
