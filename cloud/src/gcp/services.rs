//! Target resources of the listed projects: Cloud SQL instances (by name, connection name
//! `project:region:instance` and IP address, kind `sql-database`). A project whose listing fails
//! is logged, never failing the inventory. The kind is never marked complete: it is shared with
//! Azure SQL and other servers, which a GCP listing cannot rule out.
//!
//! GCS buckets are not recorded yet: the engine has no target kind for a bucket named by a GCS
//! URL (`s3-bucket` is Amazon's).

use snapsentry_crds::TargetKind;

use super::rest::Gcp;
use crate::targets::TargetInventory;

/// The names a Cloud SQL instance body is known by.
pub fn sql_names(instance: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = ["name", "connectionName"]
        .iter()
        .filter_map(|f| instance[f].as_str().map(str::to_owned))
        .collect();
    names.extend(
        instance["ipAddresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["ipAddress"].as_str().map(str::to_owned)),
    );
    names
}

/// The targets of `projects`.
pub(super) async fn targets(gcp: &Gcp, projects: &[String]) -> TargetInventory {
    let mut inv = TargetInventory::default();
    for project in projects {
        let url = gcp.sql_url(&format!("projects/{project}/instances"));
        match gcp.list(&url, &[], "sqlInstances.list").await {
            Ok(instances) => {
                for name in instances.iter().flat_map(sql_names) {
                    inv.insert(TargetKind::SqlDatabase, &name);
                }
            }
            Err(e) => {
                tracing::warn!(%project, error = %e, "Cloud SQL instances not listed");
            }
        }
    }
    inv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_instances_by_name_connection_name_and_ip() {
        let body = serde_json::json!({"name": "orders", "connectionName": "p:us-central1:orders",
            "ipAddresses": [{"type": "PRIMARY", "ipAddress": "203.0.113.9"}]});
        assert_eq!(
            sql_names(&body),
            ["orders", "p:us-central1:orders", "203.0.113.9"]
        );
    }
}
