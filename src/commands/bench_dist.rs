//! `netc bench --data-parallel` (and `netc bench` under mpirun): the data-parallel training
//! step as `mpirun -n N netc train` runs it, its time split into compute and the gradient
//! all-reduce, with the bytes reduced per step (docs/distributed.md).

use crate::common::{fail, Failure};
use netc_runtime::dist::Dist;

/// Times the classifier step of `net` at global batch `batch` on the processes this one was
/// started among (one without a launcher); rank 0 prints every rank's figures. An error on
/// one rank ends the job (the others would wait in a reduction).
pub(crate) fn run(
    path: &str,
    net: &netc_compiler::ir::Network,
    device: &str,
    (reps, batch): (usize, usize),
) -> Result<(), Failure> {
    let dist = Dist::launch().map_err(fail)?;
    match time(net, device, (reps, batch), &dist) {
        Ok(t) => {
            print(path, net, batch, &dist, &t);
            Ok(())
        }
        Err(e) if dist.is_split() => {
            eprintln!("error: rank {} of {}: {e}", dist.rank(), dist.size());
            dist.abort(1)
        }
        Err(e) => Err(fail(e)),
    }
}

fn time(
    net: &netc_compiler::ir::Network,
    device: &str,
    (reps, batch): (usize, usize),
    dist: &Dist,
) -> Result<netc_runtime::bench::SplitStepTimes, String> {
    use netc_runtime::session::Executor;
    let exec = match device {
        "auto" | "cpu" => Executor::Cpu,
        other => {
            let gpu = netc_runtime::gpu::Gpu::open_for_rank(other, dist.local_rank())
                .map_err(|e| e.to_string())?;
            Executor::Gpu(Box::new(gpu))
        }
    };
    netc_runtime::bench::data_parallel_step(net, batch, (exec, dist), reps)
        .map_err(|e| e.to_string())
}

/// Rank 0 prints the step of every rank (their figures gathered in one sum, a slot each).
fn print(
    path: &str,
    net: &netc_compiler::ir::Network,
    batch: usize,
    dist: &Dist,
    t: &netc_runtime::bench::SplitStepTimes,
) {
    let n = dist.size();
    let mut all = vec![0.0f64; 3 * n];
    all[3 * dist.rank()] = t.step;
    all[3 * dist.rank() + 1] = t.communication;
    all[3 * dist.rank() + 2] = t.overlapped;
    dist.sum_f64(&mut all);
    if !dist.is_root() {
        return;
    }
    let ms = |s: f64| s * 1e3;
    let over = match n {
        1 => "one process".to_string(),
        n => format!("{n} ranks ({} rows each)", batch / n),
    };
    println!(
        "data-parallel training step of `{}` ({path}) at batch {batch} on {over}, mean of {} steps after one warm-up:",
        net.name, t.steps
    );
    for (r, v) in all.chunks(3).enumerate() {
        let (step, comm, hidden) = (v[0], v[1], v[2]);
        let overlap = if hidden > 0.0 {
            format!(
                "; the communication thread's all-reduces took {:.2} ms, overlapped with the backward pass",
                ms(hidden)
            )
        } else {
            String::new()
        };
        println!(
            "  rank {r}: {:>9.2} ms per step = compute {:>9.2} ms + communication {:>8.2} ms ({:.0}%){overlap}",
            ms(step),
            ms(step - comm),
            ms(comm),
            100.0 * comm / step.max(1e-12)
        );
    }
    let rate = match n {
        1 => " (what each rank would reduce; none on one process)".to_string(),
        _ => format!(
            "; {:.2} GB/s through the all-reduce on rank 0, waiting for the slowest rank included{}",
            t.bytes as f64 / t.communication.max(t.overlapped).max(1e-12) / 1e9,
            match t.overlapped > 0.0 {
                true => format!(" (buckets of {} MB)", bucket_mb()),
                false => String::new(),
            }
        ),
    };
    println!(
        "  gradients per step: {:.2} MB ({} bytes){rate}",
        t.bytes as f64 / 1e6,
        t.bytes
    );
}

/// The overlap's bucket size in MB (`NETC_BUCKET_MB`, else the default).
fn bucket_mb() -> f64 {
    std::env::var("NETC_BUCKET_MB")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(netc_runtime::dist::BUCKET_BYTES as f64 / 1e6)
}
