//! The kill -9 loop of issue 10, sized for CI: two `sendgate run` instances sharing Redis, one
//! consumer group and one reports topic; 4,000 jobs at 250/s (5% scheduled 3–8 s ahead, 40
//! second records with ids already used); an SMSC that throttles every 50th submit; six
//! SIGKILLs of alternating instances, each restarted at once (binds 2 × window 16). Then every job must have exactly
//! one final, no message may have reached the SMSC twice, `unknown` finals stay within
//! `binds × window` per kill, `duplicate` answers second records only, and nothing but `read`
//! follows a final (`accepted` before it). The full run (30,000 jobs, 20 kills) is
//! `loadtest/run_kill_loop.sh`; both share tests/support/kill_loop.rs.

#[path = "support/kill_loop.rs"]
mod kill_loop;

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loop_every_job_gets_exactly_one_final() {
    let dir = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("SENDGATE_TEST_KEEP").is_some();
    let p = kill_loop::Params::ci(PathBuf::from(env!("CARGO_BIN_EXE_sendgate")), dir.path().to_owned());
    let out = kill_loop::run(p).await;
    let report = out.report();
    eprintln!("{report}");
    let failures = out.failures();
    if keep || !failures.is_empty() {
        // The daemons' logs, for a look at what happened around each kill.
        let kept = dir.keep();
        eprintln!("configs and daemon logs kept in {}", kept.display());
    }
    assert!(failures.is_empty(), "the kill -9 loop broke the contract:\n{report}");
}

/// The test readers' answer to Tansu's fetch skipping a batch still being written
/// (support/offsets.rs): a record past the next offset sends the reader back for the skipped
/// ones, and what comes again is dropped.
#[test]
fn a_batch_the_broker_skipped_is_read_again_in_order() {
    use kill_loop::offsets::{Gaps, Step};
    let mut g = Gaps::default();
    assert_eq!(g.step(0, 0), Step::Take);
    assert_eq!(g.step(0, 3), Step::SeekBack(1), "offsets 1 and 2 were skipped");
    assert_eq!(g.step(0, 1), Step::Take);
    assert_eq!(g.step(0, 2), Step::Take);
    assert_eq!(g.step(0, 3), Step::Take);
    assert_eq!(g.step(0, 2), Step::Seen, "read again after going back");
    assert_eq!(g.step(1, 1), Step::SeekBack(0), "each partition from offset 0");
    assert_eq!((g.seeks, g.accepted.len()), (2, 0));
}
