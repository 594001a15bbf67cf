//! The Azure data services a secret can open, as targets of the inventory: storage accounts,
//! Azure SQL servers, PostgreSQL and MySQL flexible servers, Cosmos DB accounts and Key Vaults.
//!
//! The provider lists each service of [`DATA_SERVICES`] in every subscription
//! (`GET /subscriptions/{id}/providers/{provider}/{resourceType}?api-version={apiVersion}`,
//! following `nextLink`) and hands the raw ARM bodies to [`add_targets`]. Each resource is
//! recorded under the [`TargetKind`] the engine gives a secret naming it, by the names such a
//! secret carries (the account or server name, its endpoint host), so that
//! [`TargetInventory::exists`](crate::TargetInventory::exists) matches the two through
//! [`normalize_target_name`](crate::normalize_target_name):
//!
//! | service | ARM field | kind | a secret names it by |
//! |---|---|---|---|
//! | storage account | `name`, `properties.primaryEndpoints.{blob,file,queue,table,dfs}` | `StorageAccount` | `acct`, `acct.blob.core.windows.net` |
//! | Azure SQL server | `properties.fullyQualifiedDomainName` | `SqlDatabase` | `srv.database.windows.net` |
//! | PostgreSQL / MySQL flexible server | `properties.fullyQualifiedDomainName` | `SqlDatabase` | `srv.postgres.database.azure.com` |
//! | Cosmos DB account | `properties.documentEndpoint` | `Cosmos` | `acct.documents.azure.com` |
//! | Key Vault | `properties.vaultUri` | `Host` | `vault.vault.azure.net` |

use std::collections::BTreeSet;

use serde_json::Value;
use snapsentry_crds::TargetKind;

use crate::TargetInventory;

/// Where a service's resources keep the names a secret would use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameSource {
    /// `name` and the hosts of `properties.primaryEndpoints` (storage accounts).
    StorageEndpoints,
    /// `properties.fullyQualifiedDomainName` (SQL and flexible servers).
    FullyQualifiedDomainName,
    /// The host of `properties.documentEndpoint` (Cosmos DB).
    DocumentEndpoint,
    /// The host of `properties.vaultUri` (Key Vault).
    VaultUri,
}

/// One listable data service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataService {
    /// Resource provider namespace, `Microsoft.Storage`.
    pub provider: &'static str,
    /// Resource type, `storageAccounts`.
    pub resource_type: &'static str,
    /// The api-version the list is asked in.
    pub api_version: &'static str,
    /// The kind its resources are recorded under.
    pub kind: TargetKind,
    /// Where the names are.
    pub names: NameSource,
}

/// The services the provider lists per subscription, each with a generally available
/// api-version.
pub const DATA_SERVICES: &[DataService] = &[
    DataService {
        provider: "Microsoft.Storage",
        resource_type: "storageAccounts",
        api_version: "2023-05-01",
        kind: TargetKind::StorageAccount,
        names: NameSource::StorageEndpoints,
    },
    DataService {
        provider: "Microsoft.Sql",
        resource_type: "servers",
        api_version: "2021-11-01",
        kind: TargetKind::SqlDatabase,
        names: NameSource::FullyQualifiedDomainName,
    },
    DataService {
        provider: "Microsoft.DBforPostgreSQL",
        resource_type: "flexibleServers",
        api_version: "2022-12-01",
        kind: TargetKind::SqlDatabase,
        names: NameSource::FullyQualifiedDomainName,
    },
    DataService {
        provider: "Microsoft.DBforMySQL",
        resource_type: "flexibleServers",
        api_version: "2023-12-30",
        kind: TargetKind::SqlDatabase,
        names: NameSource::FullyQualifiedDomainName,
    },
    DataService {
        provider: "Microsoft.DocumentDB",
        resource_type: "databaseAccounts",
        api_version: "2024-08-15",
        kind: TargetKind::Cosmos,
        names: NameSource::DocumentEndpoint,
    },
    DataService {
        provider: "Microsoft.KeyVault",
        resource_type: "vaults",
        api_version: "2023-07-01",
        kind: TargetKind::Host,
        names: NameSource::VaultUri,
    },
];

/// The storage endpoints a secret may name an account by.
const STORAGE_ENDPOINTS: [&str; 5] = ["blob", "file", "queue", "table", "dfs"];

/// Record the listed resources (raw ARM bodies) of one service into the inventory. Resources
/// without the fields that name them are skipped.
pub fn add_targets(inv: &mut TargetInventory, service: &DataService, resources: &[Value]) {
    for resource in resources {
        for name in names(service.names, resource) {
            inv.insert(service.kind, &name);
        }
    }
}

