//! Snapshots of an instance's disks and the disks made from them for the scanner, their release
//! and the sweep of leftovers.
//!
//! `create`: one snapshot per disk, named from the scan and the disk (so an operator restarted
//! mid-scan finds and reuses it), in the instance's project. `newestExisting`: the newest READY
//! snapshot whose `sourceDisk` is the disk; nothing is snapshotted. Either way a disk is made
//! from each snapshot in the first scanner zone (the CSI driver attaches it to the Job's node),
//! named from the snapshot id alone, so that [`GcpProvider::release_snapshots`] finds it after a
//! restart. Everything created is labelled `snapsentry-io-managed-by=snapsentry`,
//! `snapsentry-io-policy`, `snapsentry-io-scan-id` and `snapsentry-io-machine` (GCP label keys
//! and values: lowercase letters, digits, `-` and `_`, at most 63 characters).

use std::collections::BTreeMap;

use azure_core::Method;
use jiff::Timestamp;
use serde_json::{Value, json};
use snapsentry_crds::MachineDisk;

use super::provider::GcpProvider;
use super::rest::{Gcp, is_not_found, status_of};
use crate::error::{Error, Result};
use crate::{InventoryMachine, ProviderContext, SnapshotRef};

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

fn bad_id(what: &str, id: &str) -> Error {
    Error::Provider {
        provider: "gcp",
        message: format!("{what} {id} is not of the form the provider creates"),
    }
}

/// Whether a failed create says the name is taken (an earlier attempt of the same scan).
fn already_exists(e: &Error) -> bool {
    status_of(e).0 == Some(409)
}

impl GcpProvider {
    fn labels(&self, ctx: &ProviderContext, scan_id: &str, machine: &str) -> Value {
        let labels: BTreeMap<&str, String> = [
            (MANAGED_BY_LABEL, MANAGED_BY_VALUE.to_owned()),
            (POLICY_LABEL, policy_label(ctx)),
            (SCAN_ID_LABEL, label_value(scan_id)),
            (MACHINE_LABEL, label_value(machine)),
        ]
        .into_iter()
        .collect();
        json!(labels)
    }

    /// The zone disks for the scanner are made in.
    pub(super) fn scanner_zone(&self) -> Result<&str> {
        self.spec
            .scanner_zones
            .first()
            .map(String::as_str)
            .ok_or_else(|| Error::Provider {
                provider: "gcp",
                message: "scannerZones is not set: disks made from snapshots must be created \
                          in the zone of the scanner's nodes"
                    .into(),
            })
    }

    /// A POST or DELETE answered by an operation, waited for.
    async fn mutate(
        &self,
        gcp: &Gcp,
        method: Method,
        url: &str,
        body: Option<&Value>,
        operation: &str,
    ) -> Result<()> {
        let op = gcp.send(method, url, body, operation).await?;
        gcp.wait_operation(op, &self.wait, operation).await
    }

    /// The snapshot of `disk` for `scan_id`, created unless an earlier attempt did, and READY.
    async fn snapshot_of(
        &self,
        gcp: &Gcp,
        labels: &Value,
        scan_id: &str,
        disk: &MachineDisk,
    ) -> Result<String> {
        let (project, zone, disk_name_) =
            parse_disk_id(&disk.id).ok_or_else(|| bad_id("disk", &disk.id))?;
        let name = snapshot_name(scan_id, &disk.id);
        let url = gcp.compute_url(&format!("projects/{project}/global/snapshots/{name}"));
        match gcp.get(&url, "snapshots.get").await {
            Ok(_) => tracing::info!(snapshot = %name, "reusing this scan's snapshot"),
            Err(e) if is_not_found(&e) => {
                let create = gcp.compute_url(&format!(
                    "projects/{project}/zones/{zone}/disks/{disk_name_}/createSnapshot"
                ));
                let body = json!({"name": name, "labels": labels});
                match self
                    .mutate(
                        gcp,
                        Method::Post,
                        &create,
                        Some(&body),
                        "disks.createSnapshot",
                    )
                    .await
                {
                    Err(e) if !already_exists(&e) => return Err(e),
                    _ => {}
                }
            }
            Err(e) => return Err(e),
        }
        self.wait_ready(gcp, &url).await?;
        Ok(format!("projects/{project}/global/snapshots/{name}"))
    }

