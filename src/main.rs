//! The `netc` command line: check, graph (and, as the runtime grows, gradcheck, train, ...).

use clap::{Parser, Subcommand, ValueEnum};
use netc_compiler::{compile, ir::Model, report};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "netc",
    version,
    about = "Declarative neural-network compiler and runner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and shape-check a model; print the per-layer table with parameters, connections, MACs
    Check {
        /// Model file (.net DSL, or .yaml/.yml)
        file: String,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: CheckFormat,
    },
    /// Print the IR as Graphviz DOT (shapes on the edges): `netc graph m.net | dot -Tpng > m.png`
    Graph {
        /// Model file
        file: String,
    },
    /// Print the IR printout (the form the snapshot tests record)
    Ir {
        /// Model file
        file: String,
    },
    /// Gradient check: analytic gradients (CPU reference, f64) against central differences
    Gradcheck {
        /// Model file
        file: String,
        /// Examples in the random batch
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Entries checked per parameter tensor (all when the tensor is smaller)
        #[arg(long, default_value_t = 20)]
        samples: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// List the adapters wgpu can use (and the CPU executor)
    Devices,
    /// Benchmark the dense kernel and an MLP training step (GPU path and CPU reference)
    Bench {
        /// Adapter for the GPU path: auto, gpu, or a name substring
        #[arg(long, default_value = "auto")]
        device: String,
        /// Timed repetitions per figure (the median is reported)
        #[arg(long, default_value_t = 20)]
        reps: usize,
        /// Model whose training step is timed
        #[arg(long, default_value = "models/mlp.net")]
        model: String,
        /// Print per-kernel times of one step and the replay counters
        #[arg(long)]
        profile: bool,
    },
}

/// A failure that has already been explained to the user; carries the exit code.
struct Failure(u8);

fn load(path: &str) -> Result<Model, Failure> {
    let source = std::fs::read(path).map_err(|e| {
        eprintln!("error: cannot read model file `{path}`: {e}");
        Failure(1)
    })?;
    let source = String::from_utf8(source).map_err(|e| {
        eprintln!(
            "error: model file `{path}` is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        );
        Failure(1)
    })?;
    compile(path, &source).map_err(|d| {
        eprint!("{}", d.render());
        Failure(1)
    })
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Check { file, format } => {
            let model = load(&file)?;
            match format {
                CheckFormat::Text => print!("{}", report::check_text(&model)),
                CheckFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report::check_json(&model)).unwrap_or_default()
                ),
            }
        }
        Command::Graph { file } => print!("{}", report::dot(&load(&file)?)),
        Command::Ir { file } => print!("{}", load(&file)?.printout()),
        Command::Gradcheck {
            file,
            batch,
            samples,
            seed,
        } => gradcheck(&load(&file)?, batch, samples, seed)?,
        Command::Devices => devices(),
        Command::Bench {
            device,
            reps,
            model,
            profile,
        } => bench(&device, reps, &load(&model)?, profile)?,
    }
    Ok(())
}

fn fail(e: impl std::fmt::Display) -> Failure {
    eprintln!("error: {e}");
    Failure(1)
}

fn gradcheck(model: &Model, batch: usize, samples: usize, seed: u64) -> Result<(), Failure> {
    use netc_runtime::gradcheck::{check, THRESHOLD};
    let mut ok = true;
    for net in &model.networks {
        let r = check(net, batch.max(1), samples.max(1), seed).map_err(fail)?;
        println!(
            "network {} (batch {batch}, loss: {}, five-point central differences, h {:e})",
            r.net,
            r.loss,
            netc_runtime::gradcheck::EPS
        );
        println!(
            "  {:<28} {:>10} {:>8}  {:>12}  result",
            "tensor", "entries", "checked", "rel. diff"
        );
        for t in &r.tensors {
            let pass = t.rel_diff < THRESHOLD;
            println!(
                "  {:<28} {:>10} {:>8}  {:>12.3e}  {}",
                t.name,
                t.entries,
                t.checked,
                t.rel_diff,
                if pass { "ok" } else { "FAIL" }
            );
        }
        println!(
            "  overall relative difference {:.3e} (threshold {THRESHOLD:e}): {}",
            r.overall,
            if r.passed() { "passed" } else { "FAILED" }
        );
        ok &= r.passed();
    }
    if ok {
        Ok(())
    } else {
        Err(Failure(1))
    }
}

