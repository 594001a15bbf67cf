//! The CRC-32 variants the image, partition-table and LVM formats checksum their headers with.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crcs_match_reference_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }
}
