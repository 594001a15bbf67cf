//! Attack paths: entry machine → secret → target, titled as Defender for Cloud titles them.

use std::collections::{BTreeMap, BTreeSet};

use snapsentry_crds::contract;
use snapsentry_crds::{
    AttackPath, AttackPathSpec, Cloud, PathEntry, PathSecret, PathTarget, ScannedMachine,
    TargetKind, Verification, labels as label_keys,
};

use super::{Assessed, CorrelationInput, object_meta, short_hash, slugify};

/// The AttackPaths of one open finding: one per machine authorizing a verified SSH key, or one
/// to the existing resource a secret names (see [`is_path_target`]).
pub(super) fn attack_paths(
    input: &CorrelationInput<'_>,
    machines: &BTreeMap<&str, &ScannedMachine>,
    a: &Assessed<'_>,
) -> Vec<AttackPath> {
    let f = a.finding;
    let machine = machines.get(&*f.machine).copied();
    let exposure = machine.map(|m| m.spec.exposure.clone()).unwrap_or_default();
    // (kind, target name, user, where the target authorizes the key)
    let mut targets: Vec<(TargetKind, String, Option<String>, Option<String>)> = Vec::new();
    if a.status.verification == Some(Verification::Verified) && f.ssh.is_some() {
        let mut seen = BTreeSet::new();
        for on in &a.status.authorized_on {
            if seen.insert(on.machine.clone()) {
                targets.push((
                    TargetKind::Vm,
                    on.machine.clone(),
                    Some(on.user.clone()),
                    on.source.clone(),
                ));
            }
        }
    } else if let Some(t) = &a.status.target
        && is_path_target(t.kind)
        && t.exists == Some(true)
    {
        targets.push((t.kind, t.name.clone(), None, None));
    }
    let mut out = Vec::with_capacity(targets.len());
    for (kind, target, user, source) in targets {
        let target_cloud = (kind == TargetKind::Vm)
            .then(|| machines.get(target.as_str()).map(|m| m.spec.cloud))
            .flatten();
        let name = format!(
            "ap-{}",
            short_hash(&[input.policy, &f.machine, &f.name, kind.as_str(), &target])
        );
        let labels = BTreeMap::from([
            (label_keys::POLICY.to_owned(), slugify(input.policy)),
            (label_keys::MACHINE.to_owned(), slugify(&f.machine)),
            (label_keys::CLOUD.to_owned(), f.cloud.as_str().to_owned()),
            (label_keys::TARGET_KIND.to_owned(), kind.as_str().to_owned()),
            (
                label_keys::EXPOSED.to_owned(),
                exposure.internet_facing.to_string(),
            ),
            (
                label_keys::MANAGED_BY.to_owned(),
                contract::OPERATOR.to_owned(),
            ),
        ]);
        let spec = AttackPathSpec {
            policy: input.policy.to_owned(),
            cloud: f.cloud,
            title: title(f.cloud, exposure.internet_facing, kind, target_cloud),
            risk: a.severity(),
            entry: PathEntry {
                machine: f.machine.to_string(),
                exposed: exposure.internet_facing,
                exposure_reasons: exposure.reasons.clone(),
            },
            secret: PathSecret {
                finding: f.name.to_string(),
                secret_type: f.secret_type.to_string(),
                path: f.path.as_deref().unwrap_or_default().to_owned(),
            },
            target: PathTarget {
                kind,
                name: target,
                user,
                source,
                cloud: target_cloud,
            },
        };
        out.push(AttackPath {
            metadata: object_meta(input, name, labels),
            spec,
        });
    }
    out
}

/// The title of a path from a machine of `cloud` through a secret to a `target` of this kind; a
/// VM target is named by its own cloud (`target_cloud`, default the entry's), so a path that
/// crosses clouds says where it lands: "Exposed Vulnerable VM has an insecure SSH private key that
/// is used to authenticate to an EC2 instance".
///
/// The wording follows Microsoft Defender for Cloud's agentless machine secrets attack paths
/// (its "attack path reference" and "machine secrets" pages), e.g. AWS: "Exposed Vulnerable EC2
/// instance has an insecure SSH private key that is used to authenticate to an EC2 instance";
/// Azure: "Vulnerable VM has insecure secrets that are used to authenticate to a storage
/// account"; GCP: "… GCP VM instance …". Where Defender has no path for a combination (GCP →
/// storage, image machines) the same sentence shape is used with neutral nouns, e.g. "Exposed
/// machine has an insecure SSH private key that is used to authenticate to another machine".
pub fn title(
    cloud: Cloud,
    exposed: bool,
    target: TargetKind,
    target_cloud: Option<Cloud>,
) -> String {
    let nouns = |cloud| match cloud {
        Cloud::Azure => ("VM", "a VM"),
        Cloud::Aws => ("EC2 instance", "an EC2 instance"),
        Cloud::Gcp => ("GCP VM instance", "a GCP VM instance"),
        Cloud::Image => ("machine", "another machine"),
    };
    let (machine, _) = nouns(cloud);
    let (_, peer) = nouns(target_cloud.unwrap_or(cloud));
    let entry = match (cloud, exposed) {
        (Cloud::Image, true) => "Exposed machine".to_owned(),
        (Cloud::Image, false) => "Machine".to_owned(),
        (_, true) => format!("Exposed Vulnerable {machine}"),
        (_, false) => format!("Vulnerable {machine}"),
    };
    // Defender words the AWS storage path in the singular; the others in the plural.
    let secrets = match (cloud, target) {
        (Cloud::Aws, TargetKind::StorageAccount | TargetKind::S3Bucket) => {
            "an insecure secret that is used"
        }
        _ => "insecure secrets that are used",
    };
    match target {
        TargetKind::Vm => {
            format!(
                "{entry} has an insecure SSH private key that is used to authenticate to {peer}"
            )
        }
        TargetKind::StorageAccount | TargetKind::S3Bucket | TargetKind::GcsBucket => {
            format!("{entry} has {secrets} to authenticate to a storage account")
        }
        TargetKind::SqlDatabase => {
            format!("{entry} has {secrets} to authenticate to an SQL server")
        }
        TargetKind::Rds => format!("{entry} has {secrets} to authenticate to an AWS RDS server"),
        TargetKind::Cosmos => {
            format!("{entry} has {secrets} to authenticate to a Cosmos DB account")
        }
        TargetKind::Registry => {
            format!("{entry} has {secrets} to authenticate to a container registry")
        }
        TargetKind::Host | TargetKind::None => {
            format!("{entry} has {secrets} to authenticate to a host")
        }
    }
}

