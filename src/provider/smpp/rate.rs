//! Throughput caps in SMS segments per second, the unit SMSCs count: one for the provider (all
//! its binds in this instance, `tps`) and one per bind (`bind_tps`).

use std::num::NonZeroU32;

use governor::clock::Clock as _;
use governor::{DefaultDirectRateLimiter, Quota};

/// A segments-per-second cap; `0` means none.
pub(super) struct Rate(Option<DefaultDirectRateLimiter>);

impl Rate {
    pub(super) fn per_second(tps: u32) -> Self {
        Self(NonZeroU32::new(tps).map(|tps| DefaultDirectRateLimiter::direct(quota(tps))))
    }

    /// Waits until `cells` segments may go. Only the caller waits: the limiter is this
    /// provider's, and each job's send is its own task, so other providers' jobs go on.
    pub(super) async fn take(&self, cells: u32) {
        let Some(limiter) = &self.0 else { return };
        // One cell at a time: a message_payload PDU may count more segments than the burst.
        for _ in 0..cells {
            while let Err(not_until) = limiter.check() {
                // tokio's timer rather than governor's own timer thread.
                tokio::time::sleep(not_until.wait_time_from(limiter.clock().now())).await;
            }
        }
    }
}

/// `tps` per second with bursts of at most a tenth of a second's worth: an SMSC counting in
/// fixed one-second windows then never sees more than 1.1 × `tps` in one (governor's default
/// burst of a whole second would let through up to 2 × `tps`).
fn quota(tps: NonZeroU32) -> Quota {
    let burst = NonZeroU32::new(tps.get().div_ceil(10)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(tps).allow_burst(burst)
}

/// Segments one PDU of a job costs: a `message_payload` PDU carries all of the job's segments,
/// a UDH or SAR part one.
pub(super) fn cells_per_pdu(segments: u32, pdus: usize) -> u32 {
    (segments / (pdus.max(1) as u32)).max(1)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn cells_follow_segments() {
        for (segments, pdus, want) in [(1, 1, 1), (3, 3, 1), (3, 1, 3), (10, 1, 10), (0, 1, 1)] {
            assert_eq!(cells_per_pdu(segments, pdus), want, "{segments} segments in {pdus} PDUs");
        }
    }

    #[tokio::test]
    async fn rate_caps_cells_per_second_with_a_small_burst() {
        assert_eq!(quota(NonZeroU32::new(250).unwrap()).burst_size().get(), 25);
        assert_eq!(quota(NonZeroU32::new(3).unwrap()).burst_size().get(), 1);
        let started = Instant::now();
        Rate::per_second(0).take(10_000).await;
        assert!(started.elapsed() < Duration::from_millis(50), "0 is unlimited");
        // 100/s with a burst of 10: 40 cells (one PDU of 40 segments included) take >= 0.3 s.
        let rate = Rate::per_second(100);
        let started = Instant::now();
        rate.take(40).await;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(280) && took < Duration::from_millis(800), "{took:?}");
    }
}
