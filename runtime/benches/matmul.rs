//! The CPU executor's matrix product against ndarray's (matrixmultiply) on the shapes netc's
//! layers make: `cargo bench -p netc-runtime --bench matmul`. README, "CPU matrix product",
//! records the figures that chose the `gemm` crate (with OpenBLAS measured beside them).

use ndarray::{linalg::general_mat_mul, Array2, ShapeBuilder};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // (m, n, k, A stored transposed, B stored transposed, what makes it)
    let shapes = [
        (1024, 1024, 1024, false, false, "square 1024"),
        (
            96,
            24200,
            363,
            false,
            false,
            "alexnet conv1 forward, batch 8",
        ),
        (
            128,
            5832,
            1200,
            false,
            false,
            "alexnet conv2 forward (a group), batch 8",
        ),
        (4096, 8, 9216, false, true, "alexnet fc6 forward, batch 8"),
        (50, 4096, 500, false, false, "lenet conv2 forward, batch 64"),
        (50, 500, 4096, false, true, "lenet conv2 weight gradient"),
        (500, 4096, 50, true, false, "lenet conv2 input gradient"),
        (64, 500, 800, false, true, "lenet ip1 forward"),
    ];
    println!("GFLOP/s, median of the runs (higher is better)");
    for (m, n, k, ta, tb, what) in shapes {
        let a = Array2::<f32>::from_shape_fn((m, k).set_f(ta), |(i, j)| {
            ((i * 7 + j * 3) % 13) as f32 * 0.1 - 0.6
        });
        let b = Array2::<f32>::from_shape_fn((k, n).set_f(tb), |(i, j)| {
            ((i * 5 + j * 11) % 17) as f32 * 0.1 - 0.8
        });
        let mut c = Array2::<f32>::zeros((m, n));
        let flops = 2.0 * (m * n * k) as f64;
        let reps = ((4e10 / flops) as usize).clamp(5, 50);
        let time = |f: &mut dyn FnMut()| {
            f();
            median(
                (0..reps)
                    .map(|_| {
                        let t0 = Instant::now();
                        f();
                        t0.elapsed().as_secs_f64()
                    })
                    .collect(),
            )
        };
        let mm = time(&mut || general_mat_mul(1.0, &a, &b, 0.0, &mut c));
        let want = c.clone();
        let (ars, acs) = (a.strides()[0], a.strides()[1]);
        let (brs, bcs) = (b.strides()[0], b.strides()[1]);
        let (ap, bp) = (a.as_ptr(), b.as_ptr());
        let cp = c.as_mut_ptr();
        let gm = time(&mut || {
            // SAFETY: a, b and c are live arrays of the shapes and strides passed.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    cp,
                    1,
                    n as isize,
                    false,
                    ap,
                    acs,
                    ars,
                    bp,
                    bcs,
                    brs,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(0),
                )
            }
        });
        let diff = c
            .iter()
            .zip(&want)
            .fold(0f32, |d, (x, y)| d.max((x - y).abs()));
        println!(
            "{what:42} {m}x{n}x{k}: matrixmultiply {:6.1}  gemm {:6.1}  (max difference {diff:.1e})",
            flops / mm / 1e9,
            flops / gm / 1e9
        );
    }
}