/// Target kinds that make an attack path when the target exists (besides verified SSH keys).
pub fn is_path_target(kind: TargetKind) -> bool {
    matches!(
        kind,
        TargetKind::StorageAccount
            | TargetKind::S3Bucket
            | TargetKind::GcsBucket
            | TargetKind::SqlDatabase
            | TargetKind::Rds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_per_cloud() {
        use Cloud::*;
        use TargetKind::*;
        let cases = [
            (
                Aws,
                true,
                Vm,
                "Exposed Vulnerable EC2 instance has an insecure SSH private key that is used to authenticate to an EC2 instance",
            ),
            (
                Aws,
                false,
                Vm,
                "Vulnerable EC2 instance has an insecure SSH private key that is used to authenticate to an EC2 instance",
            ),
            (
                Aws,
                true,
                Rds,
                "Exposed Vulnerable EC2 instance has insecure secrets that are used to authenticate to an AWS RDS server",
            ),
            (
                Aws,
                false,
                Rds,
                "Vulnerable EC2 instance has insecure secrets that are used to authenticate to an AWS RDS server",
            ),
            (
                Aws,
                true,
                StorageAccount,
                "Exposed Vulnerable EC2 instance has an insecure secret that is used to authenticate to a storage account",
            ),
            (
                Azure,
                true,
                Vm,
                "Exposed Vulnerable VM has an insecure SSH private key that is used to authenticate to a VM",
            ),
            (
                Azure,
                false,
                Vm,
                "Vulnerable VM has an insecure SSH private key that is used to authenticate to a VM",
            ),
            (
                Azure,
                true,
                StorageAccount,
                "Exposed Vulnerable VM has insecure secrets that are used to authenticate to a storage account",
            ),
            (
                Azure,
                false,
                StorageAccount,
                "Vulnerable VM has insecure secrets that are used to authenticate to a storage account",
            ),
            (
                Azure,
                true,
                SqlDatabase,
                "Exposed Vulnerable VM has insecure secrets that are used to authenticate to an SQL server",
            ),
            (
                Gcp,
                true,
                Vm,
                "Exposed Vulnerable GCP VM instance has an insecure SSH private key that is used to authenticate to a GCP VM instance",
            ),
            (
                Image,
                true,
                Vm,
                "Exposed machine has an insecure SSH private key that is used to authenticate to another machine",
            ),
            (
                Image,
                false,
                Vm,
                "Machine has an insecure SSH private key that is used to authenticate to another machine",
            ),
            (
                Image,
                false,
                SqlDatabase,
                "Machine has insecure secrets that are used to authenticate to an SQL server",
            ),
        ];
        for (cloud, exposed, kind, want) in cases {
            assert_eq!(
                title(cloud, exposed, kind, Option::None),
                want,
                "{cloud:?} {exposed} {kind:?}"
            );
        }
    }

    #[test]
    fn ssh_paths_that_cross_clouds_name_the_target_cloud() {
        assert_eq!(
            title(Cloud::Azure, true, TargetKind::Vm, Some(Cloud::Aws)),
            "Exposed Vulnerable VM has an insecure SSH private key that is used to authenticate to an EC2 instance"
        );
        assert_eq!(
            title(Cloud::Aws, false, TargetKind::Vm, Some(Cloud::Azure)),
            "Vulnerable EC2 instance has an insecure SSH private key that is used to authenticate to a VM"
        );
        assert_eq!(
            title(Cloud::Aws, false, TargetKind::Vm, Some(Cloud::Aws)),
            title(Cloud::Aws, false, TargetKind::Vm, None)
        );
    }
}
