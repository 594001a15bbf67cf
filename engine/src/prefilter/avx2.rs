//! The prefilter's test on 32 positions per step, with AVX2 (x86_64, detected at run time).
//!
//! Per step, six unaligned 32-byte loads at offsets 0–5 hold, as eight little-endian `u32` lanes
//! each, the grams of the 32 positions and of the positions two bytes further (load `k`, lane
//! `m` is position `4m + k`). Each position is folded and hashed exactly as the scalar
//! [`super::may_start`] does: one table word gathered per position, two pairs of its bits shifted
//! to the sign bit and combined, and `movemask` yields one bit per lane. The four 8-bit masks interleave into one
//! 32-bit mask of positions in text order.

//! This is the crate's only `unsafe` code: the loads and gathers read through raw pointers, and
//! the function needs a CPU with AVX2. Each block says why it stays in bounds.

#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m256i, _mm256_and_si256, _mm256_castsi256_ps, _mm256_i32gather_epi32, _mm256_loadu_si256,
    _mm256_movemask_ps, _mm256_mullo_epi32, _mm256_or_si256, _mm256_set1_epi32, _mm256_sllv_epi32,
    _mm256_srli_epi32, _mm256_xor_si256,
};

use super::{BIT_SHIFT, BIT2_SHIFT, FOLD, LOW3, MUL3, MUL4, MUL6, WORD_SHIFT, WORDS};

/// Positions tested per step.
const STEP: usize = 32;
/// Bytes a step reads from its first position: 32-byte loads at offsets 0 to 5.
const READ: usize = STEP + 5;

/// `SPREAD[m]` moves bit `b` of `m` to bit `4b`: lane `b` of load `k` is position `4b + k`.
const SPREAD: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut m = 0;
    while m < 256 {
        let mut b = 0;
        while b < 8 {
            if m >> b & 1 == 1 {
                t[m] |= 1 << (4 * b);
            }
            b += 1;
        }
        m += 1;
    }
    t
};

/// Call `found(i)` for each position `i` whose bytes pass the table test, in increasing order,
/// in steps of 32 positions while a step's reads stay inside `hay`. Returns the first position
/// not tested (the scalar loop does the rest).
///
/// # Safety
///
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn candidates(
    bits: &[u32; WORDS],
    hay: &[u8],
    mut found: impl FnMut(usize),
) -> usize {
    let fold = _mm256_set1_epi32(FOLD as i32);
    let low3 = _mm256_set1_epi32(LOW3 as i32);
    let mul4 = _mm256_set1_epi32(MUL4 as i32);
    let mul3 = _mm256_set1_epi32(MUL3 as i32);
    let mul6 = _mm256_set1_epi32(MUL6 as i32);
    let low5 = _mm256_set1_epi32(31);
    // Bit `b` (< 32) of `word` to the sign bit: shift left by `31 - b`, i.e. `b ^ 31`.
    let test = |word: __m256i, b: __m256i| _mm256_sllv_epi32(word, _mm256_xor_si256(b, low5));
    let base = bits.as_ptr().cast::<i32>();
    let mut p = 0;
    while p + READ <= hay.len() {
        // SAFETY: load `k` reads hay[p + k .. p + k + 32], inside `hay` because
        // p + k + 32 <= p + 5 + 32 = p + READ <= hay.len(); `loadu` needs no alignment.
        let load = |k: usize| unsafe { _mm256_loadu_si256(hay.as_ptr().add(p + k).cast()) };
        let mut mask = 0u32;
        for k in 0..4 {
            let g = _mm256_or_si256(load(k), fold);
            let g2 = _mm256_or_si256(load(k + 2), fold);
            let word = _mm256_srli_epi32::<{ WORD_SHIFT as i32 }>(_mm256_mullo_epi32(
                _mm256_and_si256(g, low3),
                mul3,
            ));
            let (p4, p6) = (_mm256_mullo_epi32(g, mul4), _mm256_mullo_epi32(g2, mul6));
            // Each product names two bits of the word (`super::both`).
            let bits_of = |p: __m256i| {
                (
                    _mm256_srli_epi32::<{ BIT_SHIFT as i32 }>(p),
                    _mm256_and_si256(_mm256_srli_epi32::<{ BIT2_SHIFT as i32 }>(p), low5),
                )
            };
            let ((b4, c4), (b6, c6)) = (bits_of(p4), bits_of(p6));
            // SAFETY: each lane of `word` is a logical right shift of a u32 by WORD_SHIFT, so it
            // is below 2^(32 - WORD_SHIFT) = WORDS: every gathered element is a `u32` of `bits`.
            let w = unsafe { _mm256_i32gather_epi32::<4>(base, word) };
            let hits = _mm256_or_si256(
                _mm256_and_si256(test(w, b4), test(w, c4)),
                _mm256_and_si256(test(w, b6), test(w, c6)),
            );
            let lanes = _mm256_movemask_ps(_mm256_castsi256_ps(hits)) as u32;
            mask |= SPREAD[lanes as usize] << k;
        }
        while mask != 0 {
            found(p + mask.trailing_zeros() as usize);
            mask &= mask - 1;
        }
        p += STEP;
    }
    p
}
