//! GCE's own SSH key sources: the keys Compute Engine's guest environment installs for a user
//! from metadata, outside any `authorized_keys` file on the disk. They count as authorized keys
//! exactly like the disk's.
//!
//! Where they come from, as the guest environment applies them:
//!
//! - project metadata (`commonInstanceMetadata`) `ssh-keys` and the legacy `sshKeys`: on every
//!   instance of the project, unless the instance sets `block-project-ssh-keys=true` or has its
//!   own legacy `sshKeys` (which blocks project keys too);
//! - instance metadata `ssh-keys` and the legacy `sshKeys`.
//!
//! None count where OS Login is on (`enable-oslogin=true` on the instance, else on the project:
//! users then come from the directory, not metadata), nor on a Windows instance unless it runs
//! the SSH server that reads them (`enable-windows-ssh=true`).
//!
//! Each line is `USER:KEY_TYPE BASE64 [COMMENT]`; keys that gcloud and the console add carry
//! `google-ssh {"userName":…,"expireOn":"2026-12-04T20:12:00+0000"}` as their comment and stop
//! counting once `expireOn` has passed (an `expireOn` that does not parse does not expire the
//! key: an unreadable date is no proof the key stopped working). Lines that are not such
//! entries are ignored. Metadata is the instance owner's input: parsing is bounded and never
//! panics.

use std::collections::BTreeSet;

use jiff::Timestamp;
use snapsentry_crds::CloudAuthorizedKey;
use snapsentry_engine::ssh::parse_authorized_keys;

/// The source of a key in the project's metadata `ssh-keys`.
pub const PROJECT_SSH_KEYS: &str = "project metadata ssh-keys";
/// The source of a key in the project's legacy metadata `sshKeys`.
pub const PROJECT_LEGACY_SSH_KEYS: &str = "project metadata sshKeys";
/// The source of a key in the instance's metadata `ssh-keys`.
pub const INSTANCE_SSH_KEYS: &str = "instance metadata ssh-keys";
/// The source of a key in the instance's legacy metadata `sshKeys`.
pub const INSTANCE_LEGACY_SSH_KEYS: &str = "instance metadata sshKeys";
/// Most keys kept per instance (the ScannedMachine's `spec.cloudAuthorizedKeys` bound).
pub const MAX_KEYS: usize = 200;
/// Most lines read from one metadata value (Compute allows values up to 256 KB).
const MAX_LINES: usize = 10_000;
/// Longest user name accepted.
const MAX_USER: usize = 256;

/// The last value of metadata item `key`.
fn value<'a>(items: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    items.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// A boolean metadata value as the guest environment reads one.
fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "t" | "1" | "yes" | "y"
    )
}

/// Boolean `key`: the instance's value when it has one, else the project's.
fn flag(instance: &[(&str, &str)], project: &[(&str, &str)], key: &str) -> bool {
    value(instance, key)
        .or_else(|| value(project, key))
        .is_some_and(truthy)
}

/// When a key's `google-ssh` comment says it expires: its `expireOn`, if that parses.
fn expires_on(key: &str) -> Option<Timestamp> {
    let mut tokens = key.split_whitespace();
    if tokens.nth(2) != Some("google-ssh") {
        return None;
    }
    let json = &key[key.find("google-ssh")? + "google-ssh".len()..];
    let info: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    let when = info.get("expireOn")?.as_str()?;
    when.parse::<Timestamp>().ok().or_else(|| {
        jiff::fmt::strtime::parse("%Y-%m-%dT%H:%M:%S%z", when)
            .and_then(|t| t.to_timestamp())
            .ok()
    })
}

/// The user and fingerprint of one `USER:KEY` line, unless it is not one or has expired.
fn entry(line: &str, now: Timestamp) -> Option<(String, String)> {
    let (user, key) = line.trim().split_once(':')?;
    if user.is_empty()
        || user.len() > MAX_USER
        || user.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    if expires_on(key).is_some_and(|t| t <= now) {
        return None;
    }
    let parsed = parse_authorized_keys(key.as_bytes());
    let first = parsed.into_iter().next()?;
    Some((user.to_owned(), first.fingerprint))
}

