//! The YAML front end: serde into typed documents (unknown keys are errors), lowered to the same
//! AST as the DSL. YAML carries no spans through serde, so layers are located in the text by their
//! names and keys, in document order, for diagnostics.

use crate::ast::*;
use crate::diag::{did_you_mean, Diagnostic};
use crate::parse_dsl;
use serde::Deserialize;
use serde_yaml::Value as Y;

mod keys;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YDoc {
    #[serde(default)]
    networks: Vec<YNet>,
    #[serde(default)]
    blocks: Vec<YBlock>,
    #[serde(default)]
    train: Option<Y>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YNet {
    name: String,
    /// name -> shape, e.g. `{z: 100}` or `{image: 3x227x227}`
    inputs: serde_yaml::Mapping,
    layers: Vec<Y>,
    /// alias -> layer name
    #[serde(default)]
    outputs: Option<serde_yaml::Mapping>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YBlock {
    name: String,
    /// name -> default (null for none)
    #[serde(default)]
    params: serde_yaml::Mapping,
    layers: Vec<Y>,
}

const LAYER_KEYS: &[&str] = &[
    "name", "op", "from", "inputs", "shape", "repeat", "layers", "chain",
];

struct Ctx<'a> {
    src: &'a str,
    cursor: usize,
    errors: Vec<Diagnostic>,
}

impl Ctx<'_> {
    /// Span of the next occurrence of `needle` at or after the cursor (moving the cursor there).
    fn locate(&mut self, needle: &str) -> Span {
        match self.src[self.cursor..].find(needle) {
            Some(off) => {
                let start = self.cursor + off;
                self.cursor = start;
                Span::new(start, start + needle.len())
            }
            None => Span::new(self.cursor, self.cursor),
        }
    }
    /// Like locate, but leaves the cursor where it was.
    fn peek(&self, needle: &str) -> Span {
        match self.src[self.cursor..].find(needle) {
            Some(off) => Span::new(self.cursor + off, self.cursor + off + needle.len()),
            None => Span::new(self.cursor, self.cursor),
        }
    }
}

pub fn parse(source: &str) -> Result<Document, Vec<Diagnostic>> {
    match parse_keeping(source)? {
        (doc, errors) if errors.is_empty() => Ok(doc),
        (_, errors) => Err(errors),
    }
}

