//! SSH key facts without the key: algorithm, whether a private key is passphrase-protected, and
//! the `SHA256:` fingerprint of its *public* key, derived from the private key file itself:
//!
//! * OpenSSH (`BEGIN OPENSSH PRIVATE KEY`) stores the public blob in the clear, even when encrypted;
//! * PEM PKCS#1 RSA: the `ssh-rsa` blob is built from `n` and `e`; DSA from `p, q, g, y`;
//! * SEC1 EC and PKCS#8 (RSA, ECDSA, Ed25519 v2) carry the public part; an Ed25519 PKCS#8 v1 key
//!   without it, PKCS#8 DSA and encrypted PEM/PKCS#8 keys get no fingerprint (`None`);
//! * PuTTY PPK v2/v3 stores the public blob in the clear.
//!
//! The fingerprint is what `ssh-keygen -lf` prints, so a private key found on one machine can be
//! matched to the `authorized_keys` entry it opens on another.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::codec::{Der, SshReader, base64_decode, base64_encode_nopad, ssh_mpint, ssh_string};

/// What is known of an SSH private key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SshKeyInfo {
    /// SSH algorithm name (`ssh-rsa`, `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-dss`), when known.
    pub algorithm: Option<String>,
    /// Protected by a passphrase.
    pub encrypted: bool,
    /// `SHA256:…` of the public key, when derivable.
    pub fingerprint: Option<String>,
}

/// One public key of an `authorized_keys` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizedKey {
    /// 1-based line of the entry.
    pub line: usize,
    /// SSH algorithm name of the key (`ssh-ed25519`, `ssh-rsa`, …).
    pub algorithm: String,
    /// `SHA256:…` of the public key, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
}

/// `SHA256:` fingerprint of a public key blob, as `ssh-keygen -l` prints it.
pub fn fingerprint(blob: &[u8]) -> String {
    format!("SHA256:{}", base64_encode_nopad(&Sha256::digest(blob)))
}

/// Algorithm name stored at the start of a public key blob.
fn blob_algorithm(blob: &[u8]) -> Option<String> {
    let name = SshReader::new(blob).string()?;
    let name = std::str::from_utf8(name).ok()?;
    (!name.is_empty() && name.len() < 64 && name.is_ascii()).then(|| name.to_string())
}

/// Facts from a private key block (PEM/OpenSSH armour or a PuTTY PPK file's text).
pub fn private_key_info(text: &[u8]) -> SshKeyInfo {
    let Ok(text) = std::str::from_utf8(text) else {
        return SshKeyInfo::default();
    };
    if text.contains("PuTTY-User-Key-File-") {
        return ppk(text);
    }
    let Some(label) = text
        .find("-----BEGIN ")
        .and_then(|i| text[i + 11..].split_once("-----"))
        .map(|(l, _)| l.trim().to_string())
    else {
        return SshKeyInfo::default();
    };
    // Headers (`Proc-Type:`, `DEK-Info:`) end at a blank line; the body is base64 up to END.
    let start = text
        .find("-----BEGIN ")
        .map_or(0, |i| i + 11 + label.len() + 5);
    let end = text[start..]
        .find("-----END")
        .map_or(text.len(), |i| start + i);
    let armour = &text[start..end];
    let encrypted_pem = armour.contains("Proc-Type: 4,ENCRYPTED");
    let body: String = if armour.contains(':') {
        // Skip header lines.
        armour
            .lines()
            .filter(|l| !l.contains(':'))
            .collect::<Vec<_>>()
            .concat()
    } else {
        armour.to_string()
    };
    let der = if encrypted_pem {
        None
    } else {
        base64_decode(body.as_bytes())
    };
    match label.as_str() {
        "OPENSSH PRIVATE KEY" => der.as_deref().map(openssh).unwrap_or_default(),
        "RSA PRIVATE KEY" => info(
            "ssh-rsa",
            encrypted_pem,
            der.as_deref().and_then(rsa_pkcs1_blob),
        ),
        "DSA PRIVATE KEY" => info("ssh-dss", encrypted_pem, der.as_deref().and_then(dsa_blob)),
        "EC PRIVATE KEY" => {
            if encrypted_pem {
                SshKeyInfo {
                    algorithm: None,
                    encrypted: true,
                    fingerprint: None,
                }
            } else {
                der.as_deref()
                    .and_then(|d| sec1_blob(d, None))
                    .map(from_blob)
                    .unwrap_or_default()
            }
        }
        "PRIVATE KEY" => der.as_deref().map(pkcs8).unwrap_or_default(),
        "ENCRYPTED PRIVATE KEY" => SshKeyInfo {
            algorithm: None,
            encrypted: true,
            fingerprint: None,
        },
        _ => SshKeyInfo::default(),
    }
}

