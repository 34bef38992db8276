//! The losses on logits (softmax cross-entropy, binary cross-entropy) and their batch sums,
//! the same formulas as the loss kernels.

use super::activation::sigmoid;
use super::Real;
use ndarray::Array2;

/// Sums over a batch: loss, top-1 correct, top-5 correct, rows (as the GPU stats buffer holds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossStats {
    pub loss: f64,
    pub correct: f64,
    pub top5: f64,
    pub rows: f64,
}

impl LossStats {
    pub fn add(&mut self, o: LossStats) {
        self.loss += o.loss;
        self.correct += o.correct;
        self.top5 += o.top5;
        self.rows += o.rows;
    }
    pub fn from_slice(v: &[f32]) -> LossStats {
        let g = |i: usize| v.get(i).copied().unwrap_or(0.0) as f64;
        LossStats {
            loss: g(0),
            correct: g(1),
            top5: g(2),
            rows: g(3),
        }
    }
}

/// Softmax cross-entropy from logits: (batch sums, scale * dlogits). A row whose target is all
/// zero is batch padding: its gradient is zero and it adds nothing to the sums (as on the GPU).
pub fn softmax_xent<T: Real>(z: &Array2<T>, t: &Array2<T>, scale: f64) -> (LossStats, Array2<T>) {
    let mut dz = z.clone();
    let mut loss = 0.0;
    let mut correct = 0;
    let mut top5 = 0;
    let mut rows = 0;
    for ((zr, tr), mut dr) in z.rows().into_iter().zip(t.rows()).zip(dz.rows_mut()) {
        if !tr.iter().any(|&v| v > T::zero()) {
            dr.fill(T::zero());
            continue;
        }
        rows += 1;
        let mx = zr.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        let lse = mx + zr.iter().fold(T::zero(), |a, &v| a + (v - mx).exp()).ln();
        for ((d, &zv), &tv) in dr.iter_mut().zip(zr.iter()).zip(tr.iter()) {
            loss += (tv * (lse - zv)).f64();
            *d = T::of(scale) * ((zv - lse).exp() - tv);
        }
        let target = argmax(tr.iter().copied());
        if argmax(zr.iter().copied()) == target {
            correct += 1;
        }
        if zr.iter().filter(|&&v| v > zr[target]).count() < 5 {
            top5 += 1;
        }
    }
    let stats = LossStats {
        loss,
        correct: correct as f64,
        top5: top5 as f64,
        rows: rows as f64,
    };
    (stats, dz)
}

fn argmax<T: Real>(it: impl Iterator<Item = T>) -> usize {
    let mut best = (0, T::neg_infinity());
    for (i, v) in it.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// Binary cross-entropy from logits (one per row): (batch sums, scale * dz).
pub fn bce_logits<T: Real>(z: &Array2<T>, t: &Array2<T>, scale: f64) -> (LossStats, Array2<T>) {
    let mut dz = z.clone();
    let mut loss = 0.0;
    let mut correct = 0;
    for ((d, &x), &y) in dz.iter_mut().zip(z.iter()).zip(t.iter()) {
        loss += (x.max(T::zero()) - x * y + (T::one() + (-x.abs()).exp()).ln()).f64();
        *d = T::of(scale) * (sigmoid(x) - y);
        if (x > T::zero()) == (y > T::of(0.5)) {
            correct += 1;
        }
    }
    let c = correct as f64;
    (
        LossStats {
            loss,
            correct: c,
            top5: c,
            rows: z.len() as f64,
        },
        dz,
    )
}
