//! libFuzzer entry for `sendgate::fuzz::job` (the properties live there).
#![no_main]

// Counts what each input makes the target hold, for the target's memory bound.
#[global_allocator]
static ALLOC: sendgate::fuzz::alloc::PeakAlloc = sendgate::fuzz::alloc::PeakAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| sendgate::fuzz::job(data));
