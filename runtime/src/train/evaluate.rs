//! A classifier's evaluation: test-set loss, top-1 and top-5 accuracy (ten-crop views
//! averaged), and the one-hot labels a training step takes.

use super::{check_source, TrainError};
use crate::data::Source;
use crate::session::Classifier;

/// One row per label with a 1 in the label's column (none for a label out of range).
pub(crate) fn onehot(labels: &[u32], classes: usize) -> Vec<f32> {
    let mut y = vec![0f32; labels.len() * classes];
    for (r, &l) in labels.iter().enumerate() {
        if (l as usize) < classes {
            y[r * classes + l as usize] = 1.0;
        }
    }
    y
}

/// Test-set loss, top-1 and top-5 accuracy, summed on the executor a batch at a time and read
/// once at the end.
///
/// In a data-parallel run each rank evaluates every N-th batch (rank r the batches r, r + N,
/// ...), and the ranks' sums are gathered and added in rank order, so every rank gets the
/// same bits (the schedule decides on them).
pub fn evaluate(s: &mut Classifier, test: &Source) -> Result<(f64, f64, f64), TrainError> {
    check_source(&s.net, test, "test")?;
    let views = test.views();
    let dist = s.dist().clone();
    let order: Vec<Vec<usize>> = in_order(test.len(), s.batch, views)
        .into_iter()
        .skip(dist.rank())
        .step_by(dist.size())
        .collect();
    if views == 1 {
        s.take_eval_stats()?;
        for b in test.batches(0, order) {
            let b = b?;
            s.eval_batch(&b.images, &onehot(&b.labels, s.classes))?;
        }
        let st = s.take_eval_stats()?;
        let [loss, correct, top5, rows] = gather(&dist, [st.loss, st.correct, st.top5, st.rows]);
        let n = rows.max(1.0);
        return Ok((loss / n, correct / n, top5 / n));
    }
    // Several views per image (ten-crop): their softmax outputs are averaged, as the paper
    // averages the ten patches' predictions, so the sums are made here.
    let (mut loss, mut top1, mut top5, mut n) = (0f64, 0f64, 0f64, 0f64);
    let len = test.image_len();
    for b in test.batches(0, order) {
        let b = b?;
        let mut logits = Vec::with_capacity(b.labels.len() * views * s.classes);
        for rows in b.images.chunks(s.batch * len) {
            logits.extend(s.logits(rows)?);
        }
        for (k, &label) in b.labels.iter().enumerate() {
            let p = mean_softmax(
                &logits[k * views * s.classes..(k + 1) * views * s.classes],
                s.classes,
            );
            let pl = p[label as usize];
            loss -= pl.max(1e-30).ln();
            let above = p.iter().filter(|&&q| q > pl).count();
            top1 += (above == 0) as u8 as f64;
            top5 += (above < 5) as u8 as f64;
            n += 1.0;
        }
    }
    let [loss, top1, top5, n] = gather(&dist, [loss, top1, top5, n]);
    let n = n.max(1.0);
    Ok((loss / n, top1 / n, top5 / n))
}

/// Every rank's `sums`, added in rank order: each rank fills its own slots of one all-reduce
/// (x + 0 is exact), so the result is the same bits on every rank whatever the library's
/// summation order.
pub(super) fn gather<const K: usize>(dist: &crate::dist::Dist, sums: [f64; K]) -> [f64; K] {
    if !dist.is_split() {
        return sums;
    }
    let mut all = vec![0.0; K * dist.size()];
    all[K * dist.rank()..K * (dist.rank() + 1)].copy_from_slice(&sums);
    dist.sum_f64(&mut all);
    let mut out = [0.0; K];
    for rank in all.chunks(K) {
        for (o, v) in out.iter_mut().zip(rank) {
            *o += v;
        }
    }
    out
}

/// The confusion matrix of the test set: `m[true][predicted]`, the prediction being the most
/// probable class (its views' softmax averaged, as [`evaluate`] averages them); ties go to the
/// lower class, as `predict` ranks them.
pub fn confusion(s: &mut Classifier, test: &Source) -> Result<Vec<Vec<u64>>, TrainError> {
    check_source(&s.net, test, "test")?;
    let (views, k) = (test.views(), s.classes);
    let mut m = vec![vec![0u64; k]; k];
    let len = test.image_len();
    for b in test.batches(0, in_order(test.len(), s.batch, views)) {
        let b = b?;
        let mut logits = Vec::with_capacity(b.labels.len() * views * k);
        for rows in b.images.chunks(s.batch * len) {
            logits.extend(s.logits(rows)?);
        }
        for (row, &label) in logits.chunks(views * k).zip(&b.labels) {
            let p = mean_softmax(row, k);
            let best = (0..k).fold(0, |a, i| if p[i] > p[a] { i } else { a });
            if let Some(r) = m.get_mut(label as usize) {
                r[best] += 1;
            }
        }
    }
    Ok(m)
}

/// `0..n` in batches of whole examples whose `views` rows each fit a batch of `batch` rows.
pub fn in_order(n: usize, batch: usize, views: usize) -> Vec<Vec<usize>> {
    let idx: Vec<usize> = (0..n).collect();
    idx.chunks((batch / views).max(1))
        .map(|c| c.to_vec())
        .collect()
}

/// The mean over rows of the softmax of each row of `logits` (`classes` per row), in f64.
pub fn mean_softmax(logits: &[f32], classes: usize) -> Vec<f64> {
    let mut p = vec![0f64; classes];
    let rows = logits.len() / classes;
    for row in logits.chunks(classes) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let z: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        for (q, &v) in p.iter_mut().zip(row) {
            *q += (v as f64 - m).exp() / z / rows as f64;
        }
    }
    p
}
