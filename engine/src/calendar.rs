//! 工作日历: the working calendar and working hours that deadlines are counted in.
//!
//! The default calendar is Monday–Friday, minus China's statutory holidays, plus the make-up
//! working days (调休) announced each year by the State Council (`data/holidays/`, from
//! NateScarlet/holiday-cn, MIT). A dataset's `calendar` table overrides single dates. Working hours
//! default to 09:00–12:00 and 14:00–18:00.

use crate::error::{Error, Result};
use crate::time::{self, SECOND};
use serde::Deserialize;
use std::sync::OnceLock;

/// The first date the calendar covers (1990-01-01); dates outside the covered range fall back to
/// Monday–Friday.
const FIRST_YEAR: i32 = 1990;
const LAST_YEAR: i32 = 2100;

/// The holiday files shipped with the engine, one per year.
const HOLIDAY_FILES: &[&str] = &[
    include_str!("../data/holidays/2007.json"),
    include_str!("../data/holidays/2008.json"),
    include_str!("../data/holidays/2009.json"),
    include_str!("../data/holidays/2010.json"),
    include_str!("../data/holidays/2011.json"),
    include_str!("../data/holidays/2012.json"),
    include_str!("../data/holidays/2013.json"),
    include_str!("../data/holidays/2014.json"),
    include_str!("../data/holidays/2015.json"),
    include_str!("../data/holidays/2016.json"),
    include_str!("../data/holidays/2017.json"),
    include_str!("../data/holidays/2018.json"),
    include_str!("../data/holidays/2019.json"),
    include_str!("../data/holidays/2020.json"),
    include_str!("../data/holidays/2021.json"),
    include_str!("../data/holidays/2022.json"),
    include_str!("../data/holidays/2023.json"),
    include_str!("../data/holidays/2024.json"),
    include_str!("../data/holidays/2025.json"),
    include_str!("../data/holidays/2026.json"),
    include_str!("../data/holidays/2027.json"),
];

#[derive(Deserialize)]
struct HolidayFile {
    days: Vec<HolidayDay>,
}

#[derive(Deserialize)]
struct HolidayDay {
    name: String,
    date: String,
    #[serde(rename = "isOffDay")]
    is_off_day: bool,
}

/// A statutory holiday or make-up working day from the shipped data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    /// The date.
    pub date: i32,
    /// The holiday's name (元旦, 春节, 国庆节 …).
    pub name: String,
    /// `false` for a make-up working day (调休上班).
    pub off: bool,
}

/// The statutory holidays and make-up working days shipped with the engine.
pub fn shipped_holidays() -> Vec<Holiday> {
    let mut out = Vec::new();
    for text in HOLIDAY_FILES {
        // The files are part of the build; a file that does not parse is skipped rather than
        // failing every load, and the calendar test below catches it.
        if let Ok(f) = serde_json::from_str::<HolidayFile>(text) {
            for d in f.days {
                if let Ok(date) = time::parse_date(&d.date) {
                    out.push(Holiday {
                        date,
                        name: d.name,
                        off: d.is_off_day,
                    });
                }
            }
        }
    }
    out
}

/// Working hours within a working day: periods of seconds since midnight, sorted and disjoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingHours {
    periods: Vec<(u32, u32)>,
}

impl Default for WorkingHours {
    fn default() -> Self {
        WorkingHours {
            periods: vec![(9 * 3600, 12 * 3600), (14 * 3600, 18 * 3600)],
        }
    }
}

impl WorkingHours {
    /// Parses `09:00-12:00,14:00-18:00`.
    pub fn parse(spec: &str) -> Result<WorkingHours> {
        let bad = |why: &str| Error::Param {
            name: "working_hours".into(),
            message: format!("{why} in {spec:?} (expected e.g. 09:00-12:00,14:00-18:00)"),
        };
        let hm = |s: &str| -> Option<u32> {
            let (h, m) = s.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some((h * 60 + m) * 60)
        };
        let mut periods = Vec::new();
        for part in spec.split(',') {
            let (a, b) = part
                .split_once('-')
                .ok_or_else(|| bad("a period without '-'"))?;
            let (a, b) = (
                hm(a).ok_or_else(|| bad("a bad time"))?,
                hm(b).ok_or_else(|| bad("a bad time"))?,
            );
            if a >= b {
                return Err(bad("a period that ends before it starts"));
            }
            periods.push((a, b));
        }
        periods.sort_unstable();
        if periods.windows(2).any(|w| w[0].1 > w[1].0) {
            return Err(bad("overlapping periods"));
        }
        if periods.is_empty() {
            return Err(bad("no period"));
        }
        Ok(WorkingHours { periods })
    }

