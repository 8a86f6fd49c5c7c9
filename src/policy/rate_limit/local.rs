//! Tokens this instance has leased from one limit and not yet spent: runs of slots on the
//! local clock, spent in order, each slot at most once, none before its time. A slot whose
//! time passes unused is lost, never saved up: that is what keeps the global rate exact when
//! several instances lease from one limit. (A pace keeps its passed slots usable for a moment,
//! its catch-up tolerance, as the store leased them: [`Leased::with_tolerance`].)

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// The most tokens one store call leases when nothing needs more: `rate × lease`, at least one.
/// Below one token per lease window the lease is a single token, so a slow limit is never
/// leased ahead of its rate.
pub fn lease_tokens(rate: f64, lease: Duration) -> u32 {
    let tokens = (rate * lease.as_secs_f64()).floor();
    if tokens.is_finite() && tokens >= 1.0 {
        tokens.min(f64::from(u32::MAX)) as u32
    } else {
        1
    }
}

/// Time between two tokens, in whole microseconds, rounded up: the limit can only come out a
/// hair slower than configured, never faster.
pub fn interval_us(rate: f64) -> u64 {
    ((1e6 / rate).ceil() as u64).max(1)
}

/// Where a job's tokens are: the run, the first slot, and when the job goes (that slot, or
/// `from` when the slot is a moment past).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    run: usize,
    slot: Instant,
    pub start: Instant,
}

/// Slots `next, next + interval, …` up to (not including) `end`.
#[derive(Debug, Clone)]
struct Run {
    next: Instant,
    end: Instant,
    /// `end` on the store's timeline (µs): a later lease that starts exactly there continues
    /// this run, so a job can use the last slots of one lease and the first of the next.
    end_store_us: u64,
}

/// One limit's leased tokens on this instance.
#[derive(Debug, Clone)]
pub struct Leased {
    interval: Duration,
    interval_us: u64,
    runs: VecDeque<Run>,
    /// Where the limit's first free slot was at the last lease: how far ahead it is booked.
    booked_until: Option<Instant>,
    /// Where the turn of the next job this instance defers on this limit would be: after the
    /// slots booked and after the jobs it deferred before, so that those do not all come back
    /// at once to find the same slots taken.
    deferred_until: Option<Instant>,
    /// Slots passed at most this long ago still count (a pace's catch-up, `gcra::RateLease`).
    tolerance: Duration,
}

impl Leased {
    pub fn new(interval_us: u64) -> Self {
        Self {
            interval: Duration::from_micros(interval_us),
            interval_us,
            runs: VecDeque::new(),
            booked_until: None,
            deferred_until: None,
            tolerance: Duration::ZERO,
        }
    }

    /// Keeps slots that passed at most `tolerance` ago usable (they go at once), as the store
    /// leased them.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    /// The first of `n` consecutive slots a job starting no earlier than `from` can have, no
    /// later than `latest`. A slot whose time passed less than one interval ago still counts
    /// (the job goes now, a little after it): a batch that arrives a moment after its slot
    /// must not lose it, and an older one is gone.
    pub fn fit(&self, n: u32, from: Instant, latest: Instant) -> Option<Fit> {
        for (run, r) in self.runs.iter().enumerate() {
            let slot = self.usable_slot(r, from);
            let start = slot.max(from);
            if start > latest {
                return None;
            }
            if slot + self.interval * n <= r.end {
                return Some(Fit { run, slot, start });
            }
        }
        None
    }

    /// `r`'s first slot a job starting at `from` can use: its next, or the last one at or
    /// before `from` less the tolerance.
    fn usable_slot(&self, r: &Run, from: Instant) -> Instant {
        let from = from.checked_sub(self.tolerance).unwrap_or(from);
        if from <= r.next {
            return r.next;
        }
        let behind = (from - r.next).as_nanos() / self.interval.as_nanos().max(1);
        r.next + self.interval * behind.min(u128::from(u32::MAX)) as u32
    }

