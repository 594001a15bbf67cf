//! PLACEHOLDER (to be replaced at merge by the network helper's module): the Azure data services
//! whose resources secrets may open, and how their listings become targets.

use snapsentry_crds::TargetKind;

/// One listed data service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataService {
    /// `Microsoft.Storage`.
    pub provider: &'static str,
    /// `storageAccounts`.
    pub resource_type: &'static str,
    pub api_version: &'static str,
    /// The target kind its resources are.
    pub kind: TargetKind,
}

/// The services listed for targets.
pub const DATA_SERVICES: &[DataService] = &[DataService {
    provider: "Microsoft.Storage",
    resource_type: "storageAccounts",
    api_version: "2023-05-01",
    kind: TargetKind::StorageAccount,
}];

/// Record the listed resources (raw ARM bodies) of one service into the inventory.
pub fn add_targets(
    inv: &mut crate::TargetInventory,
    service: &DataService,
    resources: &[serde_json::Value],
) {
    for r in resources {
        if let Some(name) = r["name"].as_str() {
            inv.insert(service.kind, name);
        }
    }
}
