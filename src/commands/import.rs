//! `netc import`: a Caffe prototxt as a .net file, compiled before it is written, so a file
//! netc cannot read is never left behind.

use crate::common::{fail, Failure};

pub(crate) fn import(prototxt: &str, out: &str) -> Result<(), Failure> {
    let src = std::fs::read_to_string(prototxt)
        .map_err(|e| fail(format!("cannot read {prototxt}: {e}")))?;
    let text = netc_runtime::import::caffe::to_net(&src, prototxt).map_err(fail)?;
    let model = netc_compiler::compile(out, &text).map_err(|d| {
        fail(format!(
            "the imported network does not compile ({} error(s)); please report it with the prototxt",
            d.items.len()
        ))
    })?;
    netc_runtime::io::write_atomic(std::path::Path::new(out), text.as_bytes()).map_err(fail)?;
    for net in &model.networks {
        let t = net.totals();
        println!(
            "wrote network `{}` ({} parameters, {} layers) to {out}",
            net.name,
            t.params,
            net.order.len()
        );
    }
    Ok(())
}
