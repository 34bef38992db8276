//! The losses computed from logits: each writes the gradient at the logits and adds the
//! batch's statistics into a host-read tensor.

use crate::kernels;
use crate::program::{Builder, Kind, TensorId};

impl Builder {
    /// Softmax cross-entropy on `logits` (rows x classes) against one-hot `targets`; the gradient
    /// is scaled by `scale` (1/rows for a mean). Adds [loss, correct, top5, rows] into `stats`
    /// (a 4-element tensor).
    pub fn softmax_xent(
        &mut self,
        logits: TensorId,
        targets: TensorId,
        rows: u64,
        classes: u64,
        scale: f64,
        stats: TensorId,
    ) -> TensorId {
        let dz = self.tensor("dlogits", rows * classes, Kind::Activation);
        self.emit(
            kernels::softmax_xent(rows, classes, scale, self.reads()),
            vec![logits, targets, dz, stats],
            "loss softmax_xent".into(),
        );
        dz
    }

    /// Binary cross-entropy on one logit per row.
    pub fn bce_logits(
        &mut self,
        logits: TensorId,
        targets: TensorId,
        rows: u64,
        scale: f64,
        stats: TensorId,
    ) -> TensorId {
        let dz = self.tensor("dlogits", rows, Kind::Activation);
        self.emit(
            kernels::bce_logits(rows, scale, self.reads()),
            vec![logits, targets, dz, stats],
            "loss bce_logits".into(),
        );
        dz
    }
}
