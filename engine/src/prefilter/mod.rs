//! The keyword prefilter: every occurrence of every rule keyword, ASCII case-insensitive, in one
//! pass.
//!
//! Why not a plain Aho-Corasick DFA: with ~500 keywords the DFA has thousands of states, and on
//! text full of identifiers (logs, source code, base64) its transition table does not stay in
//! cache; measured on the throughput bench it ran at ~320 MiB/s of CPU time. Nor Teddy (the
//! `aho_corasick::packed` SIMD searcher): it holds at most 64 patterns in 8 or 16 buckets, and
//! it discriminates by nibbles — the keywords are mostly lowercase letters, whose high nibble is
//! 6 or 7, so with 500 keywords every bucket would pass most letter triples.
//!
//! Instead, the bytes at each position are folded to one case by setting bit 5 of each byte
//! (`| 0x20`: a superset of ASCII lowercasing, so no copy of the text is made) and tested against
//! one 32 KiB table (L1-resident) of 8192 32-bit words with one memory access: a hash of the
//! position's first three bytes picks a word; a hash of its first four bytes, and one of its
//! bytes 2–5, each pick two bits of that word, and the position passes if either pair is set (a
//! two-probe Bloom filter inside one word). A keyword of 4–5 bytes sets the pair of its first
//! four bytes, a longer one the pair of its bytes 2–5 (so it is keyed by six bytes, and common
//! words that only begin a keyword — `user`, `auth`, `serv` — rarely pass), a three-byte one its
//! whole word. Positions that pass (about 1 % on the bench's text) are verified: each set bit
//! indexes (by rank: the set bits before it) a slot listing the keywords whose first bit it is,
//! each compared first by its folded first eight bytes against the text's in one `u64` operation,
//! then exactly, ASCII case-insensitively.
//!
//! On x86_64 with AVX2 (detected at run time) the test runs on 32 positions per step, one
//! gather of eight words per eight positions ([`avx2`]); elsewhere, and for the last few positions, a scalar loop runs the same
//! test. Both feed the same exact verification, so the results are identical (a differential
//! test and the `prefilter` fuzz target compare them with each other and with a naive search).
//!
//! Matches are reported for every keyword at every position (overlapping semantics), as
//! `(pattern id, start, end)` in increasing `start` order, and in increasing pattern id at one
//! start. Memory is the table, the slots and the keywords: nothing grows with the text.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(test)]
mod tests;

/// log2 of the table size in bits.
const BITS_LOG2: u32 = 18;
/// The table, in 32-bit words (the unit the SIMD kernel gathers).
const WORDS: usize = 1 << (BITS_LOG2 - 5);
/// [`FOLD`] over eight bytes.
const FOLD8: u64 = 0x2020_2020_2020_2020;
/// Case fold of four bytes at once: bit 5 set in each (`A`→`a`; also `@`→`` ` ``, `_`→DEL, …,
/// collisions the exact verification rejects).
const FOLD: u32 = 0x2020_2020;
/// The three-byte gram of a folded four-byte gram (little-endian: its first three bytes).
const LOW3: u32 = 0x00FF_FFFF;
/// Multipliers of the three hashes (odd, well spread, distinct).
const MUL3: u32 = 0x85EB_CA6B;
const MUL4: u32 = 0x9E37_79B1;
const MUL6: u32 = 0xC2B2_AE35;
/// Right shift from a product to a word index, and to a bit in a word.
const WORD_SHIFT: u32 = 32 - (BITS_LOG2 - 5);
const BIT_SHIFT: u32 = 27;
/// Right shift from a product to a second bit in a word (the product's next five bits).
const BIT2_SHIFT: u32 = 22;

/// The word of a position: a hash of its first three bytes (`g` is its folded gram).
#[inline]
fn word_of(g: u32) -> u32 {
    (g & LOW3).wrapping_mul(MUL3) >> WORD_SHIFT
}

/// The table bit a keyword of 3–5 bytes (and a text position) tests: its word, and a hash of its
/// first four bytes.
#[inline]
fn hash4(g: u32) -> u32 {
    word_of(g) << 5 | g.wrapping_mul(MUL4) >> BIT_SHIFT
}

