//! Failpoints: named points where a test makes the process die or a store call fail, to prove
//! that the one-final promise holds at exactly that instant. Compiled in only with the cargo
//! feature `failpoints` (tests; never release builds): without it every function here is an
//! empty inline stub.
//!
//! Set from the environment at start (`SENDGATE_FAILPOINTS="name=action,name=action"`) or by
//! [`set`] in-process. Actions: `kill` (SIGKILL to ourselves: nothing flushed, as `kill -9`),
//! `kill-after(N)` (pass N times, then kill), `error(N)` (the next N hits fail as a store
//! outage). The points:
//! - `finals-published`: the broker confirmed a batch of finals, the store has not recorded them;
//! - `duplicates-published`: the same for a batch with second records' `duplicate` events;
//! - `claimed`: the batch's ids are claimed, the rest of the chain has not run;
//! - `submitting`: jobs are marked `submitting`, their PDUs not yet written;
//! - `receipt-stored`: receipts are settled in the store, not yet acknowledged to the provider;
//! - a policy's name (`dedup`, `opt_out`, ...): its store call fails (`error(N)` only).

use crate::store::StoreError;

#[cfg(feature = "failpoints")]
mod active {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    #[derive(Debug, Clone, Copy)]
    pub enum Action {
        Kill,
        KillAfter(u32),
        Error(u32),
    }

    fn table() -> &'static Mutex<HashMap<String, Action>> {
        static T: OnceLock<Mutex<HashMap<String, Action>>> = OnceLock::new();
        T.get_or_init(|| {
            let mut m = HashMap::new();
            for item in std::env::var("SENDGATE_FAILPOINTS").unwrap_or_default().split(',').filter(|s| !s.is_empty()) {
                let (name, action) = item.split_once('=').unwrap_or((item, "kill"));
                match parse(action) {
                    Some(a) => {
                        m.insert(name.trim().to_owned(), a);
                    }
                    None => eprintln!("SENDGATE_FAILPOINTS: cannot read action {action:?} of {name:?}"),
                }
            }
            Mutex::new(m)
        })
    }

    pub fn parse(action: &str) -> Option<Action> {
        let arg = |prefix: &str| action.strip_prefix(prefix)?.strip_suffix(')')?.parse().ok();
        match action {
            "kill" => Some(Action::Kill),
            _ if action.starts_with("kill-after(") => arg("kill-after(").map(Action::KillAfter),
            _ if action.starts_with("error(") => arg("error(").map(Action::Error),
            _ => None,
        }
    }

    pub fn set(name: &str, action: Option<Action>) {
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        match action {
            Some(a) => t.insert(name.to_owned(), a),
            None => t.remove(name),
        };
    }

    /// What a hit of `name` does now (and counts it down).
    pub fn take(name: &str) -> Option<Action> {
        let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
        let a = t.get_mut(name)?;
        match a {
            Action::Kill => Some(Action::Kill),
            Action::KillAfter(0) => Some(Action::Kill),
            Action::KillAfter(n) => {
                *n -= 1;
                None
            }
            Action::Error(0) => {
                t.remove(name);
                None
            }
            Action::Error(n) => {
                *n -= 1;
                Some(Action::Error(0))
            }
        }
    }

    pub fn die(name: &str) -> ! {
        eprintln!("failpoint {name}: killing the process");
        // SIGKILL, as `kill -9` from outside: no destructor, no flush, no goodbye to anyone.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        unreachable!("SIGKILL does not return")
    }
}

#[cfg(feature = "failpoints")]
pub use active::{parse, set, Action};

/// A point where the process may be made to die.
#[inline]
pub fn hit(name: &str) {
    #[cfg(feature = "failpoints")]
    if let Some(active::Action::Kill) = active::take(name) {
        active::die(name);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// A point where a store call may be made to fail (or the process to die).
#[inline]
pub fn hit_store(name: &str) -> Result<(), StoreError> {
    #[cfg(feature = "failpoints")]
    match active::take(name) {
        Some(active::Action::Kill) => active::die(name),
        Some(_) => return Err(StoreError::Unavailable(format!("failpoint {name}"))),
        None => {}
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
    Ok(())
}
