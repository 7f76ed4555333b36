//! Cron expressions in a time zone: croner's parser and search over jiff 1.0's zoned times.
//!
//! croner finds occurrences for any type implementing its public [`CronDateTime`] trait; its
//! own jiff backend is for jiff 0.2, so the hub implements the trait for jiff 1.0 here
//! (after croner's `src/time/jiff_impl.rs`). croner's daylight-saving rules are Vixie cron's:
//! a job at a fixed time that falls in a spring-forward gap runs at the first instant after
//! the gap, and once (not twice) in an autumn fold; a wildcard job (every minute) runs in
//! both passes of the fold. The tests below pin those rules for Europe/Berlin.
//!
//! Expressions have five fields (minute precision) or six (a leading seconds field); `@daily`
//! and the other nicknames, names of days and months, `L`, `W` and `#` are accepted.

use std::cmp::Ordering;
use std::str::FromStr;

use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, ZonedDateTime};

/// A parsed cron expression with the time zone its wall clock times are read in.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: TimeZone,
    /// The expression as written, and the zone's name, for display and equality.
    text: String,
    zone_name: String,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &CronSchedule) -> bool {
        self.text == other.text && self.zone_name == other.zone_name
    }
}

impl Eq for CronSchedule {}

impl CronSchedule {
    /// Parses `expression` for the IANA time zone `zone` ("UTC", "Europe/Berlin").
    pub fn parse(expression: &str, zone: &str) -> Result<CronSchedule, String> {
        let zone_tz = time_zone(zone)?;
        let cron = Cron::from_str(expression)
            .map_err(|error| format!("not a cron expression ({expression:?}): {error}"))?;
        Ok(CronSchedule {
            cron,
            zone: zone_tz,
            text: expression.trim().to_owned(),
            zone_name: zone.to_owned(),
        })
    }

    pub fn expression(&self) -> &str {
        &self.text
    }

    pub fn zone(&self) -> &str {
        &self.zone_name
    }

    fn zoned(&self, ms: i64) -> Option<CronInstant> {
        let at = Timestamp::from_millisecond(ms).ok()?;
        Some(CronInstant(at.to_zoned_datetime(self.zone.clone())))
    }

    /// The first occurrence strictly after `after` (Unix ms).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        // croner works in whole seconds: from the second that holds `after`, exclusive,
        // unless `after` is inside it, when that second's start is already past.
        let second = after.div_euclid(1000) * 1000;
        let start = self.zoned(second)?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(next.0.timestamp().as_millisecond())
    }

    /// The newest occurrence at or before `at` (Unix ms).
    pub fn at_or_before(&self, at: i64) -> Option<i64> {
        let second = at.div_euclid(1000) * 1000;
        let start = self.zoned(second)?;
        let previous = self.cron.find_previous_occurrence(&start, true).ok()?;
        Some(previous.0.timestamp().as_millisecond())
    }
}

/// An IANA time zone by name, from the system's zoneinfo or jiff's bundled copy.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("UTC") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|error| format!("unknown time zone {name:?}: {error}"))
}

/// A jiff 1.0 zoned time as croner sees it.
#[derive(Debug, Clone)]
struct CronInstant(ZonedDateTime);

fn to_civil(datetime: jiff::civil::DateTime) -> CivilDateTime {
    // jiff keeps every part in range, so croner's unchecked constructors are safe to use.
    CivilDateTime::new(
        CivilDate::from_parts_unchecked(
            i32::from(datetime.year()),
            datetime.month() as u32,
            datetime.day() as u32,
        ),
        CivilTime::from_parts_unchecked(
            datetime.hour() as u32,
            datetime.minute() as u32,
            datetime.second() as u32,
        ),
    )
}

fn to_jiff(civil: CivilDateTime) -> Result<jiff::civil::DateTime, croner::errors::CronError> {
    use croner::errors::CronError;
    let year = i16::try_from(civil.year()).map_err(|_| CronError::InvalidDate)?;
    jiff::civil::DateTime::new(
        year,
        civil.month() as i8,
        civil.day() as i8,
        civil.hour() as i8,
        civil.minute() as i8,
        civil.second() as i8,
        0,
    )
    .map_err(|_| CronError::InvalidDate)
}

impl CronDateTime for CronInstant {
    fn to_civil(&self) -> CivilDateTime {
        to_civil(self.0.datetime())
    }

    fn civil_weekday(&self) -> Weekday {
        Weekday::from_days_from_sunday(self.0.weekday().to_sunday_zero_offset() as u32)
    }

