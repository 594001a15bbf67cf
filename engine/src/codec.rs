//! Small decoders the validators and SSH key parsing need: base64 (standard and URL-safe,
//! whitespace ignored), a DER reader and an SSH wire-format reader. All of them take hostile
//! input: they return `None` instead of panicking and never allocate more than their input.

/// Decode base64 (standard or URL-safe alphabet, padding optional, ASCII whitespace ignored).
pub fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut padding = false;
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        if padding {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // 6 leftover bits mean a length of 1 mod 4: not base64.
    if bits >= 6 {
        return None;
    }
    Some(out)
}

/// Encode bytes as standard base64 without padding (the form of OpenSSH `SHA256:` fingerprints).
pub fn base64_encode_nopad(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Lowercase hex.
pub fn hex(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// One DER TLV: tag byte and content.
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    /// The tag byte (`0x30` SEQUENCE, `0x02` INTEGER, …).
    pub tag: u8,
    /// The content octets, without tag and length.
    pub content: &'a [u8],
}

/// Sequential DER reader over a byte slice.
pub struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    /// A reader positioned at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Der { rest: data }
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Next TLV (definite lengths only, at most 4 length bytes).
    pub fn next_tlv(&mut self) -> Option<Tlv<'a>> {
        let (&tag, rest) = self.rest.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        let (content, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Tlv { tag, content })
    }

    /// Next TLV, which must have `tag`.
    pub fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        let t = self.next_tlv()?;
        (t.tag == tag).then_some(t.content)
    }

    /// Next SEQUENCE, as a reader over its content.
    pub fn sequence(&mut self) -> Option<Der<'a>> {
        self.expect(0x30).map(Der::new)
    }

    /// Next INTEGER, as its big-endian two's-complement bytes.
    pub fn integer(&mut self) -> Option<&'a [u8]> {
        self.expect(0x02)
    }
}

/// DER/SSH integers: strip leading zero bytes (the sign byte is re-added by [`ssh_mpint`]).
pub fn strip_leading_zeros(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

/// Append an SSH `string` (u32 length + bytes).
pub fn ssh_string(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// Append an SSH `mpint` from an unsigned big-endian magnitude.
pub fn ssh_mpint(out: &mut Vec<u8>, magnitude: &[u8]) {
    let m = strip_leading_zeros(magnitude);
    if m.first().is_some_and(|b| b & 0x80 != 0) {
        out.extend_from_slice(&((m.len() + 1) as u32).to_be_bytes());
        out.push(0);
        out.extend_from_slice(m);
    } else {
        ssh_string(out, m);
    }
}

/// Sequential reader of SSH wire-format data.
pub struct SshReader<'a> {
    rest: &'a [u8],
}

impl<'a> SshReader<'a> {
    /// A reader positioned at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        SshReader { rest: data }
    }

    /// Next big-endian `uint32`.
    pub fn u32(&mut self) -> Option<u32> {
        let (head, rest) = self.rest.split_at_checked(4)?;
        self.rest = rest;
        Some(u32::from_be_bytes(head.try_into().ok()?))
    }

    /// Next `string`: a `uint32` length, then that many bytes.
    pub fn string(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        let (s, rest) = self.rest.split_at_checked(len)?;
        self.rest = rest;
        Some(s)
    }

    /// Next `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (s, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for s in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let e = base64_encode_nopad(s);
            assert_eq!(base64_decode(e.as_bytes()).unwrap(), s);
        }
        assert_eq!(base64_decode(b"Zm9v\nYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode(b"Zg==").unwrap(), b"f");
        assert!(base64_decode(b"Z").is_none());
        assert!(base64_decode(b"Zg=a").is_none());
        assert!(base64_decode(b"Z$").is_none());
    }

    #[test]
    fn der_rejects_truncation() {
        let mut d = Der::new(&[0x30, 0x05, 0x02, 0x01]);
        assert!(d.next_tlv().is_none());
        let mut d = Der::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_tlv().is_none());
        let mut d = Der::new(&[0x30, 0x03, 0x02, 0x01, 0x05]);
        let mut s = d.sequence().unwrap();
        assert_eq!(s.integer().unwrap(), &[5]);
        assert!(s.is_empty());
    }
}