fn info(alg: &str, encrypted: bool, blob: Option<Vec<u8>>) -> SshKeyInfo {
    SshKeyInfo {
        algorithm: Some(alg.to_string()),
        encrypted,
        fingerprint: blob.as_deref().map(fingerprint),
    }
}

fn from_blob(blob: Vec<u8>) -> SshKeyInfo {
    SshKeyInfo {
        algorithm: blob_algorithm(&blob),
        encrypted: false,
        fingerprint: Some(fingerprint(&blob)),
    }
}

/// `openssh-key-v1\0`, cipher, kdf, kdf options, key count, first public key blob.
fn openssh(data: &[u8]) -> SshKeyInfo {
    let Some(rest) = data.strip_prefix(b"openssh-key-v1\0") else {
        return SshKeyInfo::default();
    };
    let mut r = SshReader::new(rest);
    let (Some(cipher), Some(_kdf), Some(_opts), Some(n)) =
        (r.string(), r.string(), r.string(), r.u32())
    else {
        return SshKeyInfo::default();
    };
    let encrypted = cipher != b"none";
    let blob = if n >= 1 { r.string() } else { None };
    SshKeyInfo {
        algorithm: blob.and_then(blob_algorithm),
        encrypted,
        fingerprint: blob.map(fingerprint),
    }
}

/// RSAPrivateKey ::= SEQUENCE { version, n, e, d, … } → `ssh-rsa` blob (e, n).
fn rsa_pkcs1_blob(der: &[u8]) -> Option<Vec<u8>> {
    let mut seq = Der::new(der).sequence()?;
    seq.integer()?;
    let n = seq.integer()?;
    let e = seq.integer()?;
    let mut blob = Vec::new();
    ssh_string(&mut blob, b"ssh-rsa");
    ssh_mpint(&mut blob, e);
    ssh_mpint(&mut blob, n);
    Some(blob)
}

/// OpenSSL DSA: SEQUENCE { version, p, q, g, y, x } → `ssh-dss` blob (p, q, g, y).
fn dsa_blob(der: &[u8]) -> Option<Vec<u8>> {
    let mut seq = Der::new(der).sequence()?;
    seq.integer()?;
    let mut blob = Vec::new();
    ssh_string(&mut blob, b"ssh-dss");
    for _ in 0..4 {
        ssh_mpint(&mut blob, seq.integer()?);
    }
    Some(blob)
}

const OID_P256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x23];
const OID_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const OID_ED25519: &[u8] = &[0x2B, 0x65, 0x70];
const OID_DSA: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x38, 0x04, 0x01];

fn curve_name(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        OID_P256 => "nistp256",
        OID_P384 => "nistp384",
        OID_P521 => "nistp521",
        _ => return None,
    })
}

fn ecdsa_blob(curve: &str, point: &[u8]) -> Vec<u8> {
    let mut blob = Vec::new();
    ssh_string(&mut blob, format!("ecdsa-sha2-{curve}").as_bytes());
    ssh_string(&mut blob, curve.as_bytes());
    ssh_string(&mut blob, point);
    blob
}

/// ECPrivateKey ::= SEQUENCE { 1, OCTET STRING, [0] curve OID OPTIONAL, [1] BIT STRING pub OPTIONAL }.
/// `curve` comes from the PKCS#8 wrapper when the inner key omits `[0]`.
fn sec1_blob(der: &[u8], curve: Option<&'static str>) -> Option<Vec<u8>> {
    let mut seq = Der::new(der).sequence()?;
    seq.integer()?;
    seq.expect(0x04)?;
    let mut curve = curve;
    let mut point = None;
    while let Some(t) = seq.next_tlv() {
        match t.tag {
            0xA0 => {
                curve = Der::new(t.content)
                    .expect(0x06)
                    .and_then(curve_name)
                    .or(curve)
            }
            0xA1 => {
                let bits = Der::new(t.content).expect(0x03)?;
                // Drop the "unused bits" byte.
                point = bits.split_first().map(|(_, p)| p);
            }
            _ => {}
        }
    }
    Some(ecdsa_blob(curve?, point?))
}

