//! Dates without a date crate: Unix seconds ↔ civil UTC, RFC 3339 output, and the timestamp
//! forms secrets carry (`2025-01-31T12:00:00Z`, `2025-01-31`, `20250131T120000Z`).

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 UTC (`2025-01-31T12:00:00Z`) for Unix seconds. Years outside 0..=9999 are clamped
/// to the nearest representable instant.
pub fn rfc3339(secs: i64) -> String {
    let secs = secs.clamp(-62_167_219_200, 253_402_300_799);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn num(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn to_secs(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(i64::from(y), mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s))
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
}
