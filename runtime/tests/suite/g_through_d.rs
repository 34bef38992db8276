//! The generator's gradient through a frozen discriminator against central differences (f64).

use ndarray::Array2;
use netc_compiler::compile;
use netc_runtime::cpu::{self, Params};
use netc_runtime::rng::Rng;

#[test]
fn generator_gradient_through_the_discriminator() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/gan.yaml"))
        .expect("gan.yaml");
    let m = compile("gan.yaml", &src).expect("compiles");
    let (gn, dn) = (
        m.network("generator").expect("G"),
        m.network("discriminator").expect("D"),
    );
    let mut rng = Rng::new(4);
    let gp: Params<f64> = Params::init(gn, &mut rng);
    let mut dp: Params<f64> = Params::init(dn, &mut rng);
    dp.trainable.iter_mut().for_each(|t| *t = false);
    let b = 3;
    let z = Array2::from_shape_fn((b, 100), |_| rng.uniform(-1.0, 1.0));
    let g_out = gn.outputs[0].1;
    let d_out = dn.outputs[0].1;
    let d_logit = dn.inputs_of(d_out)[0];
    let t = Array2::<f64>::ones((b, 1));
    let loss = |gp: &Params<f64>| -> f64 {
        let ga = cpu::forward(gn, gp, z.view(), false, 0).expect("G");
        let da = cpu::forward(dn, &dp, ga.get(g_out).view(), false, 0).expect("D");
        cpu::bce_logits(da.get(d_logit), &t, 1.0 / b as f64).0.loss / b as f64
    };
    let ga = cpu::forward(gn, &gp, z.view(), false, 0).expect("G");
    let da = cpu::forward(dn, &dp, ga.get(g_out).view(), false, 0).expect("D");
    let (_, dz) = cpu::bce_logits(da.get(d_logit), &t, 1.0 / b as f64);
    let (dgrads, dx) = cpu::backward(dn, &dp, &da, d_logit, dz);
    assert!(
        dgrads.iter().all(|g| g.is_none()),
        "a frozen D gets no gradients"
    );
    assert!(
        dx.iter().any(|v| *v != 0.0),
        "no gradient reaches D's input"
    );
    let (ggrads, _) = cpu::backward(gn, &gp, &ga, g_out, dx);
    let h = 1e-4;
    for (i, g) in ggrads.iter().enumerate() {
        let g = g.as_ref().expect("G is trainable");
        for j in [0, g.len() / 2, g.len() - 1] {
            let mut q = gp.clone();
            q.values[i][j] += h;
            let lp = loss(&q);
            q.values[i][j] -= 2.0 * h;
            let lm = loss(&q);
            let num = (lp - lm) / (2.0 * h);
            assert!(
                (num - g[j]).abs() <= 1e-6 * (num.abs() + g[j].abs()) + 1e-12,
                "{} [{j}]: analytic {} numeric {num}",
                gp.names[i],
                g[j]
            );
        }
    }
}
