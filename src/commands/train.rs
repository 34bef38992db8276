//! `netc train`: the training section with the command line's overrides, run into a run folder.

use crate::cli::{Overrides, RunFolder};
use crate::common::{default_recipe_text, fail, load, recorded_data_dir, train_config, Failure};

pub(crate) fn train(
    file: &str,
    over: Overrides,
    run: RunFolder,
    quiet: bool,
    profile: bool,
) -> Result<(), Failure> {
    use netc_compiler::train_config::{Length, Task};
    let RunFolder {
        out,
        resume,
        overwrite,
        weights,
        allow_other_data,
    } = run;
    // Under mpirun (or srun) with several processes, the job this one is part of.
    let dist = netc_runtime::dist::Dist::launch().map_err(fail)?;
    let root = dist.is_root();
    let model = load(file)?;
    let mut cfg = train_config(&model)?;
    if let Some(e) = over.epochs {
        cfg.length = Length::Epochs(e.max(1));
    }
    if let Some(s) = over.steps {
        cfg.length = Length::Steps(s.max(1));
    }
    if let Some(b) = over.batch {
        cfg.batch = b.max(1);
    }
    if let Some(seed) = over.seed {
        cfg.seed = seed;
    }
    if let Some(lr) = over.lr.filter(|lr| !(*lr > 0.0 && lr.is_finite())) {
        eprintln!("error: --lr must be a positive number, not {lr}");
        return Err(Failure(2));
    }
    if let Some(lr) = over.lr {
        cfg.optimizer.lr = lr;
        if let Task::Gan(g) = &mut cfg.task {
            g.g_optimizer.lr = lr;
            g.d_optimizer.lr = lr;
        }
    }
    let micro_batches = over.micro_batches.unwrap_or(1) as usize;
    if let Err(e) = netc_runtime::dist::Shard::new(cfg.batch as usize, micro_batches, &dist) {
        // Every rank finds it: rank 0 says it, and all leave together.
        if root {
            eprintln!("error: {e}");
        }
        return Err(Failure(2));
    }
    let stem = std::path::Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("run")
        .to_string();
    let out: std::path::PathBuf = out
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new("runs").join(stem));
    // A resumed run continues on the data its checkpoint recorded, not the model's data_dir
    // (an unreadable checkpoint is reported by the run itself).
    let ck = resume
        .then(|| netc_runtime::io::Checkpoint::load(&out.join("checkpoint.safetensors")).ok())
        .flatten();
    let dir = recorded_data_dir(file, over.data_dir.clone(), &cfg, ck.as_ref())?;
    if model.train.is_none() && root {
        // The recipe run, with the data folder of --data-dir (a setup error such as no data
        // folder stays one line).
        let mut shown = cfg.clone();
        shown.data_dir = over.data_dir;
        eprint!("{}", default_recipe_text(&model, &shown));
    }
    let opts = netc_runtime::train::Options {
        device: over.device,
        data_dir: dir,
        out,
        resume,
        allow_other_data,
        overwrite,
        weights: weights.map(Into::into),
        progress: !quiet && root,
        profile,
        dist: dist.clone(),
        micro_batches,
    };
    // Rank 0 speaks for the job.
    let mut say = |l: &str| {
        if root {
            eprintln!("{l}")
        }
    };
    let summary = match netc_runtime::train::run(&model, &cfg, &opts, &mut say) {
        Ok(s) => s,
        Err(e) if dist.is_split() => {
            // The other ranks may wait for this one in a reduction: end the whole job.
            eprintln!("error: rank {} of {}: {e}", dist.rank(), dist.size());
            dist.abort(1)
        }
        Err(e) => return Err(fail(e)),
    };
    if root {
        report(&summary, &opts);
    }
    // 128 + the signal (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP), as a shell reports a
    // command a signal ended, so a script can tell an interrupted run (checkpoint written)
    // from a finished one.
    if summary.interrupted {
        let sig = netc_runtime::train::stop_signal().unwrap_or(2);
        return Err(Failure(128 + sig.clamp(1, 127) as u8));
    }
    Ok(())
}

/// The run's last line (and, split over processes, what the reductions cost).
fn report(summary: &netc_runtime::train::Summary, opts: &netc_runtime::train::Options) {
    eprintln!(
        "{} {} steps in {:.1} s on {}; outputs in {}",
        if summary.interrupted {
            "stopped after"
        } else {
            "trained"
        },
        summary.steps,
        summary.seconds,
        summary.device,
        opts.out.display()
    );
    if opts.dist.is_split() {
        eprintln!("{}", traffic_line(&opts.dist, summary.seconds));
    }
}

/// What the gradient reductions cost rank 0: the bytes each step reduced and the time they
/// took (transfer and waiting for the slowest rank) against the run's (evaluations included).
fn traffic_line(dist: &netc_runtime::dist::Dist, seconds: f64) -> String {
    let t = dist.traffic();
    let per = t.reductions.max(1) as f64;
    let overlap = match t.overlapped > 0.0 {
        true => format!(
            "; the communication thread's all-reduces took {:.2} ms per step, overlapped with the backward pass",
            t.overlapped / per * 1e3
        ),
        false => String::new(),
    };
    format!(
        "data-parallel on {} ranks: {:.2} MB of gradients reduced per step; {:.2} ms per step, {:.2} ms of it waiting for the reduction (rank 0, waiting for the slowest rank included: {:.0}% of the run's {seconds:.1} s){overlap}",
        dist.size(),
        t.bytes as f64 / per / 1e6,
        seconds / per * 1e3,
        t.seconds / per * 1e3,
        100.0 * t.seconds / seconds.max(1e-9)
    )
}
