//! Protocol-buffer text format, as Caffe's `.prototxt` files write it: `name: value` fields and
//! `name { ... }` (or `name: { ... }`) messages, `#` comments. Each field keeps its line, so an
//! import error points at the prototxt line.

/// A field's value: a scalar as written (a number, an enum's name or a string's contents), or a
/// message.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(String),
    Msg(Vec<Field>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub value: Value,
    pub line: usize,
}

/// A syntax error at a line.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Colon,
    Open,
    Close,
}

fn tokens(src: &str) -> Result<Vec<(Tok, usize)>, SyntaxError> {
    let mut out = vec![];
    let mut chars = src.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() || c == ',' || c == ';' => {
                chars.next();
            }
            '#' => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            ':' => {
                chars.next();
                out.push((Tok::Colon, line));
            }
            '{' | '<' => {
                chars.next();
                out.push((Tok::Open, line));
            }
            '}' | '>' => {
                chars.next();
                out.push((Tok::Close, line));
            }
            '"' | '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None | Some('\n') => {
                            return Err(SyntaxError {
                                line,
                                message: "a string is not closed on its line".into(),
                            })
                        }
                        Some(q) if q == c => break,
                        Some('\\') => s.extend(chars.next()),
                        Some(x) => s.push(x),
                    }
                }
                out.push((Tok::Str(s), line));
            }
            _ => {
                let mut w = String::new();
                while let Some(&x) = chars.peek() {
                    if x.is_alphanumeric() || "_.-+".contains(x) {
                        w.push(x);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if w.is_empty() {
                    return Err(SyntaxError {
                        line,
                        message: format!("unexpected `{c}`"),
                    });
                }
                out.push((Tok::Word(w), line));
            }
        }
    }
    Ok(out)
}

/// Parses a whole prototxt into its top-level fields.
pub fn parse(src: &str) -> Result<Vec<Field>, SyntaxError> {
    let toks = tokens(src)?;
    let mut pos = 0;
    let fields = message(&toks, &mut pos)?;
    match toks.get(pos) {
        None => Ok(fields),
        Some((_, line)) => Err(SyntaxError {
            line: *line,
            message: "a `}` closes no message".into(),
        }),
    }
}

fn message(toks: &[(Tok, usize)], pos: &mut usize) -> Result<Vec<Field>, SyntaxError> {
    let mut fields = vec![];
    while let Some((tok, line)) = toks.get(*pos) {
        let line = *line;
        let name = match tok {
            Tok::Close => return Ok(fields),
            Tok::Word(w) => w.clone(),
            Tok::Str(_) | Tok::Colon | Tok::Open => {
                return Err(SyntaxError {
                    line,
                    message: "expected a field name".into(),
                })
            }
        };
        *pos += 1;
        if matches!(toks.get(*pos), Some((Tok::Colon, _))) {
            *pos += 1;
        }
        let value = match toks.get(*pos) {
            Some((Tok::Open, _)) => {
                *pos += 1;
                let inner = message(toks, pos)?;
                match toks.get(*pos) {
                    Some((Tok::Close, _)) => *pos += 1,
                    _ => {
                        return Err(SyntaxError {
                            line,
                            message: format!("message `{name}` is not closed"),
                        })
                    }
                }
                Value::Msg(inner)
            }
            Some((Tok::Word(w) | Tok::Str(w), _)) => {
                *pos += 1;
                Value::Scalar(w.clone())
            }
            _ => {
                return Err(SyntaxError {
                    line,
                    message: format!("field `{name}` has no value"),
                })
            }
        };
        fields.push(Field { name, value, line });
    }
    Ok(fields)
}

/// Reading fields of a message.
pub trait Fields {
    fn all<'a>(&'a self, name: &'a str) -> Box<dyn Iterator<Item = &'a Field> + 'a>;
    fn field(&self, name: &str) -> Option<&Field>;
    fn msg(&self, name: &str) -> Option<&[Field]>;
    fn text(&self, name: &str) -> Option<&str>;
}

impl Fields for [Field] {
    fn all<'a>(&'a self, name: &'a str) -> Box<dyn Iterator<Item = &'a Field> + 'a> {
        Box::new(self.iter().filter(move |f| f.name == name))
    }
    fn field(&self, name: &str) -> Option<&Field> {
        self.iter().find(|f| f.name == name)
    }
    fn msg(&self, name: &str) -> Option<&[Field]> {
        match &self.field(name)?.value {
            Value::Msg(m) => Some(m.as_slice()),
            Value::Scalar(_) => None,
        }
    }
    fn text(&self, name: &str) -> Option<&str> {
        match &self.field(name)?.value {
            Value::Scalar(s) => Some(s),
            Value::Msg(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_messages_and_lines() {
        let f = parse("name: \"LeNet\"\nlayer {\n  type: \"Convolution\" # c\n  param { lr_mult: 1 }\n  convolution_param: { num_output: 20 }\n}\n").expect("parses");
        assert_eq!(f.text("name"), Some("LeNet"));
        let layer = f.msg("layer").expect("layer");
        assert_eq!(layer.field("type").map(|t| t.line), Some(3));
        assert_eq!(
            layer
                .msg("convolution_param")
                .and_then(|c| c.text("num_output")),
            Some("20")
        );
        assert!(parse("layer {\n name: 1\n").is_err());
        assert!(parse("}").is_err());
    }
}