    fn resolve_civil(
        &self,
        civil: CivilDateTime,
    ) -> Result<Resolution<Self>, croner::errors::CronError> {
        use croner::errors::CronError;
        let ambiguous = self.0.time_zone().to_ambiguous_zoned_datetime(to_jiff(civil)?);
        Ok(match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { .. } => Resolution::Single(CronInstant(
                ambiguous.unambiguous().map_err(|_| CronError::InvalidTime)?,
            )),
            AmbiguousOffset::Fold { .. } => {
                let earlier = ambiguous.clone().earlier().map_err(|_| CronError::InvalidTime)?;
                let later = ambiguous.later().map_err(|_| CronError::InvalidTime)?;
                Resolution::Ambiguous(CronInstant(earlier), CronInstant(later))
            }
            AmbiguousOffset::Gap { .. } => Resolution::Gap,
        })
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0.checked_add(SignedDuration::from_secs(seconds)).ok().map(CronInstant)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.timestamp().cmp(&other.0.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().expect("a timestamp").as_millisecond()
    }

    fn utc(at: i64) -> String {
        Timestamp::from_millisecond(at).expect("in range").to_string()
    }

    #[test]
    fn five_and_six_fields_nicknames_and_names_parse_and_garbage_is_refused() {
        let daily = CronSchedule::parse("@daily", "UTC").expect("a nickname");
        assert_eq!(
            utc(daily.next_after(ms("2026-12-04T13:00:00Z")).unwrap()),
            "2026-12-05T00:00:00Z"
        );
        let seconds = CronSchedule::parse("*/15 * * * * *", "UTC").expect("six fields");
        assert_eq!(
            utc(seconds.next_after(ms("2026-12-04T13:00:00.500Z")).unwrap()),
            "2026-12-04T13:00:15Z"
        );
        let weekdays = CronSchedule::parse("0 9 * * MON-FRI", "UTC").expect("names");
        // 2026-12-04 is a Friday: the next is Monday the 7th.
        assert_eq!(
            utc(weekdays.next_after(ms("2026-12-04T10:00:00Z")).unwrap()),
            "2026-12-07T09:00:00Z"
        );
        let last = CronSchedule::parse("0 0 L * *", "UTC").expect("L");
        assert_eq!(
            utc(last.next_after(ms("2026-02-01T00:00:00Z")).unwrap()),
            "2026-02-28T00:00:00Z"
        );
        for bad in ["", "* * *", "61 * * * *", "0 25 * * *", "every minute", "* * * * * * * *"] {
            assert!(CronSchedule::parse(bad, "UTC").is_err(), "{bad:?} was accepted");
        }
        assert!(
            CronSchedule::parse("* * * * *", "Mars/Olympus").unwrap_err().contains("time zone")
        );
    }

    #[test]
    fn occurrences_are_strictly_after_and_at_or_before() {
        let hourly = CronSchedule::parse("0 * * * *", "UTC").unwrap();
        let at = ms("2026-12-04T13:00:00Z");
        assert_eq!(hourly.next_after(at), Some(at + 3_600_000));
        assert_eq!(hourly.next_after(at - 1), Some(at));
        assert_eq!(hourly.at_or_before(at), Some(at));
        assert_eq!(hourly.at_or_before(at + 1), Some(at));
        assert_eq!(hourly.at_or_before(at - 1), Some(at - 3_600_000));
    }

    #[test]
    fn wall_clock_times_follow_the_zone_through_daylight_saving() {
        // Berlin springs forward on 2026-03-29 at 02:00 (to 03:00) and falls back on
        // 2026-10-25 at 03:00 (to 02:00).
        let half_past_two = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        // In the gap: at the first instant after it, 03:00 CEST = 01:00 UTC.
        let spring = half_past_two.next_after(ms("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(utc(spring), "2026-03-29T01:00:00Z");
        // In the fold: once, at the first 02:30 (CEST, 00:30 UTC), not again an hour later.
        let autumn = half_past_two.next_after(ms("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(utc(autumn), "2026-10-25T00:30:00Z");
        assert_eq!(utc(half_past_two.next_after(autumn).unwrap()), "2026-10-26T01:30:00Z");
        // Winter: 02:30 CET is 01:30 UTC; summer: 02:30 CEST is 00:30 UTC.
        let seven = CronSchedule::parse("0 7 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            utc(seven.next_after(ms("2026-12-04T00:00:00Z")).unwrap()),
            "2026-12-04T06:00:00Z"
        );
        assert_eq!(
            utc(seven.next_after(ms("2026-07-04T00:00:00Z")).unwrap()),
            "2026-07-04T05:00:00Z"
        );
    }
}
