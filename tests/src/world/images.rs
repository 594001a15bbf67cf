//! The `images` provider's side of a world: raw disk images in a temporary directory that the
//! Jobs see through the claim [`CLAIM`], and policies of image machines whose disks they are.

use snapsentry_crds::ScanPolicy;

use super::{Cloud, Error, Setup};

/// The PersistentVolumeClaim the policies name; the Job runner maps it to the images directory.
pub const CLAIM: &str = "vm-images";

/// The images directory, removed with the world.
pub struct Images {
    /// Holds `<machine>.raw` for each machine of the policies.
    pub dir: tempfile::TempDir,
}

impl Cloud for Images {}

/// A world in namespace `ns` with an empty images directory mapped from [`CLAIM`].
pub fn setup(ns: &str) -> Result<Setup<Images>, Error> {
    let dir = tempfile::tempdir().map_err(Error::io("creating the images directory"))?;
    let path = dir.path().to_owned();
    Ok(Setup::new(ns, Images { dir }).claim(CLAIM, &path))
}

/// The ScanPolicy `name` in `ns` of image machines `machines`, each with the disk
/// `<machine>.raw`, internet-facing when its name starts with `web`, scanned `concurrency` at
/// a time.
pub fn policy(
    ns: &str,
    name: &str,
    machines: &[&str],
    concurrency: u32,
) -> Result<ScanPolicy, Error> {
    let machines: Vec<serde_json::Value> = machines
        .iter()
        .map(|m| {
            serde_json::json!({
                "name": m, "disks": [format!("{m}.raw")],
                "exposure": { "internetFacing": m.starts_with("web"), "reasons": [] },
            })
        })
        .collect();
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "snapsentry.io/v1alpha1",
        "kind": "ScanPolicy",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "providers": [{ "images": {
                "persistentVolumeClaim": CLAIM,
                "machines": machines,
            }}],
            "concurrency": concurrency,
            "scanner": {},
        },
    }))?)
}
