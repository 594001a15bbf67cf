//! Whether the scanner's cluster can read what the policy's providers make: a `gcp` provider's
//! disks reach the scanner Job only through the cluster's Compute Engine persistent-disk CSI
//! driver, in a zone where the scanner's nodes run. A policy whose cluster is not in GCP (no
//! such driver) or that names no scanner zone is told so in its status before any scan starts,
//! instead of every machine failing later on an unattachable volume.

use k8s_openapi::api::storage::v1::CSIDriver;
use kube::Api;
use snapsentry_cloud::gcp::CSI_DRIVER;
use snapsentry_crds::ScanPolicySpec;

use crate::error::Result;

/// The condition reason when the cluster cannot attach a `gcp` provider's disks.
pub const REASON: &str = "ScannerNotInGcp";

/// What the cluster lacks for the policy's `gcp` providers (`None`: nothing, or no `gcp`
/// provider), given whether the cluster has the [`CSI_DRIVER`] CSIDriver object.
pub fn missing(spec: &ScanPolicySpec, has_csi_driver: bool) -> Option<String> {
    let mut lacks = Vec::new();
    let mut any = false;
    for (index, provider) in spec.providers.iter().enumerate() {
        let Some(gcp) = &provider.gcp else { continue };
        any = true;
        if gcp.scanner_zones.is_empty() {
            lacks.push(format!(
                "providers[{index}].gcp has no scannerZones configured (the zones where the \
                 scanner's nodes run, where the disks to read are made)"
            ));
        }
    }
    if any && !has_csi_driver {
        lacks.push(format!(
            "the cluster has no CSIDriver {CSI_DRIVER} (the Compute Engine persistent-disk CSI \
             driver, present on GKE): the scanner's cluster must run in GCP to read GCP disks"
        ));
    }
    (!lacks.is_empty()).then(|| lacks.join("; "))
}

/// [`missing`] for `spec`, reading the CSIDriver object only when a `gcp` provider needs it.
pub async fn check(client: &kube::Client, spec: &ScanPolicySpec) -> Result<Option<String>> {
    if spec.providers.iter().all(|p| p.gcp.is_none()) {
        return Ok(None);
    }
    let drivers: Api<CSIDriver> = Api::all(client.clone());
    let has = drivers.get_opt(CSI_DRIVER).await?.is_some();
    Ok(missing(spec, has))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(zones: &[&str]) -> ScanPolicySpec {
        serde_json::from_value(serde_json::json!({
            "providers": [{"gcp": {"projects": ["p"], "scannerZones": zones}}]
        }))
        .unwrap()
    }

    #[test]
    fn a_gcp_provider_needs_a_scanner_zone_and_the_csi_driver() {
        assert_eq!(missing(&spec(&["europe-west1-b"]), true), None);
        let no_zone = missing(&spec(&[]), true).unwrap();
        assert!(
            no_zone.contains("providers[0].gcp has no scannerZones"),
            "{no_zone}"
        );
        let no_driver = missing(&spec(&["europe-west1-b"]), false).unwrap();
        assert!(
            no_driver.contains("no CSIDriver pd.csi.storage.gke.io")
                && !no_driver.contains("scannerZones"),
            "{no_driver}"
        );
        let both = missing(&spec(&[]), false).unwrap();
        assert!(
            both.contains("scannerZones") && both.contains("CSIDriver"),
            "{both}"
        );
    }

    #[test]
    fn other_providers_need_neither() {
        let s: ScanPolicySpec = serde_json::from_value(serde_json::json!({
            "providers": [{"images": {"machines": []}}]
        }))
        .unwrap();
        assert_eq!(missing(&s, false), None);
    }
}
