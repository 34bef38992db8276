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

fn time(label: &str, src: &str) {
    let m = compile("b.net", src).expect("compiles");
    let net = &m.networks[0];
    let mut rng = Rng::new(1);
    let p: Params<f32> = Params::init(net, &mut rng);
    let x = Array2::from_shape_fn((BATCH, 17 * 64), |_| rng.normal() as f32);
    let out = net.outputs[0].1;
    let (mut fwd, mut both) = (vec![], vec![]);
    for _ in 0..50 {
        let t = Instant::now();
        let acts = cpu::forward(net, &p, x.view(), true, 1).expect("runs");
        fwd.push(t.elapsed().as_secs_f64());
        let dy = acts.get(out).mapv(|_| 1.0f32);
        let t2 = Instant::now();
        let _ = cpu::backward_opt(net, &p, &acts, out, dy, true);
        both.push(fwd[fwd.len() - 1] + t2.elapsed().as_secs_f64());
    }
    println!(
        "{label}: forward {:.3} ms, forward + backward {:.3} ms (median of 50, batch {BATCH} x 17 x 64, f32)",
        median(fwd) * 1e3,
        median(both) * 1e3
    );
}

fn main() {
    netc_runtime::cpu::flush_subnormals_in_pool();
    time(
        "layernorm(64)",
        "net t { input x: 17x64\n y = layernorm(64) }",
    );
    time("gelu", "net t { input x: 17x64\n y = gelu }");
}
