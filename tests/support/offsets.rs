//! Reading at the head of a Tansu partition without losing a batch.
//!
//! Tansu moves a partition's high-water mark before it writes the batch that took the offsets
//! (`tansu-storage/src/dynostore.rs`, `produce`), and a fetch in between returns the batches
//! after the unwritten one: the consumer moves past it for good. Two producers writing one
//! partition (two `sendgate run` instances' reports) meet it now and then; Kafka cannot (it
//! moves the mark after the write). Offsets in these topics have no gaps of their own (no
//! transactions, no compaction), so a record past the next expected offset means a skipped
//! batch: the reader seeks back to it and takes the records again, in order, skipping those it
//! has. A gap still there after [`GIVE_UP_AFTER`] is accepted and counted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Tansu writes a batch right after reserving its offsets: a gap that outlives this is real.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(5);

/// What to do with a record just read.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The next record of its partition: take it.
    Take,
    /// Read already (the reader went back): drop it.
    Seen,
    /// Records before it were skipped: seek the partition back to this offset, drop this one.
    SeekBack(i64),
}

/// Per partition, the next offset expected (partitions start at 0 here: topics made per run).
#[derive(Debug, Default)]
pub struct Gaps {
    next: HashMap<i32, i64>,
    /// A gap being waited for: partition → (its first missing offset, since when).
    open: HashMap<i32, (i64, Instant)>,
    /// Gaps given up on: (partition, first missing offset, records missing).
    pub accepted: Vec<(i32, i64, i64)>,
    /// Times a reader went back for a skipped batch.
    pub seeks: u64,
}

impl Gaps {
    pub fn step(&mut self, partition: i32, offset: i64) -> Step {
        let next = self.next.entry(partition).or_insert(0);
        if offset < *next {
            return Step::Seen;
        }
        if offset > *next {
            let want = *next;
            let since = match self.open.get(&partition) {
                Some((o, since)) if *o == want => *since,
                _ => Instant::now(),
            };
            if since.elapsed() < GIVE_UP_AFTER {
                self.open.insert(partition, (want, since));
                self.seeks += 1;
                return Step::SeekBack(want);
            }
            self.accepted.push((partition, want, offset - want));
        }
        self.open.remove(&partition);
        *next = offset + 1;
        Step::Take
    }
}
