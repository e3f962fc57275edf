//! Dates, months and instants as the engine holds them, and their text forms.
//!
//! - a **date** is the number of days since 1970-01-01 (Arrow `Date32`);
//! - an **instant** is microseconds since the Unix epoch (Arrow `Timestamp(µs, "+08:00")`);
//! - a **month** is `year * 12 + (month - 1)`.
//!
//! Every wall-clock reading is China Standard Time (UTC+8, no daylight saving).

use chrono::{Datelike, NaiveDate};

/// Microseconds in a second.
pub const SECOND: i64 = 1_000_000;
/// Microseconds in a minute.
pub const MINUTE: i64 = 60 * SECOND;
/// Microseconds in an hour.
pub const HOUR: i64 = 60 * MINUTE;
/// Microseconds in a day.
pub const DAY: i64 = 24 * HOUR;
/// The offset of China Standard Time from UTC, in microseconds.
pub const CST_OFFSET: i64 = 8 * HOUR;

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()
}

/// The date (days since 1970-01-01) of a calendar day, if it exists.
pub fn ymd(year: i32, month: u32, day: u32) -> Option<i32> {
    // Worked out in integers (the proleptic Gregorian calendar, as chrono's `NaiveDate`, over
    // the same years): this runs for every identity number and date read.
    if !(-262_143..=262_142).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day > days_in_month {
        return None;
    }
    // Days from civil (H. Hinnant): years start in March, so that the leap day comes last.
    let y = year as i64 - (month <= 2) as i64;
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) as i32)
}

/// The year, month (1–12) and day of a date (days since 1970-01-01), in integers (civil from
/// days, H. Hinnant).
pub fn civil(date: i64) -> (i64, u32, u32) {
    let z = date + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + (month <= 2) as i64;
    (year, month, day)
}

/// The calendar day of a date (clamped to chrono's range, which loaded dates never leave: see
/// [`date_in_range`]).
pub fn naive(date: i32) -> NaiveDate {
    chrono::Duration::try_days(date as i64)
        .and_then(|d| epoch().checked_add_signed(d))
        .unwrap_or(if date < 0 {
            NaiveDate::MIN
        } else {
            NaiveDate::MAX
        })
}

/// Whether a date (days since 1970-01-01) can be written `YYYY-MM-DD`: years 0000 to 9999.
/// A loaded date or timestamp outside them is rejected as out of range.
pub fn date_in_range(date: i64) -> bool {
    let lo = ymd(0, 1, 1).unwrap_or(i32::MIN) as i64;
    let hi = ymd(9999, 12, 31).unwrap_or(i32::MAX) as i64;
    (lo..=hi).contains(&date)
}

/// Day of the week of a date: 0 = Monday … 6 = Sunday.
pub fn weekday(date: i32) -> u32 {
    // 1970-01-01 was a Thursday (3).
    ((date as i64 + 3).rem_euclid(7)) as u32
}

/// The CST date an instant falls on.
pub fn date_of(instant: i64) -> i32 {
    instant.saturating_add(CST_OFFSET).div_euclid(DAY) as i32
}

/// The instant of 00:00 CST on a date.
pub fn midnight(date: i32) -> i64 {
    date as i64 * DAY - CST_OFFSET
}

/// The instant of a CST wall-clock reading.
pub fn at(date: i32, hour: u32, minute: u32, second: u32) -> i64 {
    midnight(date) + hour as i64 * HOUR + minute as i64 * MINUTE + second as i64 * SECOND
}

/// The month (`year * 12 + month - 1`) a date falls in.
pub fn month_of(date: i32) -> i32 {
    let d = naive(date);
    d.year() * 12 + d.month0() as i32
}

/// The latest birth date of someone at least `age` full years old on `on` ([`age_on`] never
/// grows with the birth date, so "old enough" is "born on or before" this date).
pub fn latest_birth_for_age(on: i32, age: i32) -> i32 {
    let old_enough = |b: i32| age_on(b, on) >= age;
    let (mut lo, mut hi) = (on - 366 * (age + 2), on + 1);
    while !old_enough(lo) {
        lo -= 366;
    }
    while old_enough(hi) {
        hi += 366;
    }
    // old_enough(lo) and not old_enough(hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if old_enough(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Full years between a birth date and a date; a 29 February birthday falls on 28 February in
/// non-leap years.
pub fn age_on(birth: i32, on: i32) -> i32 {
    let b = naive(birth);
    let d = naive(on);
    let mut years = d.year() - b.year();
    let (bm, mut bd) = (b.month(), b.day());
    if bm == 2 && bd == 29 && NaiveDate::from_ymd_opt(d.year(), 2, 29).is_none() {
        bd = 28;
    }
    if (d.month(), d.day()) < (bm, bd) {
        years -= 1;
    }
    years
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |acc, b| acc * 10 + (b - b'0') as u32))
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Result<i32, &'static str> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err("not a date (expected YYYY-MM-DD)");
    }
    let (y, m, d) = match (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10])) {
        (Some(y), Some(m), Some(d)) => (y, m, d),
        _ => return Err("not a date (expected YYYY-MM-DD)"),
    };
    ymd(y as i32, m, d).ok_or("not a real calendar date")
}

