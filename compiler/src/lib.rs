//! netc compiler: text -> AST -> IR -> (autodiff) -> schedule -> WGSL.
//!
//! Data flow: [`parse_dsl`]/[`parse_yaml`] produce an [`ast::Document`]; [`build`] lowers it to
//! the petgraph [`ir::Network`]s and infers shapes; [`report`] prints what `netc check` shows.

pub mod ast;
pub mod build;
pub mod diag;
pub mod ir;
pub mod kernels;
pub mod limits;
pub mod lint;
pub mod ops;
pub mod parse_dsl;
pub mod parse_yaml;
pub mod prim;
pub mod program;
pub mod region;
pub mod report;
pub mod schedule;
pub mod shape;
pub mod stdlib;
pub mod subnet;
pub mod train_config;

use diag::Diagnostics;
use ir::Model;

/// Which front end reads a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Dsl,
    Yaml,
}

impl Format {
    pub fn from_path(path: &str) -> Format {
        if path.ends_with(".yaml") || path.ends_with(".yml") {
            Format::Yaml
        } else {
            Format::Dsl
        }
    }
}

/// Compiles model text to shape-checked IR, or every error found.
pub fn compile(file_name: &str, source: &str) -> Result<Model, Diagnostics> {
    let fail = |items| Diagnostics {
        file_name: file_name.to_string(),
        source: source.to_string(),
        items: limits::cap_errors(items),
    };
    let (doc, mut errors) = match Format::from_path(file_name) {
        Format::Dsl => parse_dsl::parse(source).map(|d| (d, vec![])),
        Format::Yaml => parse_yaml::parse_keeping(source),
    }
    .map_err(fail)?;
    let networks = build::lower(&doc, &mut errors);
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    Ok(Model {
        file_name: file_name.to_string(),
        source: source.to_string(),
        networks,
        train: doc.train,
    })
}
