//! What a file's path says about its findings: test fixtures (skipped by default), OS package
//! trees (lower confidence), SSH host keys (info), keys the OS generated at install (low), whose
//! home directory it is in.

/// Directory names whose content is test data, examples or vendored fixtures.
const TEST_DIRS: &[&str] = &[
    "test",
    "tests",
    "testdata",
    "test-data",
    "test_data",
    "spec",
    "specs",
    "fixtures",
    "fixture",
    "examples",
    "example",
    "__tests__",
    "__mocks__",
    "testing",
    "mocks",
    "testcases",
];

/// True when `path` (absolute, `/`-separated) lies in a test, example or fixture directory.
/// The last component (the file name) is not considered, nor a home directory's name: an
/// account called `test` holds real keys.
pub fn is_test_path(path: &str) -> bool {
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    parts.pop();
    let home = matches!(parts.first(), Some(&("home" | "Users" | "users")));
    parts.iter().enumerate().any(|(i, p)| {
        let lower = p.to_ascii_lowercase();
        !(home && i == 1) && TEST_DIRS.contains(&lower.as_str())
    })
}

/// Trees owned by the OS package manager: a match there is much more likely a shipped sample
/// than an operator's secret.
const PACKAGE_TREES: &[&str] = &[
    "/usr/share/",
    "/usr/lib/",
    "/usr/lib64/",
    "/usr/libexec/",
    "/usr/include/",
    "/usr/src/",
    "/lib/",
    "/lib64/",
    "/usr/local/lib/python",
    "/opt/conda/pkgs/",
    "/var/lib/dpkg/",
    "/var/lib/rpm/",
    "/var/cache/apt/",
    "/Windows/WinSxS/",
    "/Windows/System32/",
    "/Program Files/WindowsApps/",
];

/// True when `path` is inside an OS package tree (findings get lower confidence).
pub fn is_package_tree(path: &str) -> bool {
    PACKAGE_TREES.iter().any(|t| path.starts_with(t))
        || path.contains("/site-packages/")
        || path.contains("/dist-packages/")
        || path.contains("/node_modules/")
}

/// SSH host keys: the machine's own identity, `info` only.
pub fn is_ssh_host_key(path: &str) -> bool {
    path.starts_with("/etc/ssh/") || path.contains("/etc/ssh/ssh_host_")
}

/// Keys the OS generates at install for its own services, not a secret anyone chose: Debian's
/// `ssl-cert` snakeoil key (the self-signed TLS certificate's key). Reported at `low` at most.
pub fn is_install_generated_key(path: &str) -> bool {
    path == "/etc/ssl/private/ssl-cert-snakeoil.key"
}

/// True for `authorized_keys` / `authorized_keys2` files.
pub fn is_authorized_keys(path: &str) -> bool {
    path.ends_with("/authorized_keys")
        || path.ends_with("/authorized_keys2")
        || path == "authorized_keys"
}

/// The user whose home holds `path`: `/home/<user>/…` → user, `/root/…` → `root`,
/// `/Users/<user>/…` (Windows `C:\Users`) → user.
pub fn home_user(path: &str) -> Option<String> {
    let mut it = path.split('/').filter(|p| !p.is_empty());
    match it.next()? {
        "root" => Some("root".to_string()),
        "home" | "Users" | "users" => it.next().map(str::to_string),
        "var" if path.starts_with("/var/lib/") => None,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_dirs() {
        assert!(is_test_path("/srv/app/tests/fixtures/key.pem"));
        assert!(is_test_path("/usr/lib/node_modules/x/test/a.js"));
        assert!(is_test_path("/a/__tests__/b.js"));
        assert!(!is_test_path("/home/test"));
        assert!(!is_test_path("/home/test/.ssh/id_rsa"));
        assert!(is_test_path("/home/test/src/app/tests/key.pem"));
        assert!(!is_test_path("/home/ubuntu/.ssh/id_rsa"));
        assert!(!is_test_path("/srv/latest/app.env"));
    }

    #[test]
    fn users() {
        assert_eq!(
            home_user("/home/admin/.ssh/authorized_keys").as_deref(),
            Some("admin")
        );
        assert_eq!(
            home_user("/root/.ssh/authorized_keys").as_deref(),
            Some("root")
        );
        assert_eq!(home_user("/etc/ssh/authorized_keys"), None);
    }
}
