//! Verification without touching any provider: an SSH private key is `Verified` when another
//! machine of the policy authorizes its public key; a secret naming a resource is checked against
//! the inventory.

use std::collections::{BTreeMap, BTreeSet};

pub use snapsentry_crds::assess::Verdict;
use snapsentry_crds::{AuthorizedOn, ScannedMachine};

use super::{FindingRecord, MAX_RELATED, TargetInventory};

/// Public key fingerprint → machines (and users) that authorize it, with where: a disk's
/// `authorized_keys` file (`status.authorizedKeys`) or the cloud's own key source
/// (`spec.cloudAuthorizedKeys`, such as GCE's project metadata `ssh-keys`). Both count alike.
#[derive(Clone, Debug, Default)]
pub struct AuthorizedIndex<'a> {
    /// fingerprint → (machine, user, source), sorted by machine and user, one source for each
    /// (the disk's file when both authorize it). Borrowed from the machines: a fleet's keys cost
    /// an entry each, not a map each.
    by_fingerprint: BTreeMap<&'a str, Vec<(&'a str, &'a str, &'a str)>>,
}

impl<'a> AuthorizedIndex<'a> {
    /// Index the `status.authorizedKeys` and `spec.cloudAuthorizedKeys` of every machine.
    pub fn new(machines: &'a [ScannedMachine]) -> Self {
        let mut by_fingerprint: BTreeMap<&str, Vec<(&str, &str, &str)>> = BTreeMap::new();
        for m in machines {
            let Some(name) = m.metadata.name.as_deref() else {
                continue;
            };
            let on_disk = m
                .status
                .iter()
                .flat_map(|s| &s.authorized_keys)
                .map(|k| (&k.fingerprint, &k.user, &k.path));
            let from_cloud = m
                .spec
                .cloud_authorized_keys
                .iter()
                .map(|k| (&k.fingerprint, &k.user, &k.source));
            for (fingerprint, user, source) in on_disk.chain(from_cloud) {
                by_fingerprint
                    .entry(fingerprint)
                    .or_default()
                    .push((name, user, source));
            }
        }
        for entries in by_fingerprint.values_mut() {
            // Stable: of the entries of one (machine, user), the first indexed (the disk's) stays.
            entries.sort_by_key(|(machine, user, _)| (*machine, *user));
            entries.dedup_by_key(|(machine, user, _)| (*machine, *user));
            entries.shrink_to_fit();
        }
        Self { by_fingerprint }
    }

    /// Machines other than `source` that authorize `fingerprint`, sorted, at most
    /// [`MAX_RELATED`].
    pub fn authorized_on(&self, fingerprint: &str, source: &str) -> Vec<AuthorizedOn> {
        self.by_fingerprint
            .get(fingerprint)
            .into_iter()
            .flatten()
            .filter(|(machine, _, _)| *machine != source)
            .take(MAX_RELATED)
            .map(|(machine, user, from)| AuthorizedOn {
                machine: (*machine).to_owned(),
                user: (*user).to_owned(),
                source: Some((*from).to_owned()),
            })
            .collect()
    }
}

/// Identity of a private key across machines: its public key fingerprint when the scanner could
/// derive it, else the keyed fingerprint of the private key itself (equal for equal keys).
pub fn ssh_key_identity(f: &FindingRecord) -> Option<&str> {
    Some(&f.ssh.as_ref()?.identity)
}

/// Verify an SSH private key finding.
///
/// `holders` maps [`ssh_key_identity`] to the machines where an active finding holds that key.
/// The target of a verified key is the first machine authorizing it (all of them are in
/// `authorized_on`); an unverified key has no target.
pub fn verify_ssh(
    f: &FindingRecord,
    index: &AuthorizedIndex<'_>,
    holders: &BTreeMap<&str, BTreeSet<&str>>,
) -> Verdict {
    let public = f.ssh.as_ref().and_then(|s| s.public_key_fingerprint());
    let authorized_on = public
        .map(|fp| index.authorized_on(fp, &f.machine))
        .unwrap_or_default();
    let same_key_on = ssh_key_identity(f)
        .and_then(|id| holders.get(id))
        .into_iter()
        .flatten()
        .filter(|m| **m != &*f.machine)
        .take(MAX_RELATED)
        .map(|m| (*m).to_owned())
        .collect();
    Verdict::ssh(authorized_on, same_key_on)
}

