//! The `.net` front end: pest grammar (grammar/netc.pest) to the AST.

use crate::ast::*;
use crate::diag::Diagnostic;
use pest::iterators::Pair;
use pest::Parser;

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/netc.pest"]
struct DslParser;

type P<'a> = Pair<'a, Rule>;

/// Parses DSL text. A syntax error stops parsing (one diagnostic); semantic checks come later.
pub fn parse(source: &str) -> Result<Document, Vec<Diagnostic>> {
    crate::limits::check_nesting(source, 0).map_err(|e| vec![e])?;
    // Track literal tokens too, so a missing `:` is reported where it is missing.
    pest::set_error_detail(true);
    let pairs = DslParser::parse(Rule::file, source).map_err(|e| vec![syntax_error(e)])?;
    let mut doc = Document::default();
    let mut errors = vec![];
    for item in pairs.flatten().take(1).flat_map(|file| file.into_inner()) {
        match item.as_rule() {
            Rule::net_def => doc.nets.push(net_def(item, &mut errors)),
            Rule::block_def => doc.blocks.push(block_def(item, &mut errors)),
            Rule::train_def => {
                let map = item.into_inner().nth(1).map(|m| value(m, &mut errors));
                if let Some(m) = map {
                    if doc.train.is_some() {
                        errors.push(
                            Diagnostic::error("duplicate training section")
                                .at(m.span, "a second `train` section")
                                .help("merge the two `train { ... }` sections into one"),
                        );
                    }
                    doc.train = m.into();
                }
            }
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(doc)
    } else {
        Err(errors)
    }
}

/// The pair's span without trailing whitespace or comments, which pest's implicit whitespace
/// folds into a rule whose last element is optional.
fn span(p: &P) -> Span {
    let start = p.as_span().start();
    let end = p
        .clone()
        .into_inner()
        .map(|i| span(&i).end)
        .max()
        .unwrap_or(p.as_span().end());
    let end = if p.clone().into_inner().next().is_some()
        && !p.as_str().trim_end().ends_with([')', '}', ']'])
    {
        end
    } else {
        start + p.as_str().trim_end().len()
    };
    Span::new(start, end)
}

fn ident(p: P) -> Ident {
    Ident {
        name: p.as_str().to_string(),
        span: span(&p),
    }
}

fn net_def(p: P, errors: &mut Vec<Diagnostic>) -> NetDef {
    let sp = span(&p);
    let mut it = p.into_inner();
    it.next(); // keyword
    let name = ident(it.next().expect("grammar: net name"));
    let body = it.map(|s| stmt(s, errors)).collect();
    NetDef {
        name,
        body,
        span: sp,
    }
}

fn block_def(p: P, errors: &mut Vec<Diagnostic>) -> BlockDef {
    let sp = span(&p);
    let mut it = p.into_inner().peekable();
    it.next();
    let name = ident(it.next().expect("grammar: block name"));
    let mut params = vec![];
    if it.peek().is_some_and(|p| p.as_rule() == Rule::params) {
        for prm in it.next().expect("peeked").into_inner() {
            let mut pi = prm.into_inner();
            let name = ident(pi.next().expect("grammar: param name"));
            let default = pi.next().map(|v| value(v, errors));
            params.push(Param { name, default });
        }
    }
    let body = it.map(|s| stmt(s, errors)).collect();
    BlockDef {
        name,
        params,
        body,
        span: sp,
    }
}

fn shape_lit(p: P) -> Result<ShapeLit, Diagnostic> {
    let sp = span(&p);
    let mut dims = vec![];
    for d in p.as_str().split('x') {
        dims.push(d.parse::<u64>().map_err(|_| {
            Diagnostic::error(format!("dimension `{d}` is too large"))
                .at(sp, "in this shape")
                .help("dimensions must fit in 64 bits")
        })?);
    }
    Ok(ShapeLit { dims, span: sp })
}

fn stmt(p: P, errors: &mut Vec<Diagnostic>) -> Stmt {
    let sp = span(&p);
    match p.as_rule() {
        Rule::input_stmt => {
            let mut it = p.into_inner();
            it.next();
            let name = ident(it.next().expect("grammar: input name"));
            let shape = match shape_lit(it.next().expect("grammar: input shape")) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(e);
                    ShapeLit {
                        dims: vec![1],
                        span: sp,
                    }
                }
            };
            Stmt::Input { name, shape }
        }
        Rule::output_stmt => {
            let mut it = p.into_inner();
            it.next();
            let alias = ident(it.next().expect("grammar: output name"));
            let target = it.next().map(ident);
            Stmt::Output { alias, target }
        }
        Rule::repeat_stmt => {
            let mut it = p.into_inner();
            it.next();
            let c = it.next().expect("grammar: repeat count");
            let count_span = span(&c);
            let count = if c.as_rule() == Rule::int {
                let n = c.as_str().parse::<i64>().unwrap_or_else(|_| {
                    errors.push(
                        Diagnostic::error("repeat count is too large").at(count_span, "here"),
                    );
                    1
                });
                Value {
                    kind: ValueKind::Int(n),
                    span: count_span,
                }
            } else {
                let name = ident(c);
                Value {
                    kind: ValueKind::Call(Call {
                        name,
                        args: vec![],
                        parens: false,
                        span: count_span,
                    }),
                    span: count_span,
                }
            };
            let body = it.map(|s| stmt(s, errors)).collect();
            Stmt::Repeat { count, body }
        }
        Rule::assign_stmt | Rule::chain_stmt => {
            let named = p.as_rule() == Rule::assign_stmt;
            let mut it = p.into_inner();
            let name = if named {
                Some(ident(it.next().expect("grammar: statement name")))
            } else {
                None
            };
            let chain = it.next().expect("grammar: chain");
            let calls = chain.into_inner().map(|c| call(c, errors)).collect();
            let annot = it
                .next()
                .and_then(|a| a.into_inner().next())
                .and_then(|s| shape_lit(s).map_err(|e| errors.push(e)).ok());
            Stmt::Chain {
                name,
                calls,
                annot,
                span: sp,
            }
        }
        r => unreachable!("grammar: unexpected statement rule {r:?}"),
    }
}

