//! The time arithmetic of quiet hours: is an instant quiet in a zone, and when is the first
//! instant that is not quiet in every one of several zones.
//!
//! An instant is quiet in a zone when the zone's wall clock then reads a time inside the
//! window. That one rule settles every DST case: in a spring-forward gap the skipped wall
//! times never occur, and in a fall-back overlap the repeated wall times are judged as the
//! clock shows them, both times (so a 01:30-03:30 window lets the repeated 01:00-01:29 hour
//! through, because the clock reads 01:xx then).
//!
//! The first allowed instant is found without stepping minute by minute: a zone can only turn
//! from quiet to allowed when its clock reaches the window's end (counting a jump over it in a
//! gap) or when the clock jumps back to before the window's start (an overlap that contains
//! the start). Those instants, collected for every zone over the horizon and tried in order,
//! contain the answer; each try checks every zone.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// A daily window of local wall-clock time, `[start, end)`, wrapping midnight when
/// `start > end` (21:00-09:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    start: NaiveTime,
    end: NaiveTime,
}

impl Window {
    /// `None` when `start == end`: such a window would mean "always" or "never" and the
    /// contract forbids it.
    pub fn new(start: NaiveTime, end: NaiveTime) -> Option<Self> {
        // Minute precision, as the contract's "HH:MM" has it.
        let trim = |t: NaiveTime| t.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(t);
        let (start, end) = (trim(start), trim(end));
        (start != end).then_some(Self { start, end })
    }

    fn contains(&self, wall: NaiveTime) -> bool {
        let m = wall.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(wall);
        if self.start < self.end {
            self.start <= m && m < self.end
        } else {
            m >= self.start || m < self.end
        }
    }

    /// Whether `at` falls in the window on `tz`'s wall clock.
    pub fn is_quiet(&self, tz: Tz, at: DateTime<Utc>) -> bool {
        self.contains(at.with_timezone(&tz).time())
    }

    fn quiet_in_any(&self, zones: &[Tz], at: DateTime<Utc>) -> bool {
        zones.iter().any(|&tz| self.is_quiet(tz, at))
    }

    /// Instants in `(after, until]` at which `tz` may turn from quiet to allowed.
    fn openings(&self, tz: Tz, after: DateTime<Utc>, until: DateTime<Utc>, out: &mut Vec<DateTime<Utc>>) {
        let first = after.with_timezone(&tz).date_naive() - Duration::days(1);
        let last = until.with_timezone(&tz).date_naive() + Duration::days(1);
        let mut push = |t: DateTime<Utc>| {
            if after < t && t <= until {
                out.push(t);
            }
        };
        let mut day: NaiveDate = first;
        while day <= last {
            match tz.from_local_datetime(&day.and_time(self.end)) {
                LocalResult::Single(t) => push(t.to_utc()),
                // The clock reads `end` twice; after the first, a jump back may re-enter the
                // window and the second reading leaves it again.
                LocalResult::Ambiguous(a, b) => {
                    push(a.to_utc());
                    push(b.to_utc());
                }
                LocalResult::None => {
                    if let Some(t) = after_gap(tz, day.and_time(self.end)) {
                        push(t);
                    }
                }
            }
            // A jump back over `start` leaves the window at the jump itself.
            if let LocalResult::Ambiguous(a, b) = tz.from_local_datetime(&day.and_time(self.start)) {
                push(transition_between(tz, a.to_utc(), b.to_utc()));
            }
            day += Duration::days(1);
        }
    }
}

/// The first instant in `[now, now + horizon]` that is outside the window in every zone, or
/// `None` when there is none. `now` itself when it is allowed already.
pub fn next_allowed(window: &Window, zones: &[Tz], now: DateTime<Utc>, horizon: Duration) -> Option<DateTime<Utc>> {
    if !window.quiet_in_any(zones, now) {
        return Some(now);
    }
    let until = now + horizon;
    let mut candidates = Vec::with_capacity(zones.len() * 4);
    for &tz in zones {
        window.openings(tz, now, until, &mut candidates);
    }
    candidates.sort_unstable();
    candidates.dedup();
    // The zone that held the last candidate back most likely holds the next one too: ask it
    // first, so that with many zones most candidates cost one look-up, not one per zone.
    let mut blocker = 0;
    candidates.into_iter().find(|&t| {
        if window.is_quiet(zones[blocker], t) {
            return false;
        }
        match zones.iter().position(|&tz| window.is_quiet(tz, t)) {
            Some(i) => {
                blocker = i;
                false
            }
            None => true,
        }
    })
}

/// The first instant in `[now, now + horizon]` that is inside the window in `tz`, or `None`:
/// `now` itself when it is quiet already. A zone can only turn quiet when its clock reaches the
/// window's start (the second reading of a repeated start time included).
pub fn next_quiet(window: &Window, tz: Tz, now: DateTime<Utc>, horizon: Duration) -> Option<DateTime<Utc>> {
    if window.is_quiet(tz, now) {
        return Some(now);
    }
    let until = now + horizon;
    let mut candidates = Vec::new();
    let mut day = now.with_timezone(&tz).date_naive() - Duration::days(1);
    let last = until.with_timezone(&tz).date_naive() + Duration::days(1);
    while day <= last {
        match tz.from_local_datetime(&day.and_time(window.start)) {
            LocalResult::Single(t) => candidates.push(t.to_utc()),
            LocalResult::Ambiguous(a, b) => candidates.extend([a.to_utc(), b.to_utc()]),
            LocalResult::None => candidates.extend(after_gap(tz, day.and_time(window.start))),
        }
        day += Duration::days(1);
    }
    candidates.sort_unstable();
    candidates.into_iter().find(|&t| now < t && t <= until && window.is_quiet(tz, t))
}

/// The instant the clock jumps over the gap that swallows `wall`: the earliest instant of the
/// first wall time after `wall` that exists. Gaps are an hour or so; a day (Samoa, 2011) at most.
fn after_gap(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    (1..=48 * 60).find_map(|m| tz.from_local_datetime(&(wall + Duration::minutes(m))).earliest().map(|t| t.to_utc()))
}

/// The instant in `(a, b]` where `tz`'s offset changes to the one in force at `b`: where the
/// clock jumps back, given the two instants of one repeated wall time. Found to the second.
fn transition_between(tz: Tz, a: DateTime<Utc>, b: DateTime<Utc>) -> DateTime<Utc> {
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    let target = offset(b);
    let (mut lo, mut hi) = (a, b);
    while hi - lo > Duration::seconds(1) {
        let mid = lo + (hi - lo) / 2;
        if offset(mid) == target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}