/// The table bit a keyword of ≥ 6 bytes (and a text position) tests: its word, and a hash of its
/// bytes 2–5 (`g2`, the gram two bytes further).
#[inline]
fn hash6(g: u32, g2: u32) -> u32 {
    word_of(g) << 5 | g2.wrapping_mul(MUL6) >> BIT_SHIFT
}

#[inline]
fn bit(bits: &[u32; WORDS], h: u32) -> bool {
    bits[(h >> 5) as usize] >> (h & 31) & 1 == 1
}

/// The two bits of `word` a product selects (the first is the one [`hash4`]/[`hash6`] name),
/// both set or not: a two-probe Bloom filter within one word.
#[inline]
fn both(word: u32, product: u32) -> u32 {
    word >> (product >> BIT_SHIFT) & word >> (product >> BIT2_SHIFT & 31)
}

/// The second bit a keyword sets in its word, beside the one its hash names.
#[inline]
fn second_bit(product: u32) -> u32 {
    1 << (product >> BIT2_SHIFT & 31)
}

/// Whether the folded eight bytes `w` at a position may start a keyword (false: certainly not).
#[inline]
fn may_start(bits: &[u32; WORDS], w: u64) -> bool {
    let (g, g2) = (w as u32, (w >> 16) as u32);
    let word = bits[word_of(g) as usize];
    // Most words are empty: skip the two multiplies.
    word != 0 && (both(word, g.wrapping_mul(MUL4)) | both(word, g2.wrapping_mul(MUL6))) & 1 == 1
}

/// The eight bytes at `i`, folded (bytes past the end read as 0 before folding).
#[inline]
fn folded8(hay: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    let rest = hay.get(i..).unwrap_or_default();
    let n = rest.len().min(8);
    w[..n].copy_from_slice(&rest[..n]);
    u64::from_le_bytes(w) | FOLD8
}

/// One keyword in a table slot.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    /// Its first (up to) eight bytes, folded, little-endian.
    prefix: u64,
    /// `0xFF` for each byte of `prefix` the keyword has.
    mask: u64,
    id: u32,
    /// Its length class: 3, 4 (4–5 bytes) or 6 (≥ 6 bytes).
    len: u32,
}

/// Which search runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

/// Keyword prefilter over ASCII keywords of at least 3 bytes.
pub struct Prefilter {
    bits: Box<[u32; WORDS]>,
    /// Set bits in the words before each word: with a popcount, a set bit's slot number.
    rank: Box<[u32; WORDS]>,
    /// Slot `n`'s keywords are `candidates[slots[n]..slots[n + 1]]`, by increasing id.
    slots: Vec<u32>,
    candidates: Vec<Candidate>,
    /// Lowercased keywords, by id.
    patterns: Vec<Vec<u8>>,
    kernel: Kernel,
}

impl std::fmt::Debug for Prefilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefilter")
            .field("patterns", &self.patterns.len())
            .field("kernel", &self.kernel)
            .finish_non_exhaustive()
    }
}

impl Prefilter {
    /// Build over `patterns` (each ASCII, ≥ 3 bytes; shorter ones are ignored).
    pub fn new<S: AsRef<[u8]>>(patterns: &[S]) -> Self {
        let patterns: Vec<Vec<u8>> = patterns
            .iter()
            .map(|p| p.as_ref().to_ascii_lowercase())
            .collect();
        // (hash, candidate), sorted: slots in bit order, keywords in id order within one.
        let mut entries: Vec<(u32, Candidate)> = Vec::with_capacity(patterns.len());
        for (id, p) in patterns.iter().enumerate() {
            if p.len() < 3 {
                continue;
            }
            let n = p.len().min(8);
            let w = folded8(p, 0);
            let (g, g2) = (w as u32, (w >> 16) as u32);
            let mut c = Candidate {
                prefix: w & (u64::MAX >> (64 - 8 * n)),
                mask: u64::MAX >> (64 - 8 * n),
                id: id as u32,
                len: 4,
            };
            match p.len() {
                // Whatever the fourth byte: every bit of the word.
                3 => {
                    c.len = 3;
                    entries.extend((0..32).map(|b| (word_of(g) << 5 | b, c)));
                }
                4 | 5 => entries.push((hash4(g), c)),
                _ => {
                    c.len = 6;
                    entries.push((hash6(g, g2), c));
                }
            }
        }
        entries.sort_by_key(|&(h, c)| (h, c.id));
        let mut bits = Box::new([0u32; WORDS]);
        for &(h, c) in &entries {
            bits[(h >> 5) as usize] |= 1 << (h & 31);
            let p = &patterns[c.id as usize];
            let w = folded8(p, 0);
            let (g, g2) = (w as u32, (w >> 16) as u32);
            let product = match c.len {
                3 => continue,
                4 => g.wrapping_mul(MUL4),
                _ => g2.wrapping_mul(MUL6),
            };
            bits[(h >> 5) as usize] |= second_bit(product);
        }
        // One slot per set bit, in bit order (a bit set only as a second bit has none).
        let mut slots = Vec::new();
        let mut next = 0;
        for h in 0..(WORDS as u32) << 5 {
            if bit(&bits, h) {
                slots.push(next as u32);
                while entries.get(next).is_some_and(|&(e, _)| e == h) {
                    next += 1;
                }
            }
        }
        slots.push(entries.len() as u32);
        let mut rank = Box::new([0u32; WORDS]);
        let mut before = 0;
        for (r, w) in rank.iter_mut().zip(bits.iter()) {
            *r = before;
            before += w.count_ones();
        }
        Prefilter {
            bits,
            rank,
            slots,
            candidates: entries.into_iter().map(|(_, c)| c).collect(),
            patterns,
            kernel: Self::detect(),
        }
    }

