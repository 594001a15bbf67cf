//! Dates for findings: Unix seconds ↔ RFC 3339 UTC, and the timestamp forms secrets carry
//! (`2025-01-31T12:00:00Z`, `2025-01-31`, `20250131T120000Z`). The calendar is jiff's; the
//! parser here is lenient on purpose (URL-encoded separators, a day past the month's end rolls
//! over into the next month, second 60 into the next minute), as secrets write dates loosely.

use jiff::SignedDuration;
use jiff::civil::{Date, DateTime};

/// 1970-01-01T00:00:00 UTC, the origin of Unix seconds.
const EPOCH: DateTime = DateTime::constant(1970, 1, 1, 0, 0, 0, 0);
/// `0000-01-01T00:00:00Z` and `9999-12-31T23:59:59Z`: the instants [`rfc3339`] can write.
const FIRST: i64 = -62_167_219_200;
const LAST: i64 = 253_402_300_799;

/// RFC 3339 UTC (`2025-01-31T12:00:00Z`) for Unix seconds. Years outside 0..=9999 are clamped
/// to the nearest representable instant.
pub fn rfc3339(secs: i64) -> String {
    EPOCH
        .checked_add(SignedDuration::from_secs(secs.clamp(FIRST, LAST)))
        .expect("years 0..=9999 are within jiff's civil range")
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn num(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Unix seconds for a UTC date and time; `d` may pass the month's end and `s` may be 60, both
/// rolling over (`02-31` is `03-03` or `03-02`).
fn to_secs(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let first = Date::new(i16::try_from(y).ok()?, i8::try_from(mo).ok()?, 1).ok()?;
    let first = DateTime::from(first).duration_since(EPOCH).as_secs();
    Some(first + i64::from(d - 1) * 86_400 + i64::from(h * 3600 + mi * 60 + s))
}

/// Parse `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS][.frac][Z|±HH:MM]` (also URL-encoded `%3A`) and the
/// compact `YYYYMMDDTHHMMSSZ` (AWS SigV4 / GCS V4). Returns Unix seconds, UTC.
pub fn parse_timestamp(raw: &str) -> Option<i64> {
    let s = raw
        .replace("%3A", ":")
        .replace("%3a", ":")
        .replace("%2B", "+");
    let b = s.as_bytes();
    if b.len() >= 15 && b[8] == b'T' && b[..8].iter().all(u8::is_ascii_digit) {
        return to_secs(
            num(&b[0..4])?,
            num(&b[4..6])?,
            num(&b[6..8])?,
            num(&b[9..11])?,
            num(&b[11..13])?,
            num(&b[13..15])?,
        );
    }
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    if b.len() == 10 {
        return to_secs(y, mo, d, 0, 0, 0);
    }
    if b.len() < 16 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let (h, mi) = (num(&b[11..13])?, num(&b[14..16])?);
    let mut i = 16;
    let mut sec = 0;
    if b.get(i) == Some(&b':') {
        sec = num(b.get(i + 1..i + 3)?)?;
        i += 3;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let mut t = to_secs(y, mo, d, h, mi, sec)?;
    match b.get(i) {
        None | Some(b'Z' | b'z') => {}
        Some(&sign @ (b'+' | b'-')) => {
            let oh = i64::from(num(b.get(i + 1..i + 3)?)?);
            let om = i64::from(num(b.get(i + 4..i + 6)?).unwrap_or(0));
            let off = oh * 3600 + om * 60;
            t += if sign == b'+' { -off } else { off };
        }
        _ => return None,
    }
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(parse_timestamp("2025-01-01T00:00:00Z"), Some(1_735_689_600));
        assert_eq!(parse_timestamp("2025-01-01"), Some(1_735_689_600));
        assert_eq!(parse_timestamp("20250101T000000Z"), Some(1_735_689_600));
        assert_eq!(
            parse_timestamp("2025-01-01T01:00:00%2B01:00"),
            Some(1_735_689_600)
        );
        assert_eq!(
            parse_timestamp("2025-01-01T00%3A00%3A00Z"),
            Some(1_735_689_600)
        );
        assert_eq!(
            parse_timestamp("2024-02-29T12:30:45.123Z"),
            Some(1_709_209_845)
        );
        assert_eq!(parse_timestamp("2025-13-01"), None);
        assert_eq!(parse_timestamp("garbage"), None);
    }

    /// Edge dates: leap years (400/100/4), the first and last representable instants, negative
    /// seconds, clamping, and the rollovers the parser allows (day 31 of a short month, second 60).
    #[test]
    fn edge_dates() {
        for (secs, text) in [
            (-1, "1969-12-31T23:59:59Z"),
            (-62_167_219_200, "0000-01-01T00:00:00Z"),
            (-62_162_035_201, "0000-02-29T23:59:59Z"),
            (-62_167_219_201, "0000-01-01T00:00:00Z"),
            (i64::MIN, "0000-01-01T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
            (i64::MAX, "9999-12-31T23:59:59Z"),
            (951_825_600, "2000-02-29T12:00:00Z"),
            (-2_203_891_200, "1900-03-01T00:00:00Z"),
            (-11_670_998_400, "1600-02-29T00:00:00Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
        ] {
            assert_eq!(rfc3339(secs), text, "rfc3339({secs})");
            if secs > -62_167_219_201 && secs < i64::MAX {
                assert_eq!(parse_timestamp(text), Some(secs), "parse_timestamp({text})");
            }
        }
        // Days past the month's end and a leap second roll over, as before.
        assert_eq!(parse_timestamp("2025-02-31"), parse_timestamp("2025-03-03"));
        assert_eq!(parse_timestamp("2023-02-29"), parse_timestamp("2023-03-01"));
        assert_eq!(
            parse_timestamp("2016-12-31T23:59:60Z"),
            parse_timestamp("2017-01-01T00:00:00Z")
        );
        assert_eq!(parse_timestamp("0000-01-01"), Some(-62_167_219_200));
        assert_eq!(parse_timestamp("99991231T235959Z"), Some(253_402_300_799));
        assert_eq!(parse_timestamp("2025-00-10"), None);
        assert_eq!(parse_timestamp("2025-01-32"), None);
        assert_eq!(parse_timestamp("2025-01-01T24:00:00Z"), None);
    }
}
