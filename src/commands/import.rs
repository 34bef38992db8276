//! `netc import`: a Caffe prototxt (with its solver and weights) as a .net file, compiled
//! before it is written, so a file netc cannot read is never left behind.

use crate::cli::ImportArgs;
use crate::common::{fail, Failure};
use netc_runtime::import::caffe::{self, caffemodel, Options};
use std::path::Path;

fn read(path: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read {path}: {e}")))
}

/// `1x28x28` as dimensions.
fn shape(s: &str) -> Result<Vec<u64>, Failure> {
    let dims: Option<Vec<u64>> = s
        .split('x')
        .map(|d| d.trim().parse().ok().filter(|&d| d > 0))
        .collect();
    match dims {
        Some(d) if (1..=3).contains(&d.len()) => Ok(d),
        _ => Err(fail(format!(
            "--input-shape {s}: expected CxHxW, e.g. 1x28x28"
        ))),
    }
}

pub(crate) fn import(a: &ImportArgs) -> Result<(), Failure> {
    let src = read(&a.prototxt)?;
    let opts = Options {
        solver: match &a.solver {
            Some(p) => Some((read(p)?, p.clone())),
            None => None,
        },
        input_shape: a.input_shape.as_deref().map(shape).transpose()?,
    };
    let imported = caffe::import(&src, &a.prototxt, &opts).map_err(fail)?;
    let model = netc_compiler::compile(&a.out, &imported.text).map_err(|d| {
        fail(format!(
            "the imported network does not compile ({} error(s)); please report it with the prototxt:\n{}",
            d.items.len(),
            d.render()
        ))
    })?;
    // The weights are converted before anything is written.
    let weights = match &a.weights {
        Some(w) => Some(convert(w, &imported.params)?),
        None => None,
    };
    for (f, l, m) in &imported.notes {
        eprintln!("note: {f}:{l}: {m}");
    }
    netc_runtime::io::write_atomic(Path::new(&a.out), imported.text.as_bytes()).map_err(fail)?;
    for net in &model.networks {
        let t = net.totals();
        println!(
            "wrote network `{}` ({} parameters, {} layers) to {}",
            net.name,
            t.params,
            net.order.len(),
            a.out
        );
    }
    if let Some(ck) = weights {
        let path = a.weights_out.clone().unwrap_or_else(|| {
            Path::new(&a.out)
                .with_extension("safetensors")
                .to_string_lossy()
                .into_owned()
        });
        ck.save(Path::new(&path)).map_err(fail)?;
        println!(
            "wrote {} tensors from {} to {path}",
            ck.tensors.len(),
            a.weights.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// The .caffemodel `path` as a checkpoint of the imported network's tensors.
fn convert(
    path: &str,
    params: &[caffe::LayerParams],
) -> Result<netc_runtime::io::Checkpoint, Failure> {
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read {path}: {e}")))?;
    let layers = caffemodel::decode(&bytes)
        .map_err(|e| fail(format!("{path}: not a Caffe NetParameter: {}", e.0)))?;
    let tensors = caffemodel::tensors(&layers, params).map_err(|p| {
        fail(
            p.iter()
                .map(|m| format!("{path}: {m}"))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("converted_from".to_string(), path.to_string());
    Ok(netc_runtime::io::Checkpoint { tensors, metadata })
}
