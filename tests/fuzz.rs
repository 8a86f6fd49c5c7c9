//! Fuzzing in CI: every target of `sendgate::fuzz` replayed over its kept corpus
//! (`fuzz/corpus/<target>/`), then run over raw bytes and over structured, hostile inputs
//! (proptest). The targets carry the properties (no panic, bounded memory and output,
//! round-trips); this file only feeds them, plus the receipt round-trip that needs to know
//! what was written.
//!
//! `SENDGATE_FUZZ_CASES` sets the cases per property (default 500, a few seconds in all);
//! `scripts/fuzz --proptest` runs a million per target. The coverage-guided runs are
//! `cargo fuzz` over the same targets (`scripts/fuzz`, `fuzz/`).

#[path = "fuzz/inputs.rs"]
mod fuzz_inputs;

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sendgate::fuzz::{self, alloc::PeakAlloc};

// The targets check how much memory a parse holds; this is what counts it.
#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

fn cases() -> u32 {
    std::env::var("SENDGATE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500)
}

fn target(name: &str) -> fn(&[u8]) {
    fuzz::TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).expect("a target of that name")
}

/// Bytes shown as a byte string when a case fails, not as a list of numbers.
#[derive(Clone)]
struct Input(Vec<u8>);

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

/// Runs `target` over inputs drawn from `strategy`, `cases()` of them.
fn run(name: &str, strategy: impl Strategy<Value = Vec<u8>>) {
    let f = target(name);
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    if let Err(e) = runner.run(&strategy.prop_map(Input), |Input(data)| {
        f(&data);
        Ok(())
    }) {
        panic!("fuzz target {name}: {e}");
    }
}

fn raw(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

#[test]
fn every_target_has_a_corpus_and_replays_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, f) in fuzz::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.expect("a directory entry").path()).collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no corpus", dir.display());
        for file in files {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // The file's name in the panic: it is the input that broke.
            if let Err(p) = std::panic::catch_unwind(|| f(&data)) {
                let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                panic!("{}: {}", file.display(), msg.unwrap_or_default());
            }
        }
    }
}

#[test]
fn job_raw() {
    run("job", raw(600));
}

#[test]
fn job_structured() {
    run("job", fuzz_inputs::job());
}

#[test]
fn ndjson_raw() {
    run("ndjson", raw(600));
}

#[test]
fn ndjson_structured() {
    run("ndjson", fuzz_inputs::ndjson());
}

#[test]
fn admin_path_raw() {
    run("admin_path", raw(200));
}

#[test]
fn admin_path_structured() {
    run("admin_path", fuzz_inputs::admin_path());
}

#[test]
fn receipt_text_raw() {
    run("receipt_text", raw(300));
}

#[test]
fn receipt_text_structured() {
    run("receipt_text", fuzz_inputs::receipt_text().prop_map(|(_, bytes)| bytes));
}

/// Text written from known fields, in any case, order and spacing, reads back as those fields.
#[test]
fn receipt_text_reads_back_what_was_written() {
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let result = runner.run(&fuzz_inputs::receipt_text(), |(want, bytes)| {
        let Some(want) = want else { return Ok(()) };
        let text = String::from_utf8(bytes).expect("written as UTF-8");
        let got = sendgate::provider::smpp::receipt::parse_receipt_text(&text);
        prop_assert_eq!(got, Some(want), "{:?}", text);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn deliver_sm_raw() {
    run("deliver_sm", raw(600));
}

#[test]
fn deliver_sm_structured() {
    run("deliver_sm", fuzz_inputs::deliver_sm());
}

#[test]
fn config_raw() {
    run("config", raw(400));
}

#[test]
fn config_structured() {
    run("config", fuzz_inputs::config());
}
