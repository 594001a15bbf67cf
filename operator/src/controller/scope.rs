//! A policy in one reconcile: its name, namespace, APIs, label selectors and providers, and the
//! list/apply/patch/delete helpers every step of the reconcile uses.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use snapsentry_crds::contract;
use snapsentry_crds::{ScanPolicy, ScannedMachine, labels};

use super::Context;
use super::inventory::provider_index;
use super::providers::{Providers, SharedProvider};
use crate::correlate::slugify;
use crate::error::{Error, Result};
use snapsentry_cloud::ProviderContext;

/// Objects per list request: a policy's findings are listed in pages, never in one response.
pub const LIST_PAGE: u32 = 500;

/// Characters of an Event's note the API server accepts.
const MAX_EVENT_NOTE: usize = 1024;

/// A policy's namespace (policies are namespaced; one without is an error).
pub fn namespace_of(policy: &ScanPolicy) -> Result<String> {
    policy.namespace().ok_or(Error::MissingField {
        kind: "ScanPolicy",
        field: "metadata.namespace",
    })
}

/// A policy's name, namespace, APIs and providers.
pub(super) struct Scope<'a> {
    pub(super) policy: &'a ScanPolicy,
    pub(super) name: String,
    pub(super) namespace: String,
    pub(super) ctx: &'a Context,
    /// `spec.providers`, built (or taken from the controller's cache) once per reconcile.
    pub(super) providers: Providers,
}

impl<'a> Scope<'a> {
    pub(super) fn new(policy: &'a ScanPolicy, ctx: &'a Context) -> Result<Self> {
        let namespace = namespace_of(policy)?;
        let name = policy.name_any();
        let providers = ctx
            .providers
            .providers(&namespace, &name, &policy.spec.providers)?;
        Ok(Self {
            policy,
            name,
            namespace,
            ctx,
            providers,
        })
    }

    /// An API of the policy's namespace.
    pub(super) fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    /// Scanner Jobs, in the operator's namespace.
    pub(super) fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.ctx.client.clone(), &self.ctx.config.namespace)
    }

    /// Scanner Jobs' grant Secrets, in the operator's namespace (see [`super::grants`]).
    pub(super) fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.ctx.client.clone(), &self.ctx.config.namespace)
    }

    /// Scanner Jobs' block volumes (cluster-scoped; see [`super::volumes`]).
    pub(super) fn persistent_volumes(&self) -> Api<PersistentVolume> {
        Api::all(self.ctx.client.clone())
    }

    /// The claims of scanner Jobs' block volumes, in the operator's namespace.
    pub(super) fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.ctx.client.clone(), &self.ctx.config.namespace)
    }

    /// The policy's objects (ScannedMachines, findings, AttackPaths, Recommendations).
    pub(super) fn policy_selector(&self) -> String {
        format!("{}={}", labels::POLICY, slugify(&self.name))
    }

    /// The policy's Jobs, of one scan or of all.
    pub(super) fn job_selector(&self, scan_id: Option<&str>) -> String {
        let mut s = format!(
            "{},{}={}",
            self.policy_selector(),
            labels::POLICY_NAMESPACE,
            slugify(&self.namespace)
        );
        if let Some(id) = scan_id {
            s.push_str(&format!(",{}={}", labels::SCAN_ID, slugify(id)));
        }
        s
    }

    /// `namespace/name`, the policy's key in per-policy metrics.
    pub(super) fn policy_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// What provider calls for this policy need.
    pub(super) fn provider_ctx(&self) -> ProviderContext {
        ProviderContext {
            policy: self.name.clone(),
            namespace: self.namespace.clone(),
            client: Some(self.ctx.client.clone()),
        }
    }

    /// The provider a machine came from (its recorded [`provider_index`]), with its index.
    pub(super) fn provider_of(&self, m: &ScannedMachine) -> Result<(usize, &SharedProvider)> {
        let index = provider_index(m);
        Ok((index, self.providers.get(index)?))
    }

    /// Drop the policy's cached providers after a provider failure, so the next reconcile
    /// builds them again (and reads their credentials again).
    pub(super) fn forget_providers(&self) {
        self.ctx.providers.forget(&self.namespace, &self.name);
    }

    /// The objects `selector` selects, listed [`LIST_PAGE`] at a time, each without its
    /// `metadata.managedFields` (never read; most of a small object's size).
    pub(super) async fn list<K>(&self, api: &Api<K>, selector: &str) -> Result<Vec<K>>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        self.list_as(api, selector, |k| Some(without_managed_fields(k)))
            .await
    }

    /// The objects `selector` selects, listed [`LIST_PAGE`] at a time (`limit`/`continue`), each
    /// made into what the caller keeps of it by `keep` (`None`: nothing) as its page arrives: no
    /// more than a page of whole objects (and of the response body) is ever held.
    pub(super) async fn list_as<K, T>(
        &self,
        api: &Api<K>,
        selector: &str,
        mut keep: impl FnMut(K) -> Option<T>,
    ) -> Result<Vec<T>>
    where
        K: Clone + DeserializeOwned + std::fmt::Debug,
    {
        let mut params = ListParams::default().labels(selector).limit(LIST_PAGE);
        let mut out = Vec::new();
        loop {
            let page = api.list(&params).await?;
            out.extend(page.items.into_iter().filter_map(&mut keep));
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
        out.shrink_to_fit();
        Ok(out)
    }

    /// The policy's ScannedMachines, by name (without managed fields, see [`Self::list`]).
    pub(super) async fn machines(&self) -> Result<Vec<ScannedMachine>> {
        let mut m = self
            .list(&self.api::<ScannedMachine>(), &self.policy_selector())
            .await?;
        m.sort_by_key(|m| m.name_any());
        Ok(m)
    }

    /// Merge-patch an object of the policy's namespace as the operator (`patch` is the object
    /// part to change, e.g. `{"metadata": {"annotations": …}}`).
    pub(super) async fn merge<K>(&self, name: &str, patch: &serde_json::Value) -> Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        self.api::<K>()
            .patch(
                name,
                &PatchParams::apply(contract::OPERATOR),
                &Patch::Merge(patch),
            )
            .await?;
        Ok(())
    }

    /// Merge-patch the status of an object of the policy's namespace as the operator.
    pub(super) async fn merge_status<K>(&self, name: &str, status: &impl Serialize) -> Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let patch = serde_json::json!({ "status": status });
        self.api::<K>()
            .patch_status(
                name,
                &PatchParams::apply(contract::OPERATOR),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// Publish a Kubernetes Event on the policy; a failure is only logged. A note past the API's
    /// 1,024 characters (an API server's message quoted in it) is cut to fit.
    pub(super) async fn event(
        &self,
        type_: EventType,
        reason: &str,
        action: &str,
        mut note: String,
    ) {
        if let Some((cut, _)) = note.char_indices().nth(MAX_EVENT_NOTE - 1) {
            note.truncate(cut);
            note.push('…');
        }
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        let reference = self.policy.object_ref(&());
        if let Err(e) = self.ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(policy = %self.name, error = %e, "cannot publish event");
        }
    }
}

/// `obj` without `metadata.managedFields`, which the operator never reads (at 1,000 machines a
/// ScannedMachine's managed fields are most of its ≈ 20 KiB).
pub fn without_managed_fields<K: Resource>(mut obj: K) -> K {
    obj.meta_mut().managed_fields = None;
    obj
}

/// Server-side apply `obj` as the operator (forcing its fields).
pub(super) async fn server_side_apply<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(contract::OPERATOR).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}

/// Delete `name`; one already gone is fine.
pub(super) async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}