fn call(p: P, errors: &mut Vec<Diagnostic>) -> Call {
    let sp = span(&p);
    let mut it = p.into_inner();
    let name = ident(it.next().expect("grammar: call name"));
    let mut args = vec![];
    let mut parens = false;
    if let Some(list) = it.next() {
        parens = true;
        for a in list.into_inner() {
            let mut ai = a.into_inner().collect::<Vec<_>>();
            let v = ai.pop().expect("grammar: argument value");
            let key = ai.pop().map(ident);
            args.push(Arg {
                key,
                value: value(v, errors),
            });
        }
    }
    Call {
        name,
        args,
        parens,
        span: sp,
    }
}

fn value(p: P, errors: &mut Vec<Diagnostic>) -> Value {
    let sp = span(&p);
    let kind = match p.as_rule() {
        Rule::number => {
            let s = p.as_str();
            if s.contains(['.', 'e', 'E']) {
                ValueKind::Float(s.parse().unwrap_or(f64::NAN))
            } else {
                match s.parse::<i64>() {
                    Ok(i) => ValueKind::Int(i),
                    Err(_) => {
                        errors.push(
                            Diagnostic::error(format!("integer `{s}` is too large")).at(sp, "here"),
                        );
                        ValueKind::Int(0)
                    }
                }
            }
        }
        Rule::boolean => ValueKind::Bool(p.as_str() == "true"),
        Rule::string => {
            let s = p.as_str();
            ValueKind::Str(s[1..s.len() - 1].to_string())
        }
        Rule::shape => match shape_lit(p) {
            Ok(s) => ValueKind::Shape(s.dims),
            Err(e) => {
                errors.push(e);
                ValueKind::Shape(vec![])
            }
        },
        Rule::call => ValueKind::Call(call(p, errors)),
        Rule::list => ValueKind::List(p.into_inner().map(|v| value(v, errors)).collect()),
        Rule::map => ValueKind::Map(
            p.into_inner()
                .map(|e| {
                    let mut it = e.into_inner();
                    let k = ident(it.next().expect("grammar: key"));
                    let v = value(it.next().expect("grammar: value"), errors);
                    (k, v)
                })
                .collect(),
        ),
        r => unreachable!("grammar: unexpected value rule {r:?}"),
    };
    Value { kind, span: sp }
}

fn rule_name(r: &Rule) -> &'static str {
    match r {
        Rule::EOI => "end of file",
        Rule::net_def | Rule::kw_net => "`net`",
        Rule::block_def | Rule::kw_block => "`block`",
        Rule::train_def | Rule::kw_train => "`train`",
        Rule::kw_input | Rule::input_stmt => "`input`",
        Rule::kw_output | Rule::output_stmt => "`output`",
        Rule::kw_repeat | Rule::repeat_stmt => "`repeat`",
        Rule::ident | Rule::call | Rule::chain | Rule::assign_stmt | Rule::chain_stmt => "a name",
        Rule::shape | Rule::dims => "a shape like 784 or 3x32x32",
        Rule::number => "a number",
        Rule::int => "an integer",
        Rule::boolean => "true or false",
        Rule::string => "a string",
        Rule::list => "a list",
        Rule::map => "`{`",
        Rule::arg | Rule::arglist => "an argument",
        Rule::annot => "`:`",
        Rule::param | Rule::params => "a parameter",
        Rule::entry => "a key",
        _ => "something else",
    }
}

