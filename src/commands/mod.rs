//! One module per command (`graph` holds `graph` and `ir`); `main` dispatches to them.

pub(crate) mod bench;
pub(crate) mod bench_dist;
pub(crate) mod check;
pub(crate) mod devices;
pub(crate) mod eval;
pub(crate) mod export;
pub(crate) mod generate;
pub(crate) mod gradcheck;
pub(crate) mod graph;
pub(crate) mod import;
pub(crate) mod predict;
pub(crate) mod sample;
pub(crate) mod score;
pub(crate) mod stdlib;
pub(crate) mod train;
