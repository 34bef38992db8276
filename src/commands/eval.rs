//! `netc eval`: a trained classifier's loss, top-1 and top-5 accuracy on the test split.

use crate::common::{fail, recorded_data_dir, trained_classifier, Failure};
use netc_runtime::data::record::DataRecord;

pub(crate) fn eval(
    file: &str,
    weights: &str,
    data: Option<String>,
    device: &str,
) -> Result<(), Failure> {
    let t = trained_classifier(file, weights, "eval")?;
    let (cfg, ck, p) = (&t.cfg, &t.ck, t.params.clone());
    let net = t.net()?;
    let dir = recorded_data_dir(file, data, cfg, Some(ck))?;
    // An image folder's evaluation images are prepared with the normalisation the checkpoint
    // recorded, and its classes must be the ones the network was trained on.
    let d = netc_runtime::train::classifier_data(
        &t.model,
        cfg,
        net,
        dir.as_deref(),
        true,
        netc_runtime::train::Recorded::Evaluate(ck),
    )
    .map_err(fail)?;
    for n in &d.notes {
        eprintln!("note: {n}");
    }
    let test = d.test;
    let (exec, name) = netc_runtime::train::executor(device).map_err(fail)?;
    let mut s = netc_runtime::session::Classifier::new(
        net,
        p,
        cfg.optimizer.kind,
        (500 / test.views()).max(1).min(test.len().max(1)) * test.views(),
        0,
        exec,
    )
    .map_err(fail)?;
    let (loss, top1, top5) = netc_runtime::train::evaluate(&mut s, &test).map_err(fail)?;
    println!("{}: {} test images on {name}", net.name, test.len());
    if let Some(other) = other_data(ck, &d.meta) {
        println!("  note   {other}");
    }
    println!("  loss   {loss:.4}");
    println!("  top-1  {:.2}%", 100.0 * top1);
    if s.classes > 5 {
        println!("  top-5  {:.2}%", 100.0 * top5);
    }
    Ok(())
}

/// What to say when the data evaluated on is not the data the checkpoint was trained on; None
/// when it is, or when the checkpoint (of an earlier netc) does not say.
fn other_data(
    ck: &netc_runtime::io::Checkpoint,
    now: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    let then = DataRecord::recorded(&ck.metadata)?;
    let now = DataRecord::recorded(now);
    if now.as_ref().is_some_and(|n| then.same_data(n)) {
        return None;
    }
    Some(format!(
        "evaluated on other data than the checkpoint was trained on: trained on {}, evaluated on {}",
        then.describe(),
        now.map_or("synthetic data".into(), |n| n.describe())
    ))
}