    /// Working seconds in one working day.
    pub fn seconds_per_day(&self) -> u32 {
        self.periods.iter().map(|(a, b)| b - a).sum()
    }

    /// The periods, as seconds since midnight.
    pub fn periods(&self) -> &[(u32, u32)] {
        &self.periods
    }
}

/// Which dates are working days, and the working hours.
#[derive(Debug, Clone)]
pub struct Calendar {
    first: i32,
    workday: Vec<bool>,
    /// Working hours on a working day.
    pub hours: WorkingHours,
    /// The working days in order, worked out on first use (and again after [`Calendar::set`]).
    ranks: OnceLock<Ranks>,
}

/// The covered working days, counted: deadlines in working days are a look-up, not a walk.
#[derive(Debug, Clone)]
struct Ranks {
    /// For each covered date (from `first`), how many working days come before it.
    before: Vec<u32>,
    /// The covered working days, in order.
    days: Vec<i32>,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar::china()
    }
}

impl Calendar {
    /// Monday–Friday, with no holidays.
    pub fn weekdays_only() -> Calendar {
        let first = time::ymd(FIRST_YEAR, 1, 1).unwrap_or(0);
        let last = time::ymd(LAST_YEAR, 12, 31).unwrap_or(first);
        let workday = (first..=last).map(|d| time::weekday(d) < 5).collect();
        Calendar {
            first,
            workday,
            hours: WorkingHours::default(),
            ranks: OnceLock::new(),
        }
    }

    /// The working calendar of a city: the default with its `calendar` table's days applied,
    /// and these working hours.
    pub fn of_table(
        table: &crate::store::StoredTable,
        hours: &WorkingHours,
    ) -> crate::error::Result<Calendar> {
        let mut calendar = Calendar::china();
        calendar.hours = hours.clone();
        if table.rows > 0 {
            let dates = table.dates("date")?;
            let work = table.bools("is_workday")?;
            for i in 0..table.rows {
                calendar.set(dates.value(i), work.value(i));
            }
        }
        Ok(calendar)
    }

    /// The default: Monday–Friday, minus the statutory holidays, plus the make-up working days.
    pub fn china() -> Calendar {
        let mut c = Calendar::weekdays_only();
        for h in shipped_holidays() {
            c.set(h.date, !h.off);
        }
        c
    }

    /// Overrides one date.
    pub fn set(&mut self, date: i32, is_workday: bool) {
        let i = date as i64 - self.first as i64;
        if i >= 0 && (i as usize) < self.workday.len() {
            self.workday[i as usize] = is_workday;
            self.ranks = OnceLock::new();
        }
    }

    fn ranks(&self) -> &Ranks {
        self.ranks.get_or_init(|| {
            let mut before = Vec::with_capacity(self.workday.len());
            let mut days = Vec::new();
            for (i, &w) in self.workday.iter().enumerate() {
                before.push(days.len() as u32);
                if w {
                    days.push(self.first + i as i32);
                }
            }
            Ranks { before, days }
        })
    }

    /// Whether a date is a working day.
    pub fn is_workday(&self, date: i32) -> bool {
        let i = date as i64 - self.first as i64;
        if i >= 0 && (i as usize) < self.workday.len() {
            self.workday[i as usize]
        } else {
            time::weekday(date) < 5
        }
    }

    /// The `n`-th working day strictly after `date` (`n ≥ 1`); `None` if there is none within
    /// ten years.
    pub fn nth_workday_after(&self, date: i32, n: u32) -> Option<i32> {
        if n == 0 {
            return Some(date);
        }
        // Inside the covered range: the working day n places after the last one up to `date`.
        let ranks = self.ranks();
        let next = date as i64 + 1 - self.first as i64;
        if next >= 0 && (next as usize) < ranks.before.len() {
            let at = ranks.before[next as usize] as usize + n as usize - 1;
            if let Some(&d) = ranks.days.get(at) {
                return (d <= date + 3660).then_some(d);
            }
        }
        self.nth_workday_after_by_walking(date, n)
    }