    /// Spends the `n` slots found by [`Leased::fit`]. Taken from the middle of a run (a job
    /// that waits for a slower limit), the slots before them stay for other jobs.
    pub fn take(&mut self, fit: Fit, n: u32) {
        let r = &mut self.runs[fit.run];
        let after = fit.slot + self.interval * n;
        if fit.slot >= r.next + self.interval && after < r.end {
            let rest = Run { next: after, end: r.end, end_store_us: r.end_store_us };
            // Only the last run is ever continued by a lease: the first half never is.
            (r.end, r.end_store_us) = (fit.slot, 0);
            self.runs.insert(fit.run + 1, rest);
        } else if fit.slot >= r.next + self.interval {
            // The run's tail: what is left ends before the store's end of it.
            (r.end, r.end_store_us) = (fit.slot, 0);
        } else {
            r.next = after;
        }
    }

    /// How many tokens of `demands` (in order) the runs held now do not cover.
    pub fn uncovered(&self, demands: impl Iterator<Item = u32>, now: Instant, latest: Instant) -> u64 {
        let mut sim = self.clone();
        let mut missing = 0;
        for n in demands {
            match sim.fit(n, now, latest) {
                Some(fit) => sim.take(fit, n),
                None => missing += u64::from(n),
            }
        }
        missing
    }

    /// Adds a lease's slots: `granted` of them from `first` (local clock), which is `first_store_us`
    /// on the store's timeline; `booked_until` is where the limit's free slots now start.
    pub fn add(&mut self, first: Instant, first_store_us: u64, granted: u32, booked_until: Instant) {
        self.booked_until = Some(self.booked_until.map_or(booked_until, |b| b.max(booked_until)));
        if granted == 0 {
            return;
        }
        let len = self.interval * granted;
        let len_us = self.interval_us * u64::from(granted);
        match self.runs.back_mut() {
            // Nobody leased in between: one run, anchored where it was first seen.
            Some(last) if last.end_store_us == first_store_us => {
                last.end += len;
                last.end_store_us += len_us;
            }
            _ => self.runs.push_back(Run { next: first, end: first + len, end_store_us: first_store_us + len_us }),
        }
    }

    /// Where the limit's free slots start, as far as this instance knows.
    pub fn booked_until(&self, now: Instant) -> Instant {
        let runs_end = self.runs.back().map(|r| r.end);
        self.booked_until.into_iter().chain(runs_end).fold(now, Instant::max)
    }

    /// The estimated turn of a job of `n` tokens deferred now, which queues it: the next one
    /// deferred is estimated after it.
    pub fn defer(&mut self, n: u32, now: Instant) -> Instant {
        let turn = self.booked_until(now).max(self.deferred_until.unwrap_or(now));
        self.deferred_until = Some(turn + self.interval * n);
        turn
    }