/// PKCS#8 PrivateKeyInfo ::= SEQUENCE { version, AlgorithmIdentifier, OCTET STRING, [0] attrs, [1] pub }.
fn pkcs8(der: &[u8]) -> SshKeyInfo {
    let parse = || -> Option<SshKeyInfo> {
        let mut seq = Der::new(der).sequence()?;
        seq.integer()?;
        let mut alg = seq.sequence()?;
        let oid = alg.expect(0x06)?;
        let params = alg.next_tlv();
        let private = seq.expect(0x04)?;
        let mut public = None;
        while let Some(t) = seq.next_tlv() {
            if t.tag == 0x81 || t.tag == 0xA1 {
                public = Some(t.content);
            }
        }
        Some(match oid {
            OID_RSA => info("ssh-rsa", false, rsa_pkcs1_blob(private)),
            OID_EC => {
                let curve = params
                    .filter(|p| p.tag == 0x06)
                    .and_then(|p| curve_name(p.content));
                match sec1_blob(private, curve) {
                    Some(blob) => from_blob(blob),
                    None => SshKeyInfo {
                        algorithm: curve.map(|c| format!("ecdsa-sha2-{c}")),
                        encrypted: false,
                        fingerprint: None,
                    },
                }
            }
            OID_ED25519 => {
                // [1] publicKey is a BIT STRING body: unused-bits byte, then 32 bytes.
                let key = public.and_then(|p| match p {
                    [0, key @ ..] if key.len() == 32 => Some(key),
                    key if key.len() == 32 => Some(key),
                    _ => None,
                });
                let blob = key.map(|k| {
                    let mut blob = Vec::new();
                    ssh_string(&mut blob, b"ssh-ed25519");
                    ssh_string(&mut blob, k);
                    blob
                });
                info("ssh-ed25519", false, blob)
            }
            OID_DSA => info("ssh-dss", false, None),
            _ => SshKeyInfo::default(),
        })
    };
    parse().unwrap_or_default()
}

/// PuTTY `.ppk` v2/v3: `Encryption:` and the `Public-Lines:` base64 blob.
fn ppk(text: &str) -> SshKeyInfo {
    let mut encrypted = false;
    let mut lines = text.lines();
    let mut blob = None;
    while let Some(line) = lines.next() {
        let line = line.trim_end();
        if let Some(enc) = line.strip_prefix("Encryption:") {
            encrypted = enc.trim() != "none";
        } else if let Some(n) = line.strip_prefix("Public-Lines:") {
            let n: usize = n.trim().parse().unwrap_or(0).min(64);
            let b64: String = lines.by_ref().take(n).map(str::trim).collect();
            blob = base64_decode(b64.as_bytes());
        }
    }
    let algorithm = blob.as_deref().and_then(blob_algorithm).or_else(|| {
        text.lines()
            .find_map(|l| l.split_once("PuTTY-User-Key-File-").map(|(_, r)| r))
            .and_then(|r| r.split_once(':'))
            .map(|(_, a)| a.trim().to_string())
    });
    SshKeyInfo {
        algorithm,
        encrypted,
        fingerprint: blob.as_deref().map(fingerprint),
    }
}

/// True for names OpenSSH accepts as public key types in `authorized_keys`.
fn is_key_type(t: &str) -> bool {
    t.starts_with("ssh-")
        || t.starts_with("ecdsa-sha2-")
        || t.starts_with("sk-ssh-")
        || t.starts_with("sk-ecdsa-")
}

/// Split an `authorized_keys` line into whitespace-separated tokens, keeping quoted option
/// values (`command="a b"`) together.
fn tokens(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        let mut quoted = false;
        while i < b.len() && (quoted || !b[i].is_ascii_whitespace()) {
            if b[i] == b'"' {
                quoted = !quoted;
            } else if b[i] == b'\\' && quoted {
                i += 1;
            }
            i += 1;
        }
        if start < i {
            out.push(&line[start..i.min(line.len())]);
        }
    }
    out
}

/// Parse an `authorized_keys` file: every valid key line, with its fingerprint.
pub fn parse_authorized_keys(text: &[u8]) -> Vec<AuthorizedKey> {
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().take(100_000) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let toks = tokens(line);
        // `[options] type base64 [comment]`: the type is the first or the second token.
        let Some(pos) = toks.iter().take(2).position(|t| is_key_type(t)) else {
            continue;
        };
        let Some(blob) = toks.get(pos + 1).and_then(|b| base64_decode(b.as_bytes())) else {
            continue;
        };
        if blob_algorithm(&blob).as_deref() != Some(toks[pos]) {
            continue;
        }
        out.push(AuthorizedKey {
            line: i + 1,
            algorithm: toks[pos].to_string(),
            fingerprint: fingerprint(&blob),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorized_keys_with_options() {
        let line = b"no-pty,command=\"echo hi there\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ admin@x\n# comment\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ\nssh-rsa bm90LWEta2V5\n";
        let keys = parse_authorized_keys(line);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].algorithm, "ssh-ed25519");
        assert_eq!(keys[0].fingerprint, keys[1].fingerprint);
        assert_eq!(keys[1].line, 3);
    }

    #[test]
    fn garbage_is_no_key() {
        assert_eq!(
            private_key_info(
                b"-----BEGIN OPENSSH PRIVATE KEY-----\n!!!\n-----END OPENSSH PRIVATE KEY-----"
            ),
            SshKeyInfo::default()
        );
        assert_eq!(private_key_info(b"\xff\xfe"), SshKeyInfo::default());
    }
}
