//! The limits Telegram documents, kept on this instance before Telegram has to: one message a
//! second per private chat and 20 a minute per group ([`Chats`]), and the bot's own pace and
//! its pause after a 429 ([`Bot`]).
//!
//! The bot-wide speed across instances is the shared rate limiter's (a sender limit, see
//! `Provider::sender_rate`); the local pace here only keeps one instance from sending a burst
//! when a pause ends. The per-chat limit is local: a chat's jobs normally reach one instance
//! (the Kafka key is `to`), and keeping it in the store would cost a round trip per message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Chats are forgotten only once the map has grown past this many (and then past twice what
/// was left after the last sweep), so a sweep's cost is spread over as many inserts.
const SWEEP_FLOOR: usize = 1024;

/// Every chat a message is waiting for or went to within its interval.
#[derive(Default)]
pub(super) struct Chats {
    inner: Mutex<ChatMap>,
}

#[derive(Default)]
struct ChatMap {
    chats: HashMap<String, Arc<Chat>>,
    sweep_at: usize,
}

/// One chat's queue: its messages go one at a time in the order they came.
pub(super) struct Chat {
    /// Held while a message waits for its slot and is sent; tokio's mutex is FIFO, so the
    /// chat's messages go in the order they asked.
    pub turn: tokio::sync::Mutex<()>,
    /// Not before then: the last send plus the chat's interval.
    next: Mutex<Option<Instant>>,
    /// Messages holding or waiting for `turn`.
    queued: AtomicUsize,
}

/// A message's place in its chat's queue; leaving it (dropped) frees the place.
pub(super) struct Place<'a>(&'a Chat);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Groups, supergroups and channels: a negative chat id or an `@channelusername`.
pub(super) fn is_group(chat_id: &str) -> bool {
    chat_id.starts_with('-') || chat_id.starts_with('@')
}

impl Chats {
    /// The chat's queue, made on first use. Chats nobody waits for and whose interval has
    /// passed are dropped now and then: they hold nothing a fresh one would not.
    pub fn get(&self, chat_id: &str) -> Arc<Chat> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if map.chats.len() >= map.sweep_at.max(SWEEP_FLOOR) {
            let now = Instant::now();
            map.chats.retain(|_, c| Arc::strong_count(c) > 1 || c.next().is_some_and(|t| t > now));
            map.sweep_at = map.chats.len() * 2;
        }
        map.chats
            .entry(chat_id.to_owned())
            .or_insert_with(|| Arc::new(Chat { turn: Default::default(), next: Mutex::new(None), queued: AtomicUsize::new(0) }))
            .clone()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().chats.len()
    }
}

impl Chat {
    fn next(&self) -> Option<Instant> {
        *self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a message joining the queue now would wait for its turn, `interval` apart.
    pub fn backlog(&self, interval: Duration) -> Duration {
        let until_free = self.next().map_or(Duration::ZERO, |t| t.saturating_duration_since(Instant::now()));
        until_free + interval * self.queued.load(Ordering::Relaxed) as u32
    }

    /// Joins the queue (before waiting for `turn`).
    pub fn join(&self) -> Place<'_> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        Place(self)
    }

    /// Waits until the chat's interval since its last message has passed.
    pub async fn ready(&self) {
        if let Some(t) = self.next() {
            tokio::time::sleep_until(t).await;
        }
    }

    /// A request to this chat just went out: the next waits `interval`.
    pub fn sent(&self, interval: Duration) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + interval);
    }
}

/// The bot as one sender on this instance: its pace and its pause.
pub(super) struct Bot {
    /// Least time between two requests: 1 / `bot_tps`.
    period: Duration,
    /// The next free request slot.
    next: Mutex<Instant>,
    /// After a 429: no request before then.
    paused_until: Mutex<Option<Instant>>,
}

impl Bot {
    pub fn new(tps: u32) -> Self {
        Self { period: Duration::from_secs(1) / tps.max(1), next: Mutex::new(Instant::now()), paused_until: Mutex::new(None) }
    }

    /// What is left of the pause, if one is on.
    pub fn paused_for(&self) -> Option<Duration> {
        let until = (*self.paused_until.lock().unwrap_or_else(|e| e.into_inner()))?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Telegram said wait `d`: nothing goes before then (a longer pause already on stays).
    pub fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|t| t < until) {
            *p = Some(until);
        }
    }

    /// Takes the next request slot and waits for it: requests go at least `period` apart.
    pub async fn slot(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + self.period;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_negative_ids_and_channel_names() {
        for (id, want) in [("123456789", false), ("-123456789", true), ("-1001234567890", true), ("@acme_news", true)] {
            assert_eq!(is_group(id), want, "{id}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_chats_messages_go_one_interval_apart_in_order() {
        let chats = Arc::new(Chats::default());
        let interval = Duration::from_secs(1);
        let started = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (chats, order) = (chats.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let chat = chats.get("42");
                let _place = chat.join();
                let _turn = chat.turn.lock().await;
                chat.ready().await;
                order.lock().unwrap().push((i, started.elapsed()));
                chat.sent(interval);
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        let got = order.lock().unwrap().clone();
        assert_eq!(got, [(0, Duration::ZERO), (1, interval), (2, interval * 2)]);
        // What a fourth would wait: the rest of the interval, nobody queued.
        assert_eq!(chats.get("42").backlog(interval), interval);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_chats_are_forgotten() {
        let chats = Chats::default();
        let held = chats.get("held");
        for i in 1..SWEEP_FLOOR {
            chats.get(&i.to_string()).sent(Duration::from_secs(1));
        }
        // Full, but nothing idle yet: all kept.
        chats.get("0");
        assert_eq!(chats.len(), SWEEP_FLOOR + 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        // The next sweep comes at twice what the last one left, and keeps only what is held or
        // still within its interval.
        for i in 0..SWEEP_FLOOR - 1 {
            chats.get(&format!("late-{i}"));
        }
        assert_eq!(chats.len(), 2 * SWEEP_FLOOR);
        chats.get("new");
        assert_eq!(chats.len(), 2, "the held chat and the new one");
        drop(held);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bot_paces_and_pauses() {
        let bot = Bot::new(10);
        let started = Instant::now();
        for _ in 0..3 {
            bot.slot().await;
        }
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        bot.pause(Duration::from_secs(5));
        bot.pause(Duration::from_secs(1));
        assert_eq!(bot.paused_for(), Some(Duration::from_secs(5)), "a shorter pause does not cut a longer one");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(bot.paused_for(), None);
    }
}
