//! What the commands share: failure reporting (`fail`, `Failure`), reading and compiling a
//! model file (`load`), its training section (`train_config`), the data folder (`data_dir`),
//! and a trained classifier loaded from a checkpoint (`trained_classifier`).

use netc_compiler::{compile, ir::Model};

/// A failure that has already been explained to the user; carries the exit code.
pub(crate) struct Failure(pub(crate) u8);

pub(crate) fn load(path: &str) -> Result<Model, Failure> {
    load_as(path, false)
}

/// Reads and compiles a model; errors go to stderr as text, or with `json` to stdout as the
/// JSON `netc check --format json` promises (tools read one format, success or not).
pub(crate) fn load_as(path: &str, json: bool) -> Result<Model, Failure> {
    let plain = |message: String| {
        if json {
            let v = serde_json::json!({
                "file": path,
                "ok": false,
                "errors": [{ "severity": "error", "message": message, "file": path,
                             "line": null, "column": null, "labels": [], "help": [] }],
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        eprintln!("error: {message}");
        Failure(1)
    };
    let source = read_model_file(path).map_err(plain)?;
    let source = String::from_utf8(source).map_err(|e| {
        plain(format!(
            "model file `{path}` is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let model = compile(path, &source).map_err(|d| {
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&d.json()).unwrap_or_default()
            );
        }
        eprint!("{}", d.render());
        Failure(1)
    })?;
    // Warnings (a layer nothing reads) go to stderr, so stdout stays the command's output.
    let items = netc_compiler::lint::warnings(&model);
    if !items.is_empty() {
        let d = netc_compiler::diag::Diagnostics {
            file_name: model.file_name.clone(),
            source: model.source.clone(),
            items,
        };
        eprint!("{}", d.render_warnings());
    }
    Ok(model)
}

/// A model file's bytes, refusing one over the size limit before reading it whole (a 50 MB
/// file took 108 s and 6 GB; `/dev/zero` read until memory ran out), and one that is not a
/// regular file (a FIFO blocked forever).
fn read_model_file(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let limit = netc_compiler::limits::MAX_SOURCE_BYTES;
    let (file, _) = netc_runtime::io::open_regular(std::path::Path::new(path))
        .map_err(|e| format!("cannot read model file `{path}`: {}", e.problem()))?;
    let mut bytes = vec![];
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read model file `{path}`: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "model file `{path}` is larger than {} MB; a model is a few kB of text",
            limit >> 20
        ));
    }
    Ok(bytes)
}

/// Refuses a network whose parameters do not fit the machine's memory, before allocating them.
pub(crate) fn ensure_params(net: &netc_compiler::ir::Network) -> Result<(), Failure> {
    netc_runtime::memory::ensure(4 * netc_runtime::memory::parameters(net), || {
        format!("the parameters of network `{}`", net.name)
    })
    .map_err(fail)
}

pub(crate) fn fail(e: impl std::fmt::Display) -> Failure {
    eprintln!("error: {e}");
    Failure(1)
}

/// The model's training section, or for a model without one the default recipe
/// ([`default_recipe`](netc_compiler::train_config::default_recipe)); a bad section's errors
/// are printed.
pub(crate) fn train_config(
    model: &Model,
) -> Result<netc_compiler::train_config::TrainConfig, Failure> {
    match netc_compiler::train_config::read(model) {
        Ok(Some(c)) => Ok(c),
        // No section: the default recipe (`train` and `check` state it).
        Ok(None) => netc_compiler::train_config::default_recipe(model).map_err(|items| {
            let d = netc_compiler::diag::Diagnostics {
                file_name: model.file_name.clone(),
                source: model.source.clone(),
                items,
            };
            eprint!("{}", d.render());
            Failure(1)
        }),
        Err(items) => {
            let d = netc_compiler::diag::Diagnostics {
                file_name: model.file_name.clone(),
                source: model.source.clone(),
                items,
            };
            eprint!("{}", d.render());
            Err(Failure(1))
        }
    }
}

