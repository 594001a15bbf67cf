//! `ScanPolicy`: what to scan, when, and how.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Exposure, SeverityCounts};

/// What to scan (providers and selectors), when (`schedule`, `suspend`) and how (rules,
/// exclusions, verification, scanner resources, concurrency). Annotate with
/// `snapsentry.io/scan-now=<any new value>` to start a scan at once.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "snapsentry.io",
    version = "v1alpha1",
    kind = "ScanPolicy",
    namespaced,
    shortname = "sp",
    category = "snapsentry",
    status = "ScanPolicyStatus",
    derive = "PartialEq",
    doc = "ScanPolicy selects virtual machines and scans their disks for plaintext secrets on a schedule.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Machines",
        type_ = "integer",
        json_path = ".status.machines.total"
    ),
    printcolumn(
        name = "Findings",
        type_ = "integer",
        json_path = ".status.findings.total"
    ),
    printcolumn(
        name = "Critical",
        type_ = "integer",
        json_path = ".status.findings.critical"
    ),
    printcolumn(name = "Last Scan", type_ = "date", json_path = ".status.lastScanTime"),
    printcolumn(
        name = "Next Scan",
        type_ = "date",
        json_path = ".status.nextScanTime",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ScanPolicySpec {
    /// Where the machines come from. Each entry names exactly one provider.
    #[schemars(length(min = 1, max = 16))]
    pub providers: Vec<ProviderSpec>,
    /// Cron schedule (5 fields, e.g. `0 3 * * *`, or a nickname such as `@daily`). Without it the
    /// policy scans only when created, changed or annotated with `snapsentry.io/scan-now`. The
    /// API server refuses a wrong number of fields; a field out of range (`61 * * * *`) is
    /// reported in the `Ready` condition and a Warning Event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(r"self.matches('^\\s*@[a-z]+\\s*$') || self.matches('^\\s*\\S+(\\s+\\S+){4}\\s*$')").message("schedule must be 5 fields (minute hour day-of-month month day-of-week) or a nickname such as @daily"))]
    pub schedule: Option<String>,
    /// IANA time zone of `schedule` (default UTC), e.g. `Europe/Paris`. The API server refuses
    /// what cannot be a zone name; an unknown zone is reported in the `Ready` condition and a
    /// Warning Event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(r"self.matches('^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$')").message("timeZone must be an IANA time zone name such as UTC or Europe/Paris"))]
    pub time_zone: Option<String>,
    /// Stop starting scheduled scans; running scans finish.
    #[serde(default)]
    pub suspend: bool,
    /// Most scanner Jobs running at once for this policy (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub concurrency: Option<u32>,
    /// Detection rules: extra rules and disabled ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesSpec>,
    /// What not to report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusions: Option<ExclusionsSpec>,
    /// How findings are verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationSpec>,
    /// The scanner Job's image, resources and placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanner: Option<ScannerSpec>,
    /// How long resolved findings are kept before deletion, as a Go-style duration (default
    /// `720h`; units `h`, `m`, `s`, `ms`, e.g. `36h30m`, `1.5h`, `0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(r"self.matches('^(0|(([0-9]+([.][0-9]*)?|[.][0-9]+)(h|m|s|ms))+)$')").message("resolvedRetention must be a duration such as 720h, 36h30m or 90m (units h, m, s, ms)"))]
    pub resolved_retention: Option<String>,
}

/// One source of machines. Exactly one of the fields is set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.aws), has(self.azure), has(self.gcp), has(self.images)].filter(x, x).size() == 1").message("set exactly one of aws, azure, gcp, images"))]
pub struct ProviderSpec {
    /// EC2 instances, read through EBS snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsProvider>,
    /// Azure virtual machines, read through snapshot SAS URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureProvider>,
    /// Google Compute Engine instances.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpProvider>,
    /// Machines declared as disk image files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<ImagesProvider>,
}

/// Reference to a key of a Secret in the policy's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// Which instances to select, and which to leave out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSelector {
    /// Instances carrying all of these tags (value `*` matches any value).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Only these instance ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    /// Only instances in these states (default: running and stopped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<String>,
    /// Leave out instances carrying any of these tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exclude_tags: BTreeMap<String, String>,
}

