//! Statement expansion: block-parameter substitution, the expansion budget, `repeat` and
//! `input` statements; chains go to `chain`.

use super::{Builder, Scope, Src, MAX_NODES};
use crate::ast::*;
use crate::diag::Diagnostic;
use crate::ir::{Node, Stats};
use crate::ops::Op;

/// A constant expression of block parameters, folded (`mul(3, dim)`, `div(dim, heads)`,
/// `rsqrt(div(dim, heads))`, `log(10000)`): arithmetic on numbers only, integers kept where exact.
fn fold(c: &Call) -> Option<ValueKind> {
    let nums: Vec<&Value> = c
        .args
        .iter()
        .filter(|a| a.key.is_none())
        .map(|a| &a.value)
        .collect();
    if nums.len() != c.args.len() || nums.iter().any(|v| v.as_f64().is_none()) {
        return None;
    }
    let ints: Option<Vec<i64>> = nums
        .iter()
        .map(|v| match v.kind {
            ValueKind::Int(i) => Some(i),
            _ => None,
        })
        .collect();
    let f: Vec<f64> = nums.iter().filter_map(|v| v.as_f64()).collect();
    let int = |x: Option<i64>| x.map(ValueKind::Int);
    Some(
        match (c.name.name.as_str(), f.as_slice(), ints.as_deref()) {
            ("mul", _, Some([a, b])) => int(a.checked_mul(*b))?,
            ("add", _, Some([a, b])) => int(a.checked_add(*b))?,
            ("sub", _, Some([a, b])) => int(a.checked_sub(*b))?,
            ("div", _, Some([a, b])) if *b != 0 && a % b == 0 => ValueKind::Int(a / b),
            ("mul", [a, b], _) => ValueKind::Float(a * b),
            ("add", [a, b], _) => ValueKind::Float(a + b),
            ("sub", [a, b], _) => ValueKind::Float(a - b),
            ("div", [a, b], _) if *b != 0.0 => ValueKind::Float(a / b),
            ("sqrt", [a], _) if *a >= 0.0 => ValueKind::Float(a.sqrt()),
            ("rsqrt", [a], _) if *a > 0.0 => ValueKind::Float(1.0 / a.sqrt()),
            ("log", [a], _) if *a > 0.0 => ValueKind::Float(a.ln()),
            ("exp", [a], _) => ValueKind::Float(a.exp()),
            _ => return None,
        },
    )
}

impl Builder<'_> {
    pub(super) fn subst(&self, v: &Value, scope: &Scope) -> Value {
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
            ValueKind::Call(c) => {
                let call = Call {
                    args: c
                        .args
                        .iter()
                        .map(|a| Arg {
                            key: a.key.clone(),
                            value: self.subst(&a.value, scope),
                        })
                        .collect(),
                    ..c.clone()
                };
                Value {
                    kind: fold(&call).unwrap_or(ValueKind::Call(call)),
                    span: v.span,
                }
            }
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

    pub(super) fn expand(
        &mut self,
        stmts: &[Stmt],
        scope: &Scope,
        mut prev: Option<Src>,
    ) -> Option<Src> {
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
            batched: true,
            stats: Stats::default(),
            params: vec![],
        })?;
        self.inputs.push(idx);
        self.define(full, Src::Node(idx), name.span);
        Some(Src::Node(idx))
    }
}