/// The SSH keys Compute Engine authorizes on an instance through metadata, given the project's
/// (`commonInstanceMetadata`) and the instance's metadata items as (key, value) pairs, whether
/// the instance runs Windows, and the time now (for `expireOn`). Each (user, key) once, the
/// instance's first, at most [`MAX_KEYS`].
pub fn authorized_keys(
    project: &[(&str, &str)],
    instance: &[(&str, &str)],
    windows: bool,
    now: Timestamp,
) -> Vec<CloudAuthorizedKey> {
    if flag(instance, project, "enable-oslogin")
        || (windows && !flag(instance, project, "enable-windows-ssh"))
    {
        return Vec::new();
    }
    let blocked = value(instance, "block-project-ssh-keys").is_some_and(truthy)
        || value(instance, "sshKeys").is_some();
    let mut sources = vec![
        (value(instance, "ssh-keys"), INSTANCE_SSH_KEYS),
        (value(instance, "sshKeys"), INSTANCE_LEGACY_SSH_KEYS),
    ];
    if !blocked {
        sources.push((value(project, "ssh-keys"), PROJECT_SSH_KEYS));
        sources.push((value(project, "sshKeys"), PROJECT_LEGACY_SSH_KEYS));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (text, source) in sources {
        for line in text.into_iter().flat_map(str::lines).take(MAX_LINES) {
            if out.len() == MAX_KEYS {
                return out;
            }
            let Some((user, fingerprint)) = entry(line, now) else {
                continue;
            };
            if seen.insert((user.clone(), fingerprint.clone())) {
                out.push(CloudAuthorizedKey {
                    user,
                    fingerprint,
                    source: source.to_owned(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two real ed25519 public keys and their `ssh-keygen -l` fingerprints.
    const K1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const K2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBtQ4C0n6IsZr8yM3pX4FtmMCJ1HRSP8B3Fi8lYMJp0S";

    fn fp(key: &str) -> String {
        parse_authorized_keys(key.as_bytes())[0].fingerprint.clone()
    }

    fn now() -> Timestamp {
        "2026-06-01T00:00:00Z".parse().unwrap()
    }

    fn keys(project: &[(&str, &str)], instance: &[(&str, &str)]) -> Vec<(String, String, String)> {
        authorized_keys(project, instance, false, now())
            .into_iter()
            .map(|k| (k.user, k.fingerprint, k.source))
            .collect()
    }

    fn key(user: &str, k: &str, source: &str) -> (String, String, String) {
        (user.into(), fp(k), source.into())
    }

    #[test]
    fn project_and_instance_keys_with_their_sources() {
        let project = format!("deploy:{K1} deploy@web-01\n\nnot a key\nops:{K2}");
        let instance = format!("admin:{K2} admin@laptop");
        assert_eq!(
            keys(
                &[("ssh-keys", &project)],
                &[("ssh-keys", &instance), ("startup-script", "echo")]
            ),
            [
                key("admin", K2, INSTANCE_SSH_KEYS),
                key("deploy", K1, PROJECT_SSH_KEYS),
                key("ops", K2, PROJECT_SSH_KEYS),
            ]
        );
        // The legacy items too.
        let legacy = format!("old:{K1}");
        assert_eq!(
            keys(&[("sshKeys", &legacy)], &[]),
            [key("old", K1, PROJECT_LEGACY_SSH_KEYS)]
        );
    }

    #[test]
    fn an_instance_can_block_project_keys() {
        let project = format!("deploy:{K1}");
        let own = format!("admin:{K2}");
        for block in ["true", "TRUE", " True "] {
            assert_eq!(
                keys(
                    &[("ssh-keys", &project)],
                    &[("block-project-ssh-keys", block)]
                ),
                []
            );
        }
        assert_eq!(
            keys(
                &[("ssh-keys", &project)],
                &[("block-project-ssh-keys", "false")]
            ),
            [key("deploy", K1, PROJECT_SSH_KEYS)]
        );
        // The instance's legacy sshKeys blocks project keys as well.
        assert_eq!(
            keys(&[("ssh-keys", &project)], &[("sshKeys", &own)]),
            [key("admin", K2, INSTANCE_LEGACY_SSH_KEYS)]
        );
    }

    #[test]
    fn expired_google_ssh_keys_do_not_count() {
        let line = |user: &str, when: &str| {
            format!(
                "{user}:{K1} google-ssh {{\"userName\":\"{user}@example.com\",\"expireOn\":\"{when}\"}}"
            )
        };
        let project = [
            line("past", "2026-05-31T23:59:00+0000"),
            line("future", "2026-06-01T00:05:00+0000"),
            line("rfc3339", "2020-01-01T00:00:00Z"),
            line("garbled", "next tuesday"),
            format!("nojson:{K1} google-ssh {{not json"),
        ]
        .join("\n");
        let users: Vec<String> = keys(&[("ssh-keys", &project)], &[])
            .into_iter()
            .map(|(u, _, _)| u)
            .collect();
        assert_eq!(users, ["future", "garbled", "nojson"]);
    }

    #[test]
    fn os_login_and_windows() {
        let project = format!("deploy:{K1}");
        let p = [("ssh-keys", project.as_str())];
        assert!(keys(&[p[0], ("enable-oslogin", "TRUE")], &[]).is_empty());
        assert!(keys(&p, &[("enable-oslogin", "true")]).is_empty());
        // The instance's value wins over the project's.
        assert_eq!(
            keys(
                &[p[0], ("enable-oslogin", "TRUE")],
                &[("enable-oslogin", "false")]
            )
            .len(),
            1
        );
        assert!(authorized_keys(&p, &[], true, now()).is_empty());
        assert_eq!(
            authorized_keys(&p, &[("enable-windows-ssh", "TRUE")], true, now()).len(),
            1
        );
    }

    #[test]
    fn duplicates_once_and_bounded() {
        let one = format!("deploy:{K1}");
        assert_eq!(keys(&[("ssh-keys", &one)], &[("ssh-keys", &one)]).len(), 1);
        let many: String = (0..1000).map(|i| format!("u{i}:{K1}\n")).collect();
        assert_eq!(keys(&[("ssh-keys", &many)], &[]).len(), MAX_KEYS);
    }

    #[test]
    fn hostile_input_is_ignored_without_panicking() {
        let deep = format!("x:{K1} google-ssh {}", "[".repeat(100_000));
        let long_user = format!("{}:{K1}", "u".repeat(MAX_USER + 1));
        let inputs = [
            ":",
            "::::",
            ":ssh-ed25519 AAAA",
            "user:",
            "user:ssh-ed25519",
            "user:ssh-ed25519 !!!notbase64",
            "us er:ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ",
            "user:ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ",
            "user:google-ssh google-ssh google-ssh",
            "\u{0}:\u{0}\u{0}",
            "é:ü ß",
            long_user.as_str(),
        ];
        for input in inputs {
            assert_eq!(keys(&[("ssh-keys", input)], &[]), [], "{input:.60}");
        }
        // A google-ssh comment nested too deep to read does not expire the key.
        assert_eq!(
            keys(&[("ssh-keys", &deep)], &[]),
            [key("x", K1, PROJECT_SSH_KEYS)]
        );
    }
}
