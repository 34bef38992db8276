//! `netc import`: a Caffe network (a deploy or train_val `.prototxt`) as an idiomatic `.net`
//! file: one statement per Caffe layer, named as Caffe names it, in-place ReLU and Dropout
//! chained on with `->`, comments carrying Caffe's layer names, fillers as initialisers.
//!
//! What Caffe computes and netc's ops compute differently is converted, not copied: Caffe's LRN
//! divides alpha by local_size (netc's does not) and defaults k to 1 (netc's to 2); Caffe rounds
//! pooling output sizes up where netc rounds down (a pooling where the two differ is an error);
//! Caffe's `xavier` is uniform(+-sqrt(3 / fan_in)), netc's Glorot's, so the bounds are written
//! out. Everything netc cannot express is reported at once, each with its prototxt line.
//!
//! - `text`: the protobuf text format;
//! - `layers`: each layer type's netc op and output shape.

mod layers;
pub mod text;

use layers::{Blob, Emit};
use std::collections::HashMap;
use text::{Field, Fields};

/// Every problem an import found, with its prototxt line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(|(l, m)| format!("{file}:{l}: {m}")).collect::<Vec<_>>().join("\n"))]
pub struct ImportError {
    pub file: String,
    pub problems: Vec<(usize, String)>,
}

/// One statement of the generated network.
struct Stmt {
    name: String,
    source: Option<String>,
    chain: Vec<String>,
    caffe: Vec<String>,
}

/// The `.net` text of the prototxt `src` (read from `file`).
pub fn to_net(src: &str, file: &str) -> Result<String, ImportError> {
    let fail = |problems| ImportError {
        file: file.to_string(),
        problems,
    };
    let top = text::parse(src).map_err(|e| fail(vec![(e.line, e.message)]))?;
    let mut problems = vec![];
    let mut blobs: HashMap<String, Blob> = HashMap::new();
    let mut stmts: Vec<Stmt> = vec![];
    let mut inputs: Vec<(String, Vec<u64>)> = vec![];
    layers::legacy_inputs(&top, &mut inputs, &mut blobs);
    let mut used: Vec<String> = vec![];
    for layer in top.all("layer").chain(top.all("layers")) {
        let text::Value::Msg(l) = &layer.value else {
            continue;
        };
        let name = l.text("name").unwrap_or("layer").to_string();
        let bottoms: Vec<String> = l.all("bottom").filter_map(scalar).collect();
        let tops: Vec<String> = l.all("top").filter_map(scalar).collect();
        let ins: Option<Vec<Blob>> = bottoms.iter().map(|b| blobs.get(b).cloned()).collect();
        let Some(ins) = ins else {
            problems.push((
                layer.line,
                format!(
                    "layer `{name}` reads a blob no layer before it writes ({})",
                    bottoms.join(", ")
                ),
            ));
            continue;
        };
        used.extend(bottoms.iter().filter(|b| !tops.contains(b)).cloned());
        let poison = |blobs: &mut HashMap<String, Blob>| {
            for t in &tops {
                let shape = ins.first().map(|b| b.shape.clone()).unwrap_or_default();
                let stmt = ident(&name);
                blobs.insert(
                    t.clone(),
                    Blob {
                        stmt,
                        shape,
                        poisoned: true,
                    },
                );
            }
        };
        if ins.iter().any(|b| b.poisoned) {
            // Its shape is unknown, but a type netc has no op for is still worth saying.
            let ty = l.text("type").unwrap_or("");
            if !layers::KNOWN.contains(&ty) {
                problems.push((
                    layer.line,
                    format!("layer `{name}` ({ty}): no netc op for this layer type"),
                ));
            }
            poison(&mut blobs);
            continue;
        }
        match layers::emit(l, &name, &ins, layer.line) {
            Err(p) => {
                problems.extend(p);
                poison(&mut blobs);
            }
            Ok(Emit::Skip) => {}
            Ok(Emit::Input(shape)) => {
                let n = ident(tops.first().map_or(&name, |t| t));
                blobs.insert(
                    tops.first().cloned().unwrap_or(name.clone()),
                    Blob {
                        stmt: n.clone(),
                        shape: shape.clone(),
                        poisoned: false,
                    },
                );
                inputs.push((n, shape));
            }
            Ok(Emit::Op { op, shape }) => {
                let top_blob = tops.first().cloned().unwrap_or(name.clone());
                let stmt = place(&mut stmts, &name, &bottoms, &tops, &ins, op);
                let poisoned = false;
                blobs.insert(
                    top_blob,
                    Blob {
                        stmt,
                        shape,
                        poisoned,
                    },
                );
            }
        }
    }
    if inputs.is_empty() {
        problems.push((1, "no input: a deploy prototxt's `Input` layer (or `input:` with `input_shape`/`input_dim`) gives the input's shape".into()));
    }
    if !problems.is_empty() {
        return Err(fail(problems));
    }
    let net = ident(top.text("name").unwrap_or("imported"));
    Ok(render(
        &net,
        file,
        &inputs,
        &stmts,
        &outputs(&stmts, &blobs, &used),
    ))
}

