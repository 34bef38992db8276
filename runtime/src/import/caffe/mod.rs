//! `netc import`: a Caffe network (a deploy or train_val `.prototxt`) as an idiomatic `.net`
//! file: one statement per Caffe layer, named as Caffe names it, in-place ReLU and Dropout
//! chained on with `->`, comments carrying Caffe's layer names, fillers as initialisers.
//!
//! What Caffe computes and netc's ops compute differently is converted, not copied: Caffe's LRN
//! divides alpha by local_size (netc's does not) and defaults k to 1 (netc's to 2); Caffe rounds
//! pooling output sizes up where netc rounds down by default (a pooling where the two differ
//! gets `ceil=true`);
//! Caffe's `xavier` is uniform(+-sqrt(3 / fan_in)), netc's Glorot's, so the bounds are written
//! out. Everything netc cannot express is reported at once, each with its prototxt line.
//!
//! - `text`: the protobuf text format;
//! - `layers`: each layer type's netc op and output shape;
//! - `batchnorm`: a BatchNorm and the Scale after it as one `batchnorm`.

mod batchnorm;
pub mod caffemodel;
mod layers;
mod phases;
mod section;
mod solver;
pub mod text;
mod wire;

pub use layers::LayerParams;

use layers::{Blob, Emit};
use std::collections::HashMap;
use text::{Field, Fields};

/// Every problem an import found, each with its file and line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.iter().map(|(f, l, m)| format!("{f}:{l}: {m}")).collect::<Vec<_>>().join("\n"))]
pub struct ImportError {
    pub problems: Vec<(String, usize, String)>,
}

impl ImportError {
    fn of(file: &str, problems: Problems) -> ImportError {
        ImportError {
            problems: problems
                .into_iter()
                .map(|(l, m)| (file.to_string(), l, m))
                .collect(),
        }
    }
}

type Problems = Vec<(usize, String)>;

/// What `netc import` reads besides the network's prototxt.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The solver prototxt's text and its path.
    pub solver: Option<(String, String)>,
    /// The shape (CxHxW) of a train_val file's Data layer, which Caffe reads from the data.
    pub input_shape: Option<Vec<u64>>,
}

/// An imported model: the `.net` text (network, and a training section where the prototxt
/// has data layers or a solver is given), the parameter tensors Caffe's layers hold in order
/// (for `--weights`), and the approximations made, each with its file and line.
#[derive(Debug, Clone)]
pub struct Imported {
    pub text: String,
    pub params: Vec<layers::LayerParams>,
    pub notes: Vec<(String, usize, String)>,
}

/// One statement of the generated network.
struct Stmt {
    name: String,
    source: Option<String>,
    chain: Vec<String>,
    caffe: Vec<String>,
}

/// The walk over the layers: what has been built so far.
#[derive(Default)]
struct State {
    problems: Problems,
    blobs: HashMap<String, Blob>,
    stmts: Vec<Stmt>,
    inputs: Vec<(String, Vec<u64>)>,
    used: Vec<String>,
    data: Vec<phases::DataLayer>,
    /// The statements a SoftmaxWithLoss reads (the logits), with the loss layer's name.
    losses: Vec<(String, String)>,
    params: Vec<layers::LayerParams>,
    /// The top of the BatchNorm imported last, while no other layer followed it (a Scale on
    /// it becomes the batchnorm's gamma and beta).
    last_bn: Option<String>,
    /// Each BatchNorm's line and its `use_global_stats`, where given.
    global_stats: Vec<(usize, String, bool)>,
}

/// The `.net` text of the deploy prototxt `src` (read from `file`), without a training section.
pub fn to_net(src: &str, file: &str) -> Result<String, ImportError> {
    import(src, file, &Options::default()).map(|m| m.text)
}

