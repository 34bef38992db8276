//! netc-runtime's integration tests in one test executable, a module per file: each test
//! executable links the whole workspace and its dependencies, so one instead of one per file
//! saves most of the linking and code generation of `cargo test` (issue 30, item 7).
//! One file's tests: `cargo test --release -p netc-runtime --test suite fuzz_campaign::`.
//! runtime/tests/gpu_vs_cpu.rs stays an executable of its own: benches/device/build.sh ships it
//! to the lent GPU machine by name.
//! A new test file goes here as a module (a file directly in tests/ is an executable of its own).

// Support files that several modules use, loaded once (clippy::duplicate_mod).
#[path = "../support/golden.rs"]
mod golden;
#[path = "../support/gpus.rs"]
#[allow(dead_code)]
mod gpus;

mod declared_loss;
mod diffusion;
mod fused_loops;
mod fuzz_campaign;
mod fuzz_readers;
mod g_through_d;
mod gpu_language_model;
mod gpu_minimise;
mod gpu_prims;
mod gpu_train_pieces;
mod gradcheck;
mod headless;
mod idx_augment;
mod image_folder;
mod prim_golden;
mod program_dump;
mod regions;
mod score;
mod stdlib_gradcheck;
mod torch_golden;
mod torch_optim_golden;
