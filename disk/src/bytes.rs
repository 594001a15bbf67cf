//! Reading fixed-width fields out of on-disk bytes: the one toolkit every parser of this crate
//! uses, little- and big-endian alike.
//!
//! **The rule for a read past the end:** every reader here returns `None` when the field does not
//! lie wholly inside the buffer — including an offset so large that `offset + width` overflows.
//! Nothing here panics, whatever the offset. What a missing field means is the caller's call, and
//! it says so where it reads:
//! - `?` on the `Option` (a parser that gives up on a short structure, as NTFS and btrfs do);
//! - `.unwrap_or(0)` (a field of a header already read whole into a buffer of the header's size,
//!   where only a bug could miss it, or a field whose absence reads as "not set");
//! - [`Fields`], which turns the `None` into [`DiskError::Corrupt`] naming the format, for the
//!   parsers that propagate errors with `?` (ext4, jbd2, XFS).

use crate::{DiskError, Result};

/// The `N` bytes at `off`, if they lie inside `b`.
pub(crate) fn array<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// The `len` bytes at `off`, if they lie inside `b`.
pub(crate) fn slice(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

/// Whether `b` holds `magic` at `off`.
pub(crate) fn has_at(b: &[u8], off: usize, magic: &[u8]) -> bool {
    slice(b, off, magic.len()) == Some(magic)
}

/// The byte at `off`.
pub(crate) fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

/// Little-endian `u16` at `off`.
pub(crate) fn le_u16(b: &[u8], off: usize) -> Option<u16> {
    array(b, off).map(u16::from_le_bytes)
}

/// Little-endian `u32` at `off`.
pub(crate) fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    array(b, off).map(u32::from_le_bytes)
}

/// Little-endian `u64` at `off`.
pub(crate) fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    array(b, off).map(u64::from_le_bytes)
}

/// Little-endian `i64` at `off`.
pub(crate) fn le_i64(b: &[u8], off: usize) -> Option<i64> {
    array(b, off).map(i64::from_le_bytes)
}

/// Big-endian `u16` at `off`.
pub(crate) fn be_u16(b: &[u8], off: usize) -> Option<u16> {
    array(b, off).map(u16::from_be_bytes)
}

/// Big-endian `u32` at `off`.
pub(crate) fn be_u32(b: &[u8], off: usize) -> Option<u32> {
    array(b, off).map(u32::from_be_bytes)
}

/// Big-endian `u64` at `off`.
pub(crate) fn be_u64(b: &[u8], off: usize) -> Option<u64> {
    array(b, off).map(u64::from_be_bytes)
}

/// The little-endian UTF-16 code units of `b` (a trailing odd byte is dropped), as NTFS, FAT
/// long names and GPT store names.
pub(crate) fn utf16_le_units(b: &[u8]) -> impl Iterator<Item = u16> + '_ {
    b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]))
}

/// A GUID as stored by GPT and VHDX (first three fields little-endian), in its usual text form.
pub(crate) fn guid_string(b: &[u8; 16]) -> String {
    format!(
        "{:08X}-{:04X}-{:04X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// Byte order of a format's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endian {
    Little,
    Big,
}

/// The readers above for one format of one byte order, failing instead of returning `None`: a
/// field past the end of its structure is [`DiskError::Corrupt`] naming the format (`what`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fields {
    what: &'static str,
    endian: Endian,
}

impl Fields {
    /// Little-endian fields of format `what`.
    pub(crate) const fn le(what: &'static str) -> Self {
        Fields {
            what,
            endian: Endian::Little,
        }
    }

    /// Big-endian fields of format `what`.
    pub(crate) const fn be(what: &'static str) -> Self {
        Fields {
            what,
            endian: Endian::Big,
        }
    }

    fn past_end<T>(&self, value: Option<T>, ty: &str, off: usize) -> Result<T> {
        value.ok_or_else(|| {
            DiskError::corrupt(self.what, format!("read of {ty} at {off} past structure"))
        })
    }

    /// The byte at `off`.
    pub(crate) fn u8(&self, b: &[u8], off: usize) -> Result<u8> {
        self.past_end(u8_at(b, off), "u8", off)
    }

    /// The `u16` at `off`.
    pub(crate) fn u16(&self, b: &[u8], off: usize) -> Result<u16> {
        let v = match self.endian {
            Endian::Little => le_u16(b, off),
            Endian::Big => be_u16(b, off),
        };
        self.past_end(v, "u16", off)
    }

    /// The `u32` at `off`.
    pub(crate) fn u32(&self, b: &[u8], off: usize) -> Result<u32> {
        let v = match self.endian {
            Endian::Little => le_u32(b, off),
            Endian::Big => be_u32(b, off),
        };
        self.past_end(v, "u32", off)
    }

    /// The `u64` at `off`.
    pub(crate) fn u64(&self, b: &[u8], off: usize) -> Result<u64> {
        let v = match self.endian {
            Endian::Little => le_u64(b, off),
            Endian::Big => be_u64(b, off),
        };
        self.past_end(v, "u64", off)
    }

    /// The `len` bytes at `off`.
    pub(crate) fn slice<'a>(&self, b: &'a [u8], off: usize, len: usize) -> Result<&'a [u8]> {
        slice(b, off, len).ok_or_else(|| {
            DiskError::corrupt(
                self.what,
                format!("{len} bytes at {off} past structure end"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_never_panic_out_of_range() {
        let b = [1u8, 2, 3];
        assert_eq!(le_u16(&b, 1), Some(0x0302));
        assert_eq!(be_u16(&b, 1), Some(0x0203));
        assert_eq!(le_u32(&b, 1), None);
        assert_eq!(be_u64(&b, usize::MAX), None);
        assert_eq!(u8_at(&b, 3), None);
        assert_eq!(slice(&b, usize::MAX, 2), None);
        assert!(!has_at(&b, usize::MAX, b"x"));
        assert!(has_at(&b, 1, &[2, 3]));
    }

    #[test]
    fn fields_fail_as_corruption_naming_the_format() {
        let b = [0u8, 1];
        assert_eq!(Fields::be("xfs").u16(&b, 0).unwrap(), 1);
        assert_eq!(Fields::le("ext4").u16(&b, 0).unwrap(), 0x100);
        let err = Fields::le("ext4").u32(&b, usize::MAX).unwrap_err();
        assert!(err.to_string().contains("read of u32 at"), "{err}");
        assert!(Fields::be("jbd2").slice(&b, 1, 2).is_err());
    }

    #[test]
    fn guid_text_form() {
        let g = [
            0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
            0xC9, 0x3B,
        ];
        assert_eq!(guid_string(&g), "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    }
}
