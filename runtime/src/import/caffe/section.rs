//! The training section of an imported model: the task from the SoftmaxWithLoss, the batch
//! and image preparation from the TRAIN data layer, the optimizer, schedule and length from
//! the solver, and Caffe's `lr_mult` / `decay_mult` as `param_mult`. Each setting carries a
//! comment naming the Caffe fields it came from.

use super::phases::DataLayer;
use super::solver::{self, lit, Setting};
use super::{ImportError, Options, State};

pub struct Section;

/// Where a setting came from, for the problems and notes: the network's or the solver's file.
struct Files<'a> {
    net: &'a str,
    solver: &'a str,
}

impl Section {
    /// The section's text (empty for a deploy file without a solver), or its problems; the
    /// approximations go to `notes`.
    pub fn build(
        st: &State,
        net: &str,
        opts: &Options,
        file: &str,
        notes: &mut Vec<(String, usize, String)>,
    ) -> Result<String, ImportError> {
        let train = st.data.iter().find(|d| d.phase.as_deref() != Some("TEST"));
        if train.is_none() && opts.solver.is_none() {
            return Ok(String::new());
        }
        let files = Files {
            net: file,
            solver: opts.solver.as_ref().map_or("", |s| s.1.as_str()),
        };
        let mut problems: Vec<(String, usize, String)> = vec![];
        let mut set: Vec<Setting> = vec![];
        let task = match st.losses.as_slice() {
            [(logits, loss)] => format!("SoftmaxWithLoss `{loss}` on {logits}"),
            [] => "no SoftmaxWithLoss in the prototxt: softmax cross-entropy on the output".into(),
            _ => {
                problems.push((
                    file.into(),
                    1,
                    "more than one SoftmaxWithLoss: netc's classifier trains one".into(),
                ));
                String::new()
            }
        };
        set.push(("task".into(), "classifier".into(), task));
        set.push(("network".into(), net.into(), String::new()));
        let mut solver_at = 0;
        if let Some((src, sfile)) = &opts.solver {
            match super::text::parse(src) {
                Ok(top) => {
                    let s = solver::read(&top);
                    problems.extend(s.problems.into_iter().map(|(l, m)| (sfile.clone(), l, m)));
                    notes.extend(s.notes.into_iter().map(|(l, m)| (sfile.clone(), l, m)));
                    solver_at = set.len();
                    set.extend(s.settings);
                }
                Err(e) => problems.push((sfile.clone(), e.line, e.message)),
            }
        }
        // The multipliers follow the optimizer and schedule.
        let after = set
            .iter()
            .position(|s| s.0 == "steps" || s.0 == "log_every")
            .unwrap_or(set.len())
            .max(solver_at);
        if let Some(m) = param_mult(st) {
            set.insert(after, m);
        }
        if let Some(d) = train {
            data(d, st, &files, &mut set, notes);
        }
        for d in st
            .data
            .iter()
            .filter(|d| d.phase.as_deref() == Some("TEST"))
        {
            if let Some(b) = d.batch {
                notes.push((files.net.into(), d.batch_line, format!("layer `{}` (TEST) batch_size {b}: netc evaluates the whole test split each epoch", d.name)));
            }
        }
        if !problems.is_empty() {
            return Err(ImportError { problems });
        }
        Ok(render(&set, file, &files))
    }
}

/// `param_mult = [...]` of the layers' `param { lr_mult decay_mult }`: one pattern per tensor
/// kind (`*.bias`) where every such tensor has the same multipliers, else one per tensor.
fn param_mult(st: &State) -> Option<Setting> {
    let mut items = vec![];
    for suffix in ["weight", "bias"] {
        let all: Vec<(String, (f64, f64))> = st
            .params
            .iter()
            .flat_map(|p| {
                // A lone BatchNorm's gamma and beta stay at 1 and 0, as in Caffe.
                let fixed = p.fixed.iter().map(|f| (f.0, (0.0, 0.0)));
                p.tensors
                    .iter()
                    .map(|t| t.0)
                    .zip(p.mults.iter().copied())
                    .chain(fixed)
                    .filter(|(t, _)| *t == suffix)
                    .map(|(_, m)| (format!("{}.{suffix}", p.stmt), m))
                    .collect::<Vec<_>>()
            })
            .collect();
        let odd = |m: &(f64, f64)| *m != (1.0, 1.0);
        match all.first() {
            Some((_, m)) if odd(m) && all.iter().all(|(_, x)| x == m) => {
                items.push(mult(&format!("*.{suffix}"), *m));
            }
            _ => items.extend(all.iter().filter(|(_, m)| odd(m)).map(|(n, m)| mult(n, *m))),
        }
    }
    (!items.is_empty()).then(|| {
        (
            "param_mult".into(),
            format!("[{}]", items.join(", ")),
            "the layers' param { lr_mult decay_mult }".into(),
        )
    })
}

