//! Dates and timestamps as DuckDB computes them: text forms, `strftime`, `date_trunc`,
//! `extract` and `time_bucket`, over UTC (lambdaflow's event time has no time zone).
//!
//! A `DATE` is days since 1970-01-01 and a `TIMESTAMP` microseconds since the epoch; the
//! calendar arithmetic is the `time` crate's (proleptic Gregorian, as DuckDB's).

use std::fmt::Write;

use ::time::{Date, Month, Weekday};

/// Microseconds in a day.
pub const MICROS_PER_DAY: i64 = 86_400_000_000;
const MICROS_PER_SECOND: i64 = 1_000_000;

/// The calendar date of a day number, clamped to what the `time` crate can represent.
fn date_of(days: i64) -> Date {
    let julian = (days + 2_440_588).clamp(
        i64::from(Date::MIN.to_julian_day()),
        i64::from(Date::MAX.to_julian_day()),
    );
    Date::from_julian_day(julian as i32).unwrap_or(Date::MIN)
}

fn days_of(date: Date) -> i64 {
    i64::from(date.to_julian_day()) - 2_440_588
}

/// The date and the time of day (µs) of a timestamp.
fn split(us: i64) -> (Date, i64) {
    let days = us.div_euclid(MICROS_PER_DAY);
    (date_of(days), us.rem_euclid(MICROS_PER_DAY))
}

/// A date as `YYYY-MM-DD`.
pub fn date_text(days: i32) -> String {
    let d = date_of(i64::from(days));
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

/// A timestamp as DuckDB writes it: `YYYY-MM-DD HH:MM:SS` and a fraction without trailing zeros.
pub fn timestamp_text(us: i64) -> String {
    let (date, time_of_day) = split(us);
    let secs = time_of_day / MICROS_PER_SECOND;
    let fraction = time_of_day % MICROS_PER_SECOND;
    let mut text = format!(
        "{} {:02}:{:02}:{:02}",
        date_text(days_of(date) as i32),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
    text
}

/// An interval as DuckDB writes one without months: `[N days ]HH:MM:SS[.fraction]`.
pub fn interval_text(us: i64) -> String {
    let days = us / MICROS_PER_DAY;
    let rest = timestamp_text(us % MICROS_PER_DAY);
    let clock = rest.split_once(' ').map(|(_, t)| t).unwrap_or("00:00:00");
    match days {
        0 => clock.to_string(),
        1 => format!("1 day {clock}"),
        n => format!("{n} days {clock}"),
    }
}

/// The day number of a timestamp (what `CAST(ts AS DATE)` gives).
pub fn date_of_timestamp(us: i64) -> i32 {
    us.div_euclid(MICROS_PER_DAY) as i32
}

/// Reads `YYYY-MM-DD`.
pub fn parse_date(text: &str) -> Option<i32> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    Some(days_of(date) as i32)
}

/// Reads `YYYY-MM-DD[ HH:MM[:SS[.fraction]]]` (a `T` may separate date and time).
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, clock) = match text.find([' ', 'T']) {
        Some(at) => (&text[..at], text[at + 1..].trim()),
        None => (text, ""),
    };
    let days = i64::from(parse_date(date)?);
    let mut us = 0;
    if !clock.is_empty() {
        let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
        let mut fields = hms.split(':');
        let h: i64 = fields.next()?.parse().ok()?;
        let m: i64 = fields.next()?.parse().ok()?;
        let s: i64 = fields.next().map_or(Some(0), |s| s.parse().ok())?;
        if h > 23 || m > 59 || s > 59 || fraction.len() > 6 {
            return None;
        }
        let digits = if fraction.is_empty() {
            0
        } else {
            format!("{fraction:0<6}").parse::<i64>().ok()?
        };
        us = ((h * 60 + m) * 60 + s) * MICROS_PER_SECOND + digits;
    }
    days.checked_mul(MICROS_PER_DAY)?.checked_add(us)
}

