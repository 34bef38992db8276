//! `netc graph` and `netc ir`: a compiled model printed as Graphviz DOT or as the IR printout.

use crate::common::{load, Failure};
use netc_compiler::report;

pub(crate) fn graph(file: &str) -> Result<(), Failure> {
    print!("{}", report::dot(&load(file)?));
    Ok(())
}

pub(crate) fn ir(file: &str) -> Result<(), Failure> {
    print!("{}", load(file)?.printout());
    Ok(())
}
