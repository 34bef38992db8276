//! `classes = ["T-shirt/top", "Trouser", ...]`: the names of an IDX data set's classes (IDX
//! files carry only numbers, so `predict` printed "9", not "Ankle boot"). They go into the
//! checkpoint, where `predict`, `eval` and the plots find them. Checked at `check`: distinct,
//! non-empty names, one per output of the classifier.

use super::reader::Reader;
use super::{Task, TrainConfig};
use crate::ast::ValueKind;
use crate::ir::Model;

/// The `classes` setting: a list of distinct, non-empty names (strings or bare words).
pub(super) fn classes(r: &mut Reader) -> Option<Vec<String>> {
    let v = r.get("classes")?;
    let what = "a list of distinct class names, e.g. [\"T-shirt/top\", \"Trouser\"]";
    let ValueKind::List(items) = &v.kind else {
        r.bad(v, "classes", what);
        return None;
    };
    let names: Option<Vec<String>> = items
        .iter()
        .map(|i| i.as_ident().filter(|s| !s.trim().is_empty()))
        .map(|s| s.map(|s| s.trim().to_string()))
        .collect();
    let Some(names) = names.filter(|n| !n.is_empty()) else {
        r.bad(v, "classes", what);
        return None;
    };
    if let Some((i, n)) = names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
    {
        r.bad(
            &items[i],
            "classes",
            &format!("distinct class names (`{n}` appears twice)"),
        );
        return None;
    }
    Some(names)
}

/// One name per output of the classifier (and none for a GAN).
pub(super) fn classes_fit(r: &mut Reader, model: &Model, cfg: &TrainConfig) {
    let Some(names) = &cfg.classes else {
        return;
    };
    let Task::Classifier { network } = &cfg.task else {
        // Said rather than ignored: a GAN's images carry no classes it could name.
        if let Some(v) = r.get("classes") {
            r.bad(
                v,
                "classes",
                "no class names: a GAN learns images without classes",
            );
        }
        return;
    };
    let Some(net) = model.network(network) else {
        return;
    };
    let Some(out) = net.outputs.first() else {
        return;
    };
    let outputs: u64 = net.graph[out.1].shape.iter().product();
    if names.len() as u64 != outputs {
        if let Some(v) = r.get("classes") {
            r.bad(
                v,
                "classes",
                &format!(
                    "one name per output: network `{network}` has {outputs} outputs, and {} names are given",
                    names.len()
                ),
            );
        }
    }
}