fn mult(pattern: &str, (lr, decay): (f64, f64)) -> String {
    let mut s = format!("mult(\"{pattern}\"");
    if lr != 1.0 {
        s += &format!(", lr={}", lit(lr));
    }
    if decay != 1.0 {
        s += &format!(", decay={}", lit(decay));
    }
    s + ")"
}

/// The TRAIN data layer's batch and `transform_param` as settings. Caffe computes
/// (x - mean) * scale on 0..255 pixels; netc's pixels are x / 255, then `range` (IDX data) or
/// `mean` and `std` (image folders).
fn data(
    d: &DataLayer,
    st: &State,
    f: &Files,
    set: &mut Vec<Setting>,
    notes: &mut Vec<(String, usize, String)>,
) {
    let at = |line| format!("{}:{line}", short(f.net));
    if let Some(b) = d.batch {
        set.push((
            "batch".into(),
            b.to_string(),
            format!("`{}` batch_size ({})", d.name, at(d.batch_line)),
        ));
    }
    let c = st
        .inputs
        .first()
        .and_then(|i| i.1.first().copied())
        .unwrap_or(1);
    let t = &d.transform;
    let s = t.scale.unwrap_or(1.0);
    let means: Vec<f64> = match t.mean_values.as_slice() {
        [] => vec![0.0; c as usize],
        [m] => vec![*m; c as usize],
        ms => ms.to_vec(),
    };
    let idx = c == 1;
    if idx {
        // IDX data: one mean, the range gives (x - m) * s exactly.
        let m = means.first().copied().unwrap_or(0.0);
        if (m, s) != (0.0, 1.0 / 255.0) {
            set.push((
                "range".into(),
                format!("[{}, {}]", lit(-m * s + 0.0), lit((255.0 - m) * s)),
                if m == 0.0 {
                    format!("transform_param scale {s} on 0..255 pixels")
                } else {
                    format!("transform_param (x - {m}) * {s} on 0..255 pixels")
                },
            ));
        }
    } else {
        if t.mean_file.is_some() || !t.mean_values.is_empty() {
            let v = match &t.mean_file {
                Some(_) => "auto".to_string(),
                None => format!(
                    "[{}]",
                    means
                        .iter()
                        .map(|m| lit(m / 255.0))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            set.push((
                "mean".into(),
                v,
                match &t.mean_file {
                    Some(_) => {
                        "transform_param mean_file (a mean image): per channel, measured".into()
                    }
                    None => "transform_param mean_value, in 0..1 pixel units".into(),
                },
            ));
        }
        if let Some(mf) = &t.mean_file {
            notes.push((f.net.into(), t.line, format!("mean_file {mf}: Caffe subtracts a mean image; netc a per-channel mean, measured on 1,000 training images (mean = auto)")));
        }
        if s * 255.0 != 1.0 {
            let std = lit(1.0 / (255.0 * s));
            set.push((
                "std".into(),
                format!("[{}]", vec![std; c as usize].join(", ")),
                format!("transform_param scale {s} on 0..255 pixels"),
            ));
        }
    }
    if t.mirror {
        set.push((
            "flip".into(),
            "true".into(),
            "transform_param mirror".into(),
        ));
    }
    if let Some(crop) = t.crop {
        if idx {
            notes.push((
                f.net.into(),
                t.line,
                format!("crop_size {crop}: netc crops image folders, not IDX data; left out"),
            ));
        } else {
            set.push((
                "crop".into(),
                "random".into(),
                format!("transform_param crop_size {crop} (the centre in testing, as Caffe)"),
            ));
            notes.push((f.net.into(), t.line, "crop_size: Caffe crops the images as its LMDB stores them (256x256 for ImageNet); set `resize` to match".into()));
        }
    }
    let data = if idx { "mnist" } else { "images" };
    let src = d.source.as_deref().unwrap_or("no source");
    set.push((
        "data".into(),
        data.into(),
        format!("Caffe read {src} ({}): pass --data-dir", at(d.source_line)),
    ));
    notes.push((f.net.into(), d.source_line, format!("source {src}: netc reads IDX files or image folders, not LMDB/LevelDB; pass --data-dir")));
}

fn short(file: &str) -> String {
    std::path::Path::new(file)
        .file_name()
        .map_or(file.to_string(), |n| n.to_string_lossy().into_owned())
}

fn render(set: &[Setting], file: &str, f: &Files) -> String {
    let from = match f.solver {
        "" => short(file),
        s => format!("{} and {}", short(file), short(s)),
    };
    let mut out =
        format!("\n# How Caffe trains it ({from}); comments name Caffe's fields.\ntrain {{\n");
    let width = set.iter().map(|s| s.0.len() + s.1.len()).max().unwrap_or(0);
    for (k, v, c) in set {
        let pad = " ".repeat(width - k.len() - v.len());
        match c.is_empty() {
            true => out += &format!("  {k} = {v}\n"),
            false => out += &format!("  {k} = {v}{pad}    # {c}\n"),
        }
    }
    out + "}\n"
}
