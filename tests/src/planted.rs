//! Fixed secrets the tests plant where a stable value matters (finding names, fingerprints):
//! shaped so the engine's rules and validators accept them, and searched for afterwards in
//! everything a test can see to prove they never leak; and alice's SSH key pair, made new each
//! time.

use std::io;
use std::path::Path;
use std::process::Command;

use crate::process::ok;

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