/// The kinds whose absence a complete listing proves, given the services that were listed
/// completely (in every subscription the policy covers): a kind counts when every service of
/// [`DATA_SERVICES`] recorded under it is among them. `Host` never counts: a Key Vault is only
/// one of the many hosts a secret can name. The provider adds these to
/// [`TargetInventory::complete_for`].
pub fn complete_kinds<'a>(
    listed: impl IntoIterator<Item = &'a DataService>,
) -> BTreeSet<TargetKind> {
    let listed: Vec<&DataService> = listed.into_iter().collect();
    DATA_SERVICES
        .iter()
        .map(|s| s.kind)
        .filter(|&kind| kind != TargetKind::Host)
        .filter(|&kind| {
            DATA_SERVICES
                .iter()
                .filter(|s| s.kind == kind)
                .all(|s| listed.contains(&s))
        })
        .collect()
}

fn names(source: NameSource, resource: &Value) -> Vec<String> {
    let properties = &resource["properties"];
    let name = resource["name"].as_str().filter(|n| !n.is_empty());
    match source {
        NameSource::StorageEndpoints => {
            let Some(name) = name else {
                return Vec::new();
            };
            let endpoints = &properties["primaryEndpoints"];
            let prefix = format!("{}.", name.to_ascii_lowercase());
            let hosts = STORAGE_ENDPOINTS
                .iter()
                .filter_map(|e| endpoints[e].as_str())
                .filter_map(host_of)
                // Emulators (Azurite) serve every account on one address: not a name.
                .filter(|h| h.to_ascii_lowercase().starts_with(&prefix));
            std::iter::once(name.to_owned()).chain(hosts).collect()
        }
        NameSource::FullyQualifiedDomainName => properties["fullyQualifiedDomainName"]
            .as_str()
            .filter(|f| !f.is_empty())
            .or(name)
            .map(str::to_owned)
            .into_iter()
            .collect(),
        NameSource::DocumentEndpoint => properties["documentEndpoint"]
            .as_str()
            .and_then(host_of)
            .or_else(|| name.map(str::to_owned))
            .into_iter()
            .collect(),
        NameSource::VaultUri => properties["vaultUri"]
            .as_str()
            .and_then(host_of)
            .into_iter()
            .collect(),
    }
}

