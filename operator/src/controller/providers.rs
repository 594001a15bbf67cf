//! A policy's providers: built once per reconcile from `spec.providers[]` (one list, indexed
//! like the spec) and cached across reconciles in the controller [`Context`](super::Context),
//! so a provider's cloud clients (and the credentials they read) are made once, not once per
//! call or per machine.
//!
//! The cache is keyed by policy namespace, policy name and provider index. An entry is rebuilt
//! when the serialized `spec.providers[i]` differs from the one it was built from, dropped when
//! the policy has fewer providers or is deleted, and dropped with all of the policy's entries
//! after a provider failure ([`ProviderCache::forget`]), so fixed or rotated credentials are
//! read again at the next attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use snapsentry_crds::ProviderSpec;

use crate::error::{Error, Result};
use snapsentry_cloud::{Error as CloudError, Provider, from_spec};

/// A provider behind the cache, shared by the reconciles of its policy.
pub type SharedProvider = Arc<dyn Provider>;

/// (policy namespace, policy name, index in `spec.providers`).
type Key = (String, String, usize);

/// One built provider and the serialized spec it was built from.
struct Cached {
    spec: String,
    provider: SharedProvider,
}

/// Providers of every policy the controller reconciles, across reconciles.
#[derive(Default)]
pub struct ProviderCache {
    entries: Mutex<HashMap<Key, Cached>>,
}

impl std::fmt::Debug for ProviderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderCache")
            .field("entries", &self.len())
            .finish()
    }
}

impl ProviderCache {
    /// The providers of policy `namespace/name` with `specs`: cached ones whose spec did not
    /// change, new ones for the others. An entry this build cannot run keeps its error.
    pub fn providers(
        &self,
        namespace: &str,
        name: &str,
        specs: &[ProviderSpec],
    ) -> Result<Providers> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(ns, n, i), _| !(ns == namespace && n == name && *i >= specs.len()));
        let mut built = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let key = (namespace.to_owned(), name.to_owned(), index);
            let serialized = serde_json::to_string(spec)?;
            if let Some(cached) = entries.get(&key).filter(|c| c.spec == serialized) {
                built.push(Ok(cached.provider.clone()));
                continue;
            }
            match from_spec(spec) {
                Ok(p) => {
                    let provider: SharedProvider = Arc::from(p);
                    entries.insert(
                        key,
                        Cached {
                            spec: serialized,
                            provider: provider.clone(),
                        },
                    );
                    built.push(Ok(provider));
                }
                Err(e) => {
                    entries.remove(&key);
                    built.push(Err(e));
                }
            }
        }
        Ok(Providers { built })
    }

    /// Drop the providers of policy `namespace/name` (deleted, or a provider failed).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(ns, n, _), _| !(ns == namespace && n == name));
    }

    /// How many providers are cached.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no provider is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One policy's providers in one reconcile, indexed like `spec.providers`.
pub struct Providers {
    built: Vec<Result<SharedProvider, CloudError>>,
}

impl Providers {
    /// Provider `index`, or why it cannot be used (not in the spec, not in this build).
    pub fn get(&self, index: usize) -> Result<&SharedProvider> {
        match self.built.get(index) {
            Some(Ok(p)) => Ok(p),
            Some(Err(e)) => Err(again(e)),
            None => Err(Error::MissingField {
                kind: "ScanPolicy",
                field: "spec.providers",
            }),
        }
    }

    /// How many entries `spec.providers` has.
    pub fn len(&self) -> usize {
        self.built.len()
    }

    /// Whether `spec.providers` is empty.
    pub fn is_empty(&self) -> bool {
        self.built.is_empty()
    }

    /// The providers this build can run, with their index; the others never created anything.
    pub fn available(&self) -> impl Iterator<Item = (usize, &SharedProvider)> {
        self.built
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some((i, p.as_ref().ok()?)))
    }
}

/// The error of an entry that could not be built, for each use of it (errors are not `Clone`;
/// building a provider only fails with [`CloudError::Provider`]).
fn again(e: &CloudError) -> Error {
    Error::from(match e {
        CloudError::Provider { provider, message } => CloudError::Provider {
            provider,
            message: message.clone(),
        },
        other => CloudError::Provider {
            provider: "unknown",
            message: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use snapsentry_crds::ImagesProvider;

    use super::*;

    fn images(pvc: Option<&str>) -> ProviderSpec {
        ProviderSpec {
            aws: None,
            azure: None,
            gcp: None,
            images: Some(ImagesProvider {
                persistent_volume_claim: pvc.map(str::to_owned),
                machines: vec![],
            }),
        }
    }

    /// An entry naming no provider.
    fn none() -> ProviderSpec {
        ProviderSpec {
            images: None,
            ..images(None)
        }
    }

    #[test]
    fn providers_are_reused_until_their_spec_changes() {
        let cache = ProviderCache::default();
        let specs = [images(Some("a")), images(Some("b"))];
        let first = cache.providers("ns", "p", &specs).unwrap();
        let again = cache.providers("ns", "p", &specs).unwrap();
        assert_eq!(first.len(), 2);
        for i in 0..2 {
            assert!(Arc::ptr_eq(first.get(i).unwrap(), again.get(i).unwrap()));
        }
        // Only the changed entry is rebuilt.
        let changed = cache
            .providers("ns", "p", &[images(Some("a")), images(Some("c"))])
            .unwrap();
        assert!(Arc::ptr_eq(first.get(0).unwrap(), changed.get(0).unwrap()));
        assert!(!Arc::ptr_eq(first.get(1).unwrap(), changed.get(1).unwrap()));
        // Another policy with the same spec has its own.
        let other = cache.providers("ns", "q", &specs).unwrap();
        assert!(!Arc::ptr_eq(first.get(0).unwrap(), other.get(0).unwrap()));
        assert_eq!(cache.len(), 4);
    }

    #[test]
    fn entries_go_with_the_spec_and_the_policy() {
        let cache = ProviderCache::default();
        cache
            .providers("ns", "p", &[images(None), images(Some("b"))])
            .unwrap();
        cache.providers("ns", "q", &[images(None)]).unwrap();
        let fewer = cache.providers("ns", "p", &[images(None)]).unwrap();
        assert_eq!(cache.len(), 2);
        assert!(fewer.get(1).is_err());
        cache.forget("ns", "p");
        assert_eq!(cache.len(), 1);
        cache.forget("ns", "q");
        assert!(cache.is_empty());
    }

    #[test]
    fn unavailable_providers_keep_their_error() {
        let cache = ProviderCache::default();
        let providers = cache.providers("ns", "p", &[none(), images(None)]).unwrap();
        for _ in 0..2 {
            assert_eq!(
                providers.get(0).err().unwrap().to_string(),
                "provider none: set exactly one of aws, azure, gcp, images"
            );
        }
        assert!(providers.get(0).err().unwrap().is_provider());
        let available: Vec<usize> = providers.available().map(|(i, _)| i).collect();
        assert_eq!(available, [1]);
        assert_eq!(cache.len(), 1);
    }
}
