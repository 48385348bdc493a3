//! Calendars: which seconds count towards a target.
//!
//! A 24x7 calendar counts every second. A business-hours calendar counts the seconds inside
//! the weekly open hours of its IANA time zone, except on holidays. Open hours are local
//! wall-clock ranges converted to instants through the tz database, so daylight-saving days
//! are right: on the spring-forward day a range 01:00-04:00 in `America/New_York` is two
//! hours long, on the fall-back day three. A local time that does not exist (inside the
//! spring gap) is read as the first instant after the gap, a repeated one (inside the
//! autumn fold) as its first occurrence (jiff's "compatible" rule, as RFC 5545 does).
//!
//! All times here are Unix seconds: SLA times are kept to the second.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use jiff::{civil::Date, tz::TimeZone, Timestamp};

/// Open ranges per weekday (Monday first) in seconds since local midnight, sorted and
/// disjoint; an end of 86 400 is the following midnight.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct WeeklyHours {
    pub days: [Vec<(u32, u32)>; 7],
}

/// How far ahead a business deadline is searched: a target that needs more than a
/// century of open hours is treated as never falling due.
const MAX_DAYS_SEARCHED: u32 = 366 * 100;

/// The latest instant jiff can represent, used as "never".
pub(crate) fn never() -> i64 {
    Timestamp::MAX.as_second()
}

/// Years whose open intervals are tabulated (lazily, on first use); times outside are
/// computed day by day.
const FIRST_TABLE_YEAR: i16 = 1970;
const LAST_TABLE_YEAR: i16 = 2200;

/// The open intervals of one local year as instants, with the counted seconds before each,
/// so that adding and measuring counted time is a binary search instead of a walk over
/// days with two time-zone conversions each.
#[derive(Debug, Clone)]
struct YearTable {
    /// Instant of local midnight on 1 January of the next year.
    end: i64,
    opens: Vec<i64>,
    closes: Vec<i64>,
    /// Counted seconds in the year before interval i.
    counted_before: Vec<i64>,
    total: i64,
}

impl YearTable {
    /// Counted seconds from the start of the year to `at` (`start <= at <= end`).
    fn counted_until(&self, at: i64) -> i64 {
        let i = self.closes.partition_point(|&close| close <= at);
        if i == self.opens.len() {
            self.total
        } else {
            self.counted_before[i] + (at - self.opens[i]).max(0)
        }
    }

