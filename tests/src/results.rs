//! A scan's results as the cloud fleet tests (`operator_aws`, `operator_azure`, `operator_gcp`)
//! read them back from a [`World`].

use std::collections::BTreeMap;

use kube::ResourceExt;
use snapsentry_crds::{ScanPolicy, ScannedMachine};

use crate::world::{Cloud, Error, World};

/// The world's ScannedMachines by display name (the instance's name in its cloud).
pub async fn machines_by_name<C: Cloud>(
    w: &World<C>,
) -> Result<BTreeMap<String, ScannedMachine>, Error> {
    Ok(w.machines()
        .await?
        .into_values()
        .map(|m| (m.spec.display_name.clone().unwrap_or_default(), m))
        .collect())
}

/// The value of the label `key` of `o`.
pub fn label<'a>(o: &'a impl ResourceExt, key: &str) -> Option<&'a str> {
    o.labels().get(key).map(String::as_str)
}

/// (total, scanned, failed) machines of the policy's last scan, once it has counts.
pub fn machine_counts(p: &ScanPolicy) -> Option<(u32, u32, u32)> {
    let c = p.status.as_ref()?.machines.as_ref()?;
    Some((c.total, c.scanned, c.failed))
}