/// Parses `YYYY-MM`.
pub fn parse_month(s: &str) -> Result<i32, &'static str> {
    let b = s.as_bytes();
    if b.len() != 7 || b[4] != b'-' {
        return Err("not a month (expected YYYY-MM)");
    }
    match (digits(&b[0..4]), digits(&b[5..7])) {
        (Some(y), Some(m)) if (1..=12).contains(&m) => Ok(y as i32 * 12 + m as i32 - 1),
        (Some(_), Some(_)) => Err("not a real month"),
        _ => Err("not a month (expected YYYY-MM)"),
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS` or `YYYY-MM-DD HH:MM:SS`, with up to 6 fractional digits, and an
/// optional offset (`+08:00`, `+0800`, `+08`, `Z`); without an offset the reading is China
/// Standard Time. Returns the instant.
pub fn parse_timestamp(s: &str) -> Result<i64, &'static str> {
    const FORM: &str = "not a timestamp (expected YYYY-MM-DD HH:MM:SS, optionally with +08:00)";
    let b = s.as_bytes();
    if b.len() < 19 || !(b[10] == b'T' || b[10] == b' ') {
        return Err(FORM);
    }
    let date = parse_date(&s[0..10]).map_err(|_| FORM)?;
    if b[13] != b':' || b[16] != b':' {
        return Err(FORM);
    }
    let (h, mi, se) = match (digits(&b[11..13]), digits(&b[14..16]), digits(&b[17..19])) {
        (Some(h), Some(m), Some(s)) => (h, m, s),
        _ => return Err(FORM),
    };
    if h > 23 || mi > 59 || se > 59 {
        return Err("not a real time of day");
    }
    let mut rest = &b[19..];
    let mut micros: i64 = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return Err(FORM);
        }
        let (f, tail) = frac.split_at(n);
        if n > 6 && f[6..].iter().any(|&c| c != b'0') {
            return Err("finer than a microsecond");
        }
        let mut v: i64 = 0;
        for i in 0..6 {
            v = v * 10 + f.get(i).map_or(0, |c| (c - b'0') as i64);
        }
        micros = v;
        rest = tail;
    }
    let offset = match rest {
        [] => CST_OFFSET,
        r => match offset(r) {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(e),
            None => return Err(FORM),
        },
    };
    Ok(
        date as i64 * DAY + h as i64 * HOUR + mi as i64 * MINUTE + se as i64 * SECOND + micros
            - offset,
    )
}

/// A UTC offset written `+08:00`, `+0800`, `+08` or `Z`: `None` if it is not written so,
/// an error if it is out of range, else the offset in microseconds.
fn offset(b: &[u8]) -> Option<Result<i64, &'static str>> {
    let (sign, tz) = match b {
        [b'Z'] | [b'z'] => return Some(Ok(0)),
        [sign @ (b'+' | b'-'), tz @ ..] => (sign, tz),
        _ => return None,
    };
    let (hh, mm) = match tz {
        [a, b2] => (digits(&[*a, *b2]), Some(0)),
        [a, b2, b':', c, d] | [a, b2, c, d] => (digits(&[*a, *b2]), digits(&[*c, *d])),
        _ => return None,
    };
    Some(match (hh, mm) {
        (Some(hh), Some(mm)) if hh <= 14 && mm <= 59 => {
            let v = hh as i64 * HOUR + mm as i64 * MINUTE;
            Ok(if *sign == b'-' { -v } else { v })
        }
        _ => Err("not a valid UTC offset"),
    })
}

/// The offset of a fixed-offset time zone (`+08:00`, `+0800`, `+08`, `Z`), in microseconds;
/// `None` for anything else (a named zone).
pub fn fixed_offset(tz: &str) -> Option<i64> {
    offset(tz.as_bytes())?.ok()
}

/// Parses a boolean: `true/false`, `1/0`, `Y/N`, any case.
pub fn parse_bool(s: &str) -> Result<bool, &'static str> {
    match s {
        "1" => Ok(true),
        "0" => Ok(false),
        _ if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("y") => Ok(true),
        _ if s.eq_ignore_ascii_case("false") || s.eq_ignore_ascii_case("n") => Ok(false),
        _ => Err("not a boolean (expected true/false, 1/0 or Y/N)"),
    }
}

/// `YYYY-MM-DD`.
pub fn format_date(date: i32) -> String {
    naive(date).format("%Y-%m-%d").to_string()
}

/// `YYYY-MM`.
pub fn format_month(month: i32) -> String {
    format!(
        "{:04}-{:02}",
        month.div_euclid(12),
        month.rem_euclid(12) + 1
    )
}

/// `YYYY-MM-DDTHH:MM:SS+08:00` (with fractional seconds only when there are some).
pub fn format_timestamp(instant: i64) -> String {
    let local = instant + CST_OFFSET;
    let date = local.div_euclid(DAY) as i32;
    let in_day = local.rem_euclid(DAY);
    let (h, m, s, us) = (
        in_day / HOUR,
        (in_day % HOUR) / MINUTE,
        (in_day % MINUTE) / SECOND,
        in_day % SECOND,
    );
    if us == 0 {
        format!("{}T{h:02}:{m:02}:{s:02}+08:00", format_date(date))
    } else {
        format!("{}T{h:02}:{m:02}:{s:02}.{us:06}+08:00", format_date(date))
    }
}

/// The instant `as_of` a user gave: a timestamp, or a date meaning 00:00 CST of that day.
pub fn parse_as_of(s: &str) -> Result<i64, &'static str> {
    let s = s.trim();
    if s.len() == 10 {
        return parse_date(s).map(midnight);
    }
    parse_timestamp(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_agrees_with_chrono() {
        for date in (-800_000..800_000).step_by(97).chain(-400..400) {
            let d = naive(date);
            assert_eq!(
                civil(date as i64),
                (d.year() as i64, d.month(), d.day()),
                "{d}"
            );
        }
    }

    #[test]
    fn ymd_agrees_with_chrono() {
        for year in [
            -4000, -1, 0, 1, 1600, 1900, 1970, 1999, 2000, 2024, 2100, 9999,
        ] {
            for month in 0..=13 {
                for day in 0..=32 {
                    let expected = NaiveDate::from_ymd_opt(year, month, day)
                        .map(|d| (d - epoch()).num_days() as i32);
                    assert_eq!(ymd(year, month, day), expected, "{year}-{month}-{day}");
                }
            }
        }
    }

    #[test]
    fn birth_date_bounds_agree_with_ages() {
        // Days around leap years and year ends, ages 0, 6, 80 and 100.
        for on in [
            ymd(2024, 2, 28).unwrap(),
            ymd(2024, 2, 29).unwrap(),
            ymd(2025, 2, 28).unwrap(),
            ymd(2025, 3, 1).unwrap(),
            ymd(2026, 11, 1).unwrap(),
            ymd(2026, 12, 31).unwrap(),
        ] {
            for age in [0, 6, 80, 100] {
                let bound = latest_birth_for_age(on, age);
                for b in bound - 800..bound + 800 {
                    assert_eq!(
                        age_on(b, on) >= age,
                        b <= bound,
                        "born {b}, on {on}, age {age}"
                    );
                }
            }
        }
    }

    #[test]
    fn timestamps_in_every_accepted_form() {
        let t = parse_timestamp("2026-11-01T00:00:00+08:00").unwrap();
        assert_eq!(parse_timestamp("2026-11-01 00:00:00").unwrap(), t);
        assert_eq!(parse_timestamp("2026-10-31T16:00:00Z").unwrap(), t);
        assert_eq!(parse_timestamp("2026-10-31 17:00:00+0100").unwrap(), t);
        assert_eq!(parse_timestamp("2026-10-31T11:00:00-05:00").unwrap(), t);
        assert_eq!(
            parse_timestamp("2026-11-01 00:00:00.250").unwrap(),
            t + 250_000
        );
        assert_eq!(format_timestamp(t), "2026-11-01T00:00:00+08:00");
        assert_eq!(format_timestamp(t + 1), "2026-11-01T00:00:00.000001+08:00");
        assert_eq!(date_of(t), ymd(2026, 11, 1).unwrap());
        assert_eq!(date_of(t - 1), ymd(2026, 10, 31).unwrap());
        assert!(parse_timestamp("2026-11-01").is_err());
        assert!(parse_timestamp("2026-11-01 24:00:00").is_err());
        assert!(parse_timestamp("2026-02-30 10:00:00").is_err());
        assert!(parse_timestamp("2026-11-01 10:00:00.1234567").is_err());
    }

    #[test]
    fn dates_months_and_booleans() {
        assert_eq!(parse_date("1970-01-02"), Ok(1));
        assert!(parse_date("2026-13-01").is_err());
        assert!(parse_date("2026/11/01").is_err());
        assert_eq!(format_date(parse_date("2024-02-29").unwrap()), "2024-02-29");
        assert_eq!(parse_month("2026-10"), Ok(2026 * 12 + 9));
        assert_eq!(format_month(2026 * 12 + 9), "2026-10");
        assert!(parse_month("2026-00").is_err());
        for t in ["true", "TRUE", "1", "y", "Y"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["false", "False", "0", "n", "N"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        assert!(parse_bool("yes").is_err());
        assert_eq!(weekday(ymd(2026, 11, 2).unwrap()), 0); // a Monday
    }

    #[test]
    fn ages_with_leap_day_birthdays() {
        let b = ymd(2000, 2, 29).unwrap();
        assert_eq!(age_on(b, ymd(2026, 2, 27).unwrap()), 25);
        assert_eq!(age_on(b, ymd(2026, 2, 28).unwrap()), 26);
        assert_eq!(age_on(b, ymd(2028, 2, 28).unwrap()), 27);
        assert_eq!(age_on(b, ymd(2028, 2, 29).unwrap()), 28);
        let c = ymd(1946, 11, 1).unwrap();
        assert_eq!(age_on(c, ymd(2026, 11, 1).unwrap()), 80);
        assert_eq!(age_on(c, ymd(2026, 10, 31).unwrap()), 79);
    }
}