/// The document, and the errors that leave the rest of it sound to check (unknown keys, which
/// are dropped): the caller lowers the document too, so one unknown key no longer hides every
/// other error of the file.
pub fn parse_keeping(source: &str) -> Result<(Document, Vec<Diagnostic>), Vec<Diagnostic>> {
    let (ydoc, mut key_errors) = keys::document(source)?;
    let mut cx = Ctx {
        src: source,
        cursor: 0,
        errors: vec![],
    };
    let mut doc = Document::default();
    for b in &ydoc.blocks {
        let name_span = cx.locate(&b.name);
        let mut params = vec![];
        for (k, v) in &b.params {
            let Some(k) = k.as_str() else { continue };
            let sp = cx.peek(k);
            params.push(Param {
                name: Ident {
                    name: k.to_string(),
                    span: sp,
                },
                default: (!v.is_null()).then(|| yaml_value(v, sp)),
            });
        }
        let body = layers(&mut cx, &b.layers);
        doc.blocks.push(BlockDef {
            name: Ident {
                name: b.name.clone(),
                span: name_span,
            },
            params,
            body,
            span: name_span,
        });
    }
    for n in &ydoc.networks {
        let name_span = cx.locate(&n.name);
        let mut body = vec![];
        for (k, v) in &n.inputs {
            let Some(k) = k.as_str() else {
                cx.errors.push(
                    Diagnostic::error("input names must be strings")
                        .at(name_span, "in this network"),
                );
                continue;
            };
            let sp = cx.locate(k);
            let dims = match yaml_value(v, sp).kind {
                ValueKind::Shape(d) => Some(d),
                ValueKind::Int(i) if i > 0 => Some(vec![i as u64]),
                ValueKind::List(l) => l
                    .iter()
                    .map(|x| x.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .collect(),
                _ => None,
            };
            match dims {
                Some(dims) => body.push(Stmt::Input {
                    name: Ident {
                        name: k.to_string(),
                        span: sp,
                    },
                    shape: ShapeLit { dims, span: sp },
                }),
                None => cx.errors.push(
                    Diagnostic::error(format!("input `{k}` needs a shape like 784 or 3x32x32"))
                        .at(sp, "bad shape"),
                ),
            }
        }
        body.extend(layers(&mut cx, &n.layers));
        if let Some(outs) = &n.outputs {
            for (k, v) in outs {
                if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                    let ks = cx.locate(k);
                    let vs = cx.peek(v);
                    body.push(Stmt::Output {
                        alias: Ident {
                            name: k.into(),
                            span: ks,
                        },
                        target: Some(Ident {
                            name: v.into(),
                            span: vs,
                        }),
                    });
                }
            }
        }
        doc.nets.push(NetDef {
            name: Ident {
                name: n.name.clone(),
                span: name_span,
            },
            body,
            span: name_span,
        });
    }
    if let Some(t) = &ydoc.train {
        let sp = cx.peek("train");
        let mut v = yaml_value(t, sp);
        // Each setting's errors point at its own key (`k: 0`), not at `train:`.
        if let ValueKind::Map(entries) = &mut v.kind {
            for (key, value) in entries.iter_mut() {
                if let Some(ks) = key_span(source, sp.end, &key.name) {
                    key.span = ks;
                    *value = respan_value(value.clone(), ks);
                }
            }
        }
        doc.train = Some(v);
    }
    if cx.errors.is_empty() {
        Ok((doc, key_errors))
    } else {
        key_errors.append(&mut cx.errors);
        Err(key_errors)
    }
}

fn layers(cx: &mut Ctx, items: &[Y]) -> Vec<Stmt> {
    items.iter().filter_map(|l| layer(cx, l)).collect()
}

fn layer(cx: &mut Ctx, l: &Y) -> Option<Stmt> {
    match l {
        Y::String(s) => string_layer(cx, s),
        Y::Mapping(m) => map_layer(cx, m),
        _ => {
            let sp = cx.peek("-");
            cx.errors.push(
                Diagnostic::error("a layer is a name (\"relu\"), a DSL chain or a map with `op:`")
                    .at(sp, "this layer"),
            );
            None
        }
    }
}

/// A DSL chain in a string, e.g. "relu" or "conv(96, k=11, s=4) -> relu".
fn string_layer(cx: &mut Ctx, s: &str) -> Option<Stmt> {
    // A quoted layer may hold escapes (`"dense(10\""`): look for it as written too.
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
    let sp = if cx.src[cx.cursor..].contains(s) || escaped == s {
        cx.locate(s)
    } else {
        cx.locate(&escaped)
    };
    match parse_dsl::parse_chain(s) {
        Ok(calls) => Some(Stmt::Chain {
            name: None,
            calls: calls.into_iter().map(|c| respan_call(c, sp)).collect(),
            annot: None,
            span: sp,
        }),
        Err(mut d) => {
            // Point into the layer where its text stands as written, else at the whole layer.
            let verbatim = cx.src.get(sp.start..sp.end) == Some(s);
            d.primary = Some(match d.primary.take() {
                Some(l) if verbatim && l.span.end <= s.len() + 1 => crate::diag::Label {
                    span: Span::new(sp.start + l.span.start, (sp.start + l.span.end).min(sp.end)),
                    message: l.message,
                },
                _ => crate::diag::Label {
                    span: sp,
                    message: "in this layer".into(),
                },
            });
            cx.errors.push(d);
            None
        }
    }
}

