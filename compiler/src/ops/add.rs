//! add: the elementwise sum of two or more tensors of one shape (residual connections).

use super::ShapeError;
use crate::ast::shape_str;

pub(super) fn infer(inputs: &[Vec<u64>]) -> Result<Vec<u64>, ShapeError> {
    let first = inputs.first().cloned().unwrap_or_default();
    for s in &inputs[1.min(inputs.len())..] {
        if *s != first {
            return Err(ShapeError {
                message: format!(
                    "`add` needs equal shapes, but got {} and {}",
                    shape_str(&first),
                    shape_str(s)
                ),
                help: Some(
                    "project the shortcut with a 1x1 conv (or a dense layer) to match".into(),
                ),
            });
        }
    }
    Ok(first)
}