/// The conversion specifiers [`strftime`] knows.
pub const STRFTIME_SPECIFIERS: &str = "aAbBdHIjmMpSyYfeuw%";

/// `strftime(ts, format)` for the specifiers in [`STRFTIME_SPECIFIERS`]; `None` for another.
pub fn strftime(us: i64, format: &str) -> Option<String> {
    let (date, time_of_day) = split(us);
    let secs = time_of_day / MICROS_PER_SECOND;
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::with_capacity(format.len() + 8);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Each field written into `out` (a `format!` per field was an allocation each).
        let written = match chars.next()? {
            'Y' => write!(out, "{:04}", date.year()),
            'y' => write!(out, "{:02}", date.year().rem_euclid(100)),
            'm' => write!(out, "{:02}", date.month() as u8),
            'd' => write!(out, "{:02}", date.day()),
            'e' => write!(out, "{:>2}", date.day()),
            'H' => write!(out, "{hour:02}"),
            'I' => write!(out, "{:02}", (hour + 11) % 12 + 1),
            'p' => out.write_str(if hour < 12 { "AM" } else { "PM" }),
            'M' => write!(out, "{minute:02}"),
            'S' => write!(out, "{second:02}"),
            'f' => write!(out, "{:06}", time_of_day % MICROS_PER_SECOND),
            'j' => write!(out, "{:03}", date.ordinal()),
            'u' => write!(out, "{}", date.weekday().number_from_monday()),
            'w' => write!(out, "{}", date.weekday().number_days_from_sunday()),
            'a' => out.write_str(&weekday_name(date.weekday())[..3]),
            'A' => out.write_str(weekday_name(date.weekday())),
            'b' => out.write_str(&month_name(date.month())[..3]),
            'B' => out.write_str(month_name(date.month())),
            '%' => out.write_char('%'),
            _ => return None,
        };
        written.ok()?;
    }
    Some(out)
}

fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "Monday",
        Weekday::Tuesday => "Tuesday",
        Weekday::Wednesday => "Wednesday",
        Weekday::Thursday => "Thursday",
        Weekday::Friday => "Friday",
        Weekday::Saturday => "Saturday",
        Weekday::Sunday => "Sunday",
    }
}

fn month_name(month: Month) -> &'static str {
    match month {
        Month::January => "January",
        Month::February => "February",
        Month::March => "March",
        Month::April => "April",
        Month::May => "May",
        Month::June => "June",
        Month::July => "July",
        Month::August => "August",
        Month::September => "September",
        Month::October => "October",
        Month::November => "November",
        Month::December => "December",
    }
}

/// A part of a date or time, as `date_trunc` and `extract` name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Part {
    /// The millennium.
    Millennium,
    /// The century.
    Century,
    /// The decade.
    Decade,
    /// The year.
    Year,
    /// The quarter (1-4).
    Quarter,
    /// The month (1-12).
    Month,
    /// The ISO week (weeks start on Monday).
    Week,
    /// The day of the month.
    Day,
    /// The day of the week, Sunday = 0 (`extract` only).
    DayOfWeek,
    /// The ISO day of the week, Monday = 1 (`extract` only).
    IsoDayOfWeek,
    /// The day of the year (`extract` only).
    DayOfYear,
    /// The hour.
    Hour,
    /// The minute.
    Minute,
    /// The second.
    Second,
    /// The millisecond (`extract`: seconds × 1000 + milliseconds).
    Millisecond,
    /// The microsecond (`extract`: seconds × 10^6 + microseconds).
    Microsecond,
    /// Seconds since the epoch (`extract` only, a `DOUBLE`).
    Epoch,
}

