//! The syntax tree shared by both front ends (the `.net` DSL and YAML).
//! Every node keeps the byte span it came from so later passes can point at it.

use std::fmt;

/// A byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// A whole model file: networks, reusable blocks and an optional training section.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub nets: Vec<NetDef>,
    pub blocks: Vec<BlockDef>,
    pub train: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct NetDef {
    pub name: Ident,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: Ident,
    pub default: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct BlockDef {
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum Stmt {
    /// `input image: 3x227x227`
    Input { name: Ident, shape: ShapeLit },
    /// `output logits = fc8` or `output fc8`
    Output { alias: Ident, target: Option<Ident> },
    /// `repeat 3 { ... }`; the count may be a block parameter (`repeat n { ... }`).
    Repeat { count: Value, body: Vec<Stmt> },
    /// `name = a -> b -> c : shape` (name optional)
    Chain {
        name: Option<Ident>,
        calls: Vec<Call>,
        annot: Option<ShapeLit>,
        span: Span,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShapeLit {
    pub dims: Vec<u64>,
    pub span: Span,
}

/// `name(arg, key=value, ...)`; `parens` tells `relu` from `relu()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: Ident,
    pub args: Vec<Arg>,
    pub parens: bool,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Arg {
    pub key: Option<Ident>,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Shape(Vec<u64>),
    /// A bare identifier is a call without parentheses.
    Call(Call),
    List(Vec<Value>),
    Map(Vec<(Ident, Value)>),
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self.kind {
            ValueKind::Int(i) => Some(i as f64),
            ValueKind::Float(f) => Some(f),
            _ => None,
        }
    }
    pub fn as_ident(&self) -> Option<&str> {
        match &self.kind {
            ValueKind::Call(c) if c.args.is_empty() && !c.parens => Some(&c.name.name),
            ValueKind::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            ValueKind::Int(_) => "an integer",
            ValueKind::Float(_) => "a number",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::Str(_) => "a string",
            ValueKind::Shape(_) => "a shape",
            ValueKind::Call(ref c) if !c.parens => "a name",
            ValueKind::Call(_) => "a call",
            ValueKind::List(_) => "a list",
            ValueKind::Map(_) => "a map",
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ValueKind::Int(i) => write!(f, "{i}"),
            ValueKind::Float(x) => write!(f, "{x}"),
            ValueKind::Bool(b) => write!(f, "{b}"),
            ValueKind::Str(s) => write!(f, "{s:?}"),
            ValueKind::Shape(d) => write!(f, "{}", shape_str(d)),
            ValueKind::Call(c) => write!(f, "{c}"),
            ValueKind::List(v) => {
                write!(f, "[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{x}")?;
                }
                write!(f, "]")
            }
            ValueKind::Map(m) => {
                write!(f, "{{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{} = {v}", k.name)?;
                }
                write!(f, "}}")
            }
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name.name)?;
        if self.parens || !self.args.is_empty() {
            write!(f, "(")?;
            for (i, a) in self.args.iter().enumerate() {
                if i > 0 {
                    write!(f, ", ")?;
                }
                if let Some(k) = &a.key {
                    write!(f, "{}=", k.name)?;
                }
                write!(f, "{}", a.value)?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// `3x227x227`
pub fn shape_str(dims: &[u64]) -> String {
    if dims.is_empty() {
        return "scalar".into();
    }
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}
