//! Ordered acks: which offset of each partition may be committed.
//!
//! Jobs finish out of order; an offset is committable only when every record at or below it in
//! its partition reached a durable point. Each assignment of a partition gets a new epoch, so
//! an ack from a job read under an earlier assignment never moves the new one's offsets.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tp {
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug)]
struct Track {
    epoch: u64,
    in_flight: BTreeSet<i64>,
    /// One past the highest offset read.
    next: i64,
    /// The last offset committed (or -1 before the first commit).
    committed: i64,
}

#[derive(Default)]
pub struct Offsets {
    inner: Mutex<(u64, HashMap<Tp, Track>)>,
}

impl Offsets {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<Tp, Track>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking newly assigned partitions.
    pub fn assign(&self, tps: impl IntoIterator<Item = Tp>) {
        let mut g = self.lock();
        for tp in tps {
            g.0 += 1;
            let epoch = g.0;
            g.1.insert(tp, Track { epoch, in_flight: BTreeSet::new(), next: -1, committed: -1 });
        }
    }

    /// Stops tracking revoked partitions; later acks for them are ignored.
    pub fn revoke(&self, tps: &[Tp]) {
        let mut g = self.lock();
        for tp in tps {
            g.1.remove(tp);
        }
    }

    /// Records a read; returns the epoch to ack it with, or `None` if the partition is not ours.
    pub fn read(&self, tp: &Tp, offset: i64) -> Option<u64> {
        let mut g = self.lock();
        let t = g.1.get_mut(tp)?;
        t.in_flight.insert(offset);
        t.next = t.next.max(offset + 1);
        Some(t.epoch)
    }

    /// Marks a record done.
    pub fn done(&self, tp: &Tp, epoch: u64, offset: i64) {
        let mut g = self.lock();
        if let Some(t) = g.1.get_mut(tp).filter(|t| t.epoch == epoch) {
            t.in_flight.remove(&offset);
        }
    }

    /// The offsets to commit now (Kafka's "next offset to read"), for the given partitions or
    /// all; marks them committed.
    pub fn committable(&self, only: Option<&[Tp]>) -> Vec<(Tp, i64)> {
        let mut g = self.lock();
        let mut out = Vec::new();
        for (tp, t) in g.1.iter_mut() {
            if only.is_some_and(|o| !o.contains(tp)) || t.next < 0 {
                continue;
            }
            let at = t.in_flight.first().copied().unwrap_or(t.next);
            if at > t.committed {
                t.committed = at;
                out.push((tp.clone(), at));
            }
        }
        out
    }

    /// Records held by jobs not yet at a durable point, over every partition.
    pub fn in_flight(&self) -> usize {
        self.lock().1.values().map(|t| t.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        Tp { topic: "t".into(), partition: p }
    }

    #[test]
    fn commits_only_below_the_oldest_unfinished_record() {
        let o = Offsets::default();
        o.assign([tp(0)]);
        let e = o.read(&tp(0), 10).unwrap();
        o.read(&tp(0), 11);
        o.read(&tp(0), 12);
        o.done(&tp(0), e, 11);
        o.done(&tp(0), e, 12);
        assert_eq!(o.committable(None), vec![(tp(0), 10)]);
        o.done(&tp(0), e, 10);
        assert_eq!(o.committable(None), vec![(tp(0), 13)]);
        assert!(o.committable(None).is_empty(), "nothing new");
    }

    #[test]
    fn acks_from_an_earlier_assignment_are_ignored() {
        let o = Offsets::default();
        o.assign([tp(1)]);
        let old = o.read(&tp(1), 5).unwrap();
        o.revoke(&[tp(1)]);
        o.assign([tp(1)]);
        let new = o.read(&tp(1), 5).unwrap();
        assert_ne!(old, new);
        o.done(&tp(1), old, 5);
        assert_eq!(o.in_flight(), 1);
        assert!(o.read(&tp(9), 1).is_none(), "not assigned");
    }
}