impl Part {
    /// Reads a part's name (`'day'`, `'days'`, `'dow'`, ...), case-insensitively.
    pub fn parse(name: &str) -> Option<Part> {
        Some(match name.to_ascii_lowercase().as_str() {
            "millennium" | "millennia" | "millenium" => Part::Millennium,
            "century" | "centuries" => Part::Century,
            "decade" | "decades" => Part::Decade,
            "year" | "years" | "y" | "yr" | "yrs" => Part::Year,
            "quarter" | "quarters" => Part::Quarter,
            "month" | "months" | "mon" => Part::Month,
            "week" | "weeks" | "w" => Part::Week,
            "day" | "days" | "d" => Part::Day,
            "dow" | "dayofweek" | "weekday" => Part::DayOfWeek,
            "isodow" => Part::IsoDayOfWeek,
            "doy" | "dayofyear" => Part::DayOfYear,
            "hour" | "hours" | "h" | "hr" => Part::Hour,
            "minute" | "minutes" | "m" | "min" => Part::Minute,
            "second" | "seconds" | "s" | "sec" => Part::Second,
            "millisecond" | "milliseconds" | "ms" => Part::Millisecond,
            "microsecond" | "microseconds" | "us" => Part::Microsecond,
            "epoch" => Part::Epoch,
            _ => return None,
        })
    }

    /// Whether `date_trunc` can truncate to this part.
    pub fn truncates(self) -> bool {
        !matches!(
            self,
            Part::DayOfWeek | Part::IsoDayOfWeek | Part::DayOfYear | Part::Epoch
        )
    }

    /// The length of one unit of this part in µs, for the parts of fixed length.
    pub fn fixed_micros(self) -> Option<i64> {
        Some(match self {
            Part::Week => 7 * MICROS_PER_DAY,
            Part::Day => MICROS_PER_DAY,
            Part::Hour => 3_600 * MICROS_PER_SECOND,
            Part::Minute => 60 * MICROS_PER_SECOND,
            Part::Second => MICROS_PER_SECOND,
            Part::Millisecond => 1_000,
            Part::Microsecond => 1,
            _ => return None,
        })
    }
}

/// `date_trunc(part, ts)`: the timestamp truncated to the start of its `part`.
pub fn date_trunc(part: Part, us: i64) -> i64 {
    let (date, time_of_day) = split(us);
    let day_start = days_of(date) * MICROS_PER_DAY;
    let first_of = |year: i32, month: Month| {
        Date::from_calendar_date(year, month, 1)
            .map(|d| days_of(d) * MICROS_PER_DAY)
            .unwrap_or(day_start)
    };
    match part {
        Part::Millennium => first_of(
            (date.year() - 1).div_euclid(1000) * 1000 + 1,
            Month::January,
        ),
        Part::Century => first_of((date.year() - 1).div_euclid(100) * 100 + 1, Month::January),
        Part::Decade => first_of(date.year().div_euclid(10) * 10, Month::January),
        Part::Year => first_of(date.year(), Month::January),
        Part::Quarter => {
            let month = (date.month() as u8 - 1) / 3 * 3 + 1;
            first_of(
                date.year(),
                Month::try_from(month).unwrap_or(Month::January),
            )
        }
        Part::Month => first_of(date.year(), date.month()),
        Part::Week => {
            let back = i64::from(date.weekday().number_days_from_monday());
            day_start - back * MICROS_PER_DAY
        }
        Part::Day | Part::DayOfWeek | Part::IsoDayOfWeek | Part::DayOfYear => day_start,
        other => {
            let unit = other.fixed_micros().unwrap_or(1);
            day_start + time_of_day - time_of_day % unit
        }
    }
}

