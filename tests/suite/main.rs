//! netc's (the binary's) integration tests in one test executable, a module per file: each test
//! executable links the whole workspace and its dependencies, so one instead of one per file
//! saves most of the linking and code generation of `cargo test` (issue 30, item 7).
//! One file's tests: `cargo test --release -p netc --test suite cli::`.
//! tests/train.rs and tests/image_folder.rs stay executables of their own: benches/device/build.sh
//! ships them (with runtime's gpu_vs_cpu) to the lent GPU machine by name.
//! A new test file goes here as a module (a file directly in tests/ is an executable of its own).

// Support files that several modules use, loaded once (clippy::duplicate_mod).
#[path = "../support/digit_folder.rs"]
#[allow(dead_code)]
mod digit_folder;
#[path = "../support/located.rs"]
mod located;
#[path = "../support/netc.rs"]
mod run;
#[path = "../support/within.rs"]
mod within;

mod caffe_batchnorm;
mod caffe_import;
mod caffe_train;
mod cli;
mod declared_loss;
mod diagnostics;
mod diffusion;
mod distributed;
mod everyday_data;
mod everyday_diag;
mod generative;
mod gpu_minimise;
mod hostile_checkpoint;
mod hostile_config;
mod hostile_inputs;
mod hostile_io;
mod hostile_late;
mod hostile_round2b;
mod language_model;
mod models;
mod onnx_export;
mod primitives_cli;
mod registry_cli;
mod train_pieces;