    #[cfg(target_arch = "x86_64")]
    fn detect() -> Kernel {
        if std::is_x86_feature_detected!("avx2") {
            Kernel::Avx2
        } else {
            Kernel::Scalar
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn detect() -> Kernel {
        Kernel::Scalar
    }

    /// Which search [`Prefilter::for_each_match`] runs on this CPU: `"avx2"` or `"scalar"`.
    pub fn kernel(&self) -> &'static str {
        match self.kernel {
            Kernel::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
        }
    }

    /// Call `hit(pattern id, start, end)` for every keyword occurrence in `hay`, with the fastest
    /// search this CPU supports.
    pub fn for_each_match(&self, hay: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        let next = match self.kernel {
            Kernel::Scalar => 0,
            // SAFETY: `Kernel::Avx2` is only chosen when the CPU reports AVX2 (`detect`).
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            Kernel::Avx2 => unsafe {
                avx2::candidates(&self.bits, hay, |i| self.verify(hay, i, &mut hit))
            },
        };
        self.scalar_from(hay, next, &mut hit);
    }

    /// [`Prefilter::for_each_match`] with the portable scalar search whatever the CPU: the
    /// reference the SIMD search is tested against, and what runs on other architectures.
    pub fn for_each_match_scalar(&self, hay: &[u8], mut hit: impl FnMut(usize, usize, usize)) {
        self.scalar_from(hay, 0, &mut hit);
    }

    /// The scalar test of every position from `from` on.
    fn scalar_from(&self, hay: &[u8], from: usize, hit: &mut impl FnMut(usize, usize, usize)) {
        let mut i = from;
        // Eight bytes read straight from the text while they are there.
        while let Some(b) = hay.get(i..i + 8) {
            let w = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) | FOLD8;
            if may_start(&self.bits, w) {
                self.verify(hay, i, hit);
            }
            i += 1;
        }
        // The last seven positions, padded (down to three bytes: the shortest keyword).
        while i + 3 <= hay.len() {
            if may_start(&self.bits, folded8(hay, i)) {
                self.verify(hay, i, hit);
            }
            i += 1;
        }
    }

    /// The keywords in the slot of hash `h` (empty if its bit is clear), by increasing id.
    #[inline]
    fn slot(&self, h: u32) -> &[Candidate] {
        let word = self.bits[(h >> 5) as usize];
        if word >> (h & 31) & 1 == 0 {
            return &[];
        }
        let n = self.rank[(h >> 5) as usize] as usize
            + (word & ((1u32 << (h & 31)) - 1)).count_ones() as usize;
        &self.candidates[self.slots[n] as usize..self.slots[n + 1] as usize]
    }

