//! An allocator that counts, per thread, the bytes live at once: how a fuzz target proves
//! that parsing `n` bytes never holds more than a small multiple of `n`.
//!
//! A binary opts in with `#[global_allocator] static A: PeakAlloc = PeakAlloc;` (the fuzz
//! targets and `tests/fuzz.rs` do; the daemon does not). Counts are per thread so that the
//! test harness's parallel tests do not see each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// [`System`], counting. Installed or not, everything else behaves the same.
pub struct PeakAlloc;

thread_local! {
    /// Bytes allocated and not yet freed by this thread (frees of another thread's blocks can
    /// take it below zero, hence signed).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE` since the last [`peak_during`] began.
    static PEAK: Cell<isize> = const { Cell::new(0) };
    /// Whether this allocator is the one in use: without it every peak would read 0, and a
    /// bound checked against 0 would pass silently.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn add(delta: isize) {
    // `try_with`: allocations during thread teardown, after the slots are gone, go uncounted.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
    let _ = COUNTED.try_with(|c| c.set(true));
}

// SAFETY: every call is forwarded unchanged to `System`; the counting touches only
// const-initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Runs `f` and returns its result with the most bytes this thread held at once during it,
/// above what it held before; `None` when [`PeakAlloc`] is not the global allocator.
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, Option<usize>) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    let counted = COUNTED.with(Cell::get) || installed();
    (out, counted.then_some(peak.max(0) as usize))
}

/// Whether allocations are being counted: one probe allocation tells.
fn installed() -> bool {
    drop(std::hint::black_box(Box::new(0u64)));
    COUNTED.with(Cell::get)
}
