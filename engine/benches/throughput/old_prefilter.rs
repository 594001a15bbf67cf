//! The keyword prefilter as it was before the SIMD one (commit ac4f658, `engine/src/prefilter.rs`),
//! kept only so the throughput bench can measure old and new in one run on the same text. Not
//! used by the engine.
//!
//! A byte-at-a-time hash of four lowercased bytes against a 32 KiB bitset, after lowercasing each
//! 64 KiB block into a copy; three-byte keywords entered once per possible fourth byte.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// The gram map's keys are already well-mixed 32-bit values: a multiply is hash enough, and
/// SipHash would cost more than the rest of a candidate check.
#[derive(Default)]
struct GramHasher(u64);

impl Hasher for GramHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type GramMap = HashMap<u32, Vec<u32>, BuildHasherDefault<GramHasher>>;

/// log2 of the bitset size in bits.
const BITS_LOG2: u32 = 18;
/// Text is lowercased and searched in blocks of this size (plus the longest keyword's overlap),
/// so memory stays bounded whatever the file size.
const BLOCK: usize = 64 * 1024;

#[inline]
fn hash(gram: u32) -> usize {
    (gram.wrapping_mul(0x9E37_79B1) >> (32 - BITS_LOG2)) as usize
}

/// Keyword prefilter over ASCII keywords of at least 3 bytes.
pub struct OldPrefilter {
    bits: Vec<u64>,
    /// Lowercased first four bytes → ids of the keywords starting with them.
    grams: GramMap,
    /// Lowercased keywords, by id.
    patterns: Vec<Vec<u8>>,
    /// Ids of the 3-byte keywords (checked separately in the last 3 bytes of the text).
    short: Vec<u32>,
    max_len: usize,
}

impl OldPrefilter {
    /// Build over `patterns` (each ASCII, ≥ 3 bytes; shorter ones are ignored).
    pub fn new<S: AsRef<[u8]>>(patterns: &[S]) -> Self {
        let mut bits = vec![0u64; (1usize << BITS_LOG2) / 64];
        let mut grams = GramMap::default();
        let mut short = Vec::new();
        let mut stored = Vec::with_capacity(patterns.len());
        let mut max_len = 4;
        for (id, p) in patterns.iter().enumerate() {
            let p = p.as_ref().to_ascii_lowercase();
            let id = id as u32;
            max_len = max_len.max(p.len());
            let mut add = |gram: [u8; 4]| {
                let g = u32::from_le_bytes(gram);
                let h = hash(g);
                bits[h / 64] |= 1 << (h % 64);
                grams.entry(g).or_default().push(id);
            };
            match p.len() {
                0..=2 => {}
                3 => {
                    short.push(id);
                    // Any fourth byte the lowercased text can hold.
                    for b in (0..=255u8).filter(|b| !b.is_ascii_uppercase()) {
                        add([p[0], p[1], p[2], b]);
                    }
                }
                _ => add([p[0], p[1], p[2], p[3]]),
            }
            stored.push(p);
        }
        OldPrefilter {
            bits,
            grams,
            patterns: stored,
            short,
            max_len,
        }
    }

    /// Call `hit(pattern id, start, end)` for every keyword occurrence in `hay`.
    pub fn for_each_match(&self, hay: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        let mut folded = Vec::with_capacity(BLOCK + self.max_len);
        let mut start = 0;
        while start < hay.len() {
            let end = (start + BLOCK + self.max_len - 1).min(hay.len());
            folded.clear();
            folded.extend(hay[start..end].iter().map(u8::to_ascii_lowercase));
            // Positions owned by this block; the overlap only completes keywords starting here.
            let owned = BLOCK.min(hay.len() - start);
            let last4 = folded.len().saturating_sub(3).min(owned);
            for (i, w) in folded.windows(4).take(last4).enumerate() {
                let g = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                let h = hash(g);
                if self.bits[h / 64] & (1 << (h % 64)) == 0 {
                    continue;
                }
                if let Some(ids) = self.grams.get(&g) {
                    for &id in ids {
                        let p = &self.patterns[id as usize];
                        if folded.get(i..i + p.len()) == Some(p.as_slice()) {
                            hit(id as usize, start + i, start + i + p.len());
                        }
                    }
                }
            }
            // A 3-byte keyword in the very last 3 bytes of the text has no fourth byte.
            if end == hay.len() && folded.len() >= 3 && last4 < owned {
                let i = folded.len() - 3;
                for &id in &self.short {
                    if folded[i..] == self.patterns[id as usize][..] {
                        hit(id as usize, start + i, start + i + 3);
                    }
                }
            }
            start += owned;
        }
    }
}
