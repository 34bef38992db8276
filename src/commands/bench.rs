//! `netc bench`: the dense kernel and a model's training step timed on the GPU path and the
//! CPU executor; with `--epoch` one training epoch, with `--loader` the image-folder loader.

use crate::common::{data_dir, fail, load, train_config, Failure};
use netc_compiler::{compile, ir::Model};

/// `netc bench`'s default model, as shipped in models/mlp.net.
const BUILTIN_MLP_PATH: &str = "models/mlp.net";
const BUILTIN_MLP: &str = include_str!("../../models/mlp.net");

fn builtin_mlp() -> Result<Model, Failure> {
    compile(BUILTIN_MLP_PATH, BUILTIN_MLP).map_err(|d| {
        eprint!("{}", d.render());
        Failure(1)
    })
}

/// `netc bench`: the `--gemm` shapes checked, the model loaded (the built-in MLP by default),
/// then the loader, one epoch, or the kernels and training steps timed.
pub(crate) fn run(
    device: &str,
    model: Option<String>,
    data_dir: Option<String>,
    (reps, batch): (usize, usize),
    profile: bool,
    gemm: &[String],
    (epoch, loader, data_parallel): (bool, bool, bool),
) -> Result<(), Failure> {
    let extra = gemm
        .iter()
        .map(|s| parse_gemm(s))
        .collect::<Result<Vec<_>, _>>()?;
    // The default model is compiled into the binary, so `netc bench` works from any
    // folder, not only inside the checkout.
    let (path, m) = match model {
        Some(p) => {
            let m = load(&p)?;
            (p, m)
        }
        None => (BUILTIN_MLP_PATH.to_string(), builtin_mlp()?),
    };
    // Under mpirun every rank runs this: only the data-parallel step makes sense there.
    if data_parallel || netc_runtime::dist::launched_among_several() {
        let net = m
            .networks
            .first()
            .ok_or_else(|| fail("the model has no network"))?;
        super::bench_dist::run(&path, net, device, (reps, batch))?
    } else if loader {
        bench_loader(&path, &m, data_dir, batch, reps)?
    } else if epoch {
        bench_epoch(device, &path, &m, data_dir)?
    } else {
        bench(device, reps, batch, &m, profile, &extra)?
    }
    Ok(())
}

