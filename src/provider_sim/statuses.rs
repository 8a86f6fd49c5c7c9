//! What happens to a message after the simulator took it: how it ends (the outcome mix), the
//! statuses that say so, one after another, and the due-time queue that holds each message
//! until its next status is due. The queue is bounded in messages (see [`StatusQueue::admit`]).

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::weights::Weights;

/// One status as the provider reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Sent,
    Delivered,
    Read,
    Failed,
}

impl Status {
    pub const ALL: [Status; 4] = [Self::Sent, Self::Delivered, Self::Read, Self::Failed];

    /// The Cloud API's word for it, and the metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
        }
    }
}

/// How a message ends, and so which statuses it gets, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Read,
    Delivered,
    Failed,
}

impl End {
    const ALL: [End; 3] = [Self::Read, Self::Delivered, Self::Failed];

    fn label(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn statuses(self) -> &'static [Status] {
        match self {
            Self::Read => &[Status::Sent, Status::Delivered, Status::Read],
            Self::Delivered => &[Status::Sent, Status::Delivered],
            Self::Failed => &[Status::Sent, Status::Failed],
        }
    }
}

/// Relative weights of how messages end, from `read=80,delivered=15,failed=5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndMix(Weights<3>);

impl FromStr for EndMix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Weights::parse(s, End::ALL.map(End::label), "outcome").map(Self)
    }
}

impl EndMix {
    /// Draws an end; no random draw when only one has weight.
    pub fn pick(&self) -> End {
        End::ALL[self.0.pick()]
    }
}

/// A message taken, waiting for its next status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The id the send was answered with (Cloud API: `wamid.…`).
    pub id: String,
    /// Who sent it (Cloud API: the phone number id in the path).
    pub sender: String,
    /// Who it went to, as the request named them.
    pub recipient: String,
    pub end: End,
    /// Index into `end.statuses()` of the next status.
    pub step: usize,
}

impl Pending {
    pub fn status(&self) -> Status {
        self.end.statuses()[self.step]
    }

    /// The message with its next status, or `None` when the one just pushed was its last.
    pub fn next(mut self) -> Option<Self> {
        self.step += 1;
        (self.step < self.end.statuses().len()).then_some(self)
    }
}

/// Messages by the time their next status is due. Every entry is due `delay` after it was
/// queued, so the queue stays in due order without sorting.
pub struct StatusQueue {
    delay: Duration,
    capacity: usize,
    /// Messages taken whose last status is not pushed yet: those queued here and those whose
    /// status is being pushed right now.
    live: AtomicUsize,
    due: Mutex<VecDeque<(Instant, Pending)>>,
}

impl StatusQueue {
    pub fn new(delay: Duration, capacity: usize) -> Self {
        Self { delay, capacity, live: AtomicUsize::new(0), due: Mutex::new(VecDeque::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<(Instant, Pending)>> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a new message if fewer than `capacity` are live; `false`: the send is refused.
    pub fn admit(&self, p: Pending) -> bool {
        if self.live.fetch_add(1, Relaxed) >= self.capacity {
            self.live.fetch_sub(1, Relaxed);
            return false;
        }
        self.queue(p);
        true
    }

    /// Queues a live message's next status (never refused: it is counted already).
    pub fn queue(&self, p: Pending) {
        let mut q = self.lock();
        // `now` read under the lock keeps due times in queue order.
        q.push_back((Instant::now() + self.delay, p));
    }

    /// A live message has no status left to push (its last was taken, or given up on).
    pub fn done(&self, n: usize) {
        self.live.fetch_sub(n, Relaxed);
    }

    pub fn live(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// Up to `max` messages whose next status is due by `now`, in due order.
    pub fn take_due(&self, now: Instant, max: usize) -> Vec<Pending> {
        let mut q = self.lock();
        let n = q.iter().take(max).take_while(|(due, _)| *due <= now).count();
        q.drain(..n).map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: &str, end: End) -> Pending {
        Pending { id: id.into(), sender: "1".into(), recipient: "2".into(), end, step: 0 }
    }

    #[test]
    fn mixes_parse_and_ends_have_their_statuses_in_order() {
        assert_eq!("read=100".parse::<EndMix>().unwrap().pick(), End::Read);
        assert_eq!(" failed = 3 ".parse::<EndMix>().unwrap().pick(), End::Failed);
        for (bad, want) in [("read", "expected name=weight"), ("seen=1", "unknown outcome"), ("read=1,read=2", "given twice"), ("read=0", "more than 0")] {
            assert!(bad.parse::<EndMix>().unwrap_err().contains(want), "{bad}");
        }
        let mix: EndMix = "read=1,failed=1".parse().unwrap();
        let picks: Vec<End> = (0..200).map(|_| mix.pick()).collect();
        assert!(picks.contains(&End::Read) && picks.contains(&End::Failed) && !picks.contains(&End::Delivered));
        let mut p = Some(pending("a", End::Read));
        let mut seen = Vec::new();
        while let Some(m) = p {
            seen.push(m.status());
            p = m.next();
        }
        assert_eq!(seen, [Status::Sent, Status::Delivered, Status::Read]);
    }

    #[test]
    fn the_queue_hands_out_what_is_due_and_stays_bounded() {
        let q = StatusQueue::new(Duration::from_millis(50), 2);
        assert!(q.admit(pending("a", End::Read)));
        assert!(q.admit(pending("b", End::Delivered)));
        assert!(!q.admit(pending("c", End::Read)), "two live messages at most");
        assert!(q.take_due(Instant::now(), 10).is_empty(), "nothing due yet");
        let later = Instant::now() + Duration::from_millis(60);
        assert_eq!(q.take_due(later, 1).iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["a"]);
        // a's next status is queued again without counting twice; b ends.
        q.queue(pending("a", End::Read).next().unwrap());
        assert_eq!(q.take_due(later, 1).iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["b"], "queued again: behind b");
        q.done(1);
        assert_eq!(q.live(), 1);
        assert!(q.admit(pending("c", End::Read)));
    }
}
