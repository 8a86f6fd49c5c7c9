//! The one retry-with-backoff helper: for store and sink calls that guard a decision already
//! made (a claim, a deferral, a final). They never give up — giving up would lose a job or
//! its one final — they back off, log each failure and count it in
//! `sendgate_retries_total{op}`.
//!
//! Which errors are worth retrying is the caller's business (a store call retried here is
//! either read-only, a compare-and-set that answers the same when run again, or replay-guarded
//! in the store); how long to wait between tries is decided here, once. Every store, sink and
//! producer retry goes through here; the waits that are not retries of a failed call (SMPP
//! reconnects paced by `reconnect_min`/`reconnect_max`, the listener's accept backoff, an SMPP
//! submit resent in place by `retry_delay`) keep their own, configured, stop-aware pacing.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The waits between tries of one call: 50 ms doubling to 5 s, with jitter so that instances
/// that lost Redis together do not come back in step; no limit on the number of tries.
pub struct Attempts {
    op: &'static str,
    items: usize,
    waits: ExponentialBackoff,
}

impl Attempts {
    /// `op` names the call in logs and in the retry counter; `items` is how many jobs or
    /// records ride on it (for the log).
    pub fn new(op: &'static str, items: usize) -> Self {
        Self { op, items, waits: Self::waits(Duration::from_secs(5)) }
    }

    /// The same, with the waits capped at `max` instead of 5 s: for a peer that is known to
    /// come back quickly (a restarted Redis), where five seconds would be time lost.
    pub fn max_wait(mut self, max: Duration) -> Self {
        self.waits = Self::waits(max);
        self
    }

    fn waits(max: Duration) -> ExponentialBackoff {
        ExponentialBuilder::default().with_min_delay(Duration::from_millis(50).min(max)).with_max_delay(max).with_jitter().without_max_times().build()
    }

    /// Logs and counts a failed try, then waits before the next. For calls that borrow what
    /// they change, where a closure per try cannot: `while let Err(e) = call().await {
    /// attempts.failed(&e).await }`.
    /// (The wait is returned rather than awaited here, so that the error is not held across it.)
    pub fn failed(&mut self, e: &dyn Display) -> tokio::time::Sleep {
        let wait = self.waits.next().unwrap_or(Duration::from_secs(5));
        metrics::counter!(crate::telemetry::RETRIES_TOTAL, "op" => self.op).increment(1);
        tracing::warn!(op = self.op, items = self.items, error = %e, retry_in = ?wait, "call failed; retrying");
        tokio::time::sleep(wait)
    }
}

/// Runs `call` until it succeeds.
pub async fn until_ok<T, E, F, Fut>(op: &'static str, items: usize, mut call: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempts = Attempts::new(op, items);
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) => attempts.failed(&e).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_call_succeeds_backing_off_up_to_five_seconds() {
        let tries = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let got = super::until_ok("test", 1, || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0..=9 => Err("not yet"),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(got, 10);
        let waited = start.elapsed();
        // 10 waits: 50 ms doubling, each at most 5 s (jitter adds up to one more wait).
        assert!(waited >= Duration::from_millis(50 * 10) && waited <= Duration::from_secs(2 * 10 * 5), "{waited:?}");
    }
}
