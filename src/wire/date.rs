//! HTTP dates (RFC 9110 §5.6.7, IMF-fixdate only): the registrar sends one
//! with every answer, and agents read it to tell a wrong local clock from a
//! wrong secret. The calendar maths is in `calendar`.

use crate::calendar::{civil_from_days, days_from_civil};

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `unix` seconds as an HTTP date (IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parse an IMF-fixdate (the only form a server may send, RFC 9110 §5.6.7)
/// into Unix seconds. Anything else, or a date before 1970, is `None`; a
/// leap second (`:60`) reads as `:59`.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let b = s.trim().as_bytes();
    if b.len() != 29 || &b[3..5] != b", " || &b[25..] != b" GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = &b[r];
        t.iter()
            .all(u8::is_ascii_digit)
            .then(|| t.iter().fold(0u32, |n, c| n * 10 + u32::from(c - b'0')))
    };
    let sep = |i: usize, c: u8| b[i] == c;
    if !(sep(7, b' ') && sep(11, b' ') && sep(16, b' ') && sep(19, b':') && sep(22, b':')) {
        return None;
    }
    let day = num(5..7)?;
    let month = MONTHS.iter().position(|m| m.as_bytes() == &b[8..11])? as u32 + 1;
    let year = num(12..16)?;
    let (h, mi, sec) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if day == 0 || day > 31 || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    // The weekday must agree with the date, and the date must exist.
    let wd = WEEKDAYS[days.rem_euclid(7) as usize];
    if wd.as_bytes() != &b[..3] || civil_from_days(days) != (i64::from(year), month, day) {
        return None;
    }
    // A leap second counts as the second before it (so 9999-12-31 23:59:60
    // stays in a year an IMF-fixdate can write).
    let t = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec.min(59));
    u64::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_known_values() {
        // RFC 9110 §5.6.7's example, the epoch, leap days, and a century
        // that is not a leap year.
        for (t, text) in [
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
        ] {
            assert_eq!(http_date(t), text);
            assert_eq!(parse_http_date(text), Some(t), "{text}");
        }
    }

    #[test]
    fn http_dates_round_trip() {
        // Every day from 1970 to about 2110, at a varying time of day.
        let mut t = 0u64;
        while t < 4_400_000_000 {
            let text = http_date(t);
            assert_eq!(parse_http_date(&text), Some(t), "{text}");
            t += 86_400 + 3_601;
        }
    }

    #[test]
    fn http_dates_refuse_other_forms() {
        for bad in [
            "",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:49:37 GMT",
            "Sun, 0x Nov 1994 08:49:37 GMT",
            "Sun, 06 Nox 1994 08:49:37 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT and more",
            "Sun, 06 Nov 1994 08:49:37 GM\u{e9}",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }
}
