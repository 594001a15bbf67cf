//! Target resources known from the inventory: does the database or storage account a secret
//! names exist?

use std::collections::BTreeSet;

use snapsentry_crds::TargetKind;

/// Resources a provider listed, for checking the targets named by secrets.
///
/// `known` holds (kind, name) pairs as the inventory reports them; `complete_for` holds the kinds
/// whose listing was complete (every region, every account the policy covers), so that a name
/// absent from `known` is known not to exist. For other kinds absence means "unknown".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetInventory {
    pub known: BTreeSet<(TargetKind, String)>,
    pub complete_for: BTreeSet<TargetKind>,
}

impl TargetInventory {
    /// Record a resource; the name is normalised like the names secrets carry.
    pub fn insert(&mut self, kind: TargetKind, name: &str) {
        self.known.insert((kind, normalize_target_name(kind, name)));
    }

    /// Merge another provider's inventory into this one.
    pub fn extend(&mut self, other: TargetInventory) {
        for (kind, name) in other.known {
            self.insert(kind, &name);
        }
        self.complete_for.extend(other.complete_for);
    }

    /// `Some(true)` when the resource is in the inventory, `Some(false)` when its kind was listed
    /// completely and it is not there, `None` when nobody can tell.
    pub fn exists(&self, kind: TargetKind, name: &str) -> Option<bool> {
        let name = normalize_target_name(kind, name);
        if self.known.contains(&(kind, name.clone()))
            || self
                .known
                .iter()
                .any(|(k, n)| *k == kind && normalize_target_name(kind, n) == name)
        {
            Some(true)
        } else if self.complete_for.contains(&kind) {
            Some(false)
        } else {
            None
        }
    }

    /// Whether a check of this kind can say anything at all.
    pub fn covers(&self, kind: TargetKind) -> bool {
        self.complete_for.contains(&kind) || self.known.iter().any(|(k, _)| *k == kind)
    }
}

/// The name a resource is compared by: lowercase without a trailing dot; an Azure resource named
/// by its host name compares by its first label, as the inventory lists it and as secrets name
/// it: a storage account (`acct.blob.core.windows.net`), an Azure SQL server
/// (`srv.database.windows.net`), a PostgreSQL or MySQL flexible server
/// (`srv.postgres.database.azure.com`), a Cosmos DB account (`acct.documents.azure.com`), a Key
/// Vault (`kv.vault.azure.net`, kind `Host`) — in the public cloud, Azure Government and Azure
/// China.
pub fn normalize_target_name(kind: TargetKind, name: &str) -> String {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let first_label = |suffixes: &[&str]| -> Option<String> {
        suffixes
            .iter()
            .any(|s| name.ends_with(s))
            .then(|| name.split('.').next().unwrap_or_default().to_owned())
    };
    let suffixes: &[&str] = match kind {
        TargetKind::StorageAccount => &[
            ".core.windows.net",
            ".core.usgovcloudapi.net",
            ".core.chinacloudapi.cn",
        ],
        TargetKind::SqlDatabase => &[
            ".database.windows.net",
            ".database.azure.com",
            ".database.usgovcloudapi.net",
            ".database.chinacloudapi.cn",
        ],
        TargetKind::Cosmos => &[
            ".documents.azure.com",
            ".documents.azure.us",
            ".documents.azure.cn",
            ".cosmos.azure.com",
        ],
        TargetKind::Host => &[
            ".vault.azure.net",
            ".vault.usgovcloudapi.net",
            ".vault.azure.cn",
        ],
        _ => &[],
    };
    first_label(suffixes).unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exists_is_true_false_or_unknown() {
        let mut inv = TargetInventory::default();
        inv.insert(TargetKind::Rds, "db1.abc.us-east-1.rds.amazonaws.com");
        inv.insert(TargetKind::StorageAccount, "MyStorage");
        inv.complete_for.insert(TargetKind::Rds);

        assert_eq!(
            inv.exists(TargetKind::Rds, "DB1.abc.us-east-1.rds.amazonaws.com."),
            Some(true)
        );
        assert_eq!(
            inv.exists(TargetKind::Rds, "db2.abc.us-east-1.rds.amazonaws.com"),
            Some(false)
        );
        assert_eq!(
            inv.exists(
                TargetKind::StorageAccount,
                "mystorage.blob.core.windows.net"
            ),
            Some(true)
        );
        // Storage accounts were not listed completely: absence proves nothing.
        assert_eq!(inv.exists(TargetKind::StorageAccount, "other"), None);
        assert_eq!(
            inv.exists(TargetKind::SqlDatabase, "srv.database.windows.net"),
            None
        );
        assert!(inv.covers(TargetKind::StorageAccount));
        assert!(!inv.covers(TargetKind::SqlDatabase));
    }

    #[test]
    fn sql_server_host_names_compare_by_server() {
        let mut inv = TargetInventory::default();
        inv.insert(TargetKind::SqlDatabase, "prod-sql");
        assert_eq!(
            inv.exists(TargetKind::SqlDatabase, "prod-sql.database.windows.net"),
            Some(true)
        );
    }

    #[test]
    fn azure_host_names_compare_by_resource_name() {
        let cases = [
            (
                TargetKind::SqlDatabase,
                "Orders-PG.postgres.database.azure.com",
                "orders-pg",
            ),
            (
                TargetKind::SqlDatabase,
                "shop.mysql.database.azure.com.",
                "shop",
            ),
            (
                TargetKind::SqlDatabase,
                "gov.database.usgovcloudapi.net",
                "gov",
            ),
            (
                TargetKind::SqlDatabase,
                "cn.postgres.database.chinacloudapi.cn",
                "cn",
            ),
            (
                TargetKind::StorageAccount,
                "acct.blob.core.chinacloudapi.cn",
                "acct",
            ),
            (TargetKind::Cosmos, "catalog.documents.azure.com", "catalog"),
            (TargetKind::Host, "prod-kv.vault.azure.net", "prod-kv"),
            // Other hosts keep their full name.
            (
                TargetKind::Host,
                "db.internal.example.com",
                "db.internal.example.com",
            ),
            (
                TargetKind::Rds,
                "db1.abc.us-east-1.rds.amazonaws.com",
                "db1.abc.us-east-1.rds.amazonaws.com",
            ),
        ];
        for (kind, name, expected) in cases {
            assert_eq!(normalize_target_name(kind, name), expected, "{name}");
        }
    }
}