    /// The instant at which `counted` seconds of the year have passed (0 < counted <= total).
    fn instant_of(&self, counted: i64) -> i64 {
        // The first interval whose end reaches `counted`.
        let (mut low, mut high) = (0, self.opens.len());
        while low < high {
            let mid = (low + high) / 2;
            if self.counted_before[mid] + (self.closes[mid] - self.opens[mid]) < counted {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        self.opens[low] + (counted - self.counted_before[low])
    }
}

#[derive(Debug, Clone)]
pub(crate) struct BusinessHours {
    zone: TimeZone,
    weekly: WeeklyHours,
    holidays: BTreeSet<Date>,
    /// One lazily built table per year from FIRST_TABLE_YEAR; shared by clones.
    years: Arc<[OnceLock<YearTable>]>,
}

#[derive(Debug, Clone)]
pub(crate) enum Calendar {
    AllHours,
    Business(Box<BusinessHours>),
}

pub(crate) static ALL_HOURS: Calendar = Calendar::AllHours;

impl Calendar {
    pub(crate) fn business(zone: TimeZone, weekly: WeeklyHours, holidays: Vec<Date>) -> Calendar {
        let years = (FIRST_TABLE_YEAR..=LAST_TABLE_YEAR)
            .map(|_| OnceLock::new())
            .collect();
        Calendar::Business(Box::new(BusinessHours {
            zone,
            weekly,
            holidays: holidays.into_iter().collect(),
            years,
        }))
    }

    /// The instant at which `seconds` counted seconds have passed since `start`.
    pub(crate) fn add_counted(&self, start: i64, seconds: i64) -> i64 {
        if seconds <= 0 {
            return start;
        }
        match self {
            Calendar::AllHours => start.saturating_add(seconds).min(never()),
            Calendar::Business(hours) => hours.add_counted(start, seconds),
        }
    }

    /// Counted seconds in `[from, to)`; zero if `to <= from`.
    pub(crate) fn counted_between(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        match self {
            Calendar::AllHours => to - from,
            Calendar::Business(hours) => hours.counted_between(from, to),
        }
    }
}

impl BusinessHours {
    fn year_table(&self, at: i64) -> Option<&YearTable> {
        let year = local_date(&self.zone, at).year();
        if !(FIRST_TABLE_YEAR..=LAST_TABLE_YEAR).contains(&year) {
            return None;
        }
        let slot = &self.years[(year - FIRST_TABLE_YEAR) as usize];
        Some(slot.get_or_init(|| self.build_year(year)))
    }

    fn build_year(&self, year: i16) -> YearTable {
        let first = Date::new(year, 1, 1).expect("tabulated years are valid");
        let next = Date::new(year + 1, 1, 1).expect("tabulated years are valid");
        let mut table = YearTable {
            end: instant(&self.zone, next, 0),
            opens: Vec::new(),
            closes: Vec::new(),
            counted_before: Vec::new(),
            total: 0,
        };
        let mut date = first;
        while date < next {
            if !self.holidays.contains(&date) {
                for &(open, close) in &self.weekly.days[weekday_index(date)] {
                    let open_at = instant(&self.zone, date, open);
                    let close_at = instant(&self.zone, date, close);
                    if close_at > open_at {
                        table.opens.push(open_at);
                        table.closes.push(close_at);
                        table.counted_before.push(table.total);
                        table.total += close_at - open_at;
                    }
                }
            }
            date = date.tomorrow().expect("tabulated years are valid");
        }
        table
    }

    fn add_counted(&self, start: i64, seconds: i64) -> i64 {
        let (mut at, mut remaining) = (start, seconds);
        loop {
            let Some(table) = self.year_table(at) else {
                return self.add_counted_by_day(at, remaining);
            };
            let wanted = table.counted_until(at) + remaining;
            if wanted <= table.total {
                return table.instant_of(wanted).max(at);
            }
            remaining = wanted - table.total;
            at = table.end;
        }
    }

    fn counted_between(&self, from: i64, to: i64) -> i64 {
        let (mut at, mut total) = (from, 0);
        while at < to {
            let Some(table) = self.year_table(at) else {
                return total + self.counted_between_by_day(at, to);
            };
            let until = to.min(table.end);
            total += table.counted_until(until) - table.counted_until(at);
            at = table.end;
        }
        total
    }

    /// The day-by-day walk, for years outside the tables (and to check them).
    fn add_counted_by_day(&self, start: i64, seconds: i64) -> i64 {
        let mut date = local_date(&self.zone, start);
        let mut remaining = seconds;
        for _ in 0..MAX_DAYS_SEARCHED {
            if !self.holidays.contains(&date) {
                for &(open, close) in &self.weekly.days[weekday_index(date)] {
                    let open_at = instant(&self.zone, date, open).max(start);
                    let close_at = instant(&self.zone, date, close);
                    if close_at <= open_at {
                        continue;
                    }
                    let length = close_at - open_at;
                    if remaining <= length {
                        return open_at + remaining;
                    }
                    remaining -= length;
                }
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        never()
    }

    fn counted_between_by_day(&self, from: i64, to: i64) -> i64 {
        let mut date = local_date(&self.zone, from);
        let last = local_date(&self.zone, to);
        let mut total = 0;
        loop {
            if !self.holidays.contains(&date) {
                for &(open, close) in &self.weekly.days[weekday_index(date)] {
                    let open_at = instant(&self.zone, date, open).max(from);
                    let close_at = instant(&self.zone, date, close).min(to);
                    if close_at > open_at {
                        total += close_at - open_at;
                    }
                }
            }
            if date >= last {
                break;
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        total
    }
}

fn local_date(zone: &TimeZone, at: i64) -> Date {
    let timestamp = Timestamp::from_second(at).unwrap_or(Timestamp::MAX);
    zone.to_datetime(timestamp).date()
}

fn weekday_index(date: Date) -> usize {
    date.weekday().to_monday_zero_offset() as usize
}

/// The instant of a local time of day, with the "compatible" rule for gaps and folds.
fn instant(zone: &TimeZone, date: Date, seconds_of_day: u32) -> i64 {
    let datetime = if seconds_of_day >= 86_400 {
        match date.tomorrow() {
            Ok(next) => next.at(0, 0, 0, 0),
            Err(_) => return never(),
        }
    } else {
        date.at(
            (seconds_of_day / 3600) as i8,
            (seconds_of_day / 60 % 60) as i8,
            (seconds_of_day % 60) as i8,
            0,
        )
    };
    zone.to_ambiguous_timestamp(datetime)
        .compatible()
        .map(|t| t.as_second())
        .unwrap_or_else(|_| never())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_second()
    }

    fn nine_to_five(zone: &str, holidays: &[&str]) -> Calendar {
        let day = vec![(9 * 3600, 17 * 3600)];
        let weekly = WeeklyHours {
            days: [
                day.clone(),
                day.clone(),
                day.clone(),
                day.clone(),
                day,
                vec![],
                vec![],
            ],
        };
        let holidays = holidays.iter().map(|d| d.parse().unwrap()).collect();
        Calendar::business(TimeZone::get(zone).unwrap(), weekly, holidays)
    }

    proptest::proptest! {
        #[test]
        fn year_tables_agree_with_the_day_walk(
            start in 1_700_000_000i64..1_800_000_000,
            seconds in 1i64..400 * 3600,
            span in 0i64..90 * 86_400,
            zone in 0usize..3,
        ) {
            let zone = ["Europe/Paris", "America/New_York", "Asia/Tokyo"][zone];
            let Calendar::Business(hours) = nine_to_five(zone, &["2025-12-25", "2026-07-03"]) else { unreachable!() };
            proptest::prop_assert_eq!(hours.add_counted(start, seconds), hours.add_counted_by_day(start, seconds));
            proptest::prop_assert_eq!(
                hours.counted_between(start, start + span),
                hours.counted_between_by_day(start, start + span)
            );
        }
    }

    #[test]
    fn all_hours_counts_every_second() {
        assert_eq!(ALL_HOURS.add_counted(100, 50), 150);
        assert_eq!(ALL_HOURS.counted_between(100, 150), 50);
        assert_eq!(ALL_HOURS.counted_between(150, 100), 0);
    }

    #[test]
    fn business_hours_skip_the_weekend() {
        // Given Friday 16:00 in Paris (CET, UTC+1) and a 2h business target,
        let calendar = nine_to_five("Europe/Paris", &[]);
        let friday_4pm = at("2025-01-10T15:00:00Z");
        // when the deadline is computed, then it falls on Monday 10:00 local.
        let due = calendar.add_counted(friday_4pm, 7200);
        assert_eq!(due, at("2025-01-13T09:00:00Z"));
        assert_eq!(calendar.counted_between(friday_4pm, due), 7200);
    }

    #[test]
    fn business_hours_skip_holidays() {
        // Given Christmas Day (Thursday) is a holiday,
        let calendar = nine_to_five("Europe/Paris", &["2025-12-25"]);
        let wednesday_4pm = at("2025-12-24T15:00:00Z");
        // when 2h are added on Wednesday 16:00, then the deadline is Friday 10:00.
        assert_eq!(
            calendar.add_counted(wednesday_4pm, 7200),
            at("2025-12-26T09:00:00Z")
        );
    }

    #[test]
    fn business_hours_follow_the_european_dst_change() {
        // Europe switched to summer time on Sunday 2025-03-30: Friday 09:00 is 08:00Z,
        // Monday 09:00 is 07:00Z.
        let calendar = nine_to_five("Europe/Berlin", &[]);
        let friday_9am = at("2025-03-28T08:00:00Z");
        // 8h (one business day) after Friday 09:00 is Friday 17:00 (16:00Z); 9h is Monday
        // 10:00 local, which is 08:00Z in summer time.
        assert_eq!(
            calendar.add_counted(friday_9am, 8 * 3600),
            at("2025-03-28T16:00:00Z")
        );
        assert_eq!(
            calendar.add_counted(friday_9am, 9 * 3600),
            at("2025-03-31T08:00:00Z")
        );
        // The weekend in between, 65 wall-clock hours minus the lost hour, counts nothing.
        assert_eq!(
            calendar.counted_between(at("2025-03-28T16:00:00Z"), at("2025-03-31T07:00:00Z")),
            0
        );
    }

    #[test]
    fn business_hours_follow_the_us_dst_change_inside_open_hours() {
        // Given a 24h-open calendar in New York, on 2025-03-09 (spring forward at 02:00)
        // the local day has 23 hours and on 2025-11-02 (fall back) 25.
        let all_day = vec![(0, 86_400)];
        let weekly = WeeklyHours {
            days: std::array::from_fn(|_| all_day.clone()),
        };
        let calendar =
            Calendar::business(TimeZone::get("America/New_York").unwrap(), weekly, vec![]);
        let march_9 = at("2025-03-09T05:00:00Z"); // local midnight (EST)
        let march_10 = at("2025-03-10T04:00:00Z"); // local midnight (EDT)
        assert_eq!(calendar.counted_between(march_9, march_10), 23 * 3600);
        let november_2 = at("2025-11-02T04:00:00Z");
        let november_3 = at("2025-11-03T05:00:00Z");
        assert_eq!(calendar.counted_between(november_2, november_3), 25 * 3600);
        assert_eq!(calendar.add_counted(november_2, 25 * 3600), november_3);
    }

    #[test]
    fn business_deadline_across_the_us_dst_weekend() {
        // Given 9-5 in New York, Friday 2025-03-07 16:00 EST (21:00Z) and 2 business
        // hours, then the deadline is Monday 10:00 EDT, i.e. 14:00Z (not 15:00Z).
        let calendar = nine_to_five("America/New_York", &[]);
        assert_eq!(
            calendar.add_counted(at("2025-03-07T21:00:00Z"), 7200),
            at("2025-03-10T14:00:00Z")
        );
    }

    #[test]
    fn a_target_ending_at_close_is_due_at_close() {
        let calendar = nine_to_five("UTC", &[]);
        let monday_9am = at("2025-01-06T09:00:00Z");
        assert_eq!(
            calendar.add_counted(monday_9am, 8 * 3600),
            at("2025-01-06T17:00:00Z")
        );
        // Outside hours the clock waits for the next opening.
        assert_eq!(
            calendar.add_counted(at("2025-01-06T20:00:00Z"), 60),
            at("2025-01-07T09:01:00Z")
        );
    }
}
