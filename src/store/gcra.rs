//! The GCRA step behind rate-limit leases, in plain Rust: `MemoryStore` runs it, and
//! `scripts/rate_lease.lua` is the same arithmetic for Redis (the tests below pin the cases both
//! must agree on).
//!
//! A limit is one number, its TAT (theoretical arrival time): the slot of its next free token.
//! Tokens are slots `interval` apart; a lease takes the next `granted` slots from the TAT on,
//! as long as they start no later than `now + horizon`. Slots are never handed out twice, so
//! however many instances lease from one limit, no two of its tokens are closer than `interval`.

/// One lease request as the store sees it (see `Rates::rate_lease`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLease {
    /// The limit's id (`provider:smsc-a`, `campaign:acme/promo`); the store keys its TAT by it.
    pub limit: String,
    /// Time between two tokens, `1 / rate`, in whole microseconds (the rounding both stores use).
    pub interval_us: u64,
    /// Tokens wanted.
    pub want: u32,
    /// Only slots starting at most this far from the store's now are leased.
    pub horizon_us: u64,
    /// Catch-up: slots missed at most this long ago are still leased (they go at once). 0 for
    /// a speed limit, whose passed slots are lost; a campaign's pace recovers what a busy
    /// instance missed by a moment, instead of the whole campaign falling behind and catching up at
    /// the end (docs/policies.md, "Smooth sending to a deadline"). A TAT further behind than
    /// twice this counts as none: the limit was idle, not late.
    pub tolerance_us: u64,
}

/// What a lease got: the slots `first_us`, `first_us + interval`, … (`granted` of them), each an
/// offset from the store's now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateGrant {
    pub granted: u32,
    /// Below 0 for slots recovered by a catch-up tolerance (already due).
    pub first_us: i64,
    /// The first slot on the store's own timeline (µs since the epoch): a lease starting where
    /// the last one ended continues it.
    pub first_at_us: u64,
    /// Where the limit's next free slot is after this lease: how far ahead it is booked.
    pub next_free_us: u64,
}

/// One GCRA lease: from the stored TAT (`None`: never used or expired) at `now_us`, returns the
/// grant and the TAT to store.
pub fn lease(tat: Option<u64>, now_us: u64, req: &RateLease) -> (RateGrant, u64) {
    let interval = req.interval_us.max(1);
    let floor = now_us.saturating_sub(req.tolerance_us);
    let tat = match tat {
        Some(t) if req.tolerance_us > 0 && t.saturating_add(2 * req.tolerance_us) >= now_us => t.max(floor),
        _ => tat.unwrap_or(0).max(now_us),
    };
    let limit = now_us.saturating_add(req.horizon_us);
    let granted = if tat <= limit { ((limit - tat) / interval + 1).min(u64::from(req.want)) } else { 0 };
    let new_tat = tat + granted * interval;
    let grant = RateGrant { granted: granted as u32, first_us: tat as i64 - now_us as i64, first_at_us: tat, next_free_us: new_tat.saturating_sub(now_us) };
    (grant, new_tat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(interval_us: u64, want: u32, horizon_us: u64) -> RateLease {
        RateLease { limit: "provider:p".into(), interval_us, want, horizon_us, tolerance_us: 0 }
    }

    /// (stored TAT, now, interval, want, horizon) → (granted, first, next_free, new TAT).
    #[test]
    fn lease_table() {
        let cases = [
            // Idle limit: slots from now on, as many as the horizon holds (both ends included).
            (None, 1_000, 5_000, 100, 100_000, (21, 0, 105_000, 106_000)),
            // ... or as many as wanted.
            (None, 1_000, 5_000, 3, 100_000, (3, 0, 15_000, 16_000)),
            // A TAT in the past is now: unused time is not saved up (no burst after idling).
            (Some(0), 1_000_000, 5_000, 2, 0, (1, 0, 5_000, 1_005_000)),
            // Booked 90 ms ahead, horizon 100 ms: slots at +90 and +95 and +100 only.
            (Some(1_090_000), 1_000_000, 5_000, 10, 100_000, (3, 90_000, 105_000, 1_105_000)),
            // Booked past the horizon: nothing, and how far ahead it is booked.
            (Some(1_300_000), 1_000_000, 5_000, 10, 100_000, (0, 300_000, 300_000, 1_300_000)),
            // A slow limit (0.5/s): one token, the next two seconds later.
            (None, 0, 2_000_000, 5, 100_000, (1, 0, 2_000_000, 2_000_000)),
            // Zero wanted asks only where the limit stands.
            (Some(50), 0, 10, 0, 1_000, (0, 50, 50, 50)),
        ];
        for (tat, now, interval, want, horizon, (granted, first, next_free, new_tat)) in cases {
            let (g, t) = lease(tat, now, &req(interval, want, horizon));
            assert_eq!((g.granted, g.first_us, g.next_free_us, t), (granted, first, next_free, new_tat), "{tat:?} {now} {interval} {want} {horizon}");
        }
    }

    /// Two leasers taking turns on one limit never get a slot twice, and over a simulated
    /// minute the tokens handed out match the rate.
    #[test]
    fn interleaved_leases_keep_the_rate() {
        let rate_interval = 5_000; // 200/s
        let (mut tat, mut slots) = (None, Vec::new());
        let mut now = 0u64;
        while now < 60_000_000 {
            for want in [7, 20] {
                let (g, t) = lease(tat, now, &req(rate_interval, want, 100_000));
                slots.extend((0..u64::from(g.granted)).map(|i| (now as i64 + g.first_us) as u64 + i * rate_interval));
                tat = Some(t);
            }
            now += 37_000;
        }
        slots.sort_unstable();
        assert!(slots.windows(2).all(|w| w[1] - w[0] >= rate_interval), "a slot handed out twice");
        let in_minute = slots.iter().filter(|s| **s < 60_000_000).count();
        assert_eq!(in_minute, 12_000);
    }

    /// With a catch-up tolerance, slots missed less than it ago are still handed out (already
    /// due), older ones are not, and a limit idle for more than twice it starts at now.
    #[test]
    fn a_tolerance_recovers_slots_missed_a_moment_ago() {
        let tol = |interval_us, want| RateLease { tolerance_us: 500_000, ..req(interval_us, want, 2_000_000) };
        // TAT 300 ms behind: those 30 slots of 10 ms come first, from 300 ms ago.
        let (g, t) = lease(Some(700_000), 1_000_000, &tol(10_000, 50));
        assert_eq!((g.granted, g.first_us, g.next_free_us, t), (50, -300_000, 200_000, 1_200_000));
        // 800 ms behind: only the last 500 ms are recovered.
        let (g, _) = lease(Some(200_000), 1_000_000, &tol(10_000, 1));
        assert_eq!((g.first_us, g.first_at_us), (-500_000, 500_000));
        // Idle (more than 2 × 500 ms behind), or never used: from now, no burst.
        for tat in [Some(0), None] {
            let (g, _) = lease(tat, 1_500_000, &tol(10_000, 1));
            assert_eq!(g.first_us, 0, "{tat:?}");
        }
    }
}
