//! The client assertion of a client-certificate credential: a JWT signed RS256 with the
//! certificate's private key, naming the certificate by its SHA-1 thumbprint (`x5t`), as
//! Microsoft Entra ID's client-credentials flow takes it.
//!
//! The PEM holds the certificate and its unencrypted private key (PKCS#8 `PRIVATE KEY` or PKCS#1
//! `RSA PRIVATE KEY`). Errors say what is wrong with the PEM, never any of its contents.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

/// How long an assertion is valid (Entra ID accepts up to 10 minutes of skew and lifetime).
const LIFETIME_SECS: i64 = 600;

/// A certificate's signing key and thumbprint.
pub(super) struct CertificateKey {
    key: RsaKeyPair,
    /// base64url SHA-1 of the certificate's DER.
    x5t: String,
}

impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateKey")
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

/// The DER of every PEM block labelled `label`, in order.
fn pem_blocks(pem: &str, label: &str) -> Result<Vec<Vec<u8>>, String> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(&begin) {
        let body_start = start + begin.len();
        let Some(len) = rest[body_start..].find(&end) else {
            return Err(format!("a {label} block has no END line"));
        };
        let body: String = rest[body_start..body_start + len]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = STANDARD
            .decode(body)
            .map_err(|_| format!("a {label} block is not valid base64"))?;
        blocks.push(der);
        rest = &rest[body_start + len + end.len()..];
    }
    Ok(blocks)
}

impl CertificateKey {
    /// The first certificate and the private key of `pem`.
    pub(super) fn from_pem(pem: &str) -> Result<Self, String> {
        let cert = pem_blocks(pem, "CERTIFICATE")?
            .into_iter()
            .next()
            .ok_or("no CERTIFICATE block")?;
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err("the private key is encrypted; an unencrypted key is required".into());
        }
        let key = if let Some(der) = pem_blocks(pem, "PRIVATE KEY")?.into_iter().next() {
            RsaKeyPair::from_pkcs8(&der)
                .map_err(|e| format!("the PKCS#8 private key is not a usable RSA key ({e})"))?
        } else if let Some(der) = pem_blocks(pem, "RSA PRIVATE KEY")?.into_iter().next() {
            RsaKeyPair::from_der(&der)
                .map_err(|e| format!("the RSA private key is not usable ({e})"))?
        } else {
            return Err("no PRIVATE KEY or RSA PRIVATE KEY block".into());
        };
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert);
        Ok(Self {
            key,
            x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
        })
    }

    /// A signed assertion for `client_id` at token endpoint `audience`, valid from `now` (Unix
    /// seconds).
    pub(super) fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: i64,
    ) -> Result<String, String> {
        let rng = SystemRandom::new();
        let mut jti = [0u8; 16];
        rng.fill(&mut jti).map_err(|_| "no randomness")?;
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": self.x5t});
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "iat": now,
            "nbf": now,
            "exp": now + LIFETIME_SECS,
        });
        sign_jwt(&self.key, &header, &claims).map_err(|_| "signing the assertion failed".into())
    }
}

/// The compact JWT of `header` and `claims`, signed RS256 (PKCS#1 v1.5, SHA-256) with `key`
/// (Entra ID client assertions).
fn sign_jwt(
    key: &RsaKeyPair,
    header: &serde_json::Value,
    claims: &serde_json::Value,
) -> Result<String, ring::error::Unspecified> {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_errors_name_what_is_missing() {
        let e = CertificateKey::from_pem("nothing here").unwrap_err();
        assert_eq!(e, "no CERTIFICATE block");
        let only_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = CertificateKey::from_pem(only_cert).unwrap_err();
        assert_eq!(e, "no PRIVATE KEY or RSA PRIVATE KEY block");
        let bad_key =
            format!("{only_cert}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        let e = CertificateKey::from_pem(&bad_key).unwrap_err();
        assert!(
            e.starts_with("the PKCS#8 private key is not a usable RSA key"),
            "{e}"
        );
        let encrypted = format!(
            "{only_cert}-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
        );
        assert!(
            CertificateKey::from_pem(&encrypted)
                .unwrap_err()
                .contains("encrypted")
        );
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(
            CertificateKey::from_pem(broken)
                .unwrap_err()
                .contains("base64")
        );
    }

    /// A throwaway certificate and key from `openssl` (the Debian package), PEM.
    fn openssl_pem(dir: &std::path::Path) -> String {
        let (key, cert) = (dir.join("k.pem"), dir.join("c.pem"));
        let status = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=snapsentry-unit", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl runs");
        assert!(status.status.success(), "openssl failed");
        std::fs::read_to_string(cert).unwrap() + &std::fs::read_to_string(key).unwrap()
    }

    #[test]
    fn assertions_are_rs256_jwts_naming_the_certificate() {
        let dir = std::env::temp_dir().join(format!("snapsentry-assertion-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = openssl_pem(&dir);
        let key = CertificateKey::from_pem(&pem).unwrap();
        let der = pem_blocks(&pem, "CERTIFICATE").unwrap().remove(0);
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        assert_eq!(key.x5t, URL_SAFE_NO_PAD.encode(sha1.as_ref()));
        assert!(!format!("{key:?}").contains("PRIVATE"));
        let jwt = key
            .assertion("app-1", "https://login/t/oauth2/v2.0/token", 1_000)
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |p: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
        };
        let (header, claims) = (decode(parts[0]), decode(parts[1]));
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["x5t"], key.x5t.as_str());
        assert_eq!(claims["aud"], "https://login/t/oauth2/v2.0/token");
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some("app-1"), Some("app-1"))
        );
        assert_eq!(
            (claims["nbf"].as_i64(), claims["exp"].as_i64()),
            (Some(1_000), Some(1_600))
        );
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            key.key.public().as_ref(),
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        public
            .verify(
                signed.as_bytes(),
                &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
            )
            .expect("the signature verifies");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn pem_blocks_in_order() {
        let pem = "x\n-----BEGIN CERTIFICATE-----\nAQI=\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nAw==\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_blocks(pem, "CERTIFICATE").unwrap(),
            vec![vec![1, 2], vec![3]]
        );
    }
}