/// A layer map: `repeat:` with `layers:`, or a chain of `from:`, `chain:` and `op:` (whose
/// other keys are its arguments), optionally named and annotated with `shape:`.
fn map_layer(cx: &mut Ctx, m: &serde_yaml::Mapping) -> Option<Stmt> {
    let get = |k: &str| m.get(k);
    let anchor = get("name")
        .or(get("op"))
        .or(get("repeat"))
        .and_then(scalar_text)
        .unwrap_or_default();
    let sp = if anchor.is_empty() {
        cx.peek("-")
    } else {
        cx.locate(&anchor)
    };
    let layer_start = cx.cursor;
    if let Some(count) = get("repeat") {
        return repeat_layer(cx, count, get("layers"), sp);
    }
    let name = get("name").and_then(|v| v.as_str()).map(|n| Ident {
        name: n.to_string(),
        span: sp,
    });
    let mut calls = vec![];
    if let Some(from) = get("from").and_then(|v| v.as_str()) {
        calls.push(bare_name(from, cx.peek(from)));
    }
    if let Some(chain) = get("chain").and_then(|v| v.as_str()) {
        match parse_dsl::parse_chain(chain) {
            Ok(cs) => calls.extend(cs.into_iter().map(|c| respan_call(c, sp))),
            Err(mut d) => {
                d.primary = Some(crate::diag::Label {
                    span: sp,
                    message: "in this chain".into(),
                });
                cx.errors.push(d);
                return None;
            }
        }
    }
    if let Some(op) = get("op") {
        calls.push(op_call(cx, m, op, sp)?);
    } else {
        unknown_layer_keys(cx, m);
    }
    if calls.is_empty() {
        cx.errors.push(
            Diagnostic::error("a layer needs `op:` (or `chain:`, or `from:`)")
                .at(sp, "this layer")
                .help("e.g. `- {op: dense, units: 128}`"),
        );
        return None;
    }
    let annot = get("shape").map(|v| {
        let asp = cx.peek("shape:");
        match yaml_value(v, asp).kind {
            ValueKind::Shape(d) => ShapeLit { dims: d, span: asp },
            ValueKind::Int(i) => ShapeLit {
                dims: vec![i.max(0) as u64],
                span: asp,
            },
            _ => ShapeLit {
                dims: vec![],
                span: asp,
            },
        }
    });
    cx.cursor = layer_start;
    Some(Stmt::Chain {
        name,
        calls,
        annot,
        span: sp,
    })
}

/// `repeat: n` over a `layers:` list.
fn repeat_layer(cx: &mut Ctx, count: &Y, body: Option<&Y>, sp: Span) -> Option<Stmt> {
    let n = count.as_u64();
    let Some(n) = n else {
        cx.errors
            .push(Diagnostic::error("`repeat` needs a positive integer").at(sp, "here"));
        return None;
    };
    let body = match body {
        Some(Y::Sequence(items)) => layers(cx, items),
        _ => {
            cx.errors
                .push(Diagnostic::error("`repeat` needs a `layers:` list").at(sp, "here"));
            vec![]
        }
    };
    Some(Stmt::Repeat {
        count: Value {
            kind: ValueKind::Int(n as i64),
            span: sp,
        },
        body,
    })
}

/// A layer or input named without arguments (`from: x`, `inputs: [a, b]`).
fn bare_name(name: &str, sp: Span) -> Call {
    Call {
        name: Ident {
            name: name.into(),
            span: sp,
        },
        args: vec![],
        parens: false,
        span: sp,
    }
}

/// The call of an `op:` layer: its `inputs:` as positional names, then every key that is not
/// a layer key as an argument.
fn op_call(cx: &mut Ctx, m: &serde_yaml::Mapping, op: &Y, sp: Span) -> Option<Call> {
    let Some(op) = op.as_str() else {
        cx.errors
            .push(Diagnostic::error("`op` must be a name").at(sp, "here"));
        return None;
    };
    let op_span = cx.peek(op);
    let mut args = vec![];
    if let Some(Y::Sequence(ins)) = m.get("inputs") {
        for i in ins {
            if let Some(i) = i.as_str() {
                let isp = cx.peek(i);
                args.push(Arg {
                    key: None,
                    value: Value {
                        kind: ValueKind::Call(bare_name(i, isp)),
                        span: isp,
                    },
                });
            }
        }
    }
    for (k, v) in m {
        let Some(k) = k.as_str() else { continue };
        if LAYER_KEYS.contains(&k) {
            continue;
        }
        let ksp = cx.peek(&format!("{k}:"));
        let ksp = Span::new(ksp.start, ksp.start + k.len());
        args.push(Arg {
            key: Some(Ident {
                name: k.into(),
                span: ksp,
            }),
            value: yaml_value(v, ksp),
        });
    }
    Some(Call {
        name: Ident {
            name: op.into(),
            span: op_span,
        },
        args,
        parens: true,
        span: op_span,
    })
}

