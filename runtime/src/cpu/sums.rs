//! Sums the CPU executor's reductions share (batchnorm's statistics, a bias's gradient).

use super::Real;

/// The sum over the paired planes of `a` and `b` of `f(a value, b value)`, kept as eight
/// interleaved partial sums: one running sum is a chain of dependent adds (4 cycles each, a
/// DCGAN's batchnorm spent 1-2 ms per pass that way), eight fill one vector register.
pub(super) fn lane_sum<'a, T: Real>(
    pairs: impl Iterator<Item = (&'a [T], &'a [T])>,
    f: impl Fn(T, T) -> T,
) -> T {
    const L: usize = 8;
    let mut acc = [T::zero(); L];
    for (a, b) in pairs {
        let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (xa, xb) in ca.zip(cb) {
            for i in 0..L {
                acc[i] = acc[i] + f(xa[i], xb[i]);
            }
        }
        for ((s, &va), &vb) in acc.iter_mut().zip(ra).zip(rb) {
            *s = *s + f(va, vb);
        }
    }
    acc.iter().fold(T::zero(), |s, &v| s + v)
}