    /// Polls the snapshot at `url` until READY (bounded by the snapshot wait).
    async fn wait_ready(&self, gcp: &Gcp, url: &str) -> Result<()> {
        let started = tokio::time::Instant::now();
        let mut poll = self.wait.first_poll;
        loop {
            let s = gcp.get(url, "snapshots.get").await?;
            match s["status"].as_str().unwrap_or("") {
                "READY" => return Ok(()),
                st @ ("FAILED" | "DELETING") => {
                    return Err(Error::Gcp {
                        operation: "snapshots.get".into(),
                        status: None,
                        code: None,
                        message: format!("snapshot status {st}"),
                    });
                }
                _ => {}
            }
            if started.elapsed() + poll > self.wait.timeout {
                return Err(Error::Gcp {
                    operation: "snapshots.get".into(),
                    status: None,
                    code: None,
                    message: format!("snapshot not READY after {:?}", self.wait.timeout),
                });
            }
            tokio::time::sleep(poll).await;
            poll = self.wait.next_poll(poll);
        }
    }

    /// The scanner's disk made from `snapshot_id` in `zone`, created unless it exists.
    async fn disk_from(
        &self,
        gcp: &Gcp,
        labels: &Value,
        snapshot_id: &str,
        zone: &str,
    ) -> Result<()> {
        let (project, _) =
            parse_snapshot_id(snapshot_id).ok_or_else(|| bad_id("snapshot", snapshot_id))?;
        let name = disk_name(snapshot_id);
        let url = gcp.compute_url(&format!("projects/{project}/zones/{zone}/disks/{name}"));
        match gcp.get(&url, "disks.get").await {
            Ok(_) => return Ok(()),
            Err(e) if !is_not_found(&e) => return Err(e),
            Err(_) => {}
        }
        let insert = gcp.compute_url(&format!("projects/{project}/zones/{zone}/disks"));
        let body = json!({"name": name, "sourceSnapshot": snapshot_id, "labels": labels});
        match self
            .mutate(gcp, Method::Post, &insert, Some(&body), "disks.insert")
            .await
        {
            Err(e) if !already_exists(&e) => Err(e),
            _ => Ok(()),
        }
    }

    pub(super) async fn create_snapshots(
        &self,
        ctx: &ProviderContext,
        machine: &InventoryMachine,
        scan_id: &str,
    ) -> Result<Vec<SnapshotRef>> {
        let zone = self.scanner_zone()?;
        let gcp = self.client(ctx).await?;
        let labels = self.labels(ctx, scan_id, &machine.id);
        let mut refs = Vec::new();
        for disk in machine.disks.iter().filter(|d| d.unsupported.is_none()) {
            let snapshot_id = match self.snapshot_of(&gcp, &labels, scan_id, disk).await {
                Ok(id) => id,
                Err(e) => return Err(self.undo(ctx, &refs, e).await),
            };
            refs.push(SnapshotRef {
                disk_id: disk.id.clone(),
                snapshot_id: snapshot_id.clone(),
                region: Some(zone.to_owned()),
                created: true,
            });
            if let Err(e) = self.disk_from(&gcp, &labels, &snapshot_id, zone).await {
                return Err(self.undo(ctx, &refs, e).await);
            }
        }
        Ok(refs)
    }

    /// A machine's preparation failed with `error` (a disk quota, say): the operator never
    /// learns of what it made, so the snapshots and disks made so far are released here (best
    /// effort: the sweeper finds what this misses); returns `error`.
    async fn undo(&self, ctx: &ProviderContext, made: &[SnapshotRef], error: Error) -> Error {
        if let Err(e) = self.release_impl(ctx, made).await {
            tracing::warn!(error = %e, "releasing what a failed preparation made");
        }
        error
    }