    /// [`Calendar::nth_workday_after`], a day at a time (past the covered range, and as the
    /// reference in tests).
    fn nth_workday_after_by_walking(&self, date: i32, n: u32) -> Option<i32> {
        let mut d = date;
        let mut left = n;
        let limit = date + 3660;
        while left > 0 {
            d += 1;
            if d > limit {
                return None;
            }
            if self.is_workday(d) {
                left -= 1;
            }
        }
        Some(d)
    }

    /// The instant at which `duration` microseconds of working time have elapsed since `start`:
    /// working time is the working hours of working days, so a clock started at night starts at
    /// the next working-time start. `None` if it does not elapse within ten years.
    pub fn add_working_time(&self, start: i64, duration: i64) -> Option<i64> {
        let per_day = self.hours.seconds_per_day() as i64 * SECOND;
        if per_day == 0 || duration < 0 {
            return self.add_working_time_by_walking(start, duration);
        }
        // What is left of the first day, then whole working days by rank, then the last day.
        let day = time::date_of(start);
        let mut remaining = duration;
        if let Some(end) = self.spend(day, start - time::midnight(day), &mut remaining) {
            return Some(end);
        }
        // The clock runs out on the k-th working day after `day`, with `rest` of it to go.
        let k = ((remaining + per_day - 1) / per_day).max(1);
        let mut rest = remaining - (k - 1) * per_day;
        let last = self.nth_workday_after(day, u32::try_from(k).ok()?)?;
        self.spend(last, 0, &mut rest)
    }

    /// Spends working time on one day from `from` (microseconds since midnight): the instant it
    /// runs out, or `None` with `remaining` reduced by what the day had.
    fn spend(&self, day: i32, from: i64, remaining: &mut i64) -> Option<i64> {
        if !self.is_workday(day) {
            return None;
        }
        for &(a, b) in &self.hours.periods {
            let (a, b) = (a as i64 * SECOND, b as i64 * SECOND);
            let begin = a.max(from);
            if begin < b {
                let available = b - begin;
                if *remaining <= available {
                    return Some(time::midnight(day) + begin + *remaining);
                }
                *remaining -= available;
            }
        }
        None
    }

    /// [`Calendar::add_working_time`], a day at a time (the reference in tests).
    fn add_working_time_by_walking(&self, start: i64, duration: i64) -> Option<i64> {
        let mut remaining = duration;
        let mut day = time::date_of(start);
        let mut from = start - time::midnight(day);
        let limit = day + 3660;
        loop {
            if let Some(end) = self.spend(day, from, &mut remaining) {
                return Some(end);
            }
            day += 1;
            from = 0;
            if day > limit {
                return None;
            }
        }
    }