/// Reports the keys of a layer without `op:` that are not layer keys.
fn unknown_layer_keys(cx: &mut Ctx, m: &serde_yaml::Mapping) {
    for (k, _) in m {
        if let Some(k) = k.as_str() {
            if !LAYER_KEYS.contains(&k) {
                let ksp = cx.peek(&format!("{k}:"));
                let mut d = Diagnostic::error(format!("unknown layer key `{k}`"))
                    .at(Span::new(ksp.start, ksp.start + k.len()), "unknown key");
                d = match did_you_mean(k, LAYER_KEYS.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help("a layer without `op:` may only have name, from, chain, shape"),
                };
                cx.errors.push(d);
            }
        }
    }
}

fn scalar_text(v: &Y) -> Option<String> {
    match v {
        Y::String(s) => Some(s.clone()),
        Y::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The span of the first `key:` at or after `from` that is a whole key (not the end of a
/// longer one: `k:` inside `task:`).
fn key_span(src: &str, from: usize, key: &str) -> Option<Span> {
    let needle = format!("{key}:");
    let mut at = from.min(src.len());
    while let Some(off) = src[at..].find(&needle) {
        let start = at + off;
        let whole = src[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if whole {
            return Some(Span::new(start, start + key.len()));
        }
        at = start + needle.len();
    }
    None
}

fn respan_value(v: Value, sp: Span) -> Value {
    let kind = match v.kind {
        ValueKind::Call(c) => ValueKind::Call(respan_call(c, sp)),
        ValueKind::List(l) => ValueKind::List(l.into_iter().map(|x| respan_value(x, sp)).collect()),
        ValueKind::Map(m) => ValueKind::Map(
            m.into_iter()
                .map(|(k, x)| {
                    (
                        Ident {
                            name: k.name,
                            span: sp,
                        },
                        respan_value(x, sp),
                    )
                })
                .collect(),
        ),
        k => k,
    };
    Value { kind, span: sp }
}

fn respan_call(c: Call, sp: Span) -> Call {
    Call {
        name: Ident {
            name: c.name.name,
            span: sp,
        },
        args: c
            .args
            .into_iter()
            .map(|a| Arg {
                key: a.key.map(|k| Ident {
                    name: k.name,
                    span: sp,
                }),
                value: respan_value(a.value, sp),
            })
            .collect(),
        parens: c.parens,
        span: sp,
    }
}

/// A YAML value as an AST value; strings go through the DSL's value syntax.
pub fn yaml_value(v: &Y, sp: Span) -> Value {
    let kind = match v {
        Y::Null => ValueKind::Str(String::new()),
        Y::Bool(b) => ValueKind::Bool(*b),
        Y::Number(n) => match n.as_i64() {
            Some(i) => ValueKind::Int(i),
            None => ValueKind::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Y::String(s) => match parse_dsl::parse_value(s) {
            Some(v) => return respan_value(v, sp),
            None => ValueKind::Str(s.clone()),
        },
        Y::Sequence(items) => ValueKind::List(items.iter().map(|x| yaml_value(x, sp)).collect()),
        Y::Mapping(m) => ValueKind::Map(
            m.iter()
                .filter_map(|(k, x)| {
                    let k = scalar_text(k)?;
                    Some((Ident { name: k, span: sp }, yaml_value(x, sp)))
                })
                .collect(),
        ),
        Y::Tagged(t) => return yaml_value(&t.value, sp),
    };
    Value { kind, span: sp }
}
