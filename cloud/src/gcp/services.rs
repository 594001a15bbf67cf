//! Target resources of the listed projects: Cloud SQL instances (by name, connection name
//! `project:region:instance` and IP address, kind `sql-database`) and Cloud Storage buckets (by
//! name, kind `gcs-bucket`). A project whose listing fails is logged, never failing the
//! inventory. Neither kind is marked complete: `sql-database` is shared with Azure SQL and other
//! servers, and a bucket name is global, so a bucket of a project the policy does not list may
//! be the one a secret opens.

use snapsentry_crds::TargetKind;

use super::rest::Rest;
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
pub(super) async fn targets(rest: &Rest, projects: &[String]) -> TargetInventory {
    let mut inv = TargetInventory::default();
    for project in projects {
        let url = rest.sql_url(&format!("projects/{project}/instances"));
        match rest.list(&url, &[], "sqlInstances.list").await {
            Ok(instances) => {
                for name in instances.iter().flat_map(sql_names) {
                    inv.insert(TargetKind::SqlDatabase, &name);
                }
            }
            Err(e) => {
                tracing::warn!(%project, error = %e, "Cloud SQL instances not listed");
            }
        }
        let url = rest.storage_url("b");
        match rest
            .list(&url, &[("project", project)], "buckets.list")
            .await
        {
            Ok(buckets) => {
                for name in buckets.iter().filter_map(|b| b["name"].as_str()) {
                    inv.insert(TargetKind::GcsBucket, name);
                }
            }
            Err(e) => {
                tracing::warn!(%project, error = %e, "Cloud Storage buckets not listed");
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

    #[test]
    fn engine_targets_of_signed_urls_are_listed_buckets() {
        let engine = snapsentry_engine::Engine::new(snapsentry_engine::EngineConfig::with_key(
            b"k".to_vec(),
        ))
        .unwrap();
        let signature = "08e800ad0967ea4a2ff13b6a6b0b90894d0a5c325766db843178fce323f55bda";
        let file = format!(
            "EXPORT_URL=https://storage.googleapis.com/shop-exports/orders.csv?X-Goog-Algorithm=\
             GOOG4-RSA-SHA256&X-Goog-Date=20250101T000000Z&X-Goog-Expires=900&\
             X-Goog-SignedHeaders=host&X-Goog-Signature={signature}{signature}\n"
        );
        let scan = engine.scan("/srv/app/.env", file.as_bytes());
        let targets: Vec<(TargetKind, String)> = scan
            .findings
            .iter()
            .filter_map(|f| f.metadata.target.clone())
            .filter_map(|t| Some((TargetKind::from(t.kind), t.name?)))
            .collect();
        assert_eq!(
            targets,
            [(TargetKind::GcsBucket, "shop-exports".to_owned())],
            "{:?}",
            scan.findings
        );
        let mut inv = TargetInventory::default();
        inv.insert(TargetKind::GcsBucket, "shop-exports");
        assert_eq!(inv.exists(targets[0].0, &targets[0].1), Some(true));
    }
}
