//! Fixed secrets the tests plant where a stable value matters (finding names, fingerprints):
//! shaped so the engine's rules and validators accept them, and searched for afterwards in
//! everything a test can see to prove they never leak; and alice's SSH key pair, made new each
//! time.

use std::io;
use std::path::Path;
use std::process::Command;

use crate::process::ok;

/// Where [`web_and_db`] plants alice's private key on web-01 (relative to the tree).
pub const WEB_KEY: &str = "home/alice/.ssh/id_ed25519";
/// Where [`web_and_db`] plants the AWS keys on web-01 (relative to the tree).
pub const WEB_AWS: &str = "home/alice/.aws/credentials";
/// Where [`web_and_db`] authorizes alice's key for bob on db-01 (relative to the tree).
pub const DB_AUTHORIZED_KEYS: &str = "home/bob/.ssh/authorized_keys";

/// An AWS access key id that passes the engine's key-id decoding.
pub const AWS_KEY_ID: &str = "AKIAQYLPMN5HHHFPZAM2";
/// The secret access key planted beside [`AWS_KEY_ID`].
pub const AWS_SECRET: &str = "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";

/// Alice's SSH key pair, as the lab machines plant it: an ed25519 key without passphrase
/// (comment `alice@web-01`) made by `ssh-keygen` at `private`, its public half moved to
/// `authorized_keys` (in another machine's tree, where it authorizes the key for that machine's
/// user). Returns the private key's text, which the tests look for where it must never show.
pub fn alice_key_pair(private: &Path, authorized_keys: &Path) -> io::Result<String> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@web-01", "-f"])
        .arg(private)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running ssh-keygen: {e}")))?;
    ok(out, "ssh-keygen").map_err(io::Error::other)?;
    std::fs::rename(private.with_extension("pub"), authorized_keys)?;
    std::fs::read_to_string(private)
}

/// Why a lab could not be planted.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Writing a tree.
    #[error("planting: {0}")]
    Io(#[from] io::Error),
    /// Making an image.
    #[error("imaging: {0}")]
    Image(#[from] crate::image::Error),
}

/// A two-machine lab under `trees` (`web-01`, `db-01`), as ext4 images
/// `<images>/<machine>.raw`: web-01 holds alice's private key ([`WEB_KEY`]) and the AWS keys
/// ([`WEB_AWS`]), db-01 authorizes alice's key for bob ([`DB_AUTHORIZED_KEYS`]). Returns the
/// private key's text.
pub fn web_and_db(trees: &Path, images: &Path) -> Result<String, LabError> {
    let (web, db) = (trees.join("web-01"), trees.join("db-01"));
    for d in [
        web.join("home/alice/.ssh"),
        web.join("home/alice/.aws"),
        db.join("home/bob/.ssh"),
    ] {
        std::fs::create_dir_all(d)?;
    }
    let private_key = alice_key_pair(&web.join(WEB_KEY), &db.join(DB_AUTHORIZED_KEYS))?;
    std::fs::write(
        web.join(WEB_AWS),
        format!(
            "[default]\naws_access_key_id = {AWS_KEY_ID}\naws_secret_access_key = {AWS_SECRET}\n"
        ),
    )?;
    lab_image(trees, images, "web-01")?;
    lab_image(trees, images, "db-01")?;
    Ok(private_key)
}

/// (Re)builds `<images>/<machine>.raw` from the tree `<trees>/<machine>` (32 MiB of ext4).
pub fn lab_image(trees: &Path, images: &Path, machine: &str) -> Result<(), crate::image::Error> {
    crate::image::ext4(
        &trees.join(machine),
        &images.join(format!("{machine}.raw")),
        32,
    )
}
