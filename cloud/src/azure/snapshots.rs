//! Snapshots of Azure VMs: one incremental snapshot per managed disk, named from the scan and
//! the disk (so an operator restart finds and reuses it), tagged, waited for until provisioned;
//! or each disk's newest existing snapshot (`newestExisting`). Read SAS grants
//! (`beginGetAccess`), their end (`endGetAccess`), deletion of snapsentry's snapshots only, and
//! the sweep of a policy's leftovers.
//!
//! Azure tag names cannot contain `/`, so the tags are `snapsentry.io-managed-by=snapsentry`,
//! `snapsentry.io-policy=<namespace>.<policy>`, `snapsentry.io-scan-id` and
//! `snapsentry.io-machine` (the VM's resource id).
//!
//! Long-running operations (create, grant, end grant, delete) are sent with the generated
//! builders' `send()` and polled here through `Azure-AsyncOperation`: the generated LRO helper of
//! `grant_access` fails on the documented 202 with an empty body.

use std::collections::BTreeMap;

use azure_mgmt_compute::package_2024_07_01::models::{
    CreationData, GrantAccessData, Resource, Snapshot, SnapshotProperties, creation_data,
    grant_access_data,
};
use futures::StreamExt;
use jiff::Timestamp;
use serde_json::Value;

use super::AzureProvider;
use super::arm::{compute_error, status_of};
use super::clients::{Clients, provider_error};
use crate::error::{Error, Result};
use crate::{InventoryMachine, ProviderContext, ReadGrant, SnapshotRef};

/// Tag on every snapshot snapsentry creates; delete permissions can be conditioned on it.
pub const MANAGED_BY_TAG: &str = "snapsentry.io-managed-by";
/// Value of [`MANAGED_BY_TAG`].
pub const MANAGED_BY_VALUE: &str = "snapsentry";
/// `<namespace>.<policy>` of the ScanPolicy the snapshot was taken for.
pub const POLICY_TAG: &str = "snapsentry.io-policy";
/// Id of the scan the snapshot was taken for.
pub const SCAN_ID_TAG: &str = "snapsentry.io-scan-id";
/// Resource id of the VM whose disk the snapshot copies.
pub const MACHINE_TAG: &str = "snapsentry.io-machine";

/// Longest snapshot name Azure accepts.
const MAX_NAME: usize = 80;
/// Tries of a DELETE that answers 409 (a grant still ending).
const DELETE_TRIES: u32 = 5;

/// The subscription, resource group and name of an ARM resource id.
pub fn parse_id(id: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
    let after = |key: &str| {
        parts
            .iter()
            .position(|p| p.eq_ignore_ascii_case(key))
            .and_then(|i| parts.get(i + 1))
            .map(|s| (*s).to_owned())
    };
    let name = parts.last().filter(|n| !n.is_empty())?;
    Some((
        after("subscriptions")?,
        after("resourceGroups")?,
        (*name).to_owned(),
    ))
}

/// The snapshot name of `disk_id` for scan `scan_id` of the policy tagged `policy`:
/// `snapsentry-<scan>-<disk name>-<hash>` in the characters Azure allows, at most 80 of them. The
/// hash (of the policy and the disk id) keeps two policies scanning the same disk in the same
/// second apart, and a shortened name unique.
pub fn snapshot_name(policy: &str, scan_id: &str, disk_id: &str) -> String {
    let disk = disk_id.rsplit('/').next().unwrap_or(disk_id);
    let mut name: String = format!("snapsentry-{scan_id}-{disk}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(MAX_NAME - 9);
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{policy}\n{}", disk_id.to_ascii_lowercase()).as_bytes(),
    );
    let hash: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{name}-{hash}")
}

/// The grant file of the machine's `index`th disk (a key of the Job's grants Secret).
pub fn grant_file(index: usize) -> String {
    format!("disk-{index}")
}

fn tags_of(s: &Snapshot) -> BTreeMap<&str, &str> {
    super::inventory::tag_map(s.resource.tags.as_ref())
}

fn created_at(s: &Snapshot) -> Option<Timestamp> {
    let t = s.properties.as_ref()?.time_created?;
    Timestamp::new(t.unix_timestamp(), t.nanosecond() as i32).ok()
}

