//! The Azure inventory: the VMs of every subscription (or of the listed resource groups) with
//! their power state, the ones the selector picks, each as an [`InventoryMachine`] (name, OS,
//! location, managed OS and data disks in LUN order, [exposure](super::exposure) from the
//! subscriptions' network resources); targets from the [data services](super::services).

use std::collections::BTreeMap;

use azure_mgmt_compute::package_2024_07_01::models::{
    DataDisk, ManagedDiskParameters, VirtualHardDisk, VirtualMachine,
};
use futures::StreamExt;
use snapsentry_crds::{InstanceSelector, MachineDisk};

use super::AzureProvider;
use super::arm::{Arm, compute_error, status_of};
use super::clients::Clients;
use super::exposure::NetworkView;
use super::network::{
    LoadBalancer, NETWORK_API_VERSION, NETWORK_LISTS, NetworkInterface, NetworkSecurityGroup,
    PublicIpAddress, VirtualNetwork,
};
use super::services::{DATA_SERVICES, add_targets, complete_kinds};
use crate::error::Result;
use crate::{Inventory, InventoryMachine, ProviderContext, TargetInventory};

/// A VM's tags as a map.
pub fn tag_map(tags: Option<&serde_json::Value>) -> BTreeMap<&str, &str> {
    tags.and_then(|t| t.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// `running`, `deallocated`, `stopped`, … from the instance view's `PowerState/…` status.
pub fn power_state(vm: &VirtualMachine) -> Option<String> {
    vm.properties
        .as_ref()?
        .instance_view
        .as_ref()?
        .statuses
        .iter()
        .filter_map(|s| s.code.as_deref())
        .find_map(|c| c.strip_prefix("PowerState/"))
        .map(str::to_ascii_lowercase)
}

/// Whether `selector` selects a VM with this resource id, name, power state and tags: tags (value
/// `*` for any), ids (the resource id or the name, case-insensitive), states (default running and
/// stopped) and excluded tags, as for EC2 instances.
pub fn selects(
    selector: &InstanceSelector,
    id: &str,
    name: &str,
    state: Option<&str>,
    tags: &BTreeMap<&str, &str>,
) -> bool {
    let id_ok = selector.ids.is_empty()
        || selector
            .ids
            .iter()
            .any(|i| i.eq_ignore_ascii_case(id) || i.eq_ignore_ascii_case(name));
    let rest = InstanceSelector {
        ids: Vec::new(),
        ..selector.clone()
    };
    id_ok && crate::aws::selects(&rest, id, state, tags)
}

/// `linux` or `windows` from the OS disk's OS type.
pub fn platform(vm: &VirtualMachine) -> Option<&'static str> {
    let os = vm
        .properties
        .as_ref()?
        .storage_profile
        .as_ref()?
        .os_disk
        .as_ref()?
        .os_type
        .as_ref()?;
    let os = serde_json::to_value(os).ok()?;
    match os.as_str()?.to_ascii_lowercase().as_str() {
        "windows" => Some("windows"),
        "linux" => Some("linux"),
        _ => None,
    }
}

/// A VHD URI without its query (a SAS would be a credential).
fn vhd_uri(vhd: &VirtualHardDisk) -> String {
    let uri = vhd.uri.as_deref().unwrap_or("unknown VHD");
    uri.split('?').next().unwrap_or(uri).to_owned()
}

/// One disk of a VM: the managed disk, or an unmanaged VHD reported as not supported.
fn disk(
    device: String,
    managed: Option<&ManagedDiskParameters>,
    vhd: Option<&VirtualHardDisk>,
    size_gb: Option<i32>,
) -> Option<MachineDisk> {
    let size_bytes = size_gb.and_then(|g| u64::try_from(g).ok()).map(|g| g << 30);
    if let Some(id) = managed.and_then(|m| m.sub_resource.id.as_deref()) {
        return Some(MachineDisk {
            id: id.to_owned(),
            device: Some(device),
            size_bytes,
            unsupported: None,
        });
    }
    let vhd = vhd?;
    Some(MachineDisk {
        id: vhd_uri(vhd),
        device: Some(device),
        size_bytes,
        unsupported: Some(
            "unmanaged VHD disk: only managed disks can be snapshotted (migrate it to a managed \
             disk to scan it)"
                .into(),
        ),
    })
}

/// The VM's disks: the OS disk (device `os`), then data disks by LUN (device `lun<N>`).
pub fn disks(vm: &VirtualMachine) -> Vec<MachineDisk> {
    let Some(storage) = vm
        .properties
        .as_ref()
        .and_then(|p| p.storage_profile.as_ref())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(os) = &storage.os_disk {
        out.extend(disk(
            "os".into(),
            os.managed_disk.as_ref(),
            os.vhd.as_ref(),
            os.disk_size_gb,
        ));
    }
    let mut data: Vec<&DataDisk> = storage.data_disks.iter().collect();
    data.sort_by_key(|d| d.lun);
    for d in data {
        out.extend(disk(
            format!("lun{}", d.lun),
            d.managed_disk.as_ref(),
            d.vhd.as_ref(),
            d.disk_size_gb,
        ));
    }
    out
}

/// The resource ids of the VM's network interfaces.
pub fn nic_ids(vm: &VirtualMachine) -> Vec<String> {
    vm.properties
        .as_ref()
        .and_then(|p| p.network_profile.as_ref())
        .map(|n| {
            n.network_interfaces
                .iter()
                .filter_map(|r| r.sub_resource.id.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The inventory entry of a selected VM.
pub fn machine(vm: &VirtualMachine, view: &NetworkView) -> Option<InventoryMachine> {
    let id = vm.resource.id.clone()?;
    let name = vm.resource.name.clone().unwrap_or_else(|| id.clone());
    Some(InventoryMachine {
        region: Some(vm.resource.location.clone()),
        platform: platform(vm).map(str::to_owned),
        state: power_state(vm),
        exposure: view.exposure(&nic_ids(vm)),
        disks: disks(vm),
        authorized_keys: Vec::new(),
        name,
        id,
    })
}

/// The full resource type (`Microsoft.Network/networkInterfaces`) and api-version of a network
/// list, from [`NETWORK_LISTS`].
fn network_api(resource_type: &str) -> (String, &'static str) {
    let (provider, rtype, version) = NETWORK_LISTS
        .iter()
        .find(|(_, t, _)| t.eq_ignore_ascii_case(resource_type))
        .copied()
        .unwrap_or(("Microsoft.Network", "", NETWORK_API_VERSION));
    (format!("{provider}/{rtype}"), version)
}

impl AzureProvider {
    /// Every VM of one subscription (or its listed resource groups), with its power state.
    async fn list_vms(&self, clients: &Clients, sub: &str) -> Result<Vec<VirtualMachine>> {
        let vms = clients.compute.virtual_machines_client();
        let mut streams = Vec::new();
        if self.spec.resource_groups.is_empty() {
            streams.push(vms.list_all(sub).status_only("true").into_stream());
        } else {
            for rg in &self.spec.resource_groups {
                streams.push(vms.list(rg, sub).expand("instanceView").into_stream());
            }
        }
        let mut out = Vec::new();
        for mut pages in streams {
            while let Some(page) = pages.next().await {
                let page = match page {
                    Ok(page) => page,
                    // A listed resource group that this subscription does not have.
                    Err(e)
                        if !self.spec.resource_groups.is_empty()
                            && status_of(&compute_error("", &e)) == Some(404) =>
                    {
                        tracing::debug!(subscription = %sub, "a listed resource group is not in this subscription");
                        break;
                    }
                    Err(e) => return Err(compute_error("list virtual machines", &e)),
                };
                out.extend(page.value);
            }
        }
        Ok(out)
    }

    /// Every resource of `resource_type` (`Microsoft.Network/networkInterfaces`) in `sub`.
    async fn list_in<T: serde::de::DeserializeOwned>(
        arm: &Arm,
        sub: &str,
        resource_type: &str,
        api_version: &str,
    ) -> Result<Vec<T>> {
        arm.list(
            &format!("/subscriptions/{sub}/providers/{resource_type}"),
            api_version,
            &format!("list {resource_type}"),
        )
        .await
    }

    /// The network resources of these subscriptions.
    async fn network_view(&self, arm: &Arm, subs: &[&str]) -> Result<NetworkView> {
        let (mut nics, mut ips, mut nsgs, mut vnets, mut lbs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for sub in subs {
            let (t, v) = network_api("networkInterfaces");
            nics.extend(Self::list_in::<NetworkInterface>(arm, sub, &t, v).await?);
            let (t, v) = network_api("publicIPAddresses");
            ips.extend(Self::list_in::<PublicIpAddress>(arm, sub, &t, v).await?);
            let (t, v) = network_api("networkSecurityGroups");
            nsgs.extend(Self::list_in::<NetworkSecurityGroup>(arm, sub, &t, v).await?);
            let (t, v) = network_api("virtualNetworks");
            vnets.extend(Self::list_in::<VirtualNetwork>(arm, sub, &t, v).await?);
            let (t, v) = network_api("loadBalancers");
            lbs.extend(Self::list_in::<LoadBalancer>(arm, sub, &t, v).await?);
        }
        Ok(NetworkView::new(nics, ips, nsgs, vnets, lbs))
    }

    /// The data services' resources; a kind is complete only when every subscription's listing of
    /// every service of that kind succeeded ([`complete_kinds`]).
    pub(super) async fn targets(&self, arm: &Arm) -> TargetInventory {
        let mut inv = TargetInventory::default();
        let mut listed = Vec::new();
        for service in DATA_SERVICES {
            let rtype = format!("{}/{}", service.provider, service.resource_type);
            let mut complete = true;
            for sub in &self.spec.subscriptions {
                match Self::list_in::<serde_json::Value>(arm, sub, &rtype, service.api_version)
                    .await
                {
                    Ok(resources) => add_targets(&mut inv, service, &resources),
                    Err(e) => {
                        tracing::warn!(subscription = %sub, service = %rtype, error = %e, "Azure targets of this kind unknown");
                        complete = false;
                    }
                }
            }
            if complete {
                listed.push(service);
            }
        }
        inv.complete_for.extend(complete_kinds(listed));
        inv
    }

    pub(super) async fn inventory_impl(&self, ctx: &ProviderContext) -> Result<Inventory> {
        let clients = self.clients(ctx).await?;
        let selector = &self.spec.selector;
        let mut selected = Vec::new();
        let mut subs_with_vms = Vec::new();
        for sub in &self.spec.subscriptions {
            let before = selected.len();
            for vm in self.list_vms(&clients, sub).await? {
                let id = vm.resource.id.as_deref().unwrap_or_default();
                let name = vm.resource.name.as_deref().unwrap_or_default();
                let state = power_state(&vm);
                let tags = tag_map(vm.resource.tags.as_ref());
                if selects(selector, id, name, state.as_deref(), &tags) {
                    selected.push(vm);
                }
            }
            if selected.len() > before {
                subs_with_vms.push(sub.as_str());
            }
        }
        let view = if selected.is_empty() {
            NetworkView::default()
        } else {
            self.network_view(&clients.arm, &subs_with_vms).await?
        };
        let mut machines: Vec<InventoryMachine> = selected
            .iter()
            .filter_map(|vm| machine(vm, &view))
            .collect();
        machines.sort_by_key(|a| a.id.to_ascii_lowercase());
        let targets = self.targets(&clients.arm).await;
        Ok(Inventory { machines, targets })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A VM as ARM lists it with `statusOnly=true`.
    pub(crate) fn vm(power: &str) -> VirtualMachine {
        serde_json::from_value(json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/web-1",
            "name": "web-1",
            "type": "Microsoft.Compute/virtualMachines",
            "location": "eastus",
            "tags": {"env": "prod", "team": "web"},
            "properties": {
                "storageProfile": {
                    "osDisk": {"osType": "Linux", "name": "os", "createOption": "FromImage",
                               "diskSizeGB": 30,
                               "managedDisk": {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/os"}},
                    "dataDisks": [
                        {"lun": 2, "name": "d2", "createOption": "Attach", "diskSizeGB": 4,
                         "managedDisk": {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/disks/d2"}},
                        {"lun": 0, "name": "d0", "createOption": "Attach",
                         "vhd": {"uri": "https://acct.blob.core.windows.net/vhds/d0.vhd?sig=x"}},
                    ],
                },
                "networkProfile": {"networkInterfaces": [{"id": "/nic-1"}]},
                "instanceView": {"statuses": [
                    {"code": "ProvisioningState/succeeded"},
                    {"code": format!("PowerState/{power}")},
                ]},
            },
        }))
        .unwrap()
    }

    #[test]
    fn machine_fields_and_disk_order() {
        let m = machine(&vm("running"), &NetworkView::default()).unwrap();
        assert_eq!(m.name, "web-1");
        assert_eq!(m.region.as_deref(), Some("eastus"));
        assert_eq!(m.platform.as_deref(), Some("linux"));
        assert_eq!(m.state.as_deref(), Some("running"));
        let devices: Vec<_> = m.disks.iter().map(|d| d.device.clone().unwrap()).collect();
        assert_eq!(devices, ["os", "lun0", "lun2"]);
        assert!(m.disks[0].id.ends_with("/disks/os"));
        assert_eq!(m.disks[0].size_bytes, Some(30 << 30));
        assert_eq!(m.disks[0].unsupported, None);
        // The unmanaged VHD: reported, not scanned, its URI without a query.
        assert_eq!(
            m.disks[1].id,
            "https://acct.blob.core.windows.net/vhds/d0.vhd"
        );
        assert!(
            m.disks[1]
                .unsupported
                .as_deref()
                .unwrap()
                .starts_with("unmanaged VHD")
        );
        assert_eq!(nic_ids(&vm("running")), ["/nic-1"]);
        assert_eq!(
            power_state(&vm("deallocated")).as_deref(),
            Some("deallocated")
        );
    }

    #[test]
    fn selection_by_ids_names_states_and_tags() {
        let v = vm("running");
        let id = v.resource.id.clone().unwrap();
        let tags = tag_map(v.resource.tags.as_ref());
        let sel = |ids: &[&str], states: &[&str], tags: &[(&str, &str)], ex: &[(&str, &str)]| {
            InstanceSelector {
                ids: ids.iter().map(|s| (*s).into()).collect(),
                states: states.iter().map(|s| (*s).into()).collect(),
                tags: tags
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                exclude_tags: ex.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            }
        };
        let run = Some("running");
        assert!(selects(&sel(&[], &[], &[], &[]), &id, "web-1", run, &tags));
        assert!(selects(
            &sel(&["WEB-1"], &[], &[], &[]),
            &id,
            "web-1",
            run,
            &tags
        ));
        assert!(selects(
            &sel(&[&id.to_uppercase()], &[], &[], &[]),
            &id,
            "web-1",
            run,
            &tags
        ));
        assert!(!selects(
            &sel(&["web-2"], &[], &[], &[]),
            &id,
            "web-1",
            run,
            &tags
        ));
        assert!(!selects(
            &sel(&[], &[], &[], &[]),
            &id,
            "web-1",
            Some("deallocated"),
            &tags
        ));
        assert!(selects(
            &sel(&[], &["deallocated"], &[], &[]),
            &id,
            "web-1",
            Some("deallocated"),
            &tags
        ));
        assert!(selects(
            &sel(&[], &[], &[("team", "*")], &[]),
            &id,
            "web-1",
            run,
            &tags
        ));
        assert!(!selects(
            &sel(&[], &[], &[("env", "dev")], &[]),
            &id,
            "web-1",
            run,
            &tags
        ));
        assert!(!selects(
            &sel(&[], &[], &[], &[("env", "*")]),
            &id,
            "web-1",
            run,
            &tags
        ));
    }
}