/// EC2 instances, read through EBS snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsProvider {
    /// Regions to list instances in (`eu-west-1`).
    #[schemars(length(min = 1))]
    pub regions: Vec<String>,
    /// Static credentials from a Secret (keys `accessKeyId`, `secretAccessKey`, optional
    /// `sessionToken`); without it the operator's environment or IRSA web identity is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Role to assume (cross-account scanning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_role_arn: Option<String>,
    /// External id for assuming `assumeRoleArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Endpoint override (VPC endpoints, emulators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Which instances to select, and which to leave out.
    #[serde(default)]
    pub selector: InstanceSelector,
    /// `create` (default): snapshot every volume for the scan and delete the snapshots after.
    /// `newestExisting`: scan the newest completed snapshot of each volume, create nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_strategy: Option<SnapshotStrategy>,
}

/// How snapshots for a scan are obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::common::plain_enum)]
pub enum SnapshotStrategy {
    /// Snapshot every volume for the scan and delete the snapshots after it.
    Create,
    /// Scan the newest completed snapshot of each volume; create nothing.
    NewestExisting,
}

/// Azure virtual machines, read through snapshot SAS URLs.
///
/// Credentials, first match wins: `credentialsSecret` (a client secret or a client certificate
/// of the app registration `clientId` in `tenantId`); workload identity (the operator's pod has
/// `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID` and `AZURE_TENANT_ID`, as the AKS workload
/// identity webhook sets them; `clientId`/`tenantId` here override the variables); else the
/// managed identity of the node (user-assigned when `clientId` is set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AzureProvider {
    /// Subscription ids to list virtual machines in.
    #[schemars(length(min = 1))]
    pub subscriptions: Vec<String>,
    /// Only these resource groups (default: all), in every listed subscription.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_groups: Vec<String>,
    /// Microsoft Entra tenant (directory) id of the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Application (client) id: of the app registration for `credentialsSecret` and workload
    /// identity, of the user-assigned managed identity otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Secret in the policy's namespace with key `clientSecret`, or `clientCertificate` (PEM:
    /// the certificate and its unencrypted private key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Resource Manager endpoint (default `https://management.azure.com`; sovereign clouds,
    /// emulators). Tokens are asked for its `/.default` scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm_endpoint: Option<String>,
    /// Microsoft Entra authority host (default `AZURE_AUTHORITY_HOST`, else
    /// `https://login.microsoftonline.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
    /// Which VMs to select, and which to leave out. `ids` match a VM's resource id or its name
    /// (case-insensitive); `states` are power states (`running`, `stopped`, `deallocated`, …;
    /// default running and stopped).
    #[serde(default)]
    pub selector: InstanceSelector,
    /// `create` (default): an incremental snapshot of every managed disk for the scan, deleted
    /// after it. `newestExisting`: scan the newest existing snapshot of each disk, create nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_strategy: Option<SnapshotStrategy>,
}

/// Google Compute Engine instances, read through disks made from snapshots and attached to the
/// scanner Job as raw block volumes by the Compute Engine persistent-disk CSI driver.
///
/// Credentials, first match wins: `credentialsSecret` (a service-account JSON key); else the
/// key file the operator's `GOOGLE_APPLICATION_CREDENTIALS` names (the chart's
/// `cloud.gcp.credentialsSecret`); else the metadata server (GKE workload identity, or the node's
/// service account).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcpProvider {
    /// Project ids to list instances in.
    #[schemars(length(min = 1))]
    pub projects: Vec<String>,
    /// Only these zones (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Secret in the policy's namespace with key `serviceAccountKey`: a service account's JSON
    /// key. Without it, the operator's `GOOGLE_APPLICATION_CREDENTIALS` key file, else the
    /// metadata server (GKE workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Zones where the scanner's nodes run (`europe-west1-b`): disks made from snapshots are
    /// created in the first, so the CSI driver can attach them to a scanner node. Required to
    /// scan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scanner_zones: Vec<String>,
    /// Compute Engine API root (default `https://compute.googleapis.com`; emulators). Cloud SQL
    /// Admin (`/sql/v1beta4`) and Cloud Storage (`/storage/v1`) are read under the same root when
    /// it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Which instances to select, and which to leave out. `tags` match instance labels, `ids` an
    /// instance's numeric id or its name, `states` instance statuses (`RUNNING`, `TERMINATED`,
    /// `SUSPENDED`, …, case-insensitive; default RUNNING and TERMINATED, as AWS's running and
    /// stopped).
    #[serde(default)]
    pub selector: InstanceSelector,
    /// `create` (default): a snapshot of every disk for the scan, deleted after it.
    /// `newestExisting`: the newest READY snapshot of each disk. Either way a disk is made from
    /// the snapshot for the scanner and deleted after the scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_strategy: Option<SnapshotStrategy>,
}