/// The data folder: the command line's (relative to the current directory), else the model's
/// `data_dir` (relative to the model file); none for `data = synthetic` without either.
pub(crate) fn data_dir(
    model_file: &str,
    cli: Option<String>,
    cfg: &netc_compiler::train_config::TrainConfig,
) -> Result<Option<std::path::PathBuf>, Failure> {
    if let Some(d) = cli {
        return Ok(Some(d.into()));
    }
    // A language model's text file, named by `text` (or `data_dir`) beside the model.
    let text = match &cfg.task {
        netc_compiler::train_config::Task::LanguageModel(lm) => lm.text.as_ref(),
        _ => None,
    };
    match text.or(cfg.data_dir.as_ref()) {
        Some(d) => {
            let base = std::path::Path::new(model_file)
                .parent()
                .unwrap_or(std::path::Path::new("."));
            Ok(Some(base.join(d)))
        }
        None if cfg.data == "synthetic" => Ok(None),
        None if cfg.data == "text" => Err(fail(
            "no text: pass --data-dir (a text file, or a folder with one) or set `text` in the training section",
        )),
        None => Err(fail(
            "no data folder: pass --data-dir or set data_dir in the training section",
        )),
    }
}

/// The data folder of a command that reads a checkpoint (`eval`, `score`, `train --resume`):
/// the command line's, else the one the checkpoint recorded (a model trained on Fashion-MNIST
/// used to be evaluated on the model file's default, the MNIST sample), else as [`data_dir`]
/// (a checkpoint of an earlier netc records none).
pub(crate) fn recorded_data_dir(
    model_file: &str,
    cli: Option<String>,
    cfg: &netc_compiler::train_config::TrainConfig,
    ck: Option<&netc_runtime::io::Checkpoint>,
) -> Result<Option<std::path::PathBuf>, Failure> {
    use netc_runtime::data::record::DataRecord;
    let recorded = ck.and_then(|c| DataRecord::recorded(&c.metadata));
    match (cli, recorded) {
        (None, Some(r)) if r.dir.is_dir() => Ok(Some(r.dir)),
        (None, Some(r)) => Err(fail(format!(
            "the checkpoint was trained on the data in {}, which is not there any more: pass --data-dir (the same files elsewhere are recognised by their fingerprint)",
            r.dir.display()
        ))),
        (cli, _) => data_dir(model_file, cli, cfg),
    }
}

/// A classifier model, its training section and the weights of a checkpoint (eval, predict).
pub(crate) struct Trained {
    pub(crate) model: Model,
    pub(crate) cfg: netc_compiler::train_config::TrainConfig,
    network: String,
    pub(crate) ck: netc_runtime::io::Checkpoint,
    pub(crate) params: netc_runtime::cpu::Params<f32>,
}

impl Trained {
    /// The trained network (`trained_classifier` checked that it exists).
    pub(crate) fn net(&self) -> Result<&netc_compiler::ir::Network, Failure> {
        self.model
            .network(&self.network)
            .ok_or_else(|| fail(format!("no network `{}`", self.network)))
    }
}

pub(crate) fn trained_classifier(
    file: &str,
    weights: &str,
    verb: &str,
) -> Result<Trained, Failure> {
    use netc_compiler::train_config::Task;
    use netc_runtime::cpu::Params;
    let model = load(file)?;
    let cfg = train_config(&model)?;
    let Task::Classifier { network } = &cfg.task else {
        return Err(fail(format!(
            "`{verb}` runs classifiers; for a GAN use `netc sample`"
        )));
    };
    let net = model
        .network(network)
        .ok_or_else(|| fail(format!("no network `{network}`")))?;
    let ck = netc_runtime::io::Checkpoint::load(std::path::Path::new(weights)).map_err(fail)?;
    ensure_params(net)?;
    let like: Params<f32> = Params::init(net, &mut netc_runtime::rng::Rng::new(0));
    let (params, _) =
        netc_runtime::io::run_checkpoint::load_params(&ck, net, &like, 0).map_err(fail)?;
    let network = network.clone();
    Ok(Trained {
        model,
        cfg,
        network,
        ck,
        params,
    })
}

/// The default recipe stated for a model without a training section: a heading and the
/// settings `cfg` (the recipe with the command line's overrides) as a section would give them.
pub(crate) fn default_recipe_text(
    model: &Model,
    cfg: &netc_compiler::train_config::TrainConfig,
) -> String {
    let mut s = format!(
        "{} has no training section; it trains with the default recipe, as an empty `train {{ }}` (--epochs, --steps, --batch, --lr, --seed and --data-dir override it):\n",
        model.file_name
    );
    for l in netc_compiler::train_config::recipe_lines(cfg) {
        s.push_str(&format!("  {l}\n"));
    }
    s
}
