//! netc-compiler's integration tests, one module per file, in ONE test executable: each executable links the whole
//! workspace and its dependencies, so one executable instead of one per file saves most of the
//! link and code-generation time of `cargo test` (issue 30, item 7). Run one file's tests with
//! `cargo test -p <package> --test suite <module>::` (e.g. `fuzz_campaign::`).
//! A new test file goes here as a module (a file directly in tests/ is an executable of its own).

mod fuzz_campaign;
mod never_panics;
mod prim_errors;
mod registry;
mod schedule_snapshots;
