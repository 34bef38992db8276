//! `netc eval`: a trained classifier's loss, top-1 and top-5 accuracy on the test split, its
//! accuracy per class and its confusion matrix (as text or JSON, and as confusion.png in the
//! run folder), on the data the checkpoint recorded unless `--data-dir` names other data.

use crate::cli::ScoreFormat;
use crate::common::{fail, recorded_data_dir, trained_classifier, Failure};
use netc_runtime::data::record::DataRecord;
use std::path::Path;

/// Classes up to which the text output lists every class and the whole matrix.
const TEXT_CLASSES: usize = 30;

/// What an evaluation found, for the text and JSON outputs.
struct Report {
    network: String,
    images: usize,
    device: String,
    loss: f64,
    top1: f64,
    top5: Option<f64>,
    names: Vec<String>,
    confusion: Vec<Vec<u64>>,
    other_data: Option<String>,
    png: Result<String, String>,
}

pub(crate) fn eval(
    file: &str,
    weights: &str,
    data: Option<String>,
    device: &str,
    format: ScoreFormat,
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
    let confusion = netc_runtime::train::confusion(&mut s, &test).map_err(fail)?;
    let names = match netc_runtime::predict::class_names(ck) {
        Some(n) if n.len() == s.classes => n,
        _ => (0..s.classes).map(|k| k.to_string()).collect(),
    };
    // The picture goes beside the checkpoint, in its run folder.
    let png = Path::new(weights)
        .parent()
        .unwrap_or(Path::new("."))
        .join("confusion.png");
    let written = netc_runtime::io::write_confusion(&png, &names, &confusion)
        .map(|_| png.display().to_string())
        .map_err(|e| e.to_string());
    let r = Report {
        network: net.name.clone(),
        images: test.len(),
        device: name,
        loss,
        top1,
        top5: (s.classes > 5).then_some(top5),
        names,
        confusion,
        other_data: other_data(ck, &d.meta),
        png: written,
    };
    match format {
        ScoreFormat::Text => print_text(&r),
        ScoreFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json(&r)).unwrap_or_default()
        ),
    }
    if let Err(e) = &r.png {
        eprintln!("warning: the confusion matrix picture was not written: {e}");
    }
    Ok(())
}

/// Images and correct predictions of each class (the matrix's row sums and diagonal).
fn per_class(m: &[Vec<u64>]) -> Vec<(u64, u64)> {
    m.iter()
        .enumerate()
        .map(|(k, row)| (row.iter().sum(), row.get(k).copied().unwrap_or(0)))
        .collect()
}

fn percent(correct: u64, images: u64) -> f64 {
    100.0 * correct as f64 / images.max(1) as f64
}

fn print_text(r: &Report) {
    println!("{}: {} test images on {}", r.network, r.images, r.device);
    if let Some(other) = &r.other_data {
        println!("  note   {other}");
    }
    println!("  loss   {:.4}", r.loss);
    println!("  top-1  {:.2}%", 100.0 * r.top1);
    if let Some(t5) = r.top5 {
        println!("  top-5  {:.2}%", 100.0 * t5);
    }
    let counts = per_class(&r.confusion);
    let wide = r.names.iter().map(|n| n.chars().count()).max().unwrap_or(1);
    let idx = r.names.len().saturating_sub(1).to_string().len();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    if counts.len() > TEXT_CLASSES {
        // Many classes: the ten hardest, lowest accuracy first.
        order.sort_by(|&a, &b| {
            percent(counts[a].1, counts[a].0).total_cmp(&percent(counts[b].1, counts[b].0))
        });
        order.truncate(10);
        println!("per class (the 10 lowest of {}):", counts.len());
    } else {
        println!("per class:");
    }
    for k in order {
        let (n, c) = counts[k];
        println!(
            "  {k:>idx$} {:<wide$}  {:>6.2}%  ({c} of {n})",
            r.names[k],
            percent(c, n)
        );
    }
    if r.confusion.len() <= TEXT_CLASSES {
        print_matrix(&r.confusion, idx);
    }
    if let Ok(p) = &r.png {
        println!("confusion matrix picture: {p}");
    }
}

/// The confusion matrix, rows the true class and columns the predicted one, by class index.
fn print_matrix(m: &[Vec<u64>], idx: usize) {
    let cell = m
        .iter()
        .flatten()
        .map(|c| c.to_string().len())
        .max()
        .unwrap_or(1)
        .max(idx);
    println!("confusion matrix (rows: true class, columns: predicted class):");
    let head: Vec<String> = (0..m.len()).map(|k| format!("{k:>cell$}")).collect();
    println!("  {:>idx$}  {}", "", head.join(" "));
    for (k, row) in m.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|c| format!("{c:>cell$}")).collect();
        println!("  {k:>idx$}  {}", cells.join(" "));
    }
}

fn json(r: &Report) -> serde_json::Value {
    let per: Vec<serde_json::Value> = per_class(&r.confusion)
        .iter()
        .enumerate()
        .map(|(k, &(n, c))| {
            serde_json::json!({
                "index": k, "class": r.names[k], "images": n, "correct": c,
                "accuracy": c as f64 / n.max(1) as f64,
            })
        })
        .collect();
    serde_json::json!({
        "network": r.network,
        "images": r.images,
        "device": r.device,
        "loss": r.loss,
        "top1": r.top1,
        "top5": r.top5,
        "other_data": r.other_data,
        "classes": r.names,
        "per_class": per,
        "confusion": r.confusion,
        "confusion_png": r.png.as_ref().ok(),
    })
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
