//! netc-runtime's integration tests, one module per file, in ONE test executable: each executable links the whole
//! workspace and its dependencies, so one executable instead of one per file saves most of the
//! link and code-generation time of `cargo test` (issue 30, item 7). Run one file's tests with
//! `cargo test -p <package> --test suite <module>::` (e.g. `fuzz_campaign::`).
//! gpu_vs_cpu.rs stays its own executable: benches/device/build.sh ships it to the lent GPU
//! machine by name.
//! A new test file goes here as a module (a file directly in tests/ is an executable of its own).

mod fuzz_campaign;
mod fuzz_readers;
mod g_through_d;
mod gpu_train_pieces;
mod gradcheck;
mod headless;
mod image_folder;
mod prim_golden;
mod program_dump;
mod score;
mod stdlib_gradcheck;
mod torch_golden;
mod torch_optim_golden;
