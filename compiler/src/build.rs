//! Lowering: AST to IR. Expands blocks and `repeat`, resolves names (forward references are
//! allowed, so cycles are possible and reported), then infers shapes in topological order.
//! Every independent error is collected; errors downstream of a failed node are not repeated.

use crate::ast::*;
use crate::diag::{did_you_mean, Diagnostic};
use crate::ir::{Network, Node, Stats};
use crate::ops::registry::{self, canonical_op, is_op, takes_named_inputs};
use crate::ops::{self, Op};
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
    };
    // Even after name or argument errors, infer what can be, to report independent shape errors.
    infer_shapes(&mut network, errors, broken);
    (errors.len() == before).then_some(network)
}

impl Builder<'_> {
    fn fresh_name(&mut self, base: &str) -> String {
        let c = self.counters.entry(base.to_string()).or_insert(0);
        loop {
            *c += 1;
            let name = format!("{base}_{c}");
            if !self.used.contains(&name) && !self.names.contains_key(&name) {
                return name;
            }
        }
    }

    fn define(&mut self, name: String, src: Src, span: Span) {
        if let Some((_, prev)) = self.names.get(&name) {
            self.errors.push(
                Diagnostic::error(format!("`{name}` is defined twice"))
                    .at(span, "second definition")
                    .also(*prev, "first defined here")
                    .help("give each statement its own name"),
            );
            return;
        }
        self.names.insert(name, (src, span));
    }

    fn add_node(&mut self, node: Node) -> Option<NodeIndex> {
        if self.graph.node_count() >= MAX_NODES {
            if !self.too_big {
                self.too_big = true;
                self.errors.push(
                    Diagnostic::error(format!(
                        "the network expands to more than {MAX_NODES} layers"
                    ))
                    .at(node.span, "while expanding this")
                    .help("check `repeat` counts"),
                );
            }
            return None;
        }
        self.used.insert(node.name.clone());
        Some(self.graph.add_node(node))
    }

    fn resolve(&mut self, src: &Src) -> Option<NodeIndex> {
        let mut cur = src.clone();
        let mut seen = HashSet::new();
        loop {
            match cur {
                Src::Node(n) => return Some(n),
                Src::Poisoned => return None,
                Src::Ref {
                    ref cands,
                    ref ident,
                } => {
                    let found = cands
                        .iter()
                        .find_map(|c| self.names.get(c).map(|(s, _)| (c.clone(), s.clone())));
                    match found {
                        Some((name, next)) => {
                            if !seen.insert(name.clone()) {
                                self.errors.push(
                                    Diagnostic::error(format!(
                                        "`{}` is defined as itself",
                                        ident.name
                                    ))
                                    .at(ident.span, "alias cycle"),
                                );
                                return None;
                            }
                            cur = next;
                        }
                        None => {
                            let mut d =
                                Diagnostic::error(format!("undefined name `{}`", ident.name))
                                    .at(ident.span, "not defined in this network");
                            let mut layers: Vec<&str> =
                                self.names.keys().map(|s| s.as_str()).collect();
                            layers.sort_unstable();
                            if is_op(&ident.name) {
                                // An op's name where a layer's is wanted: suggesting the op
                                // itself ("did you mean `relu`?") would say nothing.
                                d = d.help(format!(
                                    "`{}` is an op, not a layer; name a layer here ({})",
                                    ident.name,
                                    match layers.len() {
                                        0 => "none is defined yet".to_string(),
                                        n if n <= 8 => layers.join(", "),
                                        _ => format!("{}, ...", layers[..8].join(", ")),
                                    }
                                ));
                            } else {
                                let known = layers.iter().copied().chain(registry::names());
                                if let Some(s) = did_you_mean(&ident.name, known) {
                                    d = d.help(format!("did you mean `{s}`?"));
                                }
                            }
                            self.errors.push(d);
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// Substitutes block parameters in a value.
    fn subst(&self, v: &Value, scope: &Scope) -> Value {
        match &v.kind {
            ValueKind::Call(c) if !c.parens && c.args.is_empty() => {
                match scope.params.get(&c.name.name) {
                    Some(bound) => Value {
                        kind: bound.kind.clone(),
                        span: v.span,
                    },
                    None => v.clone(),
                }
            }
            ValueKind::Call(c) => Value {
                kind: ValueKind::Call(Call {
                    args: c
                        .args
                        .iter()
                        .map(|a| Arg {
                            key: a.key.clone(),
                            value: self.subst(&a.value, scope),
                        })
                        .collect(),
                    ..c.clone()
                }),
                span: v.span,
            },
            ValueKind::List(l) => Value {
                kind: ValueKind::List(l.iter().map(|x| self.subst(x, scope)).collect()),
                span: v.span,
            },
            _ => v.clone(),
        }
    }

    /// Counts one unit of expansion work (a statement or a repeat iteration); past the budget
    /// it reports the runaway once and returns false.
    fn spend(&mut self, span: Span) -> bool {
        self.expanded += 1;
        if self.expanded <= MAX_NODES {
            return true;
        }
        if !self.too_big {
            self.too_big = true;
            self.errors.push(
                Diagnostic::error(format!(
                    "the network expands to more than {MAX_NODES} statements"
                ))
                .at(span, "while expanding this")
                .help("check `repeat` counts and blocks that call each other"),
            );
        }
        false
    }

    fn expand(&mut self, stmts: &[Stmt], scope: &Scope, mut prev: Option<Src>) -> Option<Src> {
        for s in stmts {
            if self.too_big {
                return None;
            }
            let span = match s {
                Stmt::Input { name, .. } => name.span,
                Stmt::Output { alias, .. } => alias.span,
                Stmt::Repeat { count, .. } => count.span,
                Stmt::Chain { span, .. } => *span,
            };
            if !self.spend(span) {
                return None;
            }
            prev = match s {
                Stmt::Input { name, shape } => self.input(name, shape, scope).or(prev),
                Stmt::Output { alias, target } => {
                    let t = target.clone().unwrap_or_else(|| alias.clone());
                    self.outputs.push((alias.clone(), scope.cands(&t.name), t));
                    prev
                }
                Stmt::Repeat { count, body } => {
                    let count_span = count.span;
                    let c = self.subst(count, scope);
                    let count = match c.kind {
                        ValueKind::Int(n) if n >= 1 => n as u64,
                        _ => {
                            self.errors.push(
                                Diagnostic::error(format!(
                                    "`repeat` count must be an integer of at least 1, found `{c}`"
                                ))
                                .at(count.span, "bad count"),
                            );
                            0
                        }
                    };
                    for i in 1..=count {
                        if self.too_big || !self.spend(count_span) {
                            break;
                        }
                        let mut inner = scope.clone();
                        inner.suffix = format!("{}_{i}", scope.suffix);
                        inner
                            .lookup
                            .insert(0, (scope.prefix.clone(), inner.suffix.clone()));
                        prev = self.expand(body, &inner, prev);
                    }
                    prev
                }
                Stmt::Chain {
                    name, calls, annot, ..
                } => self.chain(name.as_ref(), calls, annot.as_ref(), scope, prev),
            };
        }
        prev
    }

    fn input(&mut self, name: &Ident, shape: &ShapeLit, scope: &Scope) -> Option<Src> {
        if !scope.top || !scope.suffix.is_empty() {
            self.errors.push(
                Diagnostic::error("`input` is only allowed at the top level of a network")
                    .at(name.span, "inside a block or repeat")
                    .help("a block takes its input from the statement before it"),
            );
            return None;
        }
        if shape.dims.contains(&0) {
            self.errors.push(
                Diagnostic::error(format!("input `{}` has a zero dimension", name.name))
                    .at(shape.span, "size zero"),
            );
            return None;
        }
        let full = scope.full(&name.name);
        let idx = self.add_node(Node {
            name: full.clone(),
            op: Op::Input {
                shape: shape.dims.clone(),
            },
            span: name.span,
            weight_init: None,
            bias_init: None,
            expect: None,
            shape: vec![],
            stats: Stats::default(),
            params: vec![],
        })?;
        self.inputs.push(idx);
        self.define(full, Src::Node(idx), name.span);
        Some(Src::Node(idx))
    }

    fn chain(
        &mut self,
        name: Option<&Ident>,
        calls: &[Call],
        annot: Option<&ShapeLit>,
        scope: &Scope,
        prev: Option<Src>,
    ) -> Option<Src> {
        let full = name.map(|n| scope.full(&n.name));
        let is_ref = |c: &Call| {
            !c.parens
                && c.args.is_empty()
                && !is_op(&c.name.name)
                && !self.blocks.contains_key(&c.name.name)
        };
        let main = calls
            .iter()
            .position(|c| registry::is_main_call(&c.name.name))
            .or_else(|| calls.iter().position(|c| is_op(&c.name.name)));
        let mut cur = prev;
        let mut poisoned = false;
        let mut seen_ops: HashMap<&str, u32> = HashMap::new();
        for (i, call) in calls.iter().enumerate() {
            let cname = call.name.name.as_str();
            if i == 0 && is_ref(call) {
                cur = Some(Src::Ref {
                    cands: scope.cands(cname),
                    ident: call.name.clone(),
                });
                continue;
            }
            if let Some(block) = self.blocks.get(cname).copied() {
                cur = self.block_call(block, call, full.as_deref(), scope, cur);
                if cur.is_none() {
                    poisoned = true;
                }
                continue;
            }
            if !is_op(cname) {
                let mut d = Diagnostic::error(format!("unknown op `{cname}`"))
                    .at(call.name.span, "not an op or block");
                let known: Vec<&str> = registry::names()
                    .chain(self.blocks.keys().map(|s| s.as_str()))
                    .collect();
                d = match did_you_mean(cname, known) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!(
                        "the ops are: {}",
                        registry::names().collect::<Vec<_>>().join(", ")
                    )),
                };
                self.errors.push(d);
                poisoned = true;
                continue;
            }
            let op_name = canonical_op(cname);
            let mut refs = vec![];
            let mut settings = vec![];
            for a in &call.args {
                let v = self.subst(&a.value, scope);
                match (&a.key, &v.kind) {
                    (None, ValueKind::Call(c))
                        if takes_named_inputs(op_name) && !c.parens && c.args.is_empty() =>
                    {
                        refs.push(Src::Ref {
                            cands: scope.cands(&c.name.name),
                            ident: c.name.clone(),
                        })
                    }
                    _ => settings.push(Arg {
                        key: a.key.clone(),
                        value: v,
                    }),
                }
            }
            let Some(spec) = ops::parse_op(call, &settings, self.errors) else {
                poisoned = true;
                continue;
            };
            if matches!(cur, Some(Src::Poisoned)) || refs.iter().any(|r| matches!(r, Src::Poisoned))
            {
                // Fed by a statement that already failed: nothing new to report.
                poisoned = true;
            }
            let inputs: Vec<Src> = if takes_named_inputs(op_name) {
                let mut v = refs;
                if v.len() < 2 {
                    if let Some(c) = cur.clone() {
                        v.insert(0, c);
                    }
                }
                if v.len() < 2 && !poisoned {
                    self.errors.push(
                        Diagnostic::error(format!("`{op_name}` needs at least two inputs"))
                            .at(call.span, "one input or none")
                            .help(format!("name them: `{op_name}(a, b)`")),
                    );
                    poisoned = true;
                    continue;
                }
                v
            } else {
                match cur.clone() {
                    Some(c) => vec![c],
                    None => {
                        if !poisoned {
                            self.errors.push(
                                Diagnostic::error(format!("`{op_name}` has no input"))
                                    .at(call.span, "nothing comes before this")
                                    .help("declare an `input` first, or name the input: `x -> op(...)`"),
                            );
                        }
                        poisoned = true;
                        continue;
                    }
                }
            };
            if poisoned {
                continue;
            }
            let k = seen_ops.entry(op_name).or_insert(0);
            *k += 1;
            let node_name = match &full {
                Some(f) if Some(i) == main => f.clone(),
                Some(f) if *k == 1 => format!("{f}.{op_name}"),
                Some(f) => format!("{f}.{op_name}{k}"),
                // Auto names (Keras style, `relu_1`) are unique without the repeat suffix.
                None => self.fresh_name(&format!("{}{}", scope.prefix, op_name)),
            };
            let auto = full.is_none().then(|| node_name.clone());
            let idx = self.add_node(Node {
                name: node_name,
                op: spec.op,
                span: call.span,
                weight_init: spec.weight_init,
                bias_init: spec.bias_init,
                expect: None,
                shape: vec![],
                stats: Stats::default(),
                params: vec![],
            })?;
            for (slot, src) in inputs.into_iter().enumerate() {
                match src {
                    Src::Node(n) => {
                        self.graph.add_edge(n, idx, slot);
                    }
                    r => self.pending.push((idx, slot, r)),
                }
            }
            if let Some(a) = auto {
                // Auto-named layers can be referred to by the name `check` shows.
                self.names.insert(a, (Src::Node(idx), call.span));
            }
            cur = Some(Src::Node(idx));
        }
        if poisoned {
            // Still define the name so later statements do not report it as undefined.
            if let (Some(f), Some(n)) = (full, name) {
                self.names.entry(f).or_insert((Src::Poisoned, n.span));
            }
            return Some(Src::Poisoned);
        }
        if let Some(a) = annot {
            match &cur {
                Some(Src::Node(n)) => self.graph[*n].expect = Some(a.clone()),
                _ => self.errors.push(
                    Diagnostic::error("a shape annotation needs a layer to check")
                        .at(a.span, "nothing computed here"),
                ),
            }
        }
        if let (Some(f), Some(n), Some(c)) = (full, name, cur.clone()) {
            self.define(f, c, n.span);
        }
        cur
    }

    fn block_call(
        &mut self,
        block: &BlockDef,
        call: &Call,
        stmt: Option<&str>,
        scope: &Scope,
        cur: Option<Src>,
    ) -> Option<Src> {
        if scope.depth >= MAX_BLOCK_DEPTH {
            self.errors.push(
                Diagnostic::error(format!(
                    "block `{}` expands too deeply (recursive?)",
                    block.name.name
                ))
                .at(call.span, "expanded here")
                .help(format!(
                    "blocks may nest at most {MAX_BLOCK_DEPTH} deep and must not call themselves"
                )),
            );
            return None;
        }
        let mut bound: HashMap<String, Value> = HashMap::new();
        let mut pos = 0;
        let mut ok = true;
        for a in &call.args {
            let v = self.subst(&a.value, scope);
            let pname = match &a.key {
                Some(k) => {
                    if !block.params.iter().any(|p| p.name.name == k.name) {
                        let mut d = Diagnostic::error(format!(
                            "block `{}` has no parameter `{}`",
                            block.name.name, k.name
                        ))
                        .at(k.span, "unknown parameter");
                        if let Some(s) =
                            did_you_mean(&k.name, block.params.iter().map(|p| p.name.name.as_str()))
                        {
                            d = d.help(format!("did you mean `{s}`?"));
                        }
                        self.errors.push(d);
                        ok = false;
                        continue;
                    }
                    k.name.clone()
                }
                None => match block.params.get(pos) {
                    Some(p) => {
                        pos += 1;
                        p.name.name.clone()
                    }
                    None => {
                        self.errors.push(
                            Diagnostic::error(format!(
                                "block `{}` takes {} parameter(s)",
                                block.name.name,
                                block.params.len()
                            ))
                            .at(a.value.span, "extra argument")
                            .also(block.name.span, "block defined here"),
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            bound.insert(pname, v);
        }
        for p in &block.params {
            if !bound.contains_key(&p.name.name) {
                match &p.default {
                    Some(d) => {
                        bound.insert(p.name.name.clone(), d.clone());
                    }
                    None => {
                        self.errors.push(
                            Diagnostic::error(format!(
                                "block `{}` is missing parameter `{}`",
                                block.name.name, p.name.name
                            ))
                            .at(call.span, "missing argument")
                            .also(p.name.span, "parameter declared here"),
                        );
                        ok = false;
                    }
                }
            }
        }
        if !ok {
            return None;
        }
        let prefix = match stmt {
            Some(s) => format!("{s}/"),
            None => format!(
                "{}/",
                self.fresh_name(&format!("{}{}", scope.prefix, block.name.name)) + &scope.suffix
            ),
        };
        let inner = Scope {
            prefix: prefix.clone(),
            suffix: String::new(),
            lookup: vec![(prefix, String::new())],
            params: bound,
            top: false,
            depth: scope.depth + 1,
        };
        if cur.is_none() {
            self.errors.push(
                Diagnostic::error(format!("block `{}` has no input", block.name.name))
                    .at(call.span, "nothing comes before this")
                    .help("declare an `input` first"),
            );
            return None;
        }
        self.expand(&block.body, &inner, cur)
    }
}

/// Topological sort (reporting cycles), then per-node shape inference and figures.
pub fn infer_shapes(net: &mut Network, errors: &mut Vec<Diagnostic>, broken: HashSet<NodeIndex>) {
    let order = match petgraph::algo::toposort(&net.graph, None) {
        Ok(o) => o,
        Err(_) => {
            for scc in petgraph::algo::tarjan_scc(&net.graph) {
                let cyclic = scc.len() > 1 || net.graph.contains_edge(scc[0], scc[0]);
                if !cyclic {
                    continue;
                }
                let mut members: Vec<NodeIndex> = scc.clone();
                members.sort();
                let names: Vec<String> = members
                    .iter()
                    .map(|&n| format!("`{}`", net.graph[n].name))
                    .collect();
                let first = members[0];
                let mut d = Diagnostic::error(format!(
                    "the network has a cycle: {} -> {}",
                    names.join(" -> "),
                    names[0]
                ))
                .at(net.graph[first].span, "this layer depends on itself");
                for &m in &members[1..] {
                    d = d.also(
                        net.graph[m].span,
                        format!("`{}` is part of the cycle", net.graph[m].name),
                    );
                }
                errors.push(
                    d.help("a network must be acyclic; check which names the statements refer to"),
                );
            }
            return;
        }
    };
    let mut failed: HashSet<NodeIndex> = broken;
    let mut total = [0u64; 5];
    for &n in &order {
        let ins = net.inputs_of(n);
        if failed.contains(&n) || ins.iter().any(|i| failed.contains(i)) {
            failed.insert(n);
            continue;
        }
        let in_shapes: Vec<Vec<u64>> = ins.iter().map(|&i| net.graph[i].shape.clone()).collect();
        let node = &net.graph[n];
        match ops::infer(
            &node.name,
            &node.op,
            &in_shapes,
            &node.weight_init,
            &node.bias_init,
        ) {
            Ok((shape, stats, params)) => {
                if let Some(exp) = &node.expect {
                    if exp.dims != shape {
                        errors.push(
                            Diagnostic::error(format!(
                                "`{}` is {}, but its annotation says {}",
                                node.name,
                                shape_str(&shape),
                                shape_str(&exp.dims)
                            ))
                            .at(exp.span, format!("expected {}", shape_str(&exp.dims)))
                            .also(node.span, format!("computes {}", shape_str(&shape))),
                        );
                    }
                }
                let sums = [
                    total[0].checked_add(stats.params),
                    total[1].checked_add(stats.connections),
                    total[2].checked_add(stats.neurons),
                    total[3].checked_add(stats.macs),
                    total[4].checked_add(stats.activation_bytes),
                ];
                match sums {
                    [Some(a), Some(b), Some(c), Some(d), Some(e)] => total = [a, b, c, d, e],
                    _ => errors.push(
                        Diagnostic::error("the network's totals (parameters, connections, neurons, MACs or activation bytes) overflow 64 bits")
                            .at(node.span, "here"),
                    ),
                }
                let node = &mut net.graph[n];
                node.shape = shape;
                node.stats = stats;
                node.params = params;
            }
            Err(e) => {
                failed.insert(n);
                let mut d = Diagnostic::error(format!(
                    "shape error in `{}` ({}): {}",
                    node.name,
                    node.op.name(),
                    e.message
                ))
                .at(node.span, "this layer");
                for &i in &ins {
                    let src = &net.graph[i];
                    d = d.also(
                        src.span,
                        format!("`{}` gives {}", src.name, shape_str(&src.shape)),
                    );
                }
                if let Some(h) = e.help {
                    d = d.help(h);
                }
                errors.push(d);
            }
        }
    }
    net.order = order;
}
