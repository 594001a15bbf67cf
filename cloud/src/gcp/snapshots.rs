//! Snapshots of an instance's disks and the disks made from them for the scanner, their release
//! and the sweep of leftovers.
//!
//! `create`: one snapshot per disk, named from the scan and the disk (so an operator restarted
//! mid-scan finds and reuses it), in the instance's project. `newestExisting`: the newest READY
//! snapshot whose `sourceDisk` is the disk; nothing is snapshotted. Either way a disk is made
//! from each snapshot in the first scanner zone (the CSI driver attaches it to the Job's node),
//! named from the snapshot id alone, so that [`GcpProvider::release_snapshots`] finds it after a
//! restart. Everything created is labelled ([`super::names`]).

use google_cloud_compute_v1::model::{Disk, Snapshot, snapshot};
use jiff::Timestamp;
use snapsentry_crds::MachineDisk;

use super::compute::{Compute, Made, PAGE_SIZE, failure, is_not_found, status_of};
use super::names::{
    Labels, MANAGED_BY_LABEL, MANAGED_BY_VALUE, POLICY_LABEL, disk_name, parse_disk_id,
    parse_snapshot_id, policy_label, scan_labels, snapshot_name, volume_handle,
};
use super::provider::GcpProvider;
use crate::error::{Error, Result};
use crate::{InventoryMachine, ProviderContext, SnapshotRef};

fn bad_id(what: &str, id: &str) -> Error {
    Error::Provider {
        provider: "gcp",
        message: format!("{what} {id} is not of the form the provider creates"),
    }
}

/// Whether `at` (a resource's `creationTimestamp`) is before `older_than`.
fn created_before(at: Option<&String>, older_than: Timestamp) -> bool {
    at.and_then(|t| t.parse::<Timestamp>().ok())
        .is_some_and(|t| t < older_than)
}

impl GcpProvider {
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

    /// The snapshot of `disk` for `scan_id`, created unless an earlier attempt did, and READY.
    async fn snapshot_of(
        &self,
        compute: &Compute,
        labels: &Labels,
        scan_id: &str,
        disk: &MachineDisk,
    ) -> Result<String> {
        let (project, zone, disk_name_) =
            parse_disk_id(&disk.id).ok_or_else(|| bad_id("disk", &disk.id))?;
        let name = snapshot_name(scan_id, &disk.id);
        let body = Snapshot::new()
            .set_name(name.clone())
            .set_labels(labels.clone());
        let made = compute
            .create_zonal(
                self.get_snapshot(compute, project, &name),
                "disks.createSnapshot",
                project,
                zone,
                &self.wait,
                || {
                    compute
                        .disks
                        .create_snapshot()
                        .set_project(project)
                        .set_zone(zone)
                        .set_disk(disk_name_)
                        .set_body(body.clone())
                        .send()
                },
            )
            .await?;
        if made == Made::Found {
            tracing::info!(snapshot = %name, "reusing this scan's snapshot");
        }
        self.wait_ready(compute, project, &name).await?;
        Ok(format!("projects/{project}/global/snapshots/{name}"))
    }

    async fn get_snapshot(&self, compute: &Compute, project: &str, name: &str) -> Result<Snapshot> {
        compute
            .call("snapshots.get", || {
                compute
                    .snapshots
                    .get()
                    .set_project(project)
                    .set_snapshot(name)
                    .send()
            })
            .await
    }

    /// Polls the snapshot `name` until READY (bounded by the snapshot wait).
    async fn wait_ready(&self, compute: &Compute, project: &str, name: &str) -> Result<()> {
        let started = tokio::time::Instant::now();
        let mut poll = self.wait.first_poll;
        loop {
            let s = self.get_snapshot(compute, project, name).await?;
            match &s.status {
                Some(snapshot::Status::Ready) => return Ok(()),
                Some(st @ (snapshot::Status::Failed | snapshot::Status::Deleting)) => {
                    return Err(failure(
                        "snapshots.get",
                        format!("snapshot status {}", st.name().unwrap_or("?")),
                    ));
                }
                _ => {}
            }
            if started.elapsed() + poll > self.wait.timeout {
                return Err(failure(
                    "snapshots.get",
                    format!("snapshot not READY after {:?}", self.wait.timeout),
                ));
            }
            tokio::time::sleep(poll).await;
            poll = self.wait.next_poll(poll);
        }
    }