    /// Working time, in microseconds, between two instants (0 if `end ≤ start`).
    pub fn working_time_between(&self, start: i64, end: i64) -> i64 {
        if end <= start {
            return 0;
        }
        let mut total = 0;
        let (d0, d1) = (time::date_of(start), time::date_of(end));
        for day in d0..=d1 {
            if !self.is_workday(day) {
                continue;
            }
            let m = time::midnight(day);
            for &(a, b) in &self.hours.periods {
                let (a, b) = (m + a as i64 * SECOND, m + b as i64 * SECOND);
                let (lo, hi) = (a.max(start), b.min(end));
                if lo < hi {
                    total += hi - lo;
                }
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{HOUR, MINUTE, at, ymd};

    fn d(y: i32, m: u32, day: u32) -> i32 {
        ymd(y, m, day).unwrap()
    }

    #[test]
    fn every_shipped_year_parses() {
        let years: std::collections::BTreeSet<i32> = shipped_holidays()
            .iter()
            .map(|h| {
                time::naive(h.date)
                    .format("%Y")
                    .to_string()
                    .parse()
                    .unwrap()
            })
            .collect();
        for y in 2007..=2026 {
            assert!(years.contains(&y), "no holidays for {y}");
        }
    }

    #[test]
    fn national_day_and_make_up_days_2026() {
        let c = Calendar::china();
        // 2026 National Day holiday: 1–7 October; Sunday 20 September and Saturday 10 October
        // are make-up working days.
        assert!(!c.is_workday(d(2026, 10, 1)));
        assert!(!c.is_workday(d(2026, 10, 7)));
        assert!(c.is_workday(d(2026, 10, 8)));
        assert!(c.is_workday(d(2026, 10, 10)), "make-up Saturday");
        assert!(c.is_workday(d(2026, 9, 20)), "make-up Sunday");
        assert!(!c.is_workday(d(2026, 10, 11)));
        // 3 working days after 30 September: 8, 9, 10 October.
        assert_eq!(
            c.nth_workday_after(d(2026, 9, 30), 3),
            Some(d(2026, 10, 10))
        );
        assert_eq!(c.nth_workday_after(d(2026, 11, 6), 1), Some(d(2026, 11, 9)));
    }

    #[test]
    fn working_time_skips_nights_lunch_and_weekends() {
        let c = Calendar::china();
        // Friday 2026-11-06 23:00, 4 working hours → Monday 13:00? No: 09:00–12:00 is 3 hours,
        // the fourth runs 14:00–15:00.
        let t0 = at(d(2026, 11, 6), 23, 0, 0);
        assert_eq!(
            c.add_working_time(t0, 4 * HOUR),
            Some(at(d(2026, 11, 9), 15, 0, 0))
        );
        // Reported 11:30 on a Monday; 1 working hour ends at 14:30.
        let t1 = at(d(2026, 11, 9), 11, 30, 0);
        assert_eq!(
            c.add_working_time(t1, HOUR),
            Some(at(d(2026, 11, 9), 14, 30, 0))
        );
        // Exactly filling the morning ends at 12:00, not 14:00.
        let t2 = at(d(2026, 11, 9), 9, 0, 0);
        assert_eq!(
            c.add_working_time(t2, 3 * HOUR),
            Some(at(d(2026, 11, 9), 12, 0, 0))
        );
        assert_eq!(
            c.working_time_between(t1, at(d(2026, 11, 9), 14, 30, 0)),
            HOUR
        );
        assert_eq!(c.working_time_between(t0, t0 + 10 * MINUTE), 0);
    }

    /// The look-ups by rank agree with walking the calendar a day at a time: around the
    /// Spring Festival and National Day, over make-up working days, at night, at lunch, with
    /// and without a `calendar` override.
    #[test]
    fn ranked_deadlines_agree_with_walking() {
        let mut overridden = Calendar::china();
        overridden.set(d(2026, 10, 10), true);
        overridden.set(d(2026, 10, 12), false);
        let mut short = Calendar::china();
        short.hours = WorkingHours::parse("08:30-11:45").unwrap();
        for c in [
            Calendar::china(),
            Calendar::weekdays_only(),
            overridden,
            short,
        ] {
            for day in d(2025, 12, 20)..d(2027, 3, 1) {
                for n in [1u32, 2, 3, 5, 10, 15, 20, 60] {
                    assert_eq!(
                        c.nth_workday_after(day, n),
                        c.nth_workday_after_by_walking(day, n),
                        "{day} + {n}"
                    );
                }
                for t in [
                    0,
                    8 * HOUR + 59 * MINUTE,
                    9 * HOUR,
                    11 * HOUR + 30 * MINUTE,
                    12 * HOUR,
                    13 * HOUR,
                    17 * HOUR + 59 * MINUTE,
                    18 * HOUR,
                    23 * HOUR,
                ] {
                    let start = time::midnight(day) + t;
                    for h in [0, 1, 2, 3, 4, 7, 8, 16, 24, 33, 56, 72, 200] {
                        for extra in [0, MINUTE, 30 * MINUTE] {
                            let dur = h * HOUR + extra;
                            assert_eq!(
                                c.add_working_time(start, dur),
                                c.add_working_time_by_walking(start, dur),
                                "{start} + {dur}"
                            );
                        }
                    }
                }
            }
        }
        // Past the covered range, the walk is used (weekdays only).
        let far = ymd(2101, 1, 1).unwrap();
        assert_eq!(
            Calendar::china().nth_workday_after(far, 3),
            Calendar::china().nth_workday_after_by_walking(far, 3)
        );
    }

    #[test]
    fn working_hours_parse() {
        let h = WorkingHours::parse("08:30-12:00, 13:30-17:30").unwrap();
        assert_eq!(h.seconds_per_day(), 7 * 3600 + 1800);
        assert!(WorkingHours::parse("12:00-09:00").is_err());
        assert!(WorkingHours::parse("09:00-12:00,11:00-13:00").is_err());
        assert!(WorkingHours::parse("nine to five").is_err());
    }
}
