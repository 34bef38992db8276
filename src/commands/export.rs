//! `netc export`: a network with its trained weights as an ONNX model.

use crate::common::{ensure_params, fail, load, Failure};
use netc_runtime::cpu::Params;
use netc_runtime::export::onnx::{self, Batch};
use std::path::{Path, PathBuf};

pub(crate) fn export(
    file: &str,
    weights: &str,
    out: Option<String>,
    network: Option<String>,
    batch: Batch,
) -> Result<(), Failure> {
    let model = load(file)?;
    let names: Vec<&str> = model.networks.iter().map(|n| n.name.as_str()).collect();
    let net = match (&network, &model.networks[..]) {
        (Some(name), _) => model.network(name).ok_or_else(|| {
            fail(format!(
                "{file} has no network `{name}` (it has {})",
                names.join(", ")
            ))
        })?,
        (None, [only]) => only,
        (None, _) => {
            return Err(fail(format!(
                "{file} has {} networks ({}): name the one to export with --network",
                names.len(),
                names.join(", ")
            )))
        }
    };
    ensure_params(net)?;
    let ck = netc_runtime::io::Checkpoint::load(Path::new(weights)).map_err(fail)?;
    // Only the names and shapes are read: zeros, not a draw of every initialiser.
    let specs = net.param_specs();
    let shapes: Vec<Vec<usize>> = specs
        .iter()
        .map(|s| s.shape.iter().map(|&d| d as usize).collect())
        .collect();
    let like = Params::<f32> {
        names: specs.iter().map(|s| s.name.clone()).collect(),
        values: shapes
            .iter()
            .map(|s| vec![0.0; s.iter().product()])
            .collect(),
        shapes,
        trainable: specs.iter().map(|s| s.trainable).collect(),
    };
    let (p, _) = netc_runtime::io::run_checkpoint::load_params(&ck, net, &like, 0).map_err(fail)?;
    let bytes = onnx::export(net, &p, batch).map_err(fail)?;
    let path = match out {
        Some(o) => PathBuf::from(o),
        None => Path::new(weights)
            .parent()
            .unwrap_or(Path::new("."))
            .join(format!("{}.onnx", net.name)),
    };
    netc_runtime::io::write_atomic(&path, &bytes).map_err(fail)?;
    println!(
        "wrote network `{}` ({} parameters) as ONNX (IR version {}, opset {}) to {}",
        net.name,
        p.values.iter().map(Vec::len).sum::<usize>(),
        onnx::IR_VERSION,
        onnx::OPSET,
        path.display()
    );
    Ok(())
}
