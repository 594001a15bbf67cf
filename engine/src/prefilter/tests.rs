use super::*;

/// Deterministic xorshift64*, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn matches(pf: &Prefilter, hay: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut got = Vec::new();
    pf.for_each_match(hay, |id, s, e| got.push((id, s, e)));
    got
}

#[test]
fn matches_brute_force_across_lengths_and_tails() {
    let patterns = ["akia", "AKIAX", "-us", "password", "pass", "q~x", "ab"];
    let mut hay = Vec::new();
    for i in 0..40_000u32 {
        hay.extend_from_slice(match i % 7 {
            0 => b"xxAkIaZ ".as_slice(),
            1 => b"PassWord=1 ",
            2 => b"x-us ",
            3 => b"q~X",
            _ => b"lorem ipsum ",
        });
    }
    hay.extend_from_slice(b"end -us");
    let pf = Prefilter::new(&patterns);
    assert_eq!(matches(&pf, &hay), naive_matches(&patterns, &hay));
    for tail in [&b"-us"[..], b"pas", b"akia", b"x-u", b"", b"-U", b"-US"] {
        assert_eq!(
            matches(&pf, tail),
            naive_matches(&patterns, tail),
            "{tail:?}"
        );
    }
}

#[test]
fn order_is_by_start_then_id() {
    // Overlapping keywords of both kinds at one start, in mixed id order.
    let patterns = ["passwd", "pas", "pass", "ass", "password", "pas"];
    let pf = Prefilter::new(&patterns);
    let got = matches(&pf, b"xPASSWORD pas");
    assert_eq!(
        got,
        [
            (1, 1, 4),
            (2, 1, 5),
            (4, 1, 9),
            (5, 1, 4),
            (3, 2, 5),
            (1, 10, 13),
            (5, 10, 13)
        ]
    );
    assert_eq!(got, naive_matches(&patterns, b"xPASSWORD pas"));
}

#[test]
fn fold_collisions_are_rejected() {
    // `| 0x20` maps `@`→`` ` ``, `[`→`{`, `_`→DEL, `\n`→`*`, 0xC1→0xE1, NUL→space: the filter
    // lets these pass, the exact check must not report them.
    let patterns = ["`ab`", "{x}y", "a_b_", "**x*", "\u{e1}"];
    let pf = Prefilter::new(&patterns);
    let hay = b"@AB@ [X]Y a\x7fB\x7f \n\nX\n \xc1 `AB` {X}y A_B_ **x*";
    let got = matches(&pf, hay);
    assert_eq!(got, naive_matches(&patterns, hay));
    assert_eq!(got.len(), 4, "{got:?}");
    // A keyword ending in a space does not match the end of the text (no padding match).
    let pf = Prefilter::new(&["pwd "]);
    assert!(matches(&pf, b"pwd").is_empty());
    assert!(
        matches(
            &pf,
            &b"x"
                .repeat(64)
                .into_iter()
                .chain(*b"pwd")
                .collect::<Vec<_>>()
        )
        .is_empty()
    );
}

#[test]
fn every_length_and_offset_around_the_simd_step() {
    // A keyword at every offset of texts of every length up to a few SIMD steps: the handover
    // from the 32-position kernel to the scalar tail misses nothing and reports nothing twice.
    let patterns = ["key", "SECRET", "q~x", "tok_"];
    let pf = Prefilter::new(&patterns);
    for len in 0..120 {
        for (at, kw) in [(0, &b"KEY"[..]), (0, b"secret"), (0, b"Q~X"), (0, b"tok_")] {
            for off in 0..len {
                if off + kw.len() > len {
                    break;
                }
                let mut hay = vec![b'.'; len];
                hay[off + at..off + at + kw.len()].copy_from_slice(kw);
                assert_eq!(
                    matches(&pf, &hay),
                    naive_matches(&patterns, &hay),
                    "len {len} off {off} {kw:?}"
                );
            }
        }
    }
}

#[test]
fn differential_random_keywords_and_texts() {
    // Random keywords over a small alphabet (many overlaps and fold collisions), texts built of
    // keyword pieces, case flips and noise; a fixed seed.
    const ALPHABET: &[u8] = b"aAbB_@`-\n\x00\xc1\xe1{[ ~zZ0";
    let mut rng = Rng(0x005E_ED0F_F11E);
    for round in 0..300 {
        let patterns: Vec<Vec<u8>> = (0..1 + rng.below(12))
            .map(|_| {
                (0..2 + rng.below(7))
                    .map(|_| ALPHABET[rng.below(ALPHABET.len())])
                    .collect()
            })
            .collect();
        let pf = Prefilter::new(&patterns);
        let mut hay = Vec::new();
        let len = rng.below(600);
        while hay.len() < len {
            if rng.below(3) == 0 {
                let p = &patterns[rng.below(patterns.len())];
                hay.extend(p.iter().map(|&b| {
                    if rng.below(2) == 0 {
                        b.to_ascii_uppercase()
                    } else {
                        b
                    }
                }));
            } else {
                hay.push(ALPHABET[rng.below(ALPHABET.len())]);
            }
        }
        assert_eq!(
            matches(&pf, &hay),
            naive_matches(&patterns, &hay),
            "round {round}"
        );
        let mut scalar = Vec::new();
        pf.for_each_match_scalar(&hay, |id, s, e| scalar.push((id, s, e)));
        assert_eq!(matches(&pf, &hay), scalar, "round {round}");
    }
}

#[test]
fn differential_embedded_keywords() {
    // The real keyword set (about 500, three-byte ones included) on text made of their pieces
    // in mixed case, and the fuzz entry on a few shapes.
    let mut rng = Rng(42);
    let keywords: Vec<String> = crate::rules::load_rules(&[], &[])
        .unwrap()
        .iter()
        .flat_map(|r| r.spec.keywords.iter().map(|k| k.to_ascii_lowercase()))
        .collect();
    let pf = Prefilter::new(&keywords);
    let mut hay = Vec::new();
    while hay.len() < 20_000 {
        let k = keywords[rng.below(keywords.len())].as_bytes();
        let piece = &k[..1 + rng.below(k.len())];
        hay.extend(piece.iter().map(|b| {
            if rng.below(2) == 0 {
                b.to_ascii_uppercase()
            } else {
                *b
            }
        }));
        if rng.below(4) == 0 {
            hay.push(b" =_\n\"'\t"[rng.below(7)]);
        }
    }
    let got = matches(&pf, &hay);
    assert!(got.len() > 1000, "{}", got.len());
    assert_eq!(got, naive_matches(&keywords, &hay));
    differential(&pf, &keywords, &hay, 0);
    for data in [
        &b""[..],
        b"\x03\x05passw\x00akia",
        b"\x00\x00ab",
        &hay[..500],
    ] {
        fuzz(data);
    }
}

#[test]
fn kernel_is_reported() {
    let pf = Prefilter::new(&["akia"]);
    assert!(["avx2", "scalar"].contains(&pf.kernel()));
    #[cfg(target_arch = "x86_64")]
    assert_eq!(pf.kernel() == "avx2", std::is_x86_feature_detected!("avx2"));
}
