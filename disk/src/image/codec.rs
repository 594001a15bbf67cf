//! Small decoding helpers shared by the image, partition-table and LVM parsers: fixed-width
//! integers read without panicking, and the CRC variants these formats use.
//!
//! The integer readers return 0 when the field lies outside the buffer. Every caller reads
//! fields of a header it has already read whole into a buffer of the header's size, so this
//! only matters for a bug, where a zero is safer than a panic on hostile input.

/// Little-endian `u16` at `off`.
pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    array(b, off).map_or(0, u16::from_le_bytes)
}
/// Little-endian `u32` at `off`.
pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    array(b, off).map_or(0, u32::from_le_bytes)
}
/// Little-endian `u64` at `off`.
pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    array(b, off).map_or(0, u64::from_le_bytes)
}
/// Big-endian `u32` at `off`.
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    array(b, off).map_or(0, u32::from_be_bytes)
}
/// Big-endian `u64` at `off`.
pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    array(b, off).map_or(0, u64::from_be_bytes)
}

/// The `N` bytes at `off`, if they are inside `b`.
pub(crate) fn array<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// Whether `b` holds `magic` at `off`.
pub(crate) fn has_at(b: &[u8], off: usize, magic: &[u8]) -> bool {
    off.checked_add(magic.len())
        .and_then(|end| b.get(off..end))
        .is_some_and(|s| s == magic)
}

/// Table of a reflected CRC-32 with polynomial `poly` (reversed form).
const fn crc_table(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { poly ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32_IEEE: [u32; 256] = crc_table(0xEDB8_8320);
static CRC32_CASTAGNOLI: [u32; 256] = crc_table(0x82F6_3B78);

fn crc_update(table: &[u32; 256], mut crc: u32, data: &[u8]) -> u32 {
    for &byte in data {
        crc = table[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-32 (IEEE 802.3, as zlib and GPT compute it).
pub(crate) fn crc32(data: &[u8]) -> u32 {
    !crc_update(&CRC32_IEEE, !0, data)
}

/// CRC-32C (Castagnoli), as VHDX checksums its headers and regions.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    !crc_update(&CRC32_CASTAGNOLI, !0, data)
}

/// LVM2's checksum: the IEEE table, seeded with `0xf597a6cf`, no final inversion.
pub(crate) fn lvm_crc(data: &[u8]) -> u32 {
    crc_update(&CRC32_IEEE, 0xf597_a6cf, data)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crcs_match_reference_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn readers_never_panic_out_of_range() {
        let b = [1u8, 2, 3];
        assert_eq!(le16(&b, 1), 0x0302);
        assert_eq!(le32(&b, 1), 0);
        assert_eq!(be64(&b, usize::MAX), 0);
        assert!(!has_at(&b, usize::MAX, b"x"));
        assert!(has_at(&b, 1, &[2, 3]));
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
