//! Random test values (secrets to plant, fingerprint keys), read from `/dev/urandom`: the tests
//! crate needs no random number crate for a few dozen bytes.

use std::io::{self, Read as _};

/// Lowercase hexadecimal digits.
pub const HEX: &[u8] = b"0123456789abcdef";

/// ASCII letters and digits.
pub const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `n` random bytes.
pub fn bytes(n: usize) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// `n` characters drawn from `alphabet`.
pub fn string(alphabet: &[u8], n: usize) -> io::Result<String> {
    Ok(bytes(n)?
        .iter()
        .map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()]))
        .collect())
}