    /// Report the keywords that occur at `i`, in increasing id (`i + 3 <= hay.len()`).
    #[inline(never)]
    fn verify(&self, hay: &[u8], i: usize, hit: &mut impl FnMut(usize, usize, usize)) {
        let w = match hay.get(i..i + 8) {
            Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) | FOLD8,
            None => folded8(hay, i),
        };
        let (g, g2) = (w as u32, (w >> 16) as u32);
        // Both bits may hold keywords of either hash: take the ≥ 6-byte ones only from the
        // second, the others only from the first (a three-byte keyword is in all 32 bits).
        let check = |c: &Candidate, six: bool, hit: &mut dyn FnMut(usize, usize, usize)| {
            if (c.len == 6) != six || w & c.mask != c.prefix {
                return;
            }
            let p = &self.patterns[c.id as usize];
            if hay
                .get(i..i + p.len())
                .is_some_and(|t| t.eq_ignore_ascii_case(p))
            {
                hit(c.id as usize, i, i + p.len());
            }
        };
        let lists = [
            (self.slot(hash4(g)), false),
            (self.slot(hash6(g, g2)), true),
        ];
        // Each list is in id order: merge them (one is nearly always empty).
        let mut at = [0usize; 2];
        loop {
            let mut next: Option<(usize, &Candidate)> = None;
            for (k, (list, _)) in lists.iter().enumerate() {
                if let Some(c) = list.get(at[k])
                    && next.is_none_or(|(_, n)| c.id < n.id)
                {
                    next = Some((k, c));
                }
            }
            let Some((k, c)) = next else { break };
            check(c, lists[k].1, hit);
            at[k] += 1;
        }
    }
}

/// Every `(pattern id, start, end)` by brute force, in the order [`Prefilter::for_each_match`]
/// reports them: the reference of the differential tests and the fuzz target.
pub fn naive_matches<S: AsRef<[u8]>>(patterns: &[S], hay: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for start in 0..hay.len() {
        for (id, p) in patterns.iter().enumerate() {
            let p = p.as_ref();
            if p.len() >= 3
                && hay
                    .get(start..start + p.len())
                    .is_some_and(|t| t.eq_ignore_ascii_case(p))
            {
                out.push((id, start, start + p.len()));
            }
        }
    }
    out
}

/// Check one prefilter on `hay`: the dispatched search equals the scalar one, and both equal the
/// naive search when `hay` is short enough for it. Panics on a difference.
fn differential<S: AsRef<[u8]>>(pf: &Prefilter, patterns: &[S], hay: &[u8], naive_max: usize) {
    let mut fast = Vec::new();
    pf.for_each_match(hay, |id, s, e| fast.push((id, s, e)));
    let mut scalar = Vec::new();
    pf.for_each_match_scalar(hay, |id, s, e| scalar.push((id, s, e)));
    assert_eq!(fast, scalar, "{} search differs from scalar", pf.kernel());
    if hay.len() <= naive_max {
        assert_eq!(
            fast,
            naive_matches(patterns, hay),
            "differs from naive search"
        );
    }
}

/// Fuzz entry (the `prefilter` cargo-fuzz target): the input names a few keywords and a text —
/// byte 0 is the keyword count (1–8), each keyword is a length byte (3–10 after `% 8 + 3`) and
/// that many bytes, the rest is the text — and the dispatched, scalar and naive searches must
/// agree on it; the embedded rules' keywords are then searched in the whole input the same way.
pub fn fuzz(data: &[u8]) {
    use std::sync::OnceLock;
    static RULES: OnceLock<(Vec<String>, Prefilter)> = OnceLock::new();
    let (keywords, rules) = RULES.get_or_init(|| {
        let mut keywords: Vec<String> = crate::rules::load_rules(&[], &[])
            .expect("embedded rules load")
            .iter()
            .flat_map(|r| r.spec.keywords.iter().map(|k| k.to_ascii_lowercase()))
            .collect();
        keywords.sort();
        keywords.dedup();
        let pf = Prefilter::new(&keywords);
        (keywords, pf)
    });
    let mut rest = data;
    let mut patterns: Vec<&[u8]> = Vec::new();
    if let Some((&n, tail)) = rest.split_first() {
        rest = tail;
        for _ in 0..=n % 8 {
            let Some((&len, tail)) = rest.split_first() else {
                break;
            };
            let len = usize::from(len % 8 + 3).min(tail.len());
            patterns.push(&tail[..len]);
            rest = &tail[len..];
        }
    }
    differential(&Prefilter::new(&patterns), &patterns, rest, 1 << 16);
    differential(rules, keywords, data, 1 << 12);
}
