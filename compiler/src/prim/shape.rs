//! Shapes of primitive tensors: dimensions that are fixed or the symbolic batch, NumPy
//! broadcasting over them, and the translation of a user's axis.

use super::PrimError;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// The batch size, known only when a step runs.
    Batch,
    Fixed(usize),
}

impl Dim {
    /// The size at a concrete batch.
    pub fn at(self, batch: usize) -> usize {
        match self {
            Dim::Batch => batch,
            Dim::Fixed(n) => n,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => write!(f, "B"),
            Dim::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// A full shape: the batch axis, when the tensor has one, is one of its dims (axis 0 at a
/// graph's boundaries; a gradient may move it, as in `x^T @ g`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "[]");
        }
        let dims: Vec<String> = self.0.iter().map(|d| d.to_string()).collect();
        write!(f, "{}", dims.join("x"))
    }
}

impl Shape {
    pub fn fixed(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    /// A batched shape: the batch, then `dims` per example.
    pub fn batched(dims: &[usize]) -> Shape {
        let mut s = vec![Dim::Batch];
        s.extend(dims.iter().map(|&d| Dim::Fixed(d)));
        Shape(s)
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn is_batched(&self) -> bool {
        self.0.contains(&Dim::Batch)
    }

    /// The sizes at a concrete batch.
    pub fn at(&self, batch: usize) -> Vec<usize> {
        self.0.iter().map(|d| d.at(batch)).collect()
    }

    /// Elements at a concrete batch.
    pub fn numel(&self, batch: usize) -> usize {
        self.0.iter().map(|d| d.at(batch)).product()
    }

    /// The full axis of a user's per-example axis (the batch excluded; negative counts from
    /// the end, as in NumPy).
    pub fn axis(&self, user: i64) -> Result<usize, PrimError> {
        let skip = usize::from(self.0.first() == Some(&Dim::Batch));
        let per = (self.rank() - skip) as i64;
        let a = if user < 0 { user + per } else { user };
        if a < 0 || a >= per {
            return Err(PrimError(format!(
                "axis {user} is out of range for shape {self} ({per} axes per example)"
            )));
        }
        Ok(a as usize + skip)
    }
}

/// NumPy broadcasting of two shapes: aligned at the right, a size-1 dim stretches to the
/// other's. The batch only meets the batch or a 1, and a batched result keeps its batch
/// where the batched operand had it.
pub fn broadcast(a: &Shape, b: &Shape) -> Result<Shape, PrimError> {
    let r = a.rank().max(b.rank());
    let pad = |s: &Shape| -> Vec<Dim> {
        let mut v = vec![Dim::Fixed(1); r - s.rank()];
        v.extend(&s.0);
        v
    };
    let (pa, pb) = (pad(a), pad(b));
    let mut out = Vec::with_capacity(r);
    for (&x, &y) in pa.iter().zip(&pb) {
        out.push(match (x, y) {
            (x, y) if x == y => x,
            (Dim::Fixed(1), y) => y,
            (x, Dim::Fixed(1)) => x,
            _ => {
                return Err(PrimError(format!(
                    "shapes {a} and {b} do not broadcast ({x} against {y})"
                )))
            }
        });
    }
    Ok(Shape(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        let x = Shape::batched(&[64, 128]);
        assert_eq!(broadcast(&x, &Shape::fixed(&[128])).unwrap(), x);
        assert_eq!(broadcast(&x, &Shape::fixed(&[1, 64, 1])).unwrap(), x);
        assert_eq!(
            broadcast(&Shape::fixed(&[3, 1]), &Shape::fixed(&[4])).unwrap(),
            Shape::fixed(&[3, 4])
        );
        assert_eq!(broadcast(&x, &Shape(vec![])).unwrap(), x);
        let e = broadcast(&x, &Shape::fixed(&[5, 64, 128])).unwrap_err();
        assert!(e.0.contains("Bx64x128 and 5x64x128"), "{e}");
        assert!(broadcast(&x, &Shape::fixed(&[127])).is_err());
    }

    #[test]
    fn user_axes_skip_the_batch() {
        let x = Shape::batched(&[64, 128]);
        assert_eq!(x.axis(-1).unwrap(), 2);
        assert_eq!(x.axis(0).unwrap(), 1);
        assert!(x.axis(2).is_err());
        assert_eq!(Shape::fixed(&[3, 4]).axis(-2).unwrap(), 0);
    }
}