/// `extract(part FROM ts)` as a `BIGINT` (the epoch as a double is [`epoch_seconds`]).
pub fn extract(part: Part, us: i64) -> i64 {
    let (date, time_of_day) = split(us);
    let secs = time_of_day / MICROS_PER_SECOND;
    let year = i64::from(date.year());
    match part {
        Part::Millennium => (year - 1).div_euclid(1000) + 1,
        Part::Century => (year - 1).div_euclid(100) + 1,
        Part::Decade => year.div_euclid(10),
        Part::Year => year,
        Part::Quarter => i64::from((date.month() as u8 - 1) / 3 + 1),
        Part::Month => i64::from(date.month() as u8),
        Part::Week => i64::from(date.iso_week()),
        Part::Day => i64::from(date.day()),
        Part::DayOfWeek => i64::from(date.weekday().number_days_from_sunday()),
        Part::IsoDayOfWeek => i64::from(date.weekday().number_from_monday()),
        Part::DayOfYear => i64::from(date.ordinal()),
        Part::Hour => secs / 3600,
        Part::Minute => secs / 60 % 60,
        Part::Second => secs % 60,
        Part::Millisecond => time_of_day % (60 * MICROS_PER_SECOND) / 1_000,
        Part::Microsecond => time_of_day % (60 * MICROS_PER_SECOND),
        Part::Epoch => us.div_euclid(MICROS_PER_SECOND),
    }
}

/// Seconds since the epoch, with the fraction (`extract(epoch FROM ts)`).
pub fn epoch_seconds(us: i64) -> f64 {
    us as f64 / MICROS_PER_SECOND as f64
}

/// DuckDB's origin for `time_bucket` with intervals of days or less: Monday 2000-01-03.
const BUCKET_ORIGIN: i64 = 946_857_600 * MICROS_PER_SECOND;

/// `time_bucket(width, ts)`: the start of the bucket of `width` µs that holds `ts`.
pub fn time_bucket(width: i64, us: i64) -> Option<i64> {
    if width <= 0 {
        return None;
    }
    let offset = us.checked_sub(BUCKET_ORIGIN)?;
    offset
        .div_euclid(width)
        .checked_mul(width)?
        .checked_add(BUCKET_ORIGIN)
}

/// The current wall-clock time, for tests of the text forms.
#[cfg(test)]
fn now_micros() -> i64 {
    (::time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_match_duckdb() {
        assert_eq!(timestamp_text(1_123_000), "1970-01-01 00:00:01.123");
        assert_eq!(timestamp_text(1_000), "1970-01-01 00:00:00.001");
        assert_eq!(timestamp_text(1_123_000_000), "1970-01-01 00:18:43");
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(-1), "1969-12-31");
        assert_eq!(interval_text(60_000_000), "00:01:00");
    }

    #[test]
    fn parsing_reads_what_printing_writes() {
        for us in [0, 1_123_000, -5_000_001, now_micros()] {
            assert_eq!(parse_timestamp(&timestamp_text(us)), Some(us));
        }
        assert_eq!(parse_date("2026-02-30"), None);
        assert_eq!(
            parse_timestamp("2026-01-01T00:00"),
            parse_timestamp("2026-01-01")
        );
    }

    #[test]
    fn calendar_functions() {
        let ts = parse_timestamp("2026-05-17 13:45:12.5").unwrap_or(0);
        assert_eq!(
            strftime(ts, "%Y-%m-%d %H:%M:%S").as_deref(),
            Some("2026-05-17 13:45:12")
        );
        assert_eq!(
            strftime(ts, "%a %B %j %%").as_deref(),
            Some("Sun May 137 %")
        );
        assert_eq!(strftime(ts, "%Q"), None);
        assert_eq!(
            timestamp_text(date_trunc(Part::Hour, ts)),
            "2026-05-17 13:00:00"
        );
        assert_eq!(
            timestamp_text(date_trunc(Part::Week, ts)),
            "2026-05-11 00:00:00"
        );
        assert_eq!(
            timestamp_text(date_trunc(Part::Quarter, ts)),
            "2026-04-01 00:00:00"
        );
        assert_eq!(extract(Part::DayOfWeek, ts), 0);
        assert_eq!(extract(Part::Millisecond, ts), 12_500);
        let minute = 60 * MICROS_PER_SECOND;
        assert_eq!(time_bucket(minute, 61 * MICROS_PER_SECOND), Some(minute));
        assert_eq!(time_bucket(0, 1), None);
    }
}