    pub(super) async fn newest_existing(
        &self,
        ctx: &ProviderContext,
        machine: &InventoryMachine,
        scan_id: &str,
    ) -> Result<Vec<SnapshotRef>> {
        let zone = self.scanner_zone()?;
        let gcp = self.client(ctx).await?;
        let labels = self.labels(ctx, scan_id, &machine.id);
        let mut refs = Vec::new();
        for disk in machine.disks.iter().filter(|d| d.unsupported.is_none()) {
            let (project, _, _) =
                parse_disk_id(&disk.id).ok_or_else(|| bad_id("disk", &disk.id))?;
            let snapshots = gcp
                .list(
                    &gcp.compute_url(&format!("projects/{project}/global/snapshots")),
                    &[("filter", "status = READY")],
                    "snapshots.list",
                )
                .await?;
            let newest = snapshots
                .iter()
                .filter(|s| {
                    s["status"] == "READY"
                        && s["sourceDisk"]
                            .as_str()
                            .is_some_and(|d| super::exposure::resource_path(d) == disk.id)
                })
                .filter_map(|s| {
                    let at: Timestamp = s["creationTimestamp"].as_str()?.parse().ok()?;
                    Some((at, s["name"].as_str()?))
                })
                .max_by_key(|(at, _)| *at);
            let Some((_, name)) = newest else {
                tracing::warn!(machine = %machine.id, disk = %disk.id, "no READY snapshot; disk not scanned");
                continue;
            };
            let snapshot_id = format!("projects/{project}/global/snapshots/{name}");
            refs.push(SnapshotRef {
                disk_id: disk.id.clone(),
                snapshot_id: snapshot_id.clone(),
                region: Some(zone.to_owned()),
                created: false,
            });
            if let Err(e) = self.disk_from(&gcp, &labels, &snapshot_id, zone).await {
                return Err(self.undo(ctx, &refs, e).await);
            }
        }
        Ok(refs)
    }

    /// Deletes the resource at `url`; gone already is fine.
    async fn delete(&self, gcp: &Gcp, url: &str, operation: &str) -> Result<bool> {
        match self.mutate(gcp, Method::Delete, url, None, operation).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn release_impl(
        &self,
        ctx: &ProviderContext,
        snapshots: &[SnapshotRef],
    ) -> Result<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        let gcp = self.client(ctx).await?;
        for s in snapshots {
            let (project, name) = parse_snapshot_id(&s.snapshot_id)
                .ok_or_else(|| bad_id("snapshot", &s.snapshot_id))?;
            // The disk first: a snapshot is not deleted while the scanner may still read a disk
            // made from it. A disk still attached (400 resourceInUseByAnotherResource) fails the
            // release, and the operator tries again.
            if let Some(handle) = volume_handle(s) {
                self.delete(&gcp, &gcp.compute_url(&handle), "disks.delete")
                    .await?;
            }
            if s.created {
                let url = gcp.compute_url(&format!("projects/{project}/global/snapshots/{name}"));
                self.delete(&gcp, &url, "snapshots.delete").await?;
            }
        }
        Ok(())
    }

    pub(super) async fn sweep_impl(
        &self,
        ctx: &ProviderContext,
        older_than: Timestamp,
    ) -> Result<u32> {
        let gcp = self.client(ctx).await?;
        let filter = format!(
            "(labels.{MANAGED_BY_LABEL} = {MANAGED_BY_VALUE}) (labels.{POLICY_LABEL} = {})",
            policy_label(ctx)
        );
        let query = [("filter", filter.as_str())];
        let old = |r: &Value| {
            r["creationTimestamp"]
                .as_str()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .is_some_and(|t| t < older_than)
        };
        let mut deleted = 0;
        for project in &self.spec.projects {
            for zone in &self.spec.scanner_zones {
                let url = gcp.compute_url(&format!("projects/{project}/zones/{zone}/disks"));
                for disk in gcp.list(&url, &query, "disks.list").await? {
                    let Some(link) = disk["selfLink"].as_str().filter(|_| old(&disk)) else {
                        continue;
                    };
                    match self.delete(&gcp, link, "disks.delete").await {
                        Ok(true) => deleted += 1,
                        Ok(false) => {}
                        // Still attached to a scanner: the next sweep tries again.
                        Err(e) if status_of(&e).0 == Some(400) => {
                            tracing::info!(disk = %link, error = %e, "leftover disk in use; kept");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            let url = gcp.compute_url(&format!("projects/{project}/global/snapshots"));
            for snap in gcp.list(&url, &query, "snapshots.list").await? {
                let Some(link) = snap["selfLink"].as_str().filter(|_| old(&snap)) else {
                    continue;
                };
                if self.delete(&gcp, link, "snapshots.delete").await? {
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }
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