/// Check the resource a non-SSH secret names against the inventory ([`Verdict::target`]).
pub fn verify_target(f: &FindingRecord, inventory: &TargetInventory) -> Verdict {
    Verdict::target(
        f.target.as_deref().map(|(kind, name)| (*kind, &**name)),
        |kind| inventory.covers(kind),
        |kind, name| inventory.exists(kind, name),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::testing::*;
    use snapsentry_crds::{AssessedTarget, SecretTarget, TargetKind, Verification};

    #[test]
    fn a_key_authorized_on_another_machine_is_verified() {
        let machines = [
            machine("a", false),
            with_authorized(machine("b", false), "deploy", "SHA256:k1"),
        ];
        let f = ssh_finding("a", "SHA256:k1", "s1");
        let v = verify_ssh(
            &record(&f),
            &AuthorizedIndex::new(&machines),
            &BTreeMap::new(),
        );
        assert_eq!(v.verification, Verification::Verified);
        assert_eq!(
            v.authorized_on,
            [AuthorizedOn {
                machine: "b".into(),
                user: "deploy".into(),
                source: Some("/home/deploy/.ssh/authorized_keys".into()),
            }]
        );
        assert_eq!(
            v.target,
            Some(AssessedTarget {
                kind: TargetKind::Vm,
                name: "b".into(),
                exists: Some(true)
            })
        );
    }

    #[test]
    fn a_key_the_cloud_authorizes_counts_like_one_on_the_disk() {
        let machines = [
            machine("a", false),
            with_cloud_authorized(
                machine("b", false),
                "deploy",
                "SHA256:k1",
                "project metadata ssh-keys",
            ),
            // On both: the disk's file is named.
            with_cloud_authorized(
                with_authorized(machine("c", false), "deploy", "SHA256:k1"),
                "deploy",
                "SHA256:k1",
                "instance metadata ssh-keys",
            ),
            // Another key.
            with_cloud_authorized(machine("d", false), "root", "SHA256:k2", "x"),
        ];
        let f = ssh_finding("a", "SHA256:k1", "s1");
        let v = verify_ssh(
            &record(&f),
            &AuthorizedIndex::new(&machines),
            &BTreeMap::new(),
        );
        assert_eq!(v.verification, Verification::Verified);
        let on: Vec<_> = v
            .authorized_on
            .iter()
            .map(|a| (a.machine.as_str(), a.user.as_str(), a.source.as_deref()))
            .collect();
        assert_eq!(
            on,
            [
                ("b", "deploy", Some("project metadata ssh-keys")),
                ("c", "deploy", Some("/home/deploy/.ssh/authorized_keys")),
            ]
        );
        assert_eq!(v.target.map(|t| t.name), Some("b".to_owned()));
    }

    #[test]
    fn a_key_authorized_only_on_its_own_machine_or_nowhere_is_unverified() {
        let machines = [
            with_authorized(machine("a", false), "root", "SHA256:k1"),
            machine("b", false),
        ];
        let index = AuthorizedIndex::new(&machines);
        for fp in ["SHA256:k1", "SHA256:other"] {
            let v = verify_ssh(
                &record(&ssh_finding("a", fp, "s1")),
                &index,
                &BTreeMap::new(),
            );
            assert_eq!(v.verification, Verification::Unverified);
            assert!(v.authorized_on.is_empty() && v.target.is_none());
        }
    }

    #[test]
    fn the_same_key_on_several_machines() {
        let holders = BTreeMap::from([("SHA256:k1", BTreeSet::from(["a", "c", "d"]))]);
        let v = verify_ssh(
            &record(&ssh_finding("a", "SHA256:k1", "s1")),
            &AuthorizedIndex::default(),
            &holders,
        );
        assert_eq!(v.same_key_on, ["c", "d"]);
        assert_eq!(v.verification, Verification::Unverified);
    }

    #[test]
    fn related_lists_are_bounded() {
        let machines: Vec<_> = (0..50)
            .map(|i| with_authorized(machine(&format!("m{i:02}"), false), "u", "SHA256:k1"))
            .collect();
        let v = verify_ssh(
            &record(&ssh_finding("x", "SHA256:k1", "s1")),
            &AuthorizedIndex::new(&machines),
            &BTreeMap::new(),
        );
        assert_eq!(v.authorized_on.len(), MAX_RELATED);
    }

    #[test]
    fn targets_are_checked_against_the_inventory() {
        let mut inv = TargetInventory::default();
        inv.insert(TargetKind::Rds, "db.x.rds.amazonaws.com");
        inv.complete_for.insert(TargetKind::Rds);
        let mut f = finding_of_type("a", "Database connection string", "s1");
        let v = verify_target(&record(&f), &inv);
        assert_eq!(
            (v.verification, v.target),
            (Verification::NotApplicable, None)
        );

        f.spec.metadata.target = Some(SecretTarget {
            kind: TargetKind::Rds,
            name: "db.x.rds.amazonaws.com".into(),
        });
        let v = verify_target(&record(&f), &inv);
        assert_eq!(v.verification, Verification::Unverified);
        assert_eq!(v.target.unwrap().exists, Some(true));

        f.spec.metadata.target = Some(SecretTarget {
            kind: TargetKind::Rds,
            name: "gone.x.rds.amazonaws.com".into(),
        });
        assert_eq!(
            verify_target(&record(&f), &inv).target.unwrap().exists,
            Some(false)
        );

        f.spec.metadata.target = Some(SecretTarget {
            kind: TargetKind::StorageAccount,
            name: "acct".into(),
        });
        let v = verify_target(&record(&f), &inv);
        assert_eq!(v.verification, Verification::NotApplicable);
        assert_eq!(v.target.unwrap().exists, None);
    }
}
