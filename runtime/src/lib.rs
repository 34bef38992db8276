pub mod bench;
pub mod cpu;
pub mod data;
pub mod gpu;
pub mod gradcheck;
pub mod io;
pub mod rng;
pub mod session;
