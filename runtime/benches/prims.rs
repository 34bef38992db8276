//! Layers written from primitives against PyTorch's native ones, per call on the CPU: a
//! layernorm and a GELU (from the standard library) on a batch of 128 sequences of 17 x 64
//! (the ViT's activations), forward, and forward plus backward. `cargo bench -p netc-runtime
//! --bench prims` prints the median of 50 calls; `python3 benches/prims_torch.py` times
//! F.layer_norm and F.gelu on the same shapes. docs/primitives.md records both.

use ndarray::Array2;
use netc_compiler::compile;
use netc_runtime::cpu::{self, Params};
use netc_runtime::rng::Rng;
use std::time::Instant;

const BATCH: usize = 128;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU seconds of the whole process so far: on a busy machine, time a call took of the
/// cores rather than of the clock (with one thread, comparable with PyTorch's
/// `time.process_time` under `--threads 1`).
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn time(label: &str, src: &str) {
    let m = compile("b.net", src).expect("compiles");
    let net = &m.networks[0];
    let mut rng = Rng::new(1);
    let p: Params<f32> = Params::init(net, &mut rng);
    let x = Array2::from_shape_fn((BATCH, 17 * 64), |_| rng.normal() as f32);
    let out = net.outputs[0].1;
    let (mut fwd, mut both, mut cpu_fwd, mut cpu_both) = (vec![], vec![], vec![], vec![]);
    // On a worker of the pool, as a training step runs (`cpu::on_pool`): the calls' parallel
    // loops start there, not by waking the pool from this thread each time.
    // `PRIMS_N=3000` runs more calls, for `perf record` to see the calls rather than the setup.
    let calls: usize = std::env::var("PRIMS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    cpu::on_pool(|| {
        for _ in 0..calls {
            let (t, c) = (Instant::now(), cpu_seconds());
            let acts = cpu::forward(net, &p, x.view(), true, 1).expect("runs");
            fwd.push(t.elapsed().as_secs_f64());
            cpu_fwd.push(cpu_seconds() - c);
            let dy = acts.get(out).mapv(|_| 1.0f32);
            let (t2, c2) = (Instant::now(), cpu_seconds());
            let _ = cpu::backward_opt(net, &p, &acts, out, dy, true);
            both.push(fwd[fwd.len() - 1] + t2.elapsed().as_secs_f64());
            cpu_both.push(cpu_fwd[cpu_fwd.len() - 1] + cpu_seconds() - c2);
        }
    });
    println!(
        "{label}: forward {:.3} ms, forward + backward {:.3} ms (median of {calls}, batch {BATCH} x 17 x 64, f32); \
         CPU time {:.3} ms, {:.3} ms",
        median(fwd) * 1e3,
        median(both) * 1e3,
        median(cpu_fwd) * 1e3,
        median(cpu_both) * 1e3
    );
}

fn main() {
    // As netc's own main does.
    netc_runtime::cpu::tune_allocator();
    netc_runtime::cpu::flush_subnormals_in_pool();
    // `cargo bench --bench prims -- gelu` runs one case (for `perf stat` of one layer).
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases = [
        (
            "layernorm(64)",
            "net t { input x: 17x64\n y = layernorm(64) }",
        ),
        ("gelu", "net t { input x: 17x64\n y = gelu }"),
    ];
    for (label, src) in cases {
        if only.as_deref().is_none_or(|o| label.starts_with(o)) {
            time(label, src);
        }
    }
}
