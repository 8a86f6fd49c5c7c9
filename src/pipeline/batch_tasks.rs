//! Overlapping the slow tail of batch handling: a stage that waits on the broker (publishing
//! reports) would otherwise cap throughput at one batch per broker round trip.

use std::future::Future;

use tokio::task::JoinSet;
use tracing::error;

/// At most `max` batches in their tail at once; `spawn` waits for a slot, which is the
/// backpressure that keeps memory bounded when the broker slows down.
pub struct BatchTasks {
    set: JoinSet<()>,
    max: usize,
    what: &'static str,
}

impl BatchTasks {
    pub fn new(max: usize, what: &'static str) -> Self {
        Self { set: JoinSet::new(), max: max.max(1), what }
    }

    pub async fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        while self.set.len() >= self.max {
            self.join_one().await;
        }
        self.set.spawn(task);
    }

    /// Waits for every batch still in flight (shutdown must not drop their reports).
    pub async fn drain(mut self) {
        while !self.set.is_empty() {
            self.join_one().await;
        }
    }

    async fn join_one(&mut self) {
        if let Some(Err(e)) = self.set.join_next().await {
            error!(stage = self.what, error = %e, "a batch task failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn never_more_than_max_at_once_and_drain_waits_for_all() {
        let (running, peak, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut tasks = BatchTasks::new(3, "test");
        for _ in 0..20 {
            let (running, peak, done) = (running.clone(), peak.clone(), done.clone());
            tasks
                .spawn(async move {
                    let now = running.fetch_add(1, SeqCst) + 1;
                    peak.fetch_max(now, SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    running.fetch_sub(1, SeqCst);
                    done.fetch_add(1, SeqCst);
                })
                .await;
        }
        tasks.drain().await;
        assert_eq!(done.load(SeqCst), 20);
        assert_eq!(peak.load(SeqCst), 3, "overlaps up to the limit, never past it");
    }
}