/// Machines declared as disk image files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImagesProvider {
    /// PersistentVolumeClaim holding the images, mounted read-only into each scanner Job. Without
    /// it, `path`s must be readable by the Job as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<String>,
    /// The machines, one per entry.
    #[schemars(length(min = 1, max = 1000))]
    pub machines: Vec<ImageMachine>,
}

/// One machine of the `images` provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageMachine {
    /// Machine name; becomes part of object names, so a DNS label.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Disk image paths (raw, qcow2, VHD, VHDX, VMDK), relative to the claim's mount when a claim
    /// is set.
    #[schemars(length(min = 1, max = 16))]
    pub disks: Vec<String>,
    /// Declared internet exposure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
    /// Platform, for reporting (`linux`, `windows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// Detection rule settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RulesSpec {
    /// ConfigMap in the policy's namespace whose `rules.yaml` key holds extra rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_rules_config_map: Option<String>,
    /// Rule ids to disable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disable: Vec<String>,
    /// Also report secrets in test, example and fixture directories.
    #[serde(default)]
    pub include_tests: bool,
    /// Files larger than this are not read (default 64 MiB); also the limit for one file inside
    /// an archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size_bytes: Option<u64>,
    /// Levels of archives (tar, gzip, zip, jar/war/ear) opened to scan the files inside: 0 turns
    /// archive scanning off (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 8))]
    pub archive_depth: Option<u32>,
}

/// What not to report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExclusionsSpec {
    /// Path globs inside a machine's filesystems (`/var/lib/docker/**`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Secret types not to report (the `snapsentry.io/secret-type` label values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_types: Vec<String>,
}

/// How findings are verified.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSpec {
    /// Send secrets to their own issuer to check they are live. Off by default.
    #[serde(default)]
    pub live: bool,
}

/// The scanner Job's image, resources and placement.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScannerSpec {
    /// Scanner image (default: the operator's configured scanner image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory of the scanner container (default: the operator's configured resources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Nodes the scanner Jobs may run on (pod `nodeSelector`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the scanner Job pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// A scan taking longer than this is stopped and reported failed (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60))]
    pub timeout_seconds: Option<i64>,
}

/// Observed state of a ScanPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanPolicyStatus {
    /// `Ready` (the policy is valid and schedulable), `Scanning` (a scan runs), `Degraded` (the
    /// last scan failed for some machines).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The policy generation the last scan started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Id of the current or last scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_id: Option<String>,
    /// When the last scan started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_time: Option<Time>,
    /// When the schedule starts the next scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_scan_time: Option<Time>,
    /// The last `snapsentry.io/scan-now` annotation value acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scan_now: Option<String>,
    /// Machines of the current or last scan by state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machines: Option<MachineCounts>,
    /// Open (not resolved, not triaged away) findings of this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<SeverityCounts>,
    /// AttackPaths of this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attack_paths: Option<u32>,
}

/// Machines of a policy by scan state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineCounts {
    /// All machines of the scan.
    pub total: u32,
    /// Machines scanned successfully, every volume read.
    pub scanned: u32,
    /// Machines scanned, but not fully: a volume or disk could not be read.
    #[serde(default)]
    pub incomplete: u32,
    /// Machines being snapshotted or scanned.
    pub scanning: u32,
    /// Machines whose scan failed.
    pub failed: u32,
    /// Machines waiting for their scan.
    pub pending: u32,
}