    /// The scanner's disk made from `snapshot_id` in `zone`, created unless it exists.
    async fn disk_from(
        &self,
        compute: &Compute,
        labels: &Labels,
        snapshot_id: &str,
        zone: &str,
    ) -> Result<()> {
        let (project, _) =
            parse_snapshot_id(snapshot_id).ok_or_else(|| bad_id("snapshot", snapshot_id))?;
        let name = disk_name(snapshot_id);
        let existing = compute.call("disks.get", || {
            compute
                .disks
                .get()
                .set_project(project)
                .set_zone(zone)
                .set_disk(&name)
                .send()
        });
        let body = Disk::new()
            .set_name(name.clone())
            .set_source_snapshot(snapshot_id)
            .set_labels(labels.clone());
        compute
            .create_zonal(existing, "disks.insert", project, zone, &self.wait, || {
                compute
                    .disks
                    .insert()
                    .set_project(project)
                    .set_zone(zone)
                    .set_body(body.clone())
                    .send()
            })
            .await?;
        Ok(())
    }

    pub(super) async fn create_snapshots(
        &self,
        ctx: &ProviderContext,
        machine: &InventoryMachine,
        scan_id: &str,
    ) -> Result<Vec<SnapshotRef>> {
        let zone = self.scanner_zone()?;
        let clients = self.client(ctx).await?;
        let compute = &clients.compute;
        let labels = scan_labels(ctx, scan_id, &machine.id);
        let mut refs = Vec::new();
        for disk in machine.disks.iter().filter(|d| d.unsupported.is_none()) {
            let snapshot_id = match self.snapshot_of(compute, &labels, scan_id, disk).await {
                Ok(id) => id,
                Err(e) => return Err(self.undo(ctx, &refs, e).await),
            };
            refs.push(SnapshotRef {
                disk_id: disk.id.clone(),
                snapshot_id: snapshot_id.clone(),
                region: Some(zone.to_owned()),
                created: true,
            });
            if let Err(e) = self.disk_from(compute, &labels, &snapshot_id, zone).await {
                return Err(self.undo(ctx, &refs, e).await);
            }
        }
        Ok(refs)
    }