fn syntax_error(e: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let (start, end) = match e.location {
        InputLocation::Pos(p) => (p, p + 1),
        InputLocation::Span((a, b)) => (a, b),
    };
    let expected = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&str> = positives.iter().map(rule_name).collect();
            names.dedup();
            let mut seen = std::collections::BTreeSet::new();
            names.retain(|n| seen.insert(*n));
            match names.len() {
                0 => "unexpected input".to_string(),
                1 => format!("expected {}", names[0]),
                _ => {
                    let last = names.pop().unwrap_or_default();
                    format!("expected {} or {}", names.join(", "), last)
                }
            }
        }
        ErrorVariant::CustomError { message } => message.clone(),
    };
    // Literal tokens (`:`, `)`, ...) tried further on than any rule locate the error better.
    if let Some(pa) = e.parse_attempts() {
        let tokens: Vec<String> = pa
            .expected_tokens()
            .iter()
            .map(|t| t.to_string())
            .filter(|t| {
                !t.trim().is_empty()
                    && t != "#"
                    && t != ";"
                    && t.chars().count() <= 3
                    && !t.contains("..")
            })
            .map(|t| format!("`{t}`"))
            .collect();
        if pa.max_position > start && !tokens.is_empty() {
            let at = pa.max_position;
            return Diagnostic::error(format!("syntax error: expected {}", tokens.join(" or ")))
                .at(Span::new(at, at + 1), "unexpected here")
                .help("statements look like `name = op(args) -> op -> ...`; see README.md for the grammar");
        }
    }
    Diagnostic::error(format!("syntax error: {expected}"))
        .at(Span::new(start, end), "unexpected here")
        .help("statements look like `name = op(args) -> op -> ...`; see README.md for the grammar")
}

/// Parses one DSL value (used by the YAML front end for scalars); spans are relative to `text`.
pub fn parse_value(text: &str) -> Option<Value> {
    crate::limits::check_nesting(text, 0).ok()?;
    let mut pairs = DslParser::parse(Rule::value_only, text).ok()?;
    let inner = pairs.next()?.into_inner().next()?;
    let mut errors = vec![];
    let v = value(inner, &mut errors);
    errors.is_empty().then_some(v)
}

/// Parses a DSL chain such as `conv(96, k=11) -> relu` (used by the YAML front end).
pub fn parse_chain(text: &str) -> Result<Vec<Call>, Diagnostic> {
    crate::limits::check_nesting(text, 0)?;
    // As `parse`: the literal tokens tried make the message (`dense(10"` expects `)`, not "a
    // shape or a name"), so a chain in YAML is told what the same chain in a .net file is.
    pest::set_error_detail(true);
    let mut pairs = DslParser::parse(Rule::chain_only, text).map_err(syntax_error)?;
    let chain = pairs.next().and_then(|p| p.into_inner().next());
    let mut errors = vec![];
    let calls = chain
        .map(|c| c.into_inner().map(|c| call(c, &mut errors)).collect())
        .unwrap_or_default();
    match errors.pop() {
        Some(e) => Err(e),
        None => Ok(calls),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chain_with_annotation() {
        let d =
            parse("net a { input x: 3x8x8\n c = conv(4, k=3) -> relu : 4x6x6 }").expect("parses");
        assert_eq!(d.nets.len(), 1);
        match &d.nets[0].body[1] {
            Stmt::Chain {
                name, calls, annot, ..
            } => {
                assert_eq!(name.as_ref().map(|n| n.name.as_str()), Some("c"));
                assert_eq!(calls.len(), 2);
                assert_eq!(annot.as_ref().map(|a| a.dims.clone()), Some(vec![4, 6, 6]));
            }
            s => panic!("unexpected {s:?}"),
        }
    }

    #[test]
    fn numbers() {
        let d = parse("net a { input x: 4\n lrn(alpha=1e-4, beta=.75, k=-2) }").expect("parses");
        let Stmt::Chain { calls, .. } = &d.nets[0].body[1] else {
            panic!()
        };
        let vals: Vec<_> = calls[0].args.iter().map(|a| a.value.kind.clone()).collect();
        assert_eq!(
            vals,
            vec![
                ValueKind::Float(1e-4),
                ValueKind::Float(0.75),
                ValueKind::Int(-2)
            ]
        );
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("net a {\n  input x 3x4\n}").unwrap_err();
        assert!(e[0].message.starts_with("syntax error"), "{}", e[0].message);
        assert_eq!(
            e[0].primary.as_ref().map(|l| l.span.start),
            Some(18),
            "{}",
            e[0].message
        );
    }
}
