//! The grant Secret of a scanner Job: the files of its provider's [`ReadGrant`] (for Azure, one
//! read-only SAS URL per snapshot), which the Job mounts read-only at
//! [`snapsentry_crds::contract::GRANTS_DIR`].
//!
//! The Secret is named and labelled like its Job and lives in the Job's namespace. The operator
//! creates it just before the Job, then makes the Job its owner (so the cluster's garbage
//! collector removes it with the Job), and deletes it itself as soon as the Job ends. Its contents
//! are credentials: [`GrantSecret`]'s `Debug` shows the file names only, and nothing here puts a
//! value into a log, event, status, error or metric.

use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use snapsentry_cloud::ReadGrant;
use snapsentry_crds::ScanPolicy;
use snapsentry_crds::contract::{self, job_name};

use super::scope::delete_if_present;
use crate::error::{Error, Result};
use crate::job::{JobRequest, JobSettings, active_deadline_seconds, job_labels};

/// How much longer than its Job's `activeDeadlineSeconds` a read grant lasts: the grant is made
/// before the Job exists, and the deadline counts from the Job's start, so the grant must cover
/// the Job's creation and the Job controller's first look at it as well, plus clock skew between
/// the cluster and the cloud. The operator ends the grant as soon as the Job ends; the duration
/// only bounds a grant whose release never happens.
pub const GRANT_MARGIN: Duration = Duration::from_secs(10 * 60);

/// How long a grant for one of the policy's Jobs lasts: its active deadline plus
/// [`GRANT_MARGIN`].
pub fn grant_duration(policy: &ScanPolicy, settings: &JobSettings) -> Duration {
    let deadline = active_deadline_seconds(policy, settings).max(0) as u64;
    Duration::from_secs(deadline) + GRANT_MARGIN
}

/// A scanner Job's grant Secret. `Debug` shows its name, namespace, labels and file names,
/// never a value.
#[derive(Clone, PartialEq)]
pub struct GrantSecret(Secret);

impl GrantSecret {
    /// The Secret object (its `data` holds the grant: never format it).
    pub fn secret(&self) -> &Secret {
        &self.0
    }

    /// The Secret's name (its Job's).
    pub fn name(&self) -> String {
        self.0.name_any()
    }
}

