//! Lowering: AST to IR. Expands blocks and `repeat`, resolves names (forward references are
//! allowed, so cycles are possible and reported), then infers shapes in topological order.
//! Every independent error is collected; errors downstream of a failed node are not repeated.
//! The `Builder` walks the statements: `expand` (statements, `repeat`, `input`), `chain` (one
//! statement's calls into nodes), `block` (block calls), `names` (name definition and
//! resolution); `infer` then orders the graph and infers shapes.

mod block;
mod chain;
mod expand;
mod infer;
mod names;

pub use infer::infer_shapes;

use crate::ast::*;
use crate::diag::Diagnostic;
use crate::ir::{Network, Node};
use crate::ops::is_op;
use petgraph::graph::{DiGraph, NodeIndex};
use std::collections::{HashMap, HashSet};

const MAX_BLOCK_DEPTH: usize = 32;
const MAX_NODES: usize = 1_000_000;

#[derive(Debug, Clone)]
enum Src {
    Node(NodeIndex),
    /// A name whose definition failed; references to it are silently dropped.
    Poisoned,
    Ref {
        cands: Vec<String>,
        ident: Ident,
    },
}

#[derive(Clone)]
struct Scope {
    prefix: String,
    suffix: String,
    /// (prefix, suffix) pairs a name is looked up under, innermost first.
    lookup: Vec<(String, String)>,
    params: HashMap<String, Value>,
    top: bool,
    depth: usize,
}

impl Scope {
    fn full(&self, name: &str) -> String {
        format!("{}{}{}", self.prefix, name, self.suffix)
    }
    fn cands(&self, name: &str) -> Vec<String> {
        self.lookup
            .iter()
            .map(|(p, s)| format!("{p}{name}{s}"))
            .collect()
    }
}

struct Builder<'a> {
    blocks: &'a HashMap<String, &'a BlockDef>,
    graph: DiGraph<Node, usize>,
    names: HashMap<String, (Src, Span)>,
    used: HashSet<String>,
    pending: Vec<(NodeIndex, usize, Src)>,
    inputs: Vec<NodeIndex>,
    outputs: Vec<(Ident, Vec<String>, Ident)>,
    counters: HashMap<String, u64>,
    errors: &'a mut Vec<Diagnostic>,
    too_big: bool,
    /// Statements expanded so far: bounds `repeat` and block fan-out even when they add no layers.
    expanded: usize,
    /// Nodes with an input that did not resolve; shape inference skips them.
    broken: HashSet<NodeIndex>,
    /// Every reference a chain starts with, resolved at the end whether used or not (an
    /// unused `b = layernorm` used to pass without a word).
    refs: Vec<Src>,
    /// Names of statements that are a bare name alone (`x = layernorm`): an undefined one is
    /// more likely an op misspelt or missing than a layer.
    alone: HashSet<Span>,
    /// Where a name error was reported: each is reported once, however often it is read.
    reported: HashSet<Span>,
}

/// Lowers every network of the document.
pub fn lower(doc: &Document, errors: &mut Vec<Diagnostic>) -> Vec<Network> {
    let mut blocks: HashMap<String, &BlockDef> = HashMap::new();
    for b in &doc.blocks {
        if is_op(&b.name.name) {
            errors.push(
                Diagnostic::error(format!(
                    "block `{}` has the name of a built-in op",
                    b.name.name
                ))
                .at(b.name.span, "shadows an op")
                .help("rename the block"),
            );
        } else if let Some(prev) = blocks.get(&b.name.name) {
            errors.push(
                Diagnostic::error(format!("block `{}` is defined twice", b.name.name))
                    .at(b.name.span, "second definition")
                    .also(prev.name.span, "first defined here"),
            );
        } else {
            blocks.insert(b.name.name.clone(), b);
        }
    }
    for b in crate::stdlib::blocks() {
        if !is_op(&b.name.name) {
            blocks.entry(b.name.name.clone()).or_insert(b);
        }
    }
    if doc.nets.is_empty() {
        errors.push(
            Diagnostic::error("the file defines no network")
                .at(Span::new(0, 0), "expected `net NAME { ... }`")
                .help("a model file holds at least one `net name { input x: 784 ... }`"),
        );
    }
    let mut nets: Vec<Network> = vec![];
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for net in &doc.nets {
        if let Some(prev) = seen.get(net.name.name.as_str()) {
            errors.push(
                Diagnostic::error(format!("network `{}` is defined twice", net.name.name))
                    .at(net.name.span, "second definition")
                    .also(*prev, "first defined here"),
            );
            continue;
        }
        seen.insert(&net.name.name, net.name.span);
        if let Some(n) = lower_net(net, &blocks, errors) {
            nets.push(n);
        }
    }
    nets
}

fn lower_net(
    net: &NetDef,
    blocks: &HashMap<String, &BlockDef>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Network> {
    let before = errors.len();
    let mut b = Builder {
        blocks,
        graph: DiGraph::new(),
        names: HashMap::new(),
        used: HashSet::new(),
        pending: vec![],
        inputs: vec![],
        outputs: vec![],
        counters: HashMap::new(),
        errors,
        too_big: false,
        expanded: 0,
        broken: HashSet::new(),
        refs: vec![],
        alone: HashSet::new(),
        reported: HashSet::new(),
    };
    let scope = Scope {
        prefix: String::new(),
        suffix: String::new(),
        lookup: vec![(String::new(), String::new())],
        params: HashMap::new(),
        top: true,
        depth: 0,
    };
    let last = b.expand(&net.body, &scope, None);
    if b.inputs.is_empty() {
        b.errors.push(
            Diagnostic::error(format!("network `{}` has no input", net.name.name))
                .at(net.name.span, "no `input` statement")
                .help("declare one first, e.g. `input x: 784` or `input image: 3x32x32`"),
        );
    }
    // Resolve deferred references into edges.
    let pending = std::mem::take(&mut b.pending);
    for (node, slot, src) in pending {
        match b.resolve(&src) {
            Some(from) => {
                b.graph.add_edge(from, node, slot);
            }
            None => {
                b.broken.insert(node);
            }
        }
    }
    let mut outputs = vec![];
    for (alias, cands, target) in std::mem::take(&mut b.outputs) {
        let src = Src::Ref {
            cands,
            ident: target,
        };
        if let Some(n) = b.resolve(&src) {
            outputs.push((alias.name.clone(), n));
        }
    }
    if outputs.is_empty() {
        if let Some(n) = last.and_then(|s| b.resolve(&s)) {
            outputs.push((b.graph[n].name.clone(), n));
        }
    }
    // The references nothing read: an error in them is still an error.
    for src in std::mem::take(&mut b.refs) {
        b.resolve(&src);
    }
    let statements = b.statement_nodes();
    let Builder {
        graph,
        inputs,
        broken,
        ..
    } = b;
    let mut network = Network {
        name: net.name.name.clone(),
        span: net.name.span,
        graph,
        inputs,
        outputs,
        order: vec![],
        fused: Default::default(),
        statements,
    };
    // Even after name or argument errors, infer what can be, to report independent shape errors.
    infer_shapes(&mut network, errors, broken);
    (errors.len() == before).then_some(network)
}