/// The `.net` text of the prototxt `src` (read from `file`) and, with `opts`, its training.
pub fn import(src: &str, file: &str, opts: &Options) -> Result<Imported, ImportError> {
    let top = text::parse(src).map_err(|e| ImportError::of(file, vec![(e.line, e.message)]))?;
    let mut st = State::default();
    layers::legacy_inputs(&top, &mut st.inputs, &mut st.blobs);
    for layer in top.all("layer").chain(top.all("layers")) {
        if let text::Value::Msg(l) = &layer.value {
            st.layer(l, layer.line, opts);
        }
    }
    if st.inputs.is_empty() {
        st.problems.push((1, "no input: a deploy prototxt's `Input` layer (or `input:` with `input_shape`/`input_dim`) gives the input's shape, a train_val's Data layer with --input-shape".into()));
    }
    let mut notes = vec![];
    let net = ident(top.text("name").unwrap_or("imported"));
    let section = section::Section::build(&st, &net, opts, file, &mut notes);
    let (section, mut errors) = match section {
        Ok(s) => (s, vec![]),
        Err(e) => (String::new(), e.problems),
    };
    errors.splice(
        0..0,
        ImportError::of(file, std::mem::take(&mut st.problems)).problems,
    );
    if !errors.is_empty() {
        return Err(ImportError { problems: errors });
    }
    for (line, name, global) in &st.global_stats {
        // Caffe's default (batch statistics in TRAIN, running ones in TEST) is netc's.
        let m = match (global, section.is_empty()) {
            (true, false) => "use_global_stats: true: netc's batchnorm trains with each batch's statistics (and updates the running ones); it uses the running statistics in evaluation only",
            (false, true) => "use_global_stats: false: netc's evaluation (eval, predict) normalises with the running statistics, not the batch's",
            _ => continue,
        };
        notes.push((
            file.to_string(),
            *line,
            format!("layer `{name}` (BatchNorm) {m}"),
        ));
    }
    let outs = outputs(&st.stmts, &st.blobs, &st.used);
    let text = render(&net, file, &st.inputs, &st.stmts, &outs) + &section;
    Ok(Imported {
        text,
        params: st.params,
        notes,
    })
}

