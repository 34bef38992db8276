//! `netc graph` and `netc ir`: a compiled model printed as Graphviz DOT or as the IR printout.

use crate::common::{load, Failure};
use netc_compiler::report;

pub(crate) fn graph(file: &str) -> Result<(), Failure> {
    print!("{}", report::dot(&load(file)?));
    Ok(())
}

pub(crate) fn ir(file: &str, fused: bool) -> Result<(), Failure> {
    let model = load(file)?;
    match fused {
        false => print!("{}", model.printout()),
        true => model
            .networks
            .iter()
            .for_each(|n| print!("{}", netc_compiler::region::printout(n))),
    }
    Ok(())
}
