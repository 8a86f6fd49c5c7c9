//! Message ids this instance's providers took whose receipt mappings are not stored yet: from
//! the provider's answer until `track_sent` answers. A receipt for one of them (a fast SMSC, a
//! busy completer) waits in the correlator, unacknowledged, until the mapping is stored, and is
//! then settled once — instead of matching nothing, being kept in the store as an early receipt
//! and tried again 250 ms later (five Redis commands more, and a quarter second more in flight).
//! Unacknowledged, it cannot be lost to a crash: the SMSC delivers it again.
//!
//! Kept as counts of 64-bit hashes, not strings: a collision only makes an unrelated receipt
//! wait for the other id's mapping, and nothing is allocated per message.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Default)]
pub struct Untracked {
    ids: Mutex<HashMap<u64, u32>>,
    hasher: RandomState,
    /// Woken (one stored permit) whenever mappings were stored: the correlator looks again.
    stored: Notify,
}

impl Untracked {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&self, provider: &str, message_id: &str) -> u64 {
        self.hasher.hash_one((provider, message_id))
    }

    /// The provider took these messages; their mappings are on their way to the store.
    pub fn taken(&self, provider: &str, message_ids: &[String]) {
        if message_ids.is_empty() {
            return;
        }
        let keys: Vec<u64> = message_ids.iter().map(|m| self.key(provider, m)).collect();
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            *ids.entry(k).or_insert(0) += 1;
        }
    }

    /// `track_sent` answered for these (stored, or the job is another instance's now).
    pub fn tracked<'a>(&self, jobs: impl IntoIterator<Item = (&'a str, &'a [String])>) {
        let keys: Vec<u64> = jobs.into_iter().flat_map(|(p, ms)| ms.iter().map(move |m| (p, m))).map(|(p, m)| self.key(p, m)).collect();
        if keys.is_empty() {
            return;
        }
        {
            let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
            for k in keys {
                if let std::collections::hash_map::Entry::Occupied(mut e) = ids.entry(k) {
                    *e.get_mut() -= 1;
                    if *e.get() == 0 {
                        e.remove();
                    }
                }
            }
        }
        self.stored.notify_one();
    }

    /// Whether a receipt for this message would beat its mapping into the store now.
    pub fn contains(&self, provider: &str, message_id: &str) -> bool {
        let k = self.key(provider, message_id);
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&k)
    }

    /// Resolves after mappings were stored (at once if some were since the last call).
    pub async fn stored(&self) {
        self.stored.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_id_is_untracked_from_taken_to_tracked_and_counted_per_taking() {
        let u = Untracked::new();
        let ids = vec!["m1".to_owned(), "m2".to_owned()];
        assert!(!u.contains("p", "m1"));
        u.taken("p", &ids);
        u.taken("p", &ids[..1]);
        assert!(u.contains("p", "m1") && u.contains("p", "m2"));
        assert!(!u.contains("q", "m1"), "another provider's id is another message");
        u.tracked([("p", &ids[..])]);
        assert!(u.contains("p", "m1"), "taken twice, tracked once");
        assert!(!u.contains("p", "m2"));
        // The permit stored by `tracked` wakes a later wait at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), u.stored()).await.expect("woken");
        u.tracked([("p", &ids[..1])]);
        assert!(!u.contains("p", "m1"));
        u.tracked([("p", &ids[..1])]);
        assert!(!u.contains("p", "m1"), "tracked more often than taken: nothing below zero");
    }
}
