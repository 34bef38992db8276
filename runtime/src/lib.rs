pub mod cpu;
pub mod data;
pub mod gpu;
pub mod io;
pub mod rng;