fn devices() {
    let list = netc_runtime::gpu::adapters();
    if list.is_empty() {
        println!("no GPU adapter found");
    }
    for (i, a) in list.iter().enumerate() {
        println!(
            "{}{}  [{} {}]  {}",
            if i == 0 { "* " } else { "  " },
            a.name,
            a.backend,
            a.device_type,
            a.driver
        );
    }
    println!("  cpu  [reference executor, ndarray]");
    println!("(* = what --device auto picks; --device gpu takes a hardware GPU; any name substring selects an adapter)");
}

fn bench(device: &str, reps: usize, model: &Model, profile: bool) -> Result<(), Failure> {
    use netc_runtime::bench;
    use netc_runtime::gpu::Gpu;
    use netc_runtime::session::Executor;
    let net = model
        .networks
        .first()
        .ok_or_else(|| fail("the model has no network"))?;
    let reps = reps.max(1);
    let shapes = [(1024u64, 1024u64, 1024u64), (128, 128, 784)];
    match Gpu::open(device) {
        Ok(gpu) => {
            println!(
                "GPU adapter: {} ({}, {})",
                gpu.info.name, gpu.info.backend, gpu.info.device_type
            );
            let mut gpu = gpu;
            for (m, n, k) in shapes {
                let (r, g) = bench::gemm_gpu(gpu, m, n, k, reps).map_err(fail)?;
                gpu = g;
                println!(
                    "  dense kernel {m}x{k} by {k}x{n}: {:>8.3} ms  {:>7.2} GFLOP/s",
                    r.seconds * 1e3,
                    r.gflops
                );
            }
            let (t, counters) =
                bench::train_step(net, 128, Executor::Gpu(Box::new(gpu)), reps).map_err(fail)?;
            println!(
                "  {} training step, batch 128 (median of {reps}): {:.3} ms",
                net.name,
                t * 1e3
            );
            if let Some(c) = counters {
                println!(
                    "  replay: {} pipelines, {} bind groups, {} buffers created once; {} submissions for {} steps",
                    c.pipelines_created,
                    c.bind_groups_created,
                    c.buffers_created,
                    c.submissions,
                    reps + 3
                );
            }
            if profile {
                profile_step(net, device)?;
            }
        }
        Err(e) => println!("GPU path: not available ({e})"),
    }
    println!("CPU reference (ndarray):");
    for (m, n, k) in shapes {
        let r = bench::gemm_cpu(m, n, k, reps);
        println!(
            "  dense {m}x{k} by {k}x{n}: {:>8.3} ms  {:>7.2} GFLOP/s",
            r.seconds * 1e3,
            r.gflops
        );
    }
    let (t, _) = bench::train_step(net, 128, Executor::Cpu, reps).map_err(fail)?;
    println!(
        "  {} training step, batch 128 (median of {reps}): {:.3} ms",
        net.name,
        t * 1e3
    );
    Ok(())
}

fn profile_step(net: &netc_compiler::ir::Network, device: &str) -> Result<(), Failure> {
    use netc_runtime::cpu::Params;
    use netc_runtime::gpu::Gpu;
    use netc_runtime::session::{Classifier, Executor};
    let gpu = Gpu::open(device).map_err(fail)?;
    let params: Params<f32> = Params::init(net, &mut netc_runtime::rng::Rng::new(1));
    let opt = netc_compiler::schedule::Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut s =
        Classifier::new(net, params, opt, 128, 1, Executor::Gpu(Box::new(gpu))).map_err(fail)?;
    let x = vec![0.5f32; 128 * s.features];
    let mut y = vec![0f32; 128 * s.classes];
    for r in 0..128 {
        y[r * s.classes + r % s.classes] = 1.0;
    }
    s.train_step(&x, &y, 1e-3).map_err(fail)?;
    let Some((prog, pass)) = s.gpu_program() else {
        return Ok(());
    };
    let before = prog.counters;
    let (times, stamps) = prog.profile(pass).map_err(fail)?;
    println!(
        "  per-kernel times of one step ({}):",
        if stamps {
            "timestamp queries"
        } else {
            "wall-clock, one submission per kernel"
        }
    );
    let total: f64 = times.iter().map(|t| t.seconds).sum();
    for t in &times {
        println!(
            "    {:>9.3} ms  {:<44} {}",
            t.seconds * 1e3,
            t.label,
            t.kernel
        );
    }
    println!("    {:>9.3} ms  total", total * 1e3);
    let after = prog.counters;
    println!(
        "  per step after the first: {} pipelines and {} bind groups created; 1 submission per step",
        after.pipelines_created - before.pipelines_created,
        after.bind_groups_created - before.bind_groups_created
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code)) => ExitCode::from(code),
    }
}