    /// Drops runs whose slots have all passed; says whether anything is left worth keeping.
    pub fn sweep(&mut self, now: Instant) -> bool {
        let runs = std::mem::take(&mut self.runs);
        self.runs = runs.into_iter().filter(|r| self.usable_slot(r, now) + self.interval <= r.end).collect();
        !self.runs.is_empty() || self.booked_until.into_iter().chain(self.deferred_until).any(|b| b > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_size_shrinks_with_the_rate() {
        let ms = Duration::from_millis;
        for (rate, lease, want) in [
            (200.0, ms(100), 20),
            (200.0, ms(1), 1),
            (1_000.0, ms(100), 100),
            (15.0, ms(100), 1),
            (9.99, ms(100), 1),
            (0.5, ms(100), 1),
            (0.001, Duration::from_secs(3600), 3),
            (1e6, ms(100), 100_000),
        ] {
            assert_eq!(lease_tokens(rate, lease), want, "{rate}/s × {lease:?}");
        }
        for (rate, want) in [(200.0, 5_000), (3.0, 333_334), (0.5, 2_000_000), (1e6, 1), (7e5, 2)] {
            assert_eq!(interval_us(rate), want, "{rate}/s");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_spent_in_order_and_lost_when_they_pass() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Leased::new(5_000);
        l.add(t, 1_000_000, 4, t + ms(20)); // slots at 0, 5, 10, 15 ms
        let far = t + ms(1000);
        let at = l.fit(2, t, far).unwrap();
        assert_eq!(at.start, t);
        l.take(at, 2);
        assert_eq!(l.fit(1, t, far).unwrap().start, t + ms(10));
        assert!(l.fit(3, t, far).is_none(), "only two slots left");
        assert!(l.fit(1, t, t + ms(5)).is_none(), "the next slot is past `latest`");
        // 2 ms after its time the slot at 10 ms still counts: the job goes at once.
        let mut late = l.clone();
        let at = late.fit(1, t + ms(12), far).unwrap();
        assert_eq!(at.start, t + ms(12));
        late.take(at, 1);
        assert_eq!(late.fit(1, t + ms(12), far).unwrap().start, t + ms(15), "the slot at 15 ms is still there");
        // 7 ms after (more than an interval) it is gone: the job takes the slot at 15 ms, now.
        let at = l.fit(1, t + ms(17), far).unwrap();
        assert_eq!(at.start, t + ms(17));
        l.take(at, 1);
        assert!(l.fit(1, t + ms(17), far).is_none());
        assert!(!l.sweep(t + ms(25)), "nothing left");
    }

    #[tokio::test(start_paused = true)]
    async fn slots_taken_from_the_middle_leave_the_earlier_ones() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Leased::new(1_000);
        l.add(t, 1_000_000, 10, t + ms(10)); // 0..9 ms
        let late = l.fit(2, t + ms(4), t + ms(100)).unwrap();
        assert_eq!(late.start, t + ms(4));
        l.take(late, 2); // 4 and 5 ms
        let starts: Vec<_> = (0..7)
            .filter_map(|_| {
                let at = l.fit(1, t, t + ms(100))?;
                l.take(at, 1);
                Some(at.start.duration_since(t).as_millis())
            })
            .collect();
        assert_eq!(starts, [0, 1, 2, 3, 6, 7, 8]);
        // The tail taken first leaves the head.
        let mut l = Leased::new(1_000);
        l.add(t, 1_000_000, 4, t + ms(4));
        let tail = l.fit(2, t + ms(2), t + ms(100)).unwrap();
        l.take(tail, 2);
        assert_eq!(l.fit(2, t, t + ms(100)).map(|a| a.start), Some(t));
        assert_eq!(l.fit(3, t, t + ms(100)), None);
        // ... and is not continued by the next lease (its end is no longer the store's end).
        l.add(t + ms(4), 1_004_000, 4, t + ms(8));
        assert_eq!(l.uncovered([2, 4].into_iter(), t, t + ms(100)), 0);
        assert_eq!(l.uncovered([3].into_iter(), t, t + ms(100)), 0, "fits in the new run");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_that_continues_the_last_one_extends_it() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Leased::new(5_000);
        l.add(t, 1_000_000, 2, t + ms(10));
        // Next lease starts where the first ended on the store's clock: a 3-token job can span them.
        l.add(t + ms(11), 1_010_000, 2, t + ms(21));
        assert_eq!(l.fit(3, t, t + ms(100)).map(|a| a.start), Some(t));
        // One that does not continue it (another instance leased in between) is a run of its own.
        let mut g = Leased::new(5_000);
        g.add(t, 1_000_000, 2, t + ms(10));
        g.add(t + ms(15), 1_015_000, 2, t + ms(25));
        assert_eq!(g.fit(3, t, t + ms(100)).map(|a| a.start), None);
        assert_eq!(g.fit(2, t, t + ms(100)).map(|a| a.start), Some(t));
        assert_eq!(g.uncovered([2, 2, 1].into_iter(), t, t + ms(100)), 1);
        assert_eq!(g.booked_until(t), t + ms(25));
    }

    #[tokio::test(start_paused = true)]
    async fn with_a_tolerance_slots_passed_a_moment_ago_still_go_at_once() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Leased::new(5_000).with_tolerance(ms(10));
        l.add(t, 1_000_000, 6, t + ms(30)); // slots at 0, 5, …, 25 ms
                                            // At 17 ms the slots from 5 ms on (at most 10 ms ago) still count, all at once.
        let starts: Vec<_> = (0..6)
            .filter_map(|_| {
                let at = l.fit(1, t + ms(17), t + ms(100))?;
                l.take(at, 1);
                Some(at.start.duration_since(t).as_millis())
            })
            .collect();
        assert_eq!(starts, [17, 17, 17, 20, 25], "the slot at 0 ms is too old");
    }
}
