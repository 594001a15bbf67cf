//! Validators: code that confirms a regex match is a real secret (checksums, structure) and
//! extracts metadata from it (expiry, account, target). Rules name them in `validators:`.
//!
//! Every function here sees secret bytes, so none of them logs or formats its input.

use crate::codec::base64_decode;
use crate::placeholder::DOCUMENTATION_VALUES;
pub use crate::placeholder::{Placeholder, is_placeholder, is_weak_password, placeholder_kind};
use crate::time::{parse_timestamp, rfc3339};
use crate::{FindingMetadata, Target, TargetKind};

/// A named validator, parsed from a rule's `validators:` entry.
#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    /// `aws-key-id`: an `AKIA…`/`ASIA…` id with a base32 body; fills `awsAccountId`.
    AwsKeyId,
    /// `github-checksum`: `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` + 30 base62 + their base62 CRC32.
    GithubChecksum,
    /// `npm-checksum`: `npm_` + 30 base62 + their base62 CRC32.
    NpmChecksum,
    /// `jwt`: three base64url parts with a JSON header naming `alg`; fills `expiresAt` from `exp`.
    Jwt,
    /// `not-placeholder`: not a template, reference, marker word or documentation value.
    NotPlaceholder,
    /// Minimum Shannon entropy in bits per character.
    Entropy(f64),
    /// `base64`: the secret decodes as non-empty base64.
    Base64,
    /// `sas-token`: an Azure SAS with `sig` and `se`; fills `expiresAt` and the storage account.
    SasToken,
    /// `s3-presigned`: `X-Amz-Date` + `X-Amz-Expires`; fills `expiresAt` and the bucket.
    S3Presigned,
    /// `gcs-signed`: `X-Goog-Date` + `X-Goog-Expires`; fills `expiresAt` and the bucket.
    GcsSigned,
    /// `azure-storage-key`: 88 base64 characters decoding to 64 bytes, not Azurite's key.
    AzureStorageKey,
    /// `generated`: the secret looks machine-made, not like a word, a name or an identifier: it
    /// holds ASCII letters and digits, or (letters only) at least 16 characters with at least
    /// four capitals and four lower-case letters and no run of four lower-case letters (the
    /// words of a camel-case identifier make such runs: `MyAppSecretName`).
    Generated,
    /// `not-field-name`: the secret does not hold the words `password`, `passwd`, `secret` or
    /// `token` — a value that does (`subject_token_0`, `CLOUDSDK_PROXY_PASSWORD_value`,
    /// `V1SecretVolumeSource`) names a field, a class or a setting. Not for vendor formats whose
    /// prefix holds such a word (`sb_secret_…`).
    NotFieldName,
}

impl Validator {
    /// Parse a validator name (`entropy:3.5` carries its argument).
    pub fn parse(name: &str) -> Result<Self, String> {
        Ok(match name {
            "aws-key-id" => Validator::AwsKeyId,
            "github-checksum" => Validator::GithubChecksum,
            "npm-checksum" => Validator::NpmChecksum,
            "jwt" => Validator::Jwt,
            "not-placeholder" => Validator::NotPlaceholder,
            "base64" => Validator::Base64,
            "sas-token" => Validator::SasToken,
            "s3-presigned" => Validator::S3Presigned,
            "gcs-signed" => Validator::GcsSigned,
            "azure-storage-key" => Validator::AzureStorageKey,
            "generated" => Validator::Generated,
            "not-field-name" => Validator::NotFieldName,
            other => match other.strip_prefix("entropy:").map(str::parse::<f64>) {
                Some(Ok(min)) if (0.0..=8.0).contains(&min) => Validator::Entropy(min),
                Some(_) => return Err(format!("validator {other:?}: entropy wants 0.0..=8.0")),
                None => return Err(format!("unknown validator {other:?}")),
            },
        })
    }

