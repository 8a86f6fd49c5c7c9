//! Sending time: the part of a stretch of time outside a campaign's quiet hours, in one zone.
//! A paced campaign spreads its jobs over this, not over the wall-clock time left, because its
//! marketing jobs cannot go while their recipients' clocks read quiet hours.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::policy::quiet_hours::{next_allowed, next_quiet, Window};

/// Longer than any quiet or allowed spell of one zone (a day, a DST hour, a skipped day).
const SPELL: Duration = Duration::hours(72);

/// Stretches walked at most: a year of daily windows. Past that the rest counts as sending
/// time (a finish_by that far out is paced by its first year anyway).
const MAX_SPELLS: usize = 800;

/// The quiet hours a campaign's sending time leaves out: a window on one zone's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiet {
    pub window: Window,
    pub tz: Tz,
}

/// Seconds in `[from, to)` outside the quiet window (all of them without one).
pub fn sending_seconds(quiet: Option<Quiet>, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    if to <= from {
        return 0.0;
    }
    let Some(q) = quiet else { return secs(to - from) };
    let (mut t, mut total) = (from, 0.0);
    for _ in 0..MAX_SPELLS {
        if t >= to {
            return total;
        }
        if q.window.is_quiet(q.tz, t) {
            // A window that never opens within SPELL cannot be (it is shorter than a day).
            t = next_allowed(&q.window, &[q.tz], t, SPELL).unwrap_or(to);
        } else {
            let closes = next_quiet(&q.window, q.tz, t, SPELL).unwrap_or(to).min(to);
            total += secs(closes - t);
            t = closes;
        }
    }
    total + secs(to - t).max(0.0)
}

/// The instant by which `seconds` of sending time have passed from `from`.
pub fn advance(quiet: Option<Quiet>, from: DateTime<Utc>, seconds: f64) -> DateTime<Utc> {
    let dur = |s: f64| Duration::milliseconds((s * 1000.0).ceil().min(1e15) as i64);
    let Some(q) = quiet else { return from + dur(seconds) };
    let (mut t, mut left) = (from, seconds);
    for _ in 0..MAX_SPELLS {
        if q.window.is_quiet(q.tz, t) {
            t = next_allowed(&q.window, &[q.tz], t, SPELL).unwrap_or(t + SPELL);
            continue;
        }
        let closes = next_quiet(&q.window, q.tz, t, SPELL).unwrap_or(t + SPELL);
        let open = secs(closes - t);
        if open >= left {
            return t + dur(left);
        }
        left -= open;
        t = closes;
    }
    t + dur(left)
}

fn secs(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveTime, TimeZone};

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn quiet(start: &str, end: &str, tz: Tz) -> Option<Quiet> {
        let hm = |s: &str| NaiveTime::parse_from_str(s, "%H:%M").unwrap();
        Some(Quiet { window: Window::new(hm(start), hm(end)).unwrap(), tz })
    }

    #[test]
    fn quiet_time_is_left_out() {
        let night = quiet("21:00", "09:00", chrono_tz::Europe::Moscow);
        let h = 3600.0;
        for (from, to, q, want) in [
            // No window: wall-clock time.
            ("2026-11-21T10:00:00Z", "2026-11-21T12:00:00Z", None, 2.0 * h),
            // Moscow is UTC+3: 09:00-21:00 local is 06:00-18:00Z.
            ("2026-11-21T05:00:00Z", "2026-11-21T07:00:00Z", night, 1.0 * h),
            ("2026-11-21T17:30:00Z", "2026-11-22T07:00:00Z", night, 0.5 * h + 1.0 * h),
            ("2026-11-21T19:00:00Z", "2026-11-22T05:00:00Z", night, 0.0),
            // Three whole days: 12 h of sending each.
            ("2026-11-21T00:00:00Z", "2026-11-24T00:00:00Z", night, 36.0 * h),
            // Backwards or empty.
            ("2026-11-21T12:00:00Z", "2026-11-21T11:00:00Z", night, 0.0),
        ] {
            assert_eq!(sending_seconds(q, at(from), at(to)), want, "{from} .. {to}");
        }
    }

    #[test]
    fn new_york_spring_forward_day_has_its_hour_less() {
        // 01:00-03:00 quiet; on 2026-03-08 the clock skips 02:00-03:00, so the quiet spell is
        // one real hour and the day has 23 h: 22 h of sending (as on any day: 24 - 2, less
        // the skipped hour that was quiet anyway, and the window ends when the clock jumps).
        let q = quiet("01:00", "03:00", chrono_tz::America::New_York);
        let day = chrono_tz::America::New_York.with_ymd_and_hms(2026, 3, 8, 0, 0, 0).unwrap().to_utc();
        let next = chrono_tz::America::New_York.with_ymd_and_hms(2026, 3, 9, 0, 0, 0).unwrap().to_utc();
        assert_eq!(sending_seconds(q, day, next), 22.0 * 3600.0);
    }

    #[test]
    fn advance_skips_quiet_time_and_inverts_sending_seconds() {
        let night = quiet("21:00", "09:00", chrono_tz::Europe::Moscow);
        // 17:30Z is 20:30 in Moscow: half an hour left today, the rest from 06:00Z tomorrow.
        assert_eq!(advance(night, at("2026-11-21T17:30:00Z"), 3600.0), at("2026-11-22T06:30:00Z"));
        assert_eq!(advance(night, at("2026-11-21T20:00:00Z"), 60.0), at("2026-11-22T06:01:00Z"));
        assert_eq!(advance(None, at("2026-11-21T20:00:00Z"), 1.5), at("2026-11-21T20:00:01.500Z"));
        let from = at("2026-11-21T10:00:00Z");
        for s in [1.0, 1800.0, 40_000.0, 200_000.0] {
            assert_eq!(sending_seconds(night, from, advance(night, from, s)), s, "{s}");
        }
    }
}
