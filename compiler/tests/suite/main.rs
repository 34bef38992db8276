//! netc-compiler's integration tests in one test executable, a module per file: each test
//! executable links the whole workspace and its dependencies, so one instead of one per file
//! saves most of the linking and code generation of `cargo test` (issue 30, item 7).
//! One file's tests: `cargo test --release -p netc-compiler --test suite fuzz_campaign::`.
//! A new test file goes here as a module (a file directly in tests/ is an executable of its own).

mod fuzz_campaign;
mod never_panics;
mod pool_ceil;
mod prim_errors;
mod registry;
mod schedule_snapshots;
mod subnet;