impl State {
    /// Imports one layer (`l`, at `line`).
    fn layer(&mut self, l: &[Field], line: usize, opts: &Options) {
        let name = l.text("name").unwrap_or("layer").to_string();
        let bottoms: Vec<String> = l.all("bottom").filter_map(scalar).collect();
        let tops: Vec<String> = l.all("top").filter_map(scalar).collect();
        let ty = l.text("type").unwrap_or("");
        let after_bn = self.last_bn.take();
        if phases::DATA.contains(&ty) {
            let d = phases::data_layer(l, &name, line);
            if d.phase.as_deref() != Some("TEST") {
                self.data_input(&d, &tops, opts);
            }
            self.data.push(d);
            return;
        }
        if phases::phase(l).as_deref() == Some("TEST") {
            return; // a test-only layer (Accuracy): netc evaluates every epoch
        }
        let ins: Option<Vec<Blob>> = bottoms.iter().map(|b| self.blobs.get(b).cloned()).collect();
        let Some(ins) = ins else {
            self.problems.push((
                line,
                format!(
                    "layer `{name}` reads a blob no layer before it writes ({})",
                    bottoms.join(", ")
                ),
            ));
            return;
        };
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
            if !layers::KNOWN.contains(&ty) {
                self.problems.push((
                    line,
                    format!("layer `{name}` ({ty}): no netc op for this layer type"),
                ));
            }
            poison(&mut self.blobs);
            return;
        }
        if ty == "Scale" && after_bn.is_some_and(|b| bottoms == [b]) {
            if let Err(p) = self.scale(l, &name, &tops, &ins[0], line) {
                self.problems.extend(p);
                poison(&mut self.blobs);
            }
            return;
        }
        match layers::emit(l, &name, &ins, line) {
            Err(p) => {
                self.problems.extend(p);
                poison(&mut self.blobs);
            }
            Ok(Emit::Skip) => {
                if ty == "SoftmaxWithLoss" {
                    if let Some(logits) = ins.first() {
                        self.losses.push((logits.stmt.clone(), name.clone()));
                    }
                    self.problems.extend(phases::loss_settings(l, &name, line));
                }
            }
            Ok(Emit::Input(shape)) => {
                let n = ident(tops.first().map_or(&name, |t| t));
                self.blobs.insert(
                    tops.first().cloned().unwrap_or(name.clone()),
                    Blob {
                        stmt: n.clone(),
                        shape: shape.clone(),
                        poisoned: false,
                    },
                );
                self.inputs.push((n, shape));
            }
            Ok(Emit::Op { op, shape, params }) => {
                self.used
                    .extend(bottoms.iter().filter(|b| !tops.contains(b)).cloned());
                let top_blob = tops.first().cloned().unwrap_or(name.clone());
                let stmt = place(&mut self.stmts, &name, &bottoms, &tops, &ins, op);
                if let Some(p) = params {
                    let node = self.stmts.last().map_or(stmt.clone(), node_name);
                    self.params.push(layers::LayerParams { stmt: node, ..p });
                }
                if ty == "BatchNorm" {
                    self.last_bn = Some(top_blob.clone());
                    if let Some(g) = batchnorm::global_stats(l) {
                        self.global_stats.push((line, name.clone(), g));
                    }
                }
                let poisoned = false;
                self.blobs.insert(
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

    /// A Scale (`l`, named `name`, at `line`) on the top `x` of the BatchNorm imported just
    /// before it: the batchnorm's gamma and beta, in the same statement; its top is the
    /// batchnorm's value.
    fn scale(
        &mut self,
        l: &[Field],
        name: &str,
        tops: &[String],
        x: &Blob,
        line: usize,
    ) -> Result<(), Problems> {
        let c = x.shape.first().copied().unwrap_or(0);
        let Some(bn) = self.params.last_mut() else {
            return Ok(());
        };
        let p = batchnorm::scale(l, name, c, line, bn)?;
        self.params.push(p);
        if let Some(s) = self.stmts.iter_mut().find(|s| s.name == x.stmt) {
            s.caffe.push(name.to_string());
        }
        let top = tops.first().cloned().unwrap_or(name.to_string());
        self.blobs.insert(top, x.clone());
        Ok(())
    }

    /// A TRAIN (or phase-less) data layer's tops: the image input, of the shape `--input-shape`
    /// gives (Caffe reads it from the data), and the labels, which only a loss reads.
    fn data_input(&mut self, d: &phases::DataLayer, tops: &[String], opts: &Options) {
        if !self.inputs.is_empty() {
            return;
        }
        let Some(shape) = opts.input_shape.clone() else {
            self.problems.push((d.line, format!("layer `{}` ({}): Caffe reads the input's shape from the data ({}); give it: --input-shape CxHxW (1x28x28 for MNIST, 3x227x227 for AlexNet's crops)", d.name, d.ty, d.source.as_deref().unwrap_or("no source"))));
            return;
        };
        if let (Some(c), [_, h, w]) = (d.transform.crop, &shape[..]) {
            if c != *h || c != *w {
                self.problems.push((
                    d.line,
                    format!(
                        "layer `{}`: crop_size {c} does not match --input-shape {}",
                        d.name,
                        dims(&shape)
                    ),
                ));
            }
        }
        let mut tops = tops.iter();
        if let Some(t) = tops.next() {
            let n = ident(t);
            let blob = Blob {
                stmt: n.clone(),
                shape: shape.clone(),
                poisoned: false,
            };
            self.blobs.insert(t.clone(), blob);
            self.inputs.push((n, shape));
        }
        for t in tops {
            let label = Blob {
                stmt: String::new(),
                shape: vec![1],
                poisoned: false,
            };
            self.blobs.insert(t.clone(), label);
        }
    }
}

/// `3x227x227`.
fn dims(shape: &[u64]) -> String {
    shape
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("x")
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

/// The netc name of the last op of statement `s`, as the compiler names a chain's ops: the
/// main call (the first op with parameters: `conv`, `dense`, `batchnorm`) takes the
/// statement's name, the others `stmt.op` (`stmt.op2` for the second of that op), so a
/// batchnorm chained onto a conv holds `conv1.batchnorm.weight`.
fn node_name(s: &Stmt) -> String {
    let ops: Vec<&str> = s
        .chain
        .iter()
        .flat_map(|c| c.split("->"))
        .map(|c| c.split('(').next().unwrap_or("").trim())
        .collect();
    let main = ops
        .iter()
        .position(|o| netc_compiler::ops::registry::is_main_call(o));
    let last = ops.len().saturating_sub(1);
    let op = ops.get(last).copied().unwrap_or("");
    let k = ops.iter().filter(|o| **o == op).count();
    match (main == Some(last), k) {
        (true, _) => s.name.clone(),
        (false, 1) => format!("{}.{op}", s.name),
        (false, k) => format!("{}.{op}{k}", s.name),
    }
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
        s += &format!("  input {n}: {}\n", dims(shape));
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