/// `https://acct.blob.core.windows.net:443/path` → `acct.blob.core.windows.net`.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(':').next()?.trim();
    (!host.is_empty()).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(provider: &str, resource_type: &str) -> &'static DataService {
        DATA_SERVICES
            .iter()
            .find(|s| s.provider == provider && s.resource_type == resource_type)
            .unwrap()
    }

    /// Resources shaped like the documented list examples (StorageAccountList.json and the
    /// servers', flexible servers', database accounts' and vaults' list examples).
    fn listed() -> TargetInventory {
        let mut inv = TargetInventory::default();
        add_targets(
            &mut inv,
            service("Microsoft.Storage", "storageAccounts"),
            &[
                json!({"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/prodlogs",
                    "name": "prodlogs", "location": "eastus", "kind": "StorageV2",
                    "properties": {"primaryEndpoints": {
                        "blob": "https://prodlogs.blob.core.windows.net/",
                        "file": "https://prodlogs.file.core.windows.net/",
                        "queue": "https://prodlogs.queue.core.windows.net/",
                        "table": "https://prodlogs.table.core.windows.net/"}}}),
                json!({"name": "devstoreaccount1", "properties": {"primaryEndpoints": {
                    "blob": "http://127.0.0.1:10000/devstoreaccount1"}}}),
                json!({"properties": {}}),
            ],
        );
        add_targets(
            &mut inv,
            service("Microsoft.Sql", "servers"),
            &[json!({"name": "prod-sql", "properties": {
                "fullyQualifiedDomainName": "prod-sql.database.windows.net"}})],
        );
        add_targets(
            &mut inv,
            service("Microsoft.DBforPostgreSQL", "flexibleServers"),
            &[json!({"name": "orders-pg", "properties": {
                "fullyQualifiedDomainName": "orders-pg.postgres.database.azure.com"}})],
        );
        add_targets(
            &mut inv,
            service("Microsoft.DBforMySQL", "flexibleServers"),
            &[json!({"name": "shop-mysql", "properties": {
                "fullyQualifiedDomainName": "shop-mysql.mysql.database.azure.com"}})],
        );
        add_targets(
            &mut inv,
            service("Microsoft.DocumentDB", "databaseAccounts"),
            &[json!({"name": "catalog", "properties": {
                "documentEndpoint": "https://catalog.documents.azure.com:443/"}})],
        );
        add_targets(
            &mut inv,
            service("Microsoft.KeyVault", "vaults"),
            &[json!({"name": "prod-kv", "properties": {
                "vaultUri": "https://prod-kv.vault.azure.net/"}})],
        );
        inv
    }

    #[test]
    fn listed_resources_are_found_by_the_names_secrets_carry() {
        let inv = listed();
        let yes = [
            (TargetKind::StorageAccount, "prodlogs"),
            (TargetKind::StorageAccount, "ProdLogs.blob.core.windows.net"),
            (TargetKind::StorageAccount, "devstoreaccount1"),
            (TargetKind::SqlDatabase, "prod-sql"),
            (TargetKind::SqlDatabase, "prod-sql.database.windows.net"),
            (TargetKind::SqlDatabase, "orders-pg"),
            (
                TargetKind::SqlDatabase,
                "orders-pg.postgres.database.azure.com",
            ),
            (
                TargetKind::SqlDatabase,
                "shop-mysql.mysql.database.azure.com",
            ),
            (TargetKind::Cosmos, "catalog"),
            (TargetKind::Cosmos, "catalog.documents.azure.com"),
            (TargetKind::Host, "prod-kv"),
            (TargetKind::Host, "prod-kv.vault.azure.net"),
        ];
        for (kind, name) in yes {
            assert_eq!(inv.exists(kind, name), Some(true), "{kind:?} {name}");
        }
        // The emulator's address is not recorded as an account.
        assert_eq!(inv.exists(TargetKind::StorageAccount, "127.0.0.1"), None);
        assert_eq!(inv.exists(TargetKind::SqlDatabase, "other-pg"), None);
    }

    #[test]
    fn complete_listings_prove_absence_per_kind() {
        let all: Vec<&DataService> = DATA_SERVICES.iter().collect();
        let kinds = complete_kinds(all.iter().copied());
        assert_eq!(
            kinds,
            BTreeSet::from([
                TargetKind::StorageAccount,
                TargetKind::SqlDatabase,
                TargetKind::Cosmos
            ])
        );
        // MySQL flexible servers failed to list: SQL-kind absence proves nothing.
        let partial = all
            .iter()
            .copied()
            .filter(|s| s.provider != "Microsoft.DBforMySQL");
        assert!(!complete_kinds(partial).contains(&TargetKind::SqlDatabase));
        let mut inv = listed();
        inv.complete_for.extend(kinds);
        assert_eq!(inv.exists(TargetKind::SqlDatabase, "gone-pg"), Some(false));
        assert_eq!(inv.exists(TargetKind::Host, "gone-kv"), None);
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(
            host_of("https://a.blob.core.windows.net:443/c?x=1").as_deref(),
            Some("a.blob.core.windows.net")
        );
        assert_eq!(
            host_of("a.vault.azure.net").as_deref(),
            Some("a.vault.azure.net")
        );
        assert_eq!(host_of("https:///"), None);
    }

    /// A connection string on disk and the listed resource meet: the engine's target of the
    /// secret, taken as the scanner Job takes it (its name, else its host), exists.
    #[test]
    fn engine_targets_of_connection_strings_exist_in_the_inventory() {
        let engine = snapsentry_engine::Engine::new(snapsentry_engine::EngineConfig::with_key(
            b"k".to_vec(),
        ))
        .unwrap();
        // An account key: 86 base64 characters and `==`, not a pattern.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut state: u32 = 0x9e37_79b9;
        let key: String = (0..86)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                char::from(alphabet[(state >> 26) as usize])
            })
            .chain("==".chars())
            .collect();
        let files = [
            format!(
                "DefaultEndpointsProtocol=https;AccountName=prodlogs;AccountKey={key};EndpointSuffix=core.windows.net\n"
            ),
            "Server=tcp:prod-sql.database.windows.net,1433;Initial Catalog=app;User ID=app;Password=Wq8#zLm2Rt5vXy;\n"
                .to_owned(),
            "Host=orders-pg.postgres.database.azure.com;Database=orders;Username=app;Password=Vb7kP2qLs9Xr;\n"
                .to_owned(),
            // (`AccountEndpoint=https://catalog.documents.azure.com…;AccountKey=…` is reported
            // by the engine as a storage account key without a target, so the Mongo form.)
            format!(
                "mongodb://catalog:{key}@catalog.mongo.cosmos.azure.com:10255/?ssl=true&replicaSet=globaldb\n"
            ),
        ];
        let inv = listed();
        for file in files {
            let scan = engine.scan("/srv/app/appsettings.conf", file.as_bytes());
            let targets: Vec<(TargetKind, String)> = scan
                .findings
                .iter()
                .filter_map(|f| f.metadata.target.clone())
                .filter_map(|t| Some((TargetKind::from(t.kind), t.name.or(t.host)?)))
                .collect();
            assert!(
                !targets.is_empty(),
                "no target in {file}: {:?}",
                scan.findings
            );
            for (kind, name) in targets {
                assert_eq!(inv.exists(kind, &name), Some(true), "{kind:?} {name}");
            }
        }
    }
}
