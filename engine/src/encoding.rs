//! Text encodings: what the bytes of a file are, and UTF-16 → UTF-8 so one set of rules serves
//! Windows files (PowerShell history, `unattend.xml`, registry exports are often UTF-16).
//!
//! Decision on binary files: a file with NUL bytes in its first 8 KiB that is not UTF-16 is
//! *binary*. Binary files are still searched for keyword rules (a private key or a connection
//! string embedded in a database file, a core dump or a compiled config is a real secret), but
//! path rules — which run their regex over the whole file — are not run on them.

use std::borrow::Cow;

/// How many leading bytes decide the encoding.
pub const SNIFF_LEN: usize = 8 * 1024;

/// What a file's bytes were taken to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextKind {
    /// UTF-8 or any ASCII-compatible text.
    Text,
    /// UTF-16 little-endian (BOM `FF FE`, or NULs in every odd byte).
    Utf16Le,
    /// UTF-16 big-endian (BOM `FE FF`, or NULs in every even byte).
    Utf16Be,
    /// NULs and not UTF-16.
    Binary,
}

/// Guess the encoding from a BOM, or from NULs in every other byte.
pub fn detect(data: &[u8]) -> TextKind {
    if data.starts_with(&[0xFF, 0xFE]) {
        return TextKind::Utf16Le;
    }
    if data.starts_with(&[0xFE, 0xFF]) {
        return TextKind::Utf16Be;
    }
    let head = &data[..data.len().min(SNIFF_LEN)];
    if !head.contains(&0) {
        return TextKind::Text;
    }
    // UTF-16 without BOM: ASCII-range text has a NUL in (nearly) every odd (LE) or even (BE) byte
    // and (nearly) none in the other.
    let pairs = head.len() / 2;
    if pairs >= 2 {
        let (mut even, mut odd) = (0usize, 0usize);
        for p in head.chunks_exact(2) {
            even += usize::from(p[0] == 0);
            odd += usize::from(p[1] == 0);
        }
        if odd * 10 >= pairs * 7 && even * 20 <= pairs {
            return TextKind::Utf16Le;
        }
        if even * 10 >= pairs * 7 && odd * 20 <= pairs {
            return TextKind::Utf16Be;
        }
    }
    TextKind::Binary
}

/// Transcode UTF-16 to UTF-8 (lossy: unpaired surrogates become U+FFFD); other kinds pass
/// through unchanged.
pub fn to_utf8(data: &[u8], kind: TextKind) -> Cow<'_, [u8]> {
    let le = match kind {
        TextKind::Utf16Le => true,
        TextKind::Utf16Be => false,
        TextKind::Text | TextKind::Binary => return Cow::Borrowed(data),
    };
    let body =
        if (le && data.starts_with(&[0xFF, 0xFE])) || (!le && data.starts_with(&[0xFE, 0xFF])) {
            &data[2..]
        } else {
            data
        };
    let units = body.chunks_exact(2).map(|p| {
        if le {
            u16::from_le_bytes([p[0], p[1]])
        } else {
            u16::from_be_bytes([p[0], p[1]])
        }
    });
    let mut out = String::with_capacity(body.len() / 2);
    out.extend(char::decode_utf16(units).map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER)));
    Cow::Owned(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16(s: &str, le: bool, bom: bool) -> Vec<u8> {
        let mut v = Vec::new();
        if bom {
            v.extend_from_slice(if le { &[0xFF, 0xFE] } else { &[0xFE, 0xFF] });
        }
        for u in s.encode_utf16() {
            v.extend_from_slice(&if le { u.to_le_bytes() } else { u.to_be_bytes() });
        }
        v
    }

    #[test]
    fn utf16_with_and_without_bom() {
        let s = "password=Zq8wM2rX9vLk é\r\n";
        for (le, bom) in [(true, true), (true, false), (false, true), (false, false)] {
            let b = utf16(s, le, bom);
            let k = detect(&b);
            assert_eq!(
                k,
                if le {
                    TextKind::Utf16Le
                } else {
                    TextKind::Utf16Be
                }
            );
            assert_eq!(to_utf8(&b, k).as_ref(), s.as_bytes());
        }
    }

    #[test]
    fn text_and_binary() {
        assert_eq!(detect(b"hello"), TextKind::Text);
        assert_eq!(
            detect(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0>\0"),
            TextKind::Binary
        );
        assert_eq!(detect(b""), TextKind::Text);
    }
}
