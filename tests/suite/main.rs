//! The netc binary's integration tests, one module per file, in ONE test executable: each executable links the whole
//! workspace and its dependencies, so one executable instead of one per file saves most of the
//! link and code-generation time of `cargo test` (issue 30, item 7). Run one file's tests with
//! `cargo test -p <package> --test suite <module>::` (e.g. `cli::`).
//! train.rs and image_folder.rs stay their own executables: benches/device/build.sh ships them (with runtime's
//! gpu_vs_cpu) to the lent GPU machine by name.
//! A new test file goes here as a module (a file directly in tests/ is an executable of its own).

mod cli;
mod diagnostics;
mod everyday_data;
mod everyday_diag;
mod hostile_checkpoint;
mod hostile_config;
mod hostile_inputs;
mod hostile_io;
mod hostile_late;
mod hostile_round2b;
mod models;
mod primitives_cli;
mod registry_cli;
mod train_pieces;
