//! Fault decisions shared by every session: which submit_sm is throttled, and which accepted
//! submit makes its connection drop or go half-dead. Counted simulator-wide so a test can say
//! "the 3rd submit" without caring which bind of a gateway sent it.
//!
//! Per-connection faults that need no shared state (`ignore_enquire_link`, `refuse_binds`,
//! `response_latency`) are read straight from the config by the session.

use std::num::{NonZeroU32, NonZeroU64};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::SimConfig;
use super::receipts::lock;

/// What the session does with an accepted submit, beyond taking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAccept {
    Answer,
    /// Close the connection without sending this submit's resp: the client cannot tell
    /// whether the message was taken, and it was.
    Drop,
    /// Send this submit's resp, then answer nothing more on this connection.
    HalfDead,
}

#[derive(Debug)]
pub struct Faults {
    throttle_every: Option<NonZeroU64>,
    tps: Option<TpsWindow>,
    drop_after: Option<NonZeroU64>,
    drop_repeat: bool,
    half_dead_after: Option<NonZeroU64>,
    /// submit_sm that reached the throttle check, so `throttle_every` counts retries too.
    checked: AtomicU64,
    /// Accepted submits: the clock `drop_after_submits` and `half_dead_after_submits` run on.
    accepted: AtomicU64,
}

impl Faults {
    pub fn new(cfg: &SimConfig) -> Self {
        Self {
            throttle_every: cfg.throttle_every,
            tps: cfg.throttle_above_tps.map(TpsWindow::new),
            drop_after: cfg.drop_after_submits,
            drop_repeat: cfg.drop_repeat,
            half_dead_after: cfg.half_dead_after_submits,
            checked: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
        }
    }

    /// Whether this submit_sm gets ESME_RTHROTTLED instead of being taken.
    pub fn throttle(&self, now: Instant) -> bool {
        let every = self.throttle_every.is_some_and(|n| {
            let seen = self.checked.fetch_add(1, Relaxed) + 1;
            seen.is_multiple_of(n.get())
        });
        // Checked even when `every` already throttles, so the window counts what it saw.
        let over_tps = self.tps.as_ref().is_some_and(|w| !w.admit(now));
        every || over_tps
    }

    /// Called once per accepted submit; says whether its connection should fail now.
    pub fn after_accept(&self) -> AfterAccept {
        if self.drop_after.is_none() && self.half_dead_after.is_none() {
            return AfterAccept::Answer;
        }
        let n = self.accepted.fetch_add(1, Relaxed) + 1;
        match (self.drop_after, self.half_dead_after) {
            (Some(d), _) if n == d.get() || (self.drop_repeat && n.is_multiple_of(d.get())) => AfterAccept::Drop,
            (_, Some(h)) if n == h.get() => AfterAccept::HalfDead,
            _ => AfterAccept::Answer,
        }
    }
}

/// A fixed one-second window: it opens at the first submit after the previous one closed and
/// admits `limit` submits. Simpler than a sliding window, at the price of allowing up to twice
/// the limit across a window boundary, which real SMSCs with fixed windows also do.
#[derive(Debug)]
struct TpsWindow {
    limit: u32,
    /// (window start, submits seen in it).
    state: Mutex<Option<(Instant, u32)>>,
}

const WINDOW: Duration = Duration::from_secs(1);

impl TpsWindow {
    fn new(limit: NonZeroU32) -> Self {
        Self { limit: limit.get(), state: Mutex::new(None) }
    }

    fn admit(&self, now: Instant) -> bool {
        let mut state = lock(&self.state);
        let (start, seen) = match *state {
            Some((start, seen)) if now.saturating_duration_since(start) < WINDOW => (start, seen),
            _ => (now, 0),
        };
        let seen = seen.saturating_add(1);
        *state = Some((start, seen));
        seen <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(edit: impl FnOnce(&mut SimConfig)) -> Faults {
        let mut cfg = SimConfig::default();
        edit(&mut cfg);
        Faults::new(&cfg)
    }

    #[test]
    fn throttle_every_third() {
        let f = faults(|c| c.throttle_every = NonZeroU64::new(3));
        let now = Instant::now();
        let got: Vec<bool> = (0..7).map(|_| f.throttle(now)).collect();
        assert_eq!(got, [false, false, true, false, false, true, false]);
    }

    #[test]
    fn tps_window_is_fixed_and_reopens_after_a_second() {
        let f = faults(|c| c.throttle_above_tps = NonZeroU32::new(2));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let cases = [(0, true), (10, true), (20, false), (999, false), (1000, true), (1500, true), (1900, false), (2000, true)];
        for (at, admitted) in cases {
            assert_eq!(f.throttle(ms(at)), !admitted, "at {at} ms");
        }
    }

    #[test]
    fn off_by_default() {
        let f = faults(|_| {});
        let now = Instant::now();
        assert!((0..100).all(|_| !f.throttle(now) && f.after_accept() == AfterAccept::Answer));
    }

    #[test]
    fn drop_once_or_repeatedly_and_half_dead_once() {
        use AfterAccept::*;
        let table = [
            (Some(2), false, None, [Answer, Drop, Answer, Answer, Answer, Answer]),
            (Some(2), true, None, [Answer, Drop, Answer, Drop, Answer, Drop]),
            (None, false, Some(3), [Answer, Answer, HalfDead, Answer, Answer, Answer]),
            // Both on the same submit: the drop wins, the half-dead link never happens.
            (Some(3), false, Some(3), [Answer, Answer, Drop, Answer, Answer, Answer]),
        ];
        for (drop, repeat, half_dead, want) in table {
            let f = faults(|c| {
                c.drop_after_submits = drop.and_then(NonZeroU64::new);
                c.drop_repeat = repeat;
                c.half_dead_after_submits = half_dead.and_then(NonZeroU64::new);
            });
            let got: Vec<_> = (0..6).map(|_| f.after_accept()).collect();
            assert_eq!(got, want, "drop {drop:?} repeat {repeat} half_dead {half_dead:?}");
        }
    }
}
