//! A blob's SAS URL, kept so that its query string (the signature: a credential) is never shown.

use std::fmt;

/// Why a string is not a usable SAS URL. Never quotes the string.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a usable blob SAS URL: {0}")]
pub struct SasUrlError(&'static str);

/// A blob URL with its shared access signature (`https://host/container/blob?sv=…&sig=…`).
///
/// [`Debug`] and [`Display`](fmt::Display) show only `scheme://host/path?<redacted>`; the query
/// string is reachable only through the request URIs this module builds.
#[derive(Clone, PartialEq, Eq)]
pub struct SasUrl {
    /// `scheme://authority/path`, no query.
    base: String,
    /// The query string without `?` (the SAS token).
    query: String,
}

impl SasUrl {
    /// Parse `url`: http or https, a host, a path naming the blob, a query (the SAS token).
    pub fn parse(url: &str) -> Result<Self, SasUrlError> {
        let (base, query) = url
            .split_once('?')
            .ok_or(SasUrlError("no query string (SAS token)"))?;
        let uri: http::Uri = base
            .parse()
            .map_err(|_| SasUrlError("not a URL (before the query string)"))?;
        match uri.scheme_str() {
            Some("https") | Some("http") => {}
            _ => return Err(SasUrlError("the scheme is not https or http")),
        }
        if uri.authority().is_none() {
            return Err(SasUrlError("no host"));
        }
        if uri.path().trim_matches('/').is_empty() {
            return Err(SasUrlError("no blob path"));
        }
        if query.is_empty() || query.contains('#') {
            return Err(SasUrlError("empty SAS token or a fragment"));
        }
        Ok(SasUrl {
            base: base.to_owned(),
            query: query.to_owned(),
        })
    }

    /// The request URI with `extra` query parameters (`comp=pagelist`) before the SAS token.
    pub(crate) fn uri(&self, extra: &str) -> Result<http::Uri, SasUrlError> {
        let text = if extra.is_empty() {
            format!("{}?{}", self.base, self.query)
        } else {
            format!("{}?{}&{}", self.base, extra, self.query)
        };
        text.parse()
            .map_err(|_| SasUrlError("the SAS token is not a valid query string"))
    }

    /// `text` with the SAS token, and any `sig=` value, replaced by `<redacted>`: a safety net
    /// for messages that come from lower layers (the HTTP client), which should not hold it.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.query, "<redacted>");
        let mut from = 0;
        while let Some(at) = out[from..].find("sig=") {
            let start = from + at + 4;
            let end = out[start..]
                .find(|c: char| c == '&' || c.is_whitespace() || c == '"' || c == '\'')
                .map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "<redacted>");
            from = start + "<redacted>".len();
        }
        out
    }
}

impl fmt::Display for SasUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}?<redacted>", self.base)
    }
}

impl fmt::Debug for SasUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SasUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "PLANTEDsig0123456789abcdef%2B%3D";

    fn url() -> String {
        format!(
            "https://acct.blob.core.windows.net/c/disk.vhd?sv=2021-08-06&sr=b&sp=r&sig={SECRET}"
        )
    }

    #[test]
    fn shows_only_the_blob_never_the_token() {
        let sas = SasUrl::parse(&url()).unwrap();
        for shown in [format!("{sas}"), format!("{sas:?}"), format!("{sas:#?}")] {
            assert!(
                !shown.contains(SECRET) && !shown.contains("sig="),
                "{shown}"
            );
            assert!(shown.contains("https://acct.blob.core.windows.net/c/disk.vhd?<redacted>"));
        }
        let uri = sas.uri("comp=pagelist").unwrap().to_string();
        assert!(uri.ends_with(&format!(
            "?comp=pagelist&sv=2021-08-06&sr=b&sp=r&sig={SECRET}"
        )));
    }

    #[test]
    fn rejects_urls_without_quoting_them() {
        for bad in [
            format!("ftp://h/c/b?sig={SECRET}"),
            "https://h/c/b".to_owned(),
            format!("https://h/?sig={SECRET}"),
            format!("not a url?sig={SECRET}"),
        ] {
            let e = SasUrl::parse(&bad).unwrap_err();
            assert!(!format!("{e} {e:?}").contains(SECRET));
        }
    }

    #[test]
    fn scrub_removes_the_token_and_any_signature() {
        let sas = SasUrl::parse(&url()).unwrap();
        let said = format!("error for {} and sig=other&x=1 and sig={SECRET}", url());
        let clean = sas.scrub(&said);
        assert!(
            !clean.contains(SECRET) && !clean.contains("other"),
            "{clean}"
        );
        assert!(clean.contains("sig=<redacted>&x=1"));
    }
}