/// `MxNxK[:ta][:tb]` of `netc bench --gemm`.
fn parse_gemm(spec: &str) -> Result<netc_compiler::kernels::Gemm, Failure> {
    let bad = || {
        fail(format!(
            "--gemm {spec:?}: expected MxNxK with optional :ta and :tb, e.g. 128x784x128:ta"
        ))
    };
    let mut parts = spec.split(':');
    let dims: Vec<u64> = parts
        .next()
        .unwrap_or("")
        .split('x')
        .map(|d| d.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [m, n, k] = dims[..] else {
        return Err(bad());
    };
    if m == 0 || n == 0 || k == 0 {
        return Err(bad());
    }
    let mut g = netc_compiler::kernels::Gemm::new(m, n, k);
    for flag in parts {
        match flag {
            "ta" => g.trans_a = true,
            "tb" => g.trans_b = true,
            _ => return Err(bad()),
        }
    }
    Ok(g)
}

fn bench(
    device: &str,
    reps: usize,
    batch: usize,
    model: &Model,
    profile: bool,
    extra: &[netc_compiler::kernels::Gemm],
) -> Result<(), Failure> {
    use netc_runtime::bench;
    use netc_runtime::gpu::Gpu;
    use netc_runtime::session::Executor;
    let net = model
        .networks
        .first()
        .ok_or_else(|| fail("the model has no network"))?;
    let reps = reps.max(1);
    let shapes: Vec<_> = [(1024u64, 1024u64, 1024u64), (128, 128, 784)]
        .into_iter()
        .map(|(m, n, k)| bench::dense_forward(m, n, k))
        .chain(extra.iter().copied())
        .collect();
    // `--device cpu` asks for the CPU executor alone: no GPU path, not even its absence.
    match (device != "cpu").then(|| Gpu::open(device)) {
        None => {}
        Some(Ok(gpu)) => {
            println!(
                "GPU adapter: {} ({}, {}); kernels read {}",
                gpu.info.name,
                gpu.info.backend,
                gpu.info.device_type,
                match gpu.reads {
                    netc_compiler::kernels::ReadPath::Storage => "storage buffers",
                    netc_compiler::kernels::ReadPath::Texture => "sampled texture mirrors",
                    netc_compiler::kernels::ReadPath::Image => "storage-texture mirrors",
                }
            );
            let mut gpu = gpu;
            for &g in &shapes {
                let (r, back) = bench::gemm_gpu(gpu, g, reps).map_err(fail)?;
                gpu = back;
                println!(
                    "  dense kernel {}: {:>8.3} ms  {:>7.2} GFLOP/s",
                    gemm_label(&g),
                    r.seconds * 1e3,
                    r.gflops
                );
            }
            if let Some(e) = netc_compiler::schedule::cpu_only(net) {
                println!("  training step: not on the GPU path ({e})");
                return bench_cpu(model, net, (batch, reps, profile), &shapes);
            }
            let t = step_times(model, net, batch, Executor::Gpu(Box::new(gpu)), reps)?;
            print_step(model, net, batch, reps, &t);
            if let Some(c) = t.counters {
                println!(
                    "  replay: {} pipelines, {} bind groups, {} buffers, {} textures created once; {} submissions for {} steps",
                    c.pipelines_created,
                    c.bind_groups_created,
                    c.buffers_created,
                    c.textures_created,
                    c.submissions,
                    t.steps_run
                );
            }
            if let Some(d) = t.dispatches {
                println!("  {d} kernel dispatches per training step, one submission");
            }
            if profile && gan_of(model).is_some() {
                println!("  --profile: for a GAN's per-kernel times run `netc train FILE --profile --steps 20`");
            } else if profile {
                profile_step(net, batch, device)?;
            }
        }
        Some(Err(e)) => println!("GPU path: not available ({e})"),
    }
    bench_cpu(model, net, (batch, reps, profile), &shapes)
}

/// The CPU executor's figures of `netc bench`: the dense products, then the training step.
fn bench_cpu(
    model: &Model,
    net: &netc_compiler::ir::Network,
    (batch, reps, profile): (usize, usize, bool),
    shapes: &[netc_compiler::kernels::Gemm],
) -> Result<(), Failure> {
    use netc_runtime::bench;
    use netc_runtime::session::Executor;
    println!("CPU executor (gemm crate):");
    for g in shapes {
        let r = bench::gemm_cpu(g, reps);
        println!(
            "  dense {}: {:>8.3} ms  {:>7.2} GFLOP/s",
            gemm_label(g),
            r.seconds * 1e3,
            r.gflops
        );
    }
    let t = step_times(model, net, batch, Executor::Cpu, reps)?;
    print_step(model, net, batch, reps, &t);
    if profile {
        profile_regions(net, batch, reps, vocab_of(model))?;
    }
    if let Some(kb) = peak_rss_kb() {
        println!(
            "peak memory (resident, whole process): {:.1} MB",
            kb as f64 / 1e3
        );
    }
    Ok(())
}

/// `netc bench --loader`: the image-folder loader's images per second, to set beside the
/// images per second a training step consumes (`batch / step time`).
fn bench_loader(
    file: &str,
    model: &Model,
    data: Option<String>,
    batch: usize,
    reps: usize,
) -> Result<(), Failure> {
    let cfg = train_config(model)?;
    let netc_compiler::train_config::Task::Classifier { network } = &cfg.task else {
        return Err(fail("`bench --loader` times a classifier's image folder"));
    };
    let net = model
        .network(network)
        .ok_or_else(|| fail(format!("no network `{network}` in the model")))?;
    let dir = data_dir(file, data, &cfg)?
        .ok_or_else(|| fail("`bench --loader` needs an image folder: pass --data-dir"))?;
    let d = netc_runtime::train::classifier_data(
        model,
        &cfg,
        net,
        Some(&dir),
        true,
        netc_runtime::train::Recorded::Nothing,
    )
    .map_err(fail)?;
    let netc_runtime::data::Source::Folder(set) = d.train else {
        return Err(fail(format!("{} is not an image folder", dir.display())));
    };
    let (c, h, w) = (set.needs.channels, set.needs.size.0, set.needs.size.1);
    println!(
        "loader: {} training images of {}, views {c}x{h}x{w} (resize {}, {} crop{}{}), batch {batch}",
        set.items.len(),
        dir.display(),
        set.resize.map_or("none".to_string(), |r| r.to_string()),
        if set.random_crop { "random" } else { "centre" },
        if set.flip { ", flips" } else { "" },
        if set.jitter.is_some() { ", colour noise" } else { "" },
    );
    let all = netc_runtime::data::loader::default_threads();
    for threads in [1, all] {
        let (n, secs) =
            netc_runtime::bench::loader(set.clone(), batch, reps, threads).map_err(fail)?;
        println!(
            "  {threads} thread{}: {n} images in {secs:.2} s = {:.0} images/s",
            if threads == 1 { "" } else { "s" },
            n as f64 / secs
        );
        if all == 1 {
            break;
        }
    }
    Ok(())
}

/// `netc bench --epoch`: one epoch of the training section on the GPU path (where there is an
/// adapter) and on the CPU executor.
fn bench_epoch(
    device: &str,
    file: &str,
    model: &Model,
    data: Option<String>,
) -> Result<(), Failure> {
    use netc_runtime::gpu::Gpu;
    use netc_runtime::session::Executor;
    let cfg = train_config(model)?;
    let netc_compiler::train_config::Task::Classifier { network } = &cfg.task else {
        return Err(fail(
            "`bench --epoch` times classifiers; this model trains a GAN",
        ));
    };
    let net = model
        .networks
        .iter()
        .find(|n| &n.name == network)
        .ok_or_else(|| fail(format!("no network `{network}` in the model")))?;
    let dir = data_dir(file, data, &cfg)?;
    let (train, _, _) = netc_runtime::train::datasets(
        model,
        &cfg,
        dir.as_deref(),
        netc_runtime::train::Purpose::Train,
    )
    .map_err(fail)?;
    let batch = cfg.batch as usize;
    let run = |exec: Executor, label: &str| -> Result<(), Failure> {
        let t = netc_runtime::bench::epoch(
            net,
            cfg.update_rule(&cfg.optimizer),
            cfg.optimizer.lr,
            batch,
            &train,
            exec,
            cfg.seed,
        )
        .map_err(fail)?;
        println!(
            "{label}: one epoch of {} ({} steps of {}, no evaluation): {:.2} s, {:.0} images/s, {:.2} ms/step, mean train loss {:.4}",
            net.name,
            t.steps,
            t.batch,
            t.seconds,
            (t.steps * t.batch) as f64 / t.seconds,
            t.seconds * 1e3 / t.steps.max(1) as f64,
            t.loss
        );
        Ok(())
    };
    match (device != "cpu").then(|| Gpu::open(device)) {
        None => {}
        Some(Ok(gpu)) => {
            let name = format!("GPU path ({})", gpu.info.name);
            run(Executor::Gpu(Box::new(gpu)), &name)?
        }
        Some(Err(e)) => println!("GPU path: not available ({e})"),
    }
    run(Executor::Cpu, "CPU executor")?;
    if let Some(kb) = peak_rss_kb() {
        println!(
            "peak memory (resident, whole process): {:.1} MB",
            kb as f64 / 1e3
        );
    }
    Ok(())
}

/// The process's peak resident set (VmHWM) in kB, where /proc says it.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The step figures of `netc bench`: the median (the figure to quote), the fastest step and
/// the mean of steps run back to back as training runs them.
/// The GFLOP/s figure counts a step as three forward passes' worth of multiply-adds (forward,
/// input gradient, weight gradient), two flops each.
/// The generator and discriminator of a model whose training section trains a GAN, with
/// their optimizers.
fn gan_of(
    model: &Model,
) -> Option<(
    &netc_compiler::ir::Network,
    &netc_compiler::ir::Network,
    netc_compiler::schedule::Optimizer,
    netc_compiler::schedule::Optimizer,
)> {
    let cfg = netc_compiler::train_config::read(model).ok().flatten()?;
    match cfg.task {
        netc_compiler::train_config::Task::Gan(g) => Some((
            model.network(&g.generator)?,
            model.network(&g.discriminator)?,
            g.g_optimizer.kind,
            g.d_optimizer.kind,
        )),
        netc_compiler::train_config::Task::Classifier { .. }
        | netc_compiler::train_config::Task::Minimise(_)
        | netc_compiler::train_config::Task::LanguageModel(_) => None,
    }
}

/// Times the model's training step: a GAN's D and G steps, else a classifier step of `net`.
fn step_times(
    model: &Model,
    net: &netc_compiler::ir::Network,
    batch: usize,
    exec: netc_runtime::session::Executor,
    reps: usize,
) -> Result<netc_runtime::bench::StepTimes, Failure> {
    if let Some(vocab) = vocab_of(model) {
        return netc_runtime::bench::language_model_step(net, (batch, vocab), exec, reps)
            .map_err(fail);
    }
    // A declared loss (a VAE) feeds each input its data field.
    if let Some(cfg) = netc_compiler::train_config::read(model).ok().flatten() {
        if let netc_compiler::train_config::Task::Minimise(m) = &cfg.task {
            let mn = model
                .network(&m.network)
                .ok_or_else(|| fail(format!("no network `{}`", m.network)))?;
            let rule = cfg.update_rule(&cfg.optimizer);
            return netc_runtime::bench::minimise_step(mn, m, rule, (batch, exec), reps)
                .map_err(fail);
        }
    }
    match gan_of(model) {
        Some((g, d, og, od)) => {
            netc_runtime::bench::gan_step((g, d), (og, od), batch, exec, reps).map_err(fail)
        }
        None => netc_runtime::bench::train_step(net, batch, exec, reps).map_err(fail),
    }
}

/// A language model's vocabulary (its logits' last axis), which its ids stay below.
fn vocab_of(model: &Model) -> Option<usize> {
    match netc_compiler::train_config::read(model)
        .ok()
        .flatten()?
        .task
    {
        netc_compiler::train_config::Task::LanguageModel(lm) => Some(lm.vocab as usize),
        netc_compiler::train_config::Task::Classifier { .. }
        | netc_compiler::train_config::Task::Gan(_)
        | netc_compiler::train_config::Task::Minimise(_) => None,
    }
}

fn print_step(
    model: &Model,
    net: &netc_compiler::ir::Network,
    batch: usize,
    reps: usize,
    t: &netc_runtime::bench::StepTimes,
) {
    let macs_of = |n: &netc_compiler::ir::Network| -> u64 {
        n.order.iter().map(|&i| n.graph[i].stats.macs).sum()
    };
    if let Some((g, d, _, _)) = gan_of(model) {
        // Per example: the D step runs G forward and D forward and backward on a real and a
        // fake batch; the G step runs both forward and backward (a backward about twice a
        // forward): 4 G + 9 D multiply-adds.
        let (mg, md) = (macs_of(g), macs_of(d));
        let flops = 2.0 * (4 * mg + 9 * md) as f64 * batch as f64;
        println!(
            "  GAN training step (D step + G step), batch {batch} (median of {reps}): {:.3} ms (fastest {:.3} ms; {:.3} ms per step back to back); {:.1} GFLOP/s at 2 x (4 x {mg} + 9 x {md}) MACs per example",
            t.median * 1e3,
            t.fastest * 1e3,
            t.back_to_back * 1e3,
            flops / t.median / 1e9,
        );
        return;
    }
    let macs: u64 = macs_of(net);
    let flops = 6.0 * macs as f64 * batch as f64;
    println!(
        "  {} training step, batch {batch} (median of {reps}): {:.3} ms (fastest {:.3} ms; {:.3} ms per step back to back); {:.1} GFLOP/s at 6 x {} MACs per example",
        net.name,
        t.median * 1e3,
        t.fastest * 1e3,
        t.back_to_back * 1e3,
        flops / t.median / 1e9,
        macs
    );
}

/// "128x784 by 784x128", with the stored layout of a transposed operand named.
fn gemm_label(g: &netc_compiler::kernels::Gemm) -> String {
    let a = if g.trans_a {
        format!("({}x{})^T", g.k, g.m)
    } else {
        format!("{}x{}", g.m, g.k)
    };
    let b = if g.trans_b {
        format!("({}x{})^T", g.n, g.k)
    } else {
        format!("{}x{}", g.k, g.n)
    };
    format!("{a} by {b}")
}

fn profile_step(
    net: &netc_compiler::ir::Network,
    batch: usize,
    device: &str,
) -> Result<(), Failure> {
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
        Classifier::new(net, params, opt, batch, 1, Executor::Gpu(Box::new(gpu))).map_err(fail)?;
    let x = vec![0.5f32; batch * s.features];
    let mut y = vec![0f32; batch * s.classes];
    for r in 0..batch {
        y[r * s.classes + r % s.classes] = 1.0;
    }
    s.train_step(&x, &y, 1e-3).map_err(fail)?;
    if let Some((prog, pass)) = s.gpu_program() {
        for line in netc_runtime::train::profile_lines(prog, pass, "training step").map_err(fail)? {
            println!("  {line}");
        }
    }
    Ok(())
}

/// `--profile` on the CPU executor: the fused regions of tensor primitives, slowest first.
fn profile_regions(
    net: &netc_compiler::ir::Network,
    batch: usize,
    reps: usize,
    vocab: Option<usize>,
) -> Result<(), Failure> {
    use netc_runtime::cpu::Params;
    let params: Params<f32> = Params::init(net, &mut netc_runtime::rng::Rng::new(1));
    let mut rng = netc_runtime::rng::Rng::new(2);
    // One batch per input (a declared loss may take several: a VAE's image and noise); a
    // language model reads ids, anything else Gaussian values.
    let xs: Vec<ndarray::Array2<f32>> = net
        .inputs
        .iter()
        .map(|&i| {
            let features = net.graph[i].shape.iter().product::<u64>() as usize;
            ndarray::Array2::from_shape_fn((batch, features), |_| match vocab {
                Some(v) => rng.below(v as u64) as f32,
                None => rng.normal() as f32,
            })
        })
        .collect();
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    let mut times = netc_runtime::cpu::prim::profile::regions(net, &params, &views, reps.min(5))
        .map_err(fail)?;
    if times.is_empty() {
        return Ok(());
    }
    let total: f64 = times.iter().map(|t| t.forward_ms + t.backward_ms).sum();
    println!(
        "  fused regions of primitives (--profile; each alone, median of {}): {total:.3} ms in all",
        reps.min(5)
    );
    times.sort_by(|a, b| (b.forward_ms + b.backward_ms).total_cmp(&(a.forward_ms + a.backward_ms)));
    for t in times.iter().take(12) {
        println!(
            "    region {:>2} {} .. {}: forward {:.3} ms ({} groups), backward {:.3} ms ({} groups)",
            t.index, t.span.0, t.span.1, t.forward_ms, t.groups.0, t.backward_ms, t.groups.1
        );
    }
    let mut groups = netc_runtime::cpu::prim::profile::groups(net, &params, &views, reps.min(5))
        .map_err(fail)?;
    let total: f64 = groups.iter().map(|g| g.ms).sum();
    println!(
        "  kernel groups (--profile; each alone on one thread, the whole batch, median of {}): {total:.3} ms in all",
        reps.min(5)
    );
    groups.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    for t in groups.iter().take(12) {
        let pass = if t.backward { "backward" } else { "forward" };
        println!(
            "    {:.3} ms  region {:>2} {pass}: {}",
            t.ms, t.region, t.line
        );
    }
    Ok(())
}
