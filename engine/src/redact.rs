//! The only two forms in which a secret leaves the engine: a redacted prefix with the length, and
//! a keyed fingerprint (HMAC-SHA256 under a per-installation key, so equal secrets correlate
//! across machines but a fingerprint cannot be brute-forced without the key).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::codec::hex;

/// `wJal…(40)`: at most 4 leading characters (fewer for short values: a quarter of the length,
/// so a short password is not mostly revealed), then the length in characters.
pub fn redact(secret: &[u8]) -> String {
    let text = String::from_utf8_lossy(secret);
    let len = text.chars().count();
    let shown: String = text
        .chars()
        .take((len / 4).min(4))
        .filter(|c| !c.is_control())
        .collect();
    format!("{shown}…({len})")
}

/// `hmac-sha256:<hex>` of `secret` under `key`.
pub fn fingerprint(key: &[u8], secret: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(secret);
    format!("hmac-sha256:{}", hex(&mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_never_shows_more_than_four() {
        assert_eq!(
            redact(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzzzzzzzzz"),
            "wJal…(40)"
        );
        assert_eq!(redact(b"hunter2x"), "hu…(8)");
        assert_eq!(redact(b"abc"), "…(3)");
    }

    #[test]
    fn hmac_known_answer() {
        // RFC 4231 test case 2.
        assert_eq!(
            fingerprint(b"Jefe", b"what do ya want for nothing?"),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