impl std::fmt::Debug for GrantSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let meta = &self.0.metadata;
        f.debug_struct("GrantSecret")
            .field("name", &meta.name)
            .field("namespace", &meta.namespace)
            .field("labels", &meta.labels)
            .field("owner_references", &meta.owner_references)
            .field(
                "files",
                &self
                    .0
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The grant Secret of the Job `req` describes, holding `grant`'s files as keys; `None` for an
/// empty grant (the Job then gets no Secret and no grant volume).
pub fn grant_secret(
    policy: &ScanPolicy,
    req: &JobRequest<'_>,
    settings: &JobSettings,
    grant: &ReadGrant,
) -> Result<Option<GrantSecret>> {
    if grant.files.is_empty() {
        return Ok(None);
    }
    let policy_name = policy.metadata.name.as_deref().ok_or(Error::MissingField {
        kind: "ScanPolicy",
        field: "metadata.name",
    })?;
    let data = grant
        .files
        .iter()
        .map(|(file, contents)| (file.clone(), ByteString(contents.clone().into_bytes())))
        .collect();
    Ok(Some(GrantSecret(Secret {
        metadata: ObjectMeta {
            name: Some(job_name(policy_name, req.machine, req.scan_id)),
            namespace: Some(settings.namespace.clone()),
            labels: Some(job_labels(policy, req.machine, req.scan_id)?),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    })))
}

/// Create the grant Secret, or replace the files of one a previous attempt left (its grant was
/// made again).
pub async fn apply(api: &Api<Secret>, secret: &GrantSecret) -> Result<()> {
    api.patch(
        &secret.name(),
        &PatchParams::apply(contract::OPERATOR).force(),
        &Patch::Apply(secret.secret()),
    )
    .await?;
    Ok(())
}

/// Make `job` the owner of its grant Secret `name` (or of another object of its namespace made
/// for it, such as a block volume's claim), so the garbage collector deletes it with the Job.
pub async fn adopt<K>(api: &Api<K>, name: &str, job: &Job) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let owner = OwnerReference {
        api_version: Job::api_version(&()).into_owned(),
        kind: Job::kind(&()).into_owned(),
        name: job.name_any(),
        uid: job.uid().ok_or(Error::MissingField {
            kind: "Job",
            field: "metadata.uid",
        })?,
        controller: Some(true),
        block_owner_deletion: None,
    };
    let patch = serde_json::json!({ "metadata": { "ownerReferences": [owner] } });
    api.patch(
        name,
        &PatchParams::apply(contract::OPERATOR),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Delete the grant Secret `name`; one already gone (or never made) is fine.
pub async fn delete(api: &Api<Secret>, name: &str) -> Result<()> {
    delete_if_present(api, name).await
}

/// Delete every grant Secret `selector` selects (a policy's: its Jobs' labels).
pub async fn delete_selected(api: &Api<Secret>, selector: &str) -> Result<()> {
    // The answer lists the deleted Secrets, contents included: dropped unread.
    let _ = api
        .delete_collection(
            &DeleteParams::background(),
            &ListParams::default().labels(selector),
        )
        .await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use snapsentry_crds::{AssignedDisk, Cloud, DiskSource};

    use super::*;
    use crate::correlate::testing::policy_spec;
    use crate::job::DEFAULT_TIMEOUT_SECONDS;
    use crate::job::tests::settings;

    const SAS: &str = "https://acct.blob.core.windows.net/c/b?sv=2024&sig=SECRETSIG";

    /// Policy `fleet` of namespace `team-a`.
    pub(crate) fn policy() -> ScanPolicy {
        let mut p = ScanPolicy::new("fleet", policy_spec());
        p.metadata.namespace = Some("team-a".into());
        p
    }

    fn request() -> JobRequest<'static> {
        JobRequest {
            machine: "fleet-vm-1",
            instance_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-1",
            cloud: Cloud::Azure,
            scan_id: "20261206-220000",
            disks: vec![AssignedDisk {
                id: "os".into(),
                source: DiskSource::Image { path: "/x".into() },
            }],
            images_claim: None,
            grant_secret: None,
        }
    }

    fn grant() -> ReadGrant {
        ReadGrant {
            files: BTreeMap::from([("disk-0.sas".to_owned(), SAS.to_owned())]),
        }
    }

    #[test]
    fn an_empty_grant_makes_no_secret() {
        let none = grant_secret(&policy(), &request(), &settings(), &ReadGrant::default());
        assert!(none.unwrap().is_none());
    }

    #[test]
    fn the_secret_is_named_and_labelled_like_its_job_and_hides_its_files() {
        let s = grant_secret(&policy(), &request(), &settings(), &grant())
            .unwrap()
            .unwrap();
        let job = crate::job::scanner_job(&policy(), &request(), &settings()).unwrap();
        let secret = s.secret();
        assert_eq!(secret.metadata.name, job.metadata.name);
        assert_eq!(secret.metadata.namespace.as_deref(), Some("snapsentry"));
        assert_eq!(secret.metadata.labels, job.metadata.labels);
        let labels = secret.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["snapsentry.io/policy"], "fleet");
        assert_eq!(labels["snapsentry.io/policy-namespace"], "team-a");
        assert_eq!(labels["snapsentry.io/machine"], "fleet-vm-1");
        assert_eq!(labels["snapsentry.io/scan-id"], "20261206-220000");
        assert_eq!(labels["snapsentry.io/managed-by"], "snapsentry-operator");
        // Owned by its Job once the Job exists (adopt), never by the policy.
        assert!(secret.metadata.owner_references.is_none());
        let data = secret.data.as_ref().unwrap();
        assert_eq!(data["disk-0.sas"].0, SAS.as_bytes());
        let shown = format!("{s:?}");
        assert!(shown.contains("disk-0.sas"), "{shown}");
        assert!(
            !shown.contains("SECRETSIG") && !shown.contains("blob.core"),
            "{shown}"
        );
        let shown = format!("{s:#?}");
        assert!(!shown.contains("SECRETSIG"), "{shown}");
    }

    #[test]
    fn a_grant_lasts_the_jobs_deadline_and_a_margin() {
        assert_eq!(
            grant_duration(&policy(), &settings()),
            Duration::from_secs(DEFAULT_TIMEOUT_SECONDS as u64) + GRANT_MARGIN
        );
    }
}