fn scalar(f: &Field) -> Option<String> {
    match &f.value {
        text::Value::Scalar(s) => Some(s.clone()),
        text::Value::Msg(_) => None,
    }
}

/// Puts `op` into the statements: chained onto the last statement when the layer works in
/// place on its value (ReLU, Dropout), else a new statement named as the Caffe layer, reading
/// the previous statement implicitly or its bottoms by name. Returns the statement holding the
/// layer's top.
fn place(
    stmts: &mut Vec<Stmt>,
    name: &str,
    bottoms: &[String],
    tops: &[String],
    ins: &[Blob],
    op: String,
) -> String {
    let last = stmts.last().map(|s| s.name.clone());
    let in_place = bottoms.len() == 1 && tops.first() == bottoms.first();
    if in_place && last.as_deref() == Some(ins[0].stmt.as_str()) {
        let s = stmts.last_mut().expect("a last statement");
        s.chain.push(op);
        s.caffe.push(name.to_string());
        return s.name.clone();
    }
    let mut n = ident(name);
    while stmts.iter().any(|s| s.name == n) {
        n.push('_');
    }
    let source = match ins {
        [one] if last.as_deref() != Some(one.stmt.as_str()) => Some(one.stmt.clone()),
        _ => None,
    };
    stmts.push(Stmt {
        name: n.clone(),
        source,
        chain: vec![op],
        caffe: vec![name.to_string()],
    });
    n
}

/// The statements whose value no later layer reads: the network's outputs.
fn outputs(stmts: &[Stmt], blobs: &HashMap<String, Blob>, used: &[String]) -> Vec<String> {
    let read: Vec<&str> = used
        .iter()
        .filter_map(|b| blobs.get(b).map(|x| x.stmt.as_str()))
        .collect();
    let mut out: Vec<String> = stmts
        .iter()
        .filter(|s| !read.contains(&s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();
    if out.is_empty() {
        out.extend(stmts.last().map(|s| s.name.clone()));
    }
    out
}

fn render(
    net: &str,
    file: &str,
    inputs: &[(String, Vec<u64>)],
    stmts: &[Stmt],
    outs: &[String],
) -> String {
    let base = std::path::Path::new(file)
        .file_name()
        .map_or(file.to_string(), |f| f.to_string_lossy().into_owned());
    let mut s = format!("# Imported from Caffe's {base} by `netc import`; comments name the Caffe layers.\nnet {net} {{\n");
    for (n, shape) in inputs {
        let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
        s += &format!("  input {n}: {}\n", dims.join("x"));
    }
    for st in stmts {
        let src = st
            .source
            .as_ref()
            .map_or(String::new(), |x| format!("{x} -> "));
        s += &format!(
            "  {} = {src}{}    # {}\n",
            st.name,
            st.chain.join(" -> "),
            st.caffe.join(", ")
        );
    }
    for o in outs {
        s += &format!("  output {o}\n");
    }
    s + "}\n"
}

/// A netc name for a Caffe name: letters, digits and `_` (others become `_`), not starting
/// with a digit, not a keyword.
pub fn ident(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, 'l');
    }
    if ["net", "block", "train", "input", "output", "repeat"].contains(&s.as_str()) {
        s.push('_');
    }
    s
}