fn provisioning_state(s: &Snapshot) -> Option<&str> {
    s.properties.as_ref()?.provisioning_state.as_deref()
}

/// A Compute call's outcome with "not found" (404) as `None`.
fn found<T>(operation: &str, outcome: azure_core::Result<T>) -> Result<Option<T>> {
    match outcome {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            let e = compute_error(operation, &e);
            if status_of(&e) == Some(404) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

fn bad_id(id: &str) -> Error {
    provider_error(format!("{id} is not an ARM resource id"))
}

impl AzureProvider {
    fn scan_tags(ctx: &ProviderContext, scan_id: &str, machine: &str) -> Value {
        serde_json::json!({
            MANAGED_BY_TAG: MANAGED_BY_VALUE,
            POLICY_TAG: ctx.policy_tag(),
            SCAN_ID_TAG: scan_id,
            MACHINE_TAG: machine,
        })
    }

    /// The snapshot, or `None` when it does not exist.
    async fn get_snapshot(&self, clients: &Clients, id: &str) -> Result<Option<Snapshot>> {
        let (sub, rg, name) = parse_id(id).ok_or_else(|| bad_id(id))?;
        let got = async {
            clients
                .compute
                .snapshots_client()
                .get(sub, rg, name)
                .send()
                .await?
                .into_body()
                .await
        }
        .await;
        found("get snapshot", got)
    }

    /// Polls until the snapshot's `provisioningState` is `Succeeded` (bounded by the wait).
    async fn wait_provisioned(&self, clients: &Clients, id: &str) -> Result<Snapshot> {
        let started = tokio::time::Instant::now();
        let mut poll = self.wait.first_poll;
        loop {
            let s = self
                .get_snapshot(clients, id)
                .await?
                .ok_or_else(|| provider_error(format!("snapshot {id} disappeared")))?;
            match provisioning_state(&s) {
                Some("Succeeded") => return Ok(s),
                Some(state @ ("Failed" | "Canceled")) => {
                    return Err(provider_error(format!("snapshot {id} {state}")));
                }
                _ => {}
            }
            if started.elapsed() + poll > self.wait.timeout {
                return Err(provider_error(format!(
                    "snapshot {id} not provisioned after {:?}",
                    self.wait.timeout
                )));
            }
            tokio::time::sleep(poll).await;
            poll = self.wait.next_poll(poll);
        }
    }

    /// This scan's snapshot of one managed disk: reused when it exists, else created.
    async fn snapshot_disk(
        &self,
        ctx: &ProviderContext,
        clients: &Clients,
        machine: &InventoryMachine,
        disk_id: &str,
        scan_id: &str,
    ) -> Result<SnapshotRef> {
        let (sub, rg, _) = parse_id(disk_id).ok_or_else(|| bad_id(disk_id))?;
        let policy = ctx.policy_tag();
        let name = snapshot_name(&policy, scan_id, disk_id);
        let id = format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/snapshots/{name}"
        );
        // Taken before an operator restart: reuse, never duplicate.
        if let Some(existing) = self.get_snapshot(clients, &id).await? {
            let tags = tags_of(&existing);
            let ours = tags.get(MANAGED_BY_TAG) == Some(&MANAGED_BY_VALUE)
                && tags.get(POLICY_TAG) == Some(&policy.as_str())
                && tags.get(SCAN_ID_TAG) == Some(&scan_id);
            if !ours {
                return Err(provider_error(format!(
                    "snapshot {id} exists and is not snapsentry's for scan {scan_id}"
                )));
            }
            tracing::info!(policy = %ctx.policy, machine = %machine.id, snapshot = %id, "reusing this scan's snapshot");
        } else {
            let location = machine
                .region
                .clone()
                .ok_or_else(|| provider_error(format!("VM {} has no location", machine.id)))?;
            let mut resource = Resource::new(location);
            resource.tags = Some(Self::scan_tags(ctx, scan_id, &machine.id));
            let mut creation = CreationData::new(creation_data::CreateOption::Copy);
            creation.source_resource_id = Some(disk_id.to_owned());
            let mut properties = SnapshotProperties::new(creation);
            properties.incremental = Some(true);
            let mut snapshot = Snapshot::new(resource);
            snapshot.properties = Some(properties);
            let accepted = clients
                .compute
                .snapshots_client()
                .create_or_update(&sub, &rg, &name, snapshot)
                .send()
                .await
                .map_err(|e| compute_error("create snapshot", &e))?;
            clients
                .arm
                .wait_operation(
                    accepted.as_raw_response().headers(),
                    &self.wait,
                    "create snapshot",
                )
                .await?;
            tracing::info!(policy = %ctx.policy, machine = %machine.id, snapshot = %id, %scan_id, "snapshot created");
        }
        let done = self.wait_provisioned(clients, &id).await?;
        Ok(SnapshotRef {
            disk_id: disk_id.to_owned(),
            snapshot_id: done.resource.id.unwrap_or(id),
            region: machine.region.clone(),
            created: true,
        })
    }

    pub(super) async fn create_snapshots(
        &self,
        ctx: &ProviderContext,
        machine: &InventoryMachine,
        scan_id: &str,
    ) -> Result<Vec<SnapshotRef>> {
        let managed: Vec<&str> = machine
            .disks
            .iter()
            .filter(|d| d.unsupported.is_none())
            .map(|d| d.id.as_str())
            .collect();
        if managed.is_empty() {
            return Err(provider_error(format!(
                "VM {} has no managed disk to snapshot",
                machine.id
            )));
        }
        let clients = self.clients(ctx).await?;
        let refs = futures::future::join_all(
            managed
                .iter()
                .map(|d| self.snapshot_disk(ctx, &clients, machine, d, scan_id)),
        )
        .await;
        refs.into_iter().collect()
    }

    /// Every snapshot in the scopes the provider lists (its subscriptions, or its resource
    /// groups), in the subscriptions `subs`.
    async fn list_snapshots(&self, clients: &Clients, subs: &[&str]) -> Result<Vec<Snapshot>> {
        let c = clients.compute.snapshots_client();
        let mut streams = Vec::new();
        for sub in subs {
            if self.spec.resource_groups.is_empty() {
                streams.push(c.list(*sub).into_stream());
            } else {
                for rg in &self.spec.resource_groups {
                    streams.push(c.list_by_resource_group(*sub, rg).into_stream());
                }
            }
        }
        let mut out = Vec::new();
        for mut pages in streams {
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| compute_error("list snapshots", &e))?;
                out.extend(page.value);
            }
        }
        Ok(out)
    }

    pub(super) async fn newest_existing(
        &self,
        ctx: &ProviderContext,
        machine: &InventoryMachine,
    ) -> Result<Vec<SnapshotRef>> {
        let clients = self.clients(ctx).await?;
        let managed: Vec<&str> = machine
            .disks
            .iter()
            .filter(|d| d.unsupported.is_none())
            .map(|d| d.id.as_str())
            .collect();
        let mut subs: Vec<String> = managed
            .iter()
            .filter_map(|d| parse_id(d).map(|(s, _, _)| s))
            .collect();
        subs.sort();
        subs.dedup();
        let subs: Vec<&str> = subs.iter().map(String::as_str).collect();
        let all = self.list_snapshots(&clients, &subs).await?;
        let mut refs = Vec::new();
        for disk in managed {
            let newest = all
                .iter()
                .filter(|s| {
                    s.properties.as_ref().is_some_and(|p| {
                        p.creation_data
                            .source_resource_id
                            .as_deref()
                            .is_some_and(|src| src.eq_ignore_ascii_case(disk))
                    }) && provisioning_state(s) == Some("Succeeded")
                })
                .max_by_key(|s| (created_at(s), s.resource.id.clone()))
                .and_then(|s| s.resource.id.clone())
                .ok_or_else(|| {
                    provider_error(format!(
                        "disk {disk} of VM {} has no snapshot (snapshotStrategy newestExisting)",
                        machine.id
                    ))
                })?;
            refs.push(SnapshotRef {
                disk_id: disk.to_owned(),
                snapshot_id: newest,
                region: machine.region.clone(),
                created: false,
            });
        }
        Ok(refs)
    }

    /// A read SAS of one snapshot, valid for `seconds`.
    async fn grant_one(&self, clients: &Clients, id: &str, seconds: i32) -> Result<String> {
        let (sub, rg, name) = parse_id(id).ok_or_else(|| bad_id(id))?;
        let data = GrantAccessData::new(grant_access_data::Access::Read, seconds);
        let accepted = clients
            .compute
            .snapshots_client()
            .grant_access(sub, rg, name, data)
            .send()
            .await
            .map_err(|e| compute_error("grant snapshot read access", &e))?;
        let raw = accepted.into_raw_response();
        let (_, headers, body) = raw.deconstruct();
        let status = clients
            .arm
            .wait_operation(&headers, &self.wait, "grant snapshot read access")
            .await?;
        let sas = if status.is_null() {
            // Done at once: the 200 body is the AccessUri.
            let bytes = body
                .collect()
                .await
                .map_err(|e| compute_error("grant snapshot read access", &e))?;
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null)["accessSAS"].clone()
        } else {
            status["properties"]["output"]["accessSAS"].clone()
        };
        sas.as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| provider_error(format!("the read grant of {id} returned no SAS")))
    }

    pub(super) async fn grant_impl(
        &self,
        ctx: &ProviderContext,
        machine: &InventoryMachine,
        snapshots: &[SnapshotRef],
        duration: std::time::Duration,
    ) -> Result<ReadGrant> {
        let clients = self.clients(ctx).await?;
        let seconds = i32::try_from(duration.as_secs().max(60)).unwrap_or(i32::MAX);
        let mut grant = ReadGrant::default();
        for (index, disk) in machine.disks.iter().enumerate() {
            let Some(s) = snapshots.iter().find(|s| s.disk_id == disk.id) else {
                continue;
            };
            let sas = self.grant_one(&clients, &s.snapshot_id, seconds).await?;
            grant.files.insert(grant_file(index), sas);
            tracing::info!(policy = %ctx.policy, snapshot = %s.snapshot_id, seconds, "snapshot read access granted");
        }
        Ok(grant)
    }

    /// Ends the read grants of a snapshot; a snapshot already gone is no error.
    async fn end_access(&self, clients: &Clients, id: &str) -> Result<()> {
        let (sub, rg, name) = parse_id(id).ok_or_else(|| bad_id(id))?;
        let sent = clients
            .compute
            .snapshots_client()
            .revoke_access(sub, rg, name)
            .send()
            .await;
        if let Some(r) = found("end snapshot access", sent)? {
            let headers = r.as_raw_response().headers();
            clients
                .arm
                .wait_operation(headers, &self.wait, "end snapshot access")
                .await?;
        }
        Ok(())
    }

    /// Deletes a snapshot if it is snapsentry's; returns whether it was deleted. A 409 (the
    /// grant just ended is still being released) is tried again a few times.
    async fn delete_managed(&self, clients: &Clients, id: &str) -> Result<bool> {
        let Some(s) = self.get_snapshot(clients, id).await? else {
            return Ok(false);
        };
        if tags_of(&s).get(MANAGED_BY_TAG) != Some(&MANAGED_BY_VALUE) {
            tracing::warn!(snapshot = %id, "not deleting a snapshot snapsentry did not create");
            return Ok(false);
        }
        let (sub, rg, name) = parse_id(id).ok_or_else(|| bad_id(id))?;
        let mut pause = self.wait.first_poll;
        for attempt in 1..=DELETE_TRIES {
            let sent = clients
                .compute
                .snapshots_client()
                .delete(&sub, &rg, &name)
                .send()
                .await;
            match found("delete snapshot", sent) {
                Ok(Some(r)) => {
                    let headers = r.as_raw_response().headers();
                    clients
                        .arm
                        .wait_operation(headers, &self.wait, "delete snapshot")
                        .await?;
                    return Ok(true);
                }
                Ok(None) => return Ok(false),
                Err(e) if status_of(&e) == Some(409) && attempt < DELETE_TRIES => {
                    tracing::debug!(snapshot = %id, attempt, "snapshot busy; deleting again");
                    tokio::time::sleep(pause).await;
                    pause = self.wait.next_poll(pause);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Ends the grants of a snapshot and, when `delete`, deletes it if it is snapsentry's.
    async fn release_one(&self, clients: &Clients, id: &str, delete: bool) -> Result<bool> {
        self.end_access(clients, id).await?;
        if delete {
            self.delete_managed(clients, id).await
        } else {
            Ok(false)
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
        let clients = self.clients(ctx).await?;
        // Every snapshot is released even when one fails; the first failure is returned.
        let mut first_error = None;
        for s in snapshots {
            match self.release_one(&clients, &s.snapshot_id, s.created).await {
                Ok(true) => {
                    tracing::info!(policy = %ctx.policy, snapshot = %s.snapshot_id, "snapshot deleted")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(policy = %ctx.policy, snapshot = %s.snapshot_id, error = %e, "snapshot not released");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    pub(super) async fn sweep_impl(
        &self,
        ctx: &ProviderContext,
        older_than: Timestamp,
    ) -> Result<u32> {
        let clients = self.clients(ctx).await?;
        let policy = ctx.policy_tag();
        let subs: Vec<&str> = self.spec.subscriptions.iter().map(String::as_str).collect();
        let mut deleted = 0;
        for s in self.list_snapshots(&clients, &subs).await? {
            let tags = tags_of(&s);
            let ours = tags.get(MANAGED_BY_TAG) == Some(&MANAGED_BY_VALUE)
                && tags.get(POLICY_TAG) == Some(&policy.as_str());
            let old = created_at(&s).is_some_and(|t| t < older_than);
            let Some(id) = s.resource.id.as_deref() else {
                continue;
            };
            if ours && old && self.release_one(&clients, id, true).await? {
                deleted += 1;
                tracing::info!(policy = %ctx.policy, snapshot = %id, "leftover snapshot swept");
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_valid_short_and_per_policy() {
        let disk = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/web-os";
        let a = snapshot_name("ns.p", "20261122-140000", disk);
        assert!(a.starts_with("snapsentry-20261122-140000-web-os-"), "{a}");
        assert_eq!(a.len(), "snapsentry-20261122-140000-web-os-".len() + 8);
        assert_eq!(a, snapshot_name("ns.p", "20261122-140000", disk));
        assert_ne!(a, snapshot_name("ns.q", "20261122-140000", disk));
        assert!(snapshot_name("p", "a.b c", "x/d.1").starts_with("snapsentry-a-b-c-d-1-"));
        let long = format!("{}/{}", disk, "d".repeat(90));
        let l = snapshot_name("p", "20261122-140000", &long);
        assert_eq!(l.len(), 80);
        assert_ne!(
            l,
            snapshot_name("p", "20261122-140000", &long.replace("rg", "rg2"))
        );
        assert!(
            l.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn resource_ids() {
        assert_eq!(
            parse_id("/subscriptions/s1/resourceGroups/RG/providers/Microsoft.Compute/snapshots/n"),
            Some(("s1".into(), "RG".into(), "n".into()))
        );
        assert_eq!(parse_id("/subscriptions/s1"), None);
        assert_eq!(grant_file(2), "disk-2");
    }

    #[test]
    fn tags_carry_policy_scan_and_machine() {
        let ctx = ProviderContext {
            policy: "prod".into(),
            namespace: "security".into(),
            client: None,
        };
        let t = AzureProvider::scan_tags(&ctx, "20261122-140000", "/vm-1");
        assert_eq!(t[MANAGED_BY_TAG], "snapsentry");
        assert_eq!(t[POLICY_TAG], "security.prod");
        assert_eq!(t[SCAN_ID_TAG], "20261122-140000");
        assert_eq!(t[MACHINE_TAG], "/vm-1");
        for key in [MANAGED_BY_TAG, POLICY_TAG, SCAN_ID_TAG, MACHINE_TAG] {
            assert!(!key.contains(['/', '<', '>', '%', '&', '\\', '?']), "{key}");
        }
    }
}
