//! `netc check`: the per-layer table (text or JSON), the training section checked too, and the
//! training-memory figures.

use crate::cli::CheckFormat;
use crate::common::{load_as, Failure};
use netc_compiler::{ir::Model, report};

/// `netc check FILE [--format json] [--batch N]`.
pub(crate) fn check(file: &str, format: CheckFormat, batch: Option<u64>) -> Result<(), Failure> {
    let json = matches!(format, CheckFormat::Json);
    let model = load_as(file, json)?;
    // The training section is checked too: a file `check` passes must not be rejected
    // by `train` for its recipe.
    if let Err(items) = netc_compiler::train_config::read(&model) {
        let d = netc_compiler::diag::Diagnostics {
            file_name: model.file_name.clone(),
            source: model.source.clone(),
            items,
        };
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&d.json()).unwrap_or_default()
            );
        }
        eprint!("{}", d.render());
        return Err(Failure(1));
    }
    let memory = training_memory(&model, batch)?;
    // A model without a section trains with the default recipe: say which.
    let recipe = match model.train {
        Some(_) => None,
        None => netc_compiler::train_config::default_recipe(&model)
            .ok()
            .map(|c| crate::common::default_recipe_text(&model, &c)),
    };
    // Which tensors the weight decay applies to (decay_min_rank, no_decay).
    let decay = netc_compiler::train_config::read(&model)
        .ok()
        .flatten()
        .map(|c| c.decay_table(&model))
        .unwrap_or_default();
    match format {
        CheckFormat::Text => {
            print!("{}", report::check_text(&model));
            if !decay.is_empty() {
                print!("\n{}", netc_compiler::train_config::decay_text(&decay));
            }
            if let Some(m) = &memory {
                print!("\n{}", m.text());
            }
            if let Some(r) = &recipe {
                print!("\n{r}");
            }
        }
        CheckFormat::Json => {
            let mut v = report::check_json(&model);
            if let (Some(m), Some(o)) = (&memory, v.as_object_mut()) {
                o.insert("training_memory".into(), m.json());
            }
            if let (Some(r), Some(o)) = (&recipe, v.as_object_mut()) {
                o.insert("default_recipe".into(), r.as_str().into());
            }
            if let (false, Some(o)) = (decay.is_empty(), v.as_object_mut()) {
                let rows: Vec<serde_json::Value> = decay
                    .iter()
                    .map(|l| {
                        serde_json::json!({
                            "network": l.network,
                            "tensor": l.tensor,
                            "rank": l.rank,
                            "decayed": l.decayed,
                            "why": l.why,
                        })
                    })
                    .collect();
                o.insert("weight_decay".into(), rows.into());
            }
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
    Ok(())
}

/// The training memory `netc check` reports: for the classifier of the model's training
/// section, or of the default recipe without one (its optimizer; its batch unless `--batch`).
/// None for a GAN.
fn training_memory(
    model: &Model,
    batch: Option<u64>,
) -> Result<Option<netc_compiler::report::TrainingMemory>, Failure> {
    use netc_compiler::train_config::Task;
    // The section's recipe, or the default one `train` would use.
    let cfg = match netc_compiler::train_config::read(model) {
        Ok(Some(c)) => Some(c),
        Ok(None) => netc_compiler::train_config::default_recipe(model).ok(),
        Err(_) => None,
    };
    let (net, opt, b) = match &cfg {
        Some(c) => match &c.task {
            // A language model's step is a classifier's with a softmax per position: the
            // same tensors.
            Task::Classifier { network }
            | Task::LanguageModel(netc_compiler::train_config::LanguageModelConfig {
                network,
                ..
            }) => match model.network(network) {
                Some(n) => (n, c.optimizer.kind, batch.unwrap_or(c.batch)),
                None => return Ok(None),
            },
            Task::Gan(_) | Task::Minimise(_) => return Ok(None),
        },
        None => return Ok(None),
    };
    too_large(model, batch, b)?;
    match netc_compiler::report::training_memory(net, opt, b.max(1)) {
        Ok(m) => Ok(Some(m)),
        // A network the training lowering cannot take (two inputs, an op without kernels):
        // the table stands, and the reason is said.
        Err(e) => {
            eprintln!("note: no training-memory figures: {e}");
            Ok(None)
        }
    }
}

/// A batch over [`MAX_BATCH`](netc_compiler::schedule::MAX_BATCH) is an error: at the
/// section's `batch` line, or naming `--batch`.
fn too_large(model: &Model, flag: Option<u64>, b: u64) -> Result<(), Failure> {
    use netc_compiler::schedule::MAX_BATCH;
    if b <= MAX_BATCH {
        return Ok(());
    }
    let why = format!("netc plans training memory for batches up to {MAX_BATCH} (2^31)");
    let at = model.train.as_ref().and_then(|t| match &t.kind {
        netc_compiler::ast::ValueKind::Map(items) => items
            .iter()
            .find(|(k, _)| k.name == "batch")
            .map(|(_, v)| v.span),
        _ => None,
    });
    match (flag, at) {
        (None, Some(span)) => {
            let d = netc_compiler::diag::Diagnostics {
                file_name: model.file_name.clone(),
                source: model.source.clone(),
                items: vec![netc_compiler::diag::Diagnostic::error(format!(
                    "batch {b} is too large"
                ))
                .at(span, "over the largest batch")
                .help(why)],
            };
            eprint!("{}", d.render());
        }
        _ => eprintln!("error: batch {b} is too large: {why}"),
    }
    Err(Failure(1))
}