    /// The snapshots of `project` that pass `filter`.
    async fn list_snapshots(
        &self,
        compute: &Compute,
        project: &str,
        filter: &str,
    ) -> Result<Vec<Snapshot>> {
        let pages = compute
            .pages("snapshots.list", |token| {
                compute
                    .snapshots
                    .list()
                    .set_project(project)
                    .set_filter(filter)
                    .set_max_results(PAGE_SIZE)
                    .set_page_token(token)
                    .send()
            })
            .await?;
        Ok(pages.into_iter().flat_map(|p| p.items).collect())
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
        let clients = self.client(ctx).await?;
        let compute = &clients.compute;
        let labels = scan_labels(ctx, scan_id, &machine.id);
        let mut refs = Vec::new();
        for disk in machine.disks.iter().filter(|d| d.unsupported.is_none()) {
            let (project, _, _) =
                parse_disk_id(&disk.id).ok_or_else(|| bad_id("disk", &disk.id))?;
            let snapshots = self
                .list_snapshots(compute, project, "status = READY")
                .await?;
            let newest = snapshots
                .iter()
                .filter(|s| {
                    s.status == Some(snapshot::Status::Ready)
                        && s.source_disk
                            .as_deref()
                            .is_some_and(|d| super::exposure::resource_path(d) == disk.id)
                })
                .filter_map(|s| {
                    let at: Timestamp = s.creation_timestamp.as_deref()?.parse().ok()?;
                    Some((at, s.name.as_deref()?))
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
            if let Err(e) = self.disk_from(compute, &labels, &snapshot_id, zone).await {
                return Err(self.undo(ctx, &refs, e).await);
            }
        }
        Ok(refs)
    }

    /// Deletes the disk `name` of `project`/`zone`; gone already is fine.
    async fn delete_disk(
        &self,
        compute: &Compute,
        project: &str,
        zone: &str,
        name: &str,
    ) -> Result<bool> {
        let deleted = compute
            .mutate("disks.delete", project, Some(zone), &self.wait, || {
                compute
                    .disks
                    .delete()
                    .set_project(project)
                    .set_zone(zone)
                    .set_disk(name)
                    .send()
            })
            .await;
        gone_is_fine(deleted)
    }

    /// Deletes the snapshot `name` of `project`; gone already is fine.
    async fn delete_snapshot(&self, compute: &Compute, project: &str, name: &str) -> Result<bool> {
        let deleted = compute
            .mutate("snapshots.delete", project, None, &self.wait, || {
                compute
                    .snapshots
                    .delete()
                    .set_project(project)
                    .set_snapshot(name)
                    .send()
            })
            .await;
        gone_is_fine(deleted)
    }

    pub(super) async fn release_impl(
        &self,
        ctx: &ProviderContext,
        snapshots: &[SnapshotRef],
    ) -> Result<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        let clients = self.client(ctx).await?;
        let compute = &clients.compute;
        for s in snapshots {
            let (project, name) = parse_snapshot_id(&s.snapshot_id)
                .ok_or_else(|| bad_id("snapshot", &s.snapshot_id))?;
            // The disk first: a snapshot is not deleted while the scanner may still read a disk
            // made from it. A disk still attached (400 resourceInUseByAnotherResource) fails the
            // release, and the operator tries again.
            if let Some(handle) = volume_handle(s) {
                let (p, zone, disk) =
                    parse_disk_id(&handle).ok_or_else(|| bad_id("disk", &handle))?;
                self.delete_disk(compute, p, zone, disk).await?;
            }
            if s.created {
                self.delete_snapshot(compute, project, name).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn sweep_impl(
        &self,
        ctx: &ProviderContext,
        older_than: Timestamp,
    ) -> Result<u32> {
        let clients = self.client(ctx).await?;
        let compute = &clients.compute;
        let filter = format!(
            "(labels.{MANAGED_BY_LABEL} = {MANAGED_BY_VALUE}) (labels.{POLICY_LABEL} = {})",
            policy_label(ctx)
        );
        let mut deleted = 0;
        for project in &self.spec.projects {
            for zone in &self.spec.scanner_zones {
                let pages = compute
                    .pages("disks.list", |token| {
                        compute
                            .disks
                            .list()
                            .set_project(project)
                            .set_zone(zone)
                            .set_filter(&filter)
                            .set_max_results(PAGE_SIZE)
                            .set_page_token(token)
                            .send()
                    })
                    .await?;
                for disk in pages.iter().flat_map(|p| &p.items) {
                    let Some(name) = disk
                        .name
                        .as_deref()
                        .filter(|_| created_before(disk.creation_timestamp.as_ref(), older_than))
                    else {
                        continue;
                    };
                    match self.delete_disk(compute, project, zone, name).await {
                        Ok(true) => deleted += 1,
                        Ok(false) => {}
                        // Still attached to a scanner: the next sweep tries again.
                        Err(e) if status_of(&e).0 == Some(400) => {
                            tracing::info!(disk = %name, %zone, error = %e, "leftover disk in use; kept");
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            for snap in self.list_snapshots(compute, project, &filter).await? {
                let Some(name) = snap
                    .name
                    .as_deref()
                    .filter(|_| created_before(snap.creation_timestamp.as_ref(), older_than))
                else {
                    continue;
                };
                if self.delete_snapshot(compute, project, name).await? {
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }
}

/// A deletion's outcome: done (`true`), or gone already (`false`, a 404).
fn gone_is_fine(outcome: Result<()>) -> Result<bool> {
    match outcome {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}
