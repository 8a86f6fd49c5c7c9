//! Where the store's timeline falls on this instance's clock: leased slots come as store times
//! (Redis `TIME`), and jobs wait on tokio's clock.

use std::time::Duration;

use tokio::time::Instant;

/// The store's timeline (µs) on tokio's clock. A reply arrives some time after the store read
/// its clock, so each reply gives an offset that is too late by that delay; the smallest seen
/// is the best, and slots placed by it are never early. A reply held up (a busy machine, a slow
/// network) then cannot push this instance's slots onto another's. The estimate may creep up
/// by a millisecond a second, to follow clocks that drift apart.
#[derive(Default)]
pub(super) struct StoreClock {
    /// (local instant of store time 0 as nanoseconds past `base`, when last lowered or crept)
    offset: Option<(i128, Instant)>,
    base: Option<Instant>,
}

impl StoreClock {
    const CREEP_PER_SEC_NS: f64 = 1e6;

    fn base(&mut self, near: Instant) -> Instant {
        *self.base.get_or_insert(near)
    }

    pub(super) fn observe(&mut self, store_now_us: u64, replied: Instant) {
        let base = self.base(replied);
        let sample = replied.duration_since(base).as_nanos() as i128 - i128::from(store_now_us) * 1000;
        self.offset = Some(match self.offset {
            Some((best, at)) => {
                let crept = best + (replied.duration_since(at).as_secs_f64() * Self::CREEP_PER_SEC_NS) as i128;
                (sample.min(crept), replied)
            }
            None => (sample, replied),
        });
    }

    /// A store instant on tokio's clock (now, if nothing was observed yet).
    pub(super) fn local(&self, store_us: u64) -> Instant {
        let (Some(base), Some((offset, _))) = (self.base, self.offset) else { return Instant::now() };
        let ns = (i128::from(store_us) * 1000 + offset).max(0);
        base + Duration::from_nanos(ns.min(i128::from(u64::MAX)) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn store_time_is_placed_by_the_quickest_reply() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut clock = StoreClock::default();
        // Store time 1 s (in µs) seen 5 ms into the test: the reply took up to 5 ms.
        clock.observe(1_000_000, t + ms(5));
        assert_eq!(clock.local(1_200_000), t + ms(205));
        // 100 ms of store time later a reply held up 50 ms: it does not move slots later (but for
        // the creep allowed for drift, 0.15 ms over 150 ms).
        clock.observe(1_100_000, t + ms(155));
        assert_eq!(clock.local(1_200_000), t + ms(205) + Duration::from_micros(150));
        // A quicker one (1 ms) moves them earlier, to where they really are.
        clock.observe(1_300_000, t + ms(301));
        assert_eq!(clock.local(1_400_000), t + ms(401));
        // Drifting clocks: the estimate may creep up by 1 ms per second (10.1 s: 10.1 ms).
        clock.observe(11_300_000, t + ms(10_401));
        assert_eq!(clock.local(11_300_000), t + ms(10_311) + Duration::from_micros(100));
    }
}
