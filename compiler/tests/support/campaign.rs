//! The fuzz-campaign runner both crates' `fuzz_campaign` tests use: `NETC_FUZZ_CASES` cases
//! of a strategy, none may panic or take over 5 s, the count and the slowest case printed.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::time::{Duration, Instant};

/// The slowest a single case may be.
const CASE_LIMIT: Duration = Duration::from_secs(5);

pub fn cases() -> u32 {
    std::env::var("NETC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// Runs `check` on `cases()` values of `strategy`: a panic or a case over [`CASE_LIMIT`] fails
/// the campaign (with the smallest input proptest finds); the count and the slowest are printed.
pub fn campaign<S: Strategy>(name: &str, strategy: S, check: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let n = cases();
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let slowest = std::cell::Cell::new(Duration::ZERO);
    let result = runner.run(&strategy, |v| {
        let t = Instant::now();
        check(v);
        let dt = t.elapsed();
        slowest.set(slowest.get().max(dt));
        prop_assert!(dt < CASE_LIMIT, "one case took {dt:?}");
        Ok(())
    });
    eprintln!(
        "fuzz campaign {name}: {n} cases, slowest {:.1} ms",
        slowest.get().as_secs_f64() * 1e3
    );
    if let Err(e) = result {
        panic!("fuzz campaign {name}: {e}");
    }
}