    /// Check a candidate; on success may fill `meta`. `whole` is the full regex match (for
    /// validators that read parameters around the secret, such as a SAS URL's host).
    pub fn check(&self, secret: &[u8], whole: &[u8], meta: &mut FindingMetadata) -> bool {
        match self {
            Validator::AwsKeyId => aws_key_id_in(secret, whole, meta),
            Validator::GithubChecksum => {
                base62_crc_token(secret, &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"])
            }
            Validator::NpmChecksum => base62_crc_token(secret, &["npm_"]),
            Validator::Jwt => jwt(secret, meta),
            Validator::NotPlaceholder => !is_placeholder(secret),
            Validator::Entropy(min) => shannon_entropy(secret) >= *min,
            Validator::Base64 => base64_decode(secret).is_some_and(|d| !d.is_empty()),
            Validator::SasToken => sas_token(whole, meta),
            Validator::S3Presigned => {
                let ok = presigned(whole, "X-Amz-Date", "X-Amz-Expires", meta);
                if ok {
                    meta.target = s3_bucket_target(whole).or(meta.target.take());
                }
                ok
            }
            Validator::GcsSigned => {
                let ok = presigned(whole, "X-Goog-Date", "X-Goog-Expires", meta);
                if ok {
                    meta.target = gcs_bucket_target(whole).or(meta.target.take());
                }
                ok
            }
            Validator::AzureStorageKey => azure_storage_key(secret),
            Validator::Generated => looks_generated(secret),
            Validator::NotFieldName => {
                let lower = secret.to_ascii_lowercase();
                !["password", "passwd", "secret", "token"]
                    .iter()
                    .any(|w| lower.windows(w.len()).any(|x| x == w.as_bytes()))
            }
        }
    }
}

/// See [`Validator::Generated`].
fn looks_generated(secret: &[u8]) -> bool {
    let letters = secret.iter().filter(|c| c.is_ascii_alphabetic()).count();
    if letters == 0 {
        return false;
    }
    if secret.iter().any(u8::is_ascii_digit) {
        return true;
    }
    let upper = secret.iter().filter(|c| c.is_ascii_uppercase()).count();
    let longest_lower_run = secret
        .split(|c| !c.is_ascii_lowercase())
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    secret.len() >= 16 && upper >= 4 && letters - upper >= 4 && longest_lower_run < 4
}

/// Shannon entropy of `data` in bits per byte.
pub fn shannon_entropy(data: &[u8]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in data {
        counts[usize::from(b)] += 1;
    }
    let n = data.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The key id is the secret itself (an id-only rule) or, for a pair rule whose secret is the
/// secret access key, the first `AKIA…`/`ASIA…` token of the whole match.
fn aws_key_id_in(secret: &[u8], whole: &[u8], meta: &mut FindingMetadata) -> bool {
    if aws_key_id(secret, meta) {
        return true;
    }
    (0..whole.len().saturating_sub(19)).any(|i| {
        (i == 0 || !whole[i - 1].is_ascii_alphanumeric())
            && (whole.get(i + 20).is_none_or(|c| !c.is_ascii_alphanumeric()))
            && aws_key_id(&whole[i..i + 20], meta)
    })
}

/// AWS access key ids: prefix, base32 body, and the account id encoded in it.
fn aws_key_id(secret: &[u8], meta: &mut FindingMetadata) -> bool {
    if secret.len() != 20
        || !secret
            .iter()
            .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(c))
    {
        return false;
    }
    if !matches!(
        &secret[..4],
        b"AKIA"
            | b"ASIA"
            | b"AIDA"
            | b"AROA"
            | b"AGPA"
            | b"ANPA"
            | b"ANVA"
            | b"APKA"
            | b"ABIA"
            | b"ACCA"
    ) {
        return false;
    }
    // Chars 4.. are RFC 4648 base32; the first 6 decoded bytes hold the account id in bits
    // 7..=46 (mask 0x7fffffffff80), as documented by the published analyses of key ids.
    let mut acc: u64 = 0;
    for &c in &secret[4..14] {
        let v = if c.is_ascii_uppercase() {
            c - b'A'
        } else {
            c - b'2' + 26
        };
        acc = (acc << 5) | u64::from(v);
    }
    // 10 chars = 50 bits; we want the first 48 bits.
    let first48 = acc >> 2;
    let account = (first48 & 0x7fff_ffff_ff80) >> 7;
    meta.aws_account_id = Some(format!("{account:012}"));
    true
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62_6(mut n: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// GitHub and npm tokens: prefix, 30 base62 characters, then the base62 CRC32 of those 30.
fn base62_crc_token(secret: &[u8], prefixes: &[&str]) -> bool {
    let Some(body) = prefixes
        .iter()
        .find_map(|p| secret.strip_prefix(p.as_bytes()))
    else {
        return false;
    };
    if body.len() != 36 || !body.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (random, check) = body.split_at(30);
    base62_6(crc32fast::hash(random)) == check
}

/// Append the checksum GitHub/npm tokens carry: `prefix + random30 + crc`. For tests and
/// example generation.
pub fn with_base62_checksum(prefix: &str, random30: &str) -> String {
    let crc = base62_6(crc32fast::hash(random30.as_bytes()));
    format!("{prefix}{random30}{}", String::from_utf8_lossy(&crc))
}

/// Find a JSON number field `"name": 123` in decoded JWT payload text.
fn json_number(json: &str, name: &str) -> Option<i64> {
    let key = format!("\"{name}\"");
    let at = json.find(&key)? + key.len();
    let rest = json[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// JWTs: three base64url parts, a JSON header with `alg`, a JSON payload; `exp` → expiresAt.
fn jwt(secret: &[u8], meta: &mut FindingMetadata) -> bool {
    let parts: Vec<&[u8]> = secret.split(|&c| c == b'.').collect();
    if parts.len() != 3 || parts[0].len() < 10 || parts[1].len() < 4 {
        return false;
    }
    let Some(header) = base64_decode(parts[0]) else {
        return false;
    };
    let Some(payload) = base64_decode(parts[1]) else {
        return false;
    };
    let (Ok(header), Ok(payload)) = (String::from_utf8(header), String::from_utf8(payload)) else {
        return false;
    };
    if !header.trim_start().starts_with('{')
        || !header.contains("\"alg\"")
        || !payload.trim_start().starts_with('{')
    {
        return false;
    }
    if let Some(exp) = json_number(&payload, "exp") {
        meta.expires_at = Some(rfc3339(exp));
    }
    true
}

/// Query parameter `name` (case-insensitive) in a URL or query string, not decoded.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?').map_or(url, |(_, q)| q);
    query.split(['&', '?']).find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// Host of a URL in `text`, if there is one.
fn url_host(text: &str) -> Option<&str> {
    let after = &text[text.find("://")? + 3..];
    let end = after
        .find(['/', '?', ':', '"', '\'', ' ', '#'])
        .unwrap_or(after.len());
    let host = &after[..end];
    (!host.is_empty()).then_some(host)
}

/// Azure SAS tokens: must carry `sig` and `se`; `se` → expiresAt, storage account from host.
fn sas_token(whole: &[u8], meta: &mut FindingMetadata) -> bool {
    let Ok(text) = std::str::from_utf8(whole) else {
        return false;
    };
    let (Some(sig), Some(se)) = (query_param(text, "sig"), query_param(text, "se")) else {
        return false;
    };
    if sig.len() < 16 {
        return false;
    }
    if let Some(t) = parse_timestamp(se) {
        meta.expires_at = Some(rfc3339(t));
    }
    if let Some(host) = url_host(text) {
        let account = host.split('.').next().unwrap_or(host);
        if host.contains(".core.windows.net")
            || host.contains(".core.chinacloudapi.cn")
            || host.contains(".core.usgovcloudapi.net")
        {
            meta.target = Some(Target {
                kind: TargetKind::StorageAccount,
                name: Some(account.to_string()),
                host: Some(host.to_string()),
            });
        }
    }
    true
}

/// Presigned URLs (S3 SigV4 / GCS V4): date + expires seconds → expiresAt.
fn presigned(whole: &[u8], date: &str, expires: &str, meta: &mut FindingMetadata) -> bool {
    let Ok(text) = std::str::from_utf8(whole) else {
        return false;
    };
    let Some(d) = query_param(text, date).and_then(parse_timestamp) else {
        return false;
    };
    let Some(e) = query_param(text, expires).and_then(|e| e.parse::<i64>().ok()) else {
        return false;
    };
    meta.expires_at = Some(rfc3339(d.saturating_add(e)));
    true
}

/// The bucket an S3 URL addresses: virtual-hosted (`bucket.s3.region.amazonaws.com`) or
/// path-style (`s3.region.amazonaws.com/bucket/key`).
fn s3_bucket_target(whole: &[u8]) -> Option<Target> {
    let text = std::str::from_utf8(whole).ok()?;
    let host = url_host(text)?.to_ascii_lowercase();
    if !host.ends_with(".amazonaws.com") && !host.ends_with(".amazonaws.com.cn") {
        return None;
    }
    let bucket = if host.starts_with("s3.") || host.starts_with("s3-") {
        let after = &text[text.find("://")? + 3..];
        let path = after.split_once('/')?.1;
        path.split(['/', '?', '#']).next()?.to_owned()
    } else {
        let end = [".s3.", ".s3-"].iter().filter_map(|m| host.find(m)).min()?;
        host[..end].to_owned()
    };
    (!bucket.is_empty()).then(|| Target {
        kind: TargetKind::S3Bucket,
        name: Some(bucket),
        host: Some(host.clone()),
    })
}

/// The bucket a Cloud Storage reference names: `gs://bucket/object`, path-style
/// (`storage.googleapis.com/bucket/object`) or virtual-hosted (`bucket.storage.googleapis.com`).
fn gcs_bucket_target(whole: &[u8]) -> Option<Target> {
    let text = std::str::from_utf8(whole).ok()?;
    let (bucket, host) = if let Some(i) = text.find("gs://") {
        let rest = &text[i + 5..];
        let end = rest
            .find(['/', '?', '#', '"', '\'', ' ', '\n'])
            .unwrap_or(rest.len());
        (rest[..end].to_ascii_lowercase(), None)
    } else {
        let host = url_host(text)?.to_ascii_lowercase();
        if host == "storage.googleapis.com" {
            let after = &text[text.find("://")? + 3..];
            let path = after.split_once('/')?.1;
            let bucket = path.split(['/', '?', '#']).next()?.to_ascii_lowercase();
            (bucket, Some(host))
        } else {
            let bucket = host.strip_suffix(".storage.googleapis.com")?.to_owned();
            (bucket, Some(host))
        }
    };
    // Bucket names: 3 to 222 characters of lowercase letters, digits, `-`, `_` and `.`.
    let valid = (3..=222).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    valid.then_some(Target {
        kind: TargetKind::GcsBucket,
        name: Some(bucket),
        host,
    })
}

/// Azure storage account keys: 88 base64 characters that decode to 64 bytes.
fn azure_storage_key(secret: &[u8]) -> bool {
    secret.len() == 88
        && secret.ends_with(b"==")
        && base64_decode(secret).is_some_and(|d| d.len() == 64)
        && !DOCUMENTATION_VALUES.iter().any(|d| d.as_bytes() == secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_checksum() {
        let t = with_base62_checksum("ghp_", "Zq8wM2rX9vLkT4nB7cD1eF3gH5jK6m");
        let mut m = FindingMetadata::default();
        assert!(Validator::GithubChecksum.check(t.as_bytes(), t.as_bytes(), &mut m));
        let mut bad = t.clone().into_bytes();
        bad[10] = if bad[10] == b'a' { b'b' } else { b'a' };
        assert!(!Validator::GithubChecksum.check(&bad, &bad, &mut m));
    }

    #[test]
    fn aws_account_id_decodes() {
        // Published example: ASIAY34FZKBOKMUTVV7A belongs to account 609629065308.
        let mut m = FindingMetadata::default();
        assert!(Validator::AwsKeyId.check(b"ASIAY34FZKBOKMUTVV7A", b"", &mut m));
        assert_eq!(m.aws_account_id.as_deref(), Some("609629065308"));
    }

    #[test]
    fn jwt_expiry() {
        // {"alg":"HS256","typ":"JWT"} . {"sub":"1","exp":1735689600}
        let t = b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwiZXhwIjoxNzM1Njg5NjAwfQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
        let mut m = FindingMetadata::default();
        assert!(Validator::Jwt.check(t, t, &mut m));
        assert_eq!(m.expires_at.as_deref(), Some("2025-01-01T00:00:00Z"));
    }

    #[test]
    fn sas_and_presigned() {
        let url = b"https://acct01.blob.core.windows.net/c/b?sv=2022-11-02&se=2025-01-01T00%3A00%3A00Z&sp=r&sig=AbCdEfGhIjKlMnOpQrStUvWxYz0123456789%2B%2F%3D";
        let mut m = FindingMetadata::default();
        assert!(Validator::SasToken.check(b"", url, &mut m));
        assert_eq!(m.expires_at.as_deref(), Some("2025-01-01T00:00:00Z"));
        assert_eq!(
            m.target.as_ref().and_then(|t| t.name.as_deref()),
            Some("acct01")
        );
        let s3 = b"https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=ab";
        let mut m = FindingMetadata::default();
        assert!(Validator::S3Presigned.check(b"", s3, &mut m));
        assert_eq!(m.expires_at.as_deref(), Some("2025-01-01T01:00:00Z"));
        let target = m.target.unwrap();
        assert_eq!(
            (target.kind, target.name.as_deref()),
            (TargetKind::S3Bucket, Some("b"))
        );
        let path_style = b"https://s3.eu-west-1.amazonaws.com/media-bucket/a.png?X-Amz-Date=20250101T000000Z&X-Amz-Expires=60&X-Amz-Signature=ab";
        let mut m = FindingMetadata::default();
        assert!(Validator::S3Presigned.check(b"", path_style, &mut m));
        let target = m.target.unwrap();
        assert_eq!(target.name.as_deref(), Some("media-bucket"));
        assert_eq!(target.host.as_deref(), Some("s3.eu-west-1.amazonaws.com"));
        let dotted = b"https://backups.prod.s3.us-east-1.amazonaws.com/k?X-Amz-Date=20250101T000000Z&X-Amz-Expires=60&X-Amz-Signature=ab";
        let mut m = FindingMetadata::default();
        assert!(Validator::S3Presigned.check(b"", dotted, &mut m));
        assert_eq!(m.target.unwrap().name.as_deref(), Some("backups.prod"));
        let gcs = b"https://storage.googleapis.com/shop-exports/o.csv?X-Goog-Date=20250101T000000Z&X-Goog-Expires=900&X-Goog-Signature=ab";
        let mut m = FindingMetadata::default();
        assert!(Validator::GcsSigned.check(b"", gcs, &mut m));
        assert_eq!(m.expires_at.as_deref(), Some("2025-01-01T00:15:00Z"));
        let target = m.target.unwrap();
        assert_eq!(
            (target.kind, target.name.as_deref(), target.host.as_deref()),
            (
                TargetKind::GcsBucket,
                Some("shop-exports"),
                Some("storage.googleapis.com")
            )
        );
        // Not an AWS host (MinIO, a proxy): no bucket is claimed.
        let other = b"https://minio.internal:9000/b/k?X-Amz-Date=20250101T000000Z&X-Amz-Expires=60&X-Amz-Signature=ab";
        let mut m = FindingMetadata::default();
        assert!(Validator::S3Presigned.check(b"", other, &mut m));
        assert_eq!(m.target, None);
    }

    #[test]
    fn gcs_bucket_references() {
        let name = |text: &str| gcs_bucket_target(text.as_bytes()).and_then(|t| t.name);
        assert_eq!(
            name("gs://Backups-Prod/db/x.dump").as_deref(),
            Some("backups-prod")
        );
        assert_eq!(
            name("\"gs://media.example.com\"").as_deref(),
            Some("media.example.com")
        );
        assert_eq!(
            name("https://storage.googleapis.com/reports/q1.pdf?x=1").as_deref(),
            Some("reports")
        );
        assert_eq!(
            name("https://exports.storage.googleapis.com/o.csv").as_deref(),
            Some("exports")
        );
        // Not Cloud Storage, or no valid bucket name.
        assert_eq!(name("https://storage.example.com/b/o"), None);
        assert_eq!(name("https://storage.googleapis.com/"), None);
        assert_eq!(name("gs://a/"), None);
        assert_eq!(name("gs://under$score/o"), None);
    }

    #[test]
    fn entropy() {
        assert!(shannon_entropy(b"aaaa") < 0.01);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
        assert_eq!(
            Validator::parse("entropy:3.5").unwrap(),
            Validator::Entropy(3.5)
        );
        assert!(Validator::parse("entropy:x").is_err());
    }

    #[test]
    fn generated_looking_values() {
        let check =
            |v: &Validator, s: &str| v.check(s.as_bytes(), b"", &mut FindingMetadata::default());
        let generated = Validator::parse("generated").unwrap();
        for v in ["9f3c2a7e1b5d", "GaQxsPJZXhwBSBzT", "ZYn9ZhyiA4uoRgna"] {
            assert!(check(&generated, v), "{v}");
        }
        for v in [
            "my-secret-name",
            "1234567890",
            "MyAppSecretKeyName",
            "access_token_name",
        ] {
            assert!(!check(&generated, v), "{v}");
        }
        let field = Validator::parse("not-field-name").unwrap();
        assert!(check(&field, "Zq8wM2rX9vLkT4nB"));
        for named in [
            "subject_token_0",
            "CLOUDSDK_PROXY_PASSWORD_value",
            "V1SecretVolumeSource",
        ] {
            assert!(!check(&field, named), "{named}");
        }
    }
}
