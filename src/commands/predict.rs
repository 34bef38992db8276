//! `netc predict`: a trained classifier's top classes for image files or IDX image files.

use crate::cli::ScoreFormat;
use crate::common::{fail, trained_classifier, Failure};

pub(crate) fn predict(
    file: &str,
    weights: &str,
    inputs: &[String],
    (top, format): (usize, ScoreFormat),
    device: &str,
) -> Result<(), Failure> {
    let t = trained_classifier(file, weights, "predict")?;
    let (cfg, ck, p) = (&t.cfg, &t.ck, t.params.clone());
    let net = t.net()?;
    let paths: Vec<std::path::PathBuf> = inputs.iter().map(Into::into).collect();
    let sources = netc_runtime::predict::sources(cfg, net, ck, &paths).map_err(fail)?;
    let names = netc_runtime::predict::class_names(ck);
    let (exec, _) = netc_runtime::train::executor(device).map_err(fail)?;
    let views = cfg.images.eval_crops as usize;
    let mut s = netc_runtime::session::Classifier::new(
        net,
        p,
        cfg.optimizer.kind,
        (64 / views).max(1) * views,
        0,
        exec,
    )
    .map_err(fail)?;
    let class = |k: usize| {
        names
            .as_ref()
            .and_then(|n| n.get(k).cloned())
            .unwrap_or_else(|| k.to_string())
    };
    let mut rows = vec![];
    for (src, labels) in &sources {
        let preds = netc_runtime::predict::predict(&mut s, src, top).map_err(fail)?;
        for (name, ranked) in labels.iter().zip(preds) {
            match format {
                ScoreFormat::Text => {
                    let parts: Vec<String> = ranked
                        .iter()
                        .map(|&(k, p)| format!("{} {:.2}%", class(k), 100.0 * p))
                        .collect();
                    println!("{name}: {}", parts.join(", "));
                }
                ScoreFormat::Json => rows.push(serde_json::json!({
                    "input": name,
                    "top": ranked.iter().map(|&(k, p)| serde_json::json!({
                        "class": class(k), "index": k, "probability": p
                    })).collect::<Vec<_>>(),
                })),
            }
        }
    }
    if matches!(format, ScoreFormat::Json) {
        println!("{}", serde_json::Value::Array(rows));
    }
    Ok(())
}
