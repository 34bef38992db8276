//! Index arithmetic for the primitive reference: row-major strides, and the offset of every
//! element of one shape in a strided view of another (broadcast, reduced, permuted, sliced).

// The strides are the generated kernels' own (one definition of how a shape reads another).
pub use netc_compiler::kernels::prim::index::{broadcast_strides, permuted_strides, strides};

/// For each element of `dims` in row-major order, `sum(index_i * strides_i)`.
pub fn offsets(dims: &[usize], strides: &[usize]) -> Vec<usize> {
    let n: usize = dims.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let mut idx = vec![0usize; dims.len()];
    let mut off = 0usize;
    for _ in 0..n {
        out.push(off);
        for a in (0..dims.len()).rev() {
            idx[a] += 1;
            off += strides[a];
            if idx[a] < dims[a] {
                break;
            }
            off -= strides[a] * dims[a];
            idx[a] = 0;
        }
    }
    out
}

/// `dims` walked with one set of strides per operand, adjacent axes merged where every
/// operand reads them regularly (all broadcast, or contiguous) and size-1 axes dropped: a
/// bias over tokens becomes a 2-axis walk, an elementwise op on equal shapes a 1-axis one.
fn collapse<const K: usize>(
    dims: &[usize],
    strides: [&[usize]; K],
) -> (Vec<usize>, [Vec<usize>; K]) {
    let (d, s) = collapse_dyn(dims, &strides);
    let s: [Vec<usize>; K] = s.try_into().expect("one stride list per operand");
    (d, s)
}

/// [`collapse`] over any number of operands.
pub fn collapse_dyn(dims: &[usize], st: &[&[usize]]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut d: Vec<usize> = vec![];
    let mut s: Vec<Vec<usize>> = vec![vec![]; st.len()];
    for i in 0..dims.len() {
        if dims[i] == 1 {
            continue;
        }
        let merge =
            !d.is_empty() && (0..st.len()).all(|k| s[k][s[k].len() - 1] == st[k][i] * dims[i]);
        if merge {
            let last = d.len() - 1;
            d[last] *= dims[i];
            for k in 0..st.len() {
                let l = s[k].len() - 1;
                s[k][l] = st[k][i];
            }
        } else {
            d.push(dims[i]);
            for k in 0..st.len() {
                s[k].push(st[k][i]);
            }
        }
    }
    (d, s)
}

/// Calls `f` with each operand's offset for every element of `dims` in row-major order, the
/// common shapes (one or two regular axes) as plain loops.
pub fn walk<const K: usize>(dims: &[usize], strides: [&[usize]; K], mut f: impl FnMut([usize; K])) {
    let (d, s) = collapse(dims, strides);
    match d.len() {
        0 => f([0; K]),
        1 => {
            for i in 0..d[0] {
                f(std::array::from_fn(|k| i * s[k][0]))
            }
        }
        2 => {
            for i in 0..d[0] {
                for j in 0..d[1] {
                    f(std::array::from_fn(|k| i * s[k][0] + j * s[k][1]))
                }
            }
        }
        _ => odometer(&d, &s, f),
    }
}

/// The elements of `x` read at `strides` over `dims` (a permutation, a slice, a broadcast), in
/// row-major order; rows that are contiguous in `x` are copied as slices.
pub fn gather_strided<T: Copy>(x: &[T], dims: &[usize], strides: &[usize]) -> Vec<T> {
    let (d, s) = collapse(dims, [strides]);
    let mut y = Vec::with_capacity(dims.iter().product());
    match d.last() {
        Some(&w) if s[0][d.len() - 1] == 1 && w >= 4 => {
            let k = d.len() - 1;
            walk(&d[..k], [&s[0][..k]], |[o]| {
                y.extend_from_slice(&x[o..o + w])
            });
        }
        _ => walk(dims, [strides], |[o]| y.push(x[o])),
    }
    y
}

/// The general walk: the outer axes counted like an odometer (each operand's base offset
/// kept up to date), the last axis as an inner loop; nothing allocated per element.
fn odometer<const K: usize>(d: &[usize], s: &[Vec<usize>; K], mut f: impl FnMut([usize; K])) {
    let (outer, last) = (d.len() - 1, d[d.len() - 1]);
    let mut idx = vec![0usize; outer];
    let mut base = [0usize; K];
    let rows: usize = d[..outer].iter().product();
    for _ in 0..rows {
        for j in 0..last {
            f(std::array::from_fn(|k| base[k] + j * s[k][outer]))
        }
        for a in (0..outer).rev() {
            idx[a] += 1;
            for k in 0..K {
                base[k] += s[k][a];
            }
            if idx[a] < d[a] {
                break;
            }
            for k in 0..K {
                base[k] -= s[k][a] * d[a];
            }
            idx[a] = 0;
        }
    }
}

/// `x` (of `input` shape) broadcast to `out`.
/// A row repeated (a bias over tokens) and a value per row (a mean back over its row) are
/// slice copies and fills.
pub fn expand<T: Copy>(x: &[T], input: &[usize], out: &[usize]) -> Vec<T> {
    let n: usize = out.iter().product();
    let st = broadcast_strides(input, out);
    let (d, s) = collapse(out, [&st]);
    let mut y = Vec::with_capacity(n);
    match (d.len(), s[0].as_slice()) {
        (2, [0, 1]) => (0..d[0]).for_each(|_| y.extend_from_slice(&x[..d[1]])),
        (2, [1, 0]) => x[..d[0]]
            .iter()
            .for_each(|&v| y.extend(std::iter::repeat_n(v, d[1]))),
        _ => return gather_strided(x, out, &st),
    }
    y
}

/// Strides that send each element of `input` to its slot in the reduced (kept-axes) output.
pub fn reduce_strides(input: &[usize], axes: &[usize]) -> Vec<usize> {
    let kept: Vec<usize> = (0..input.len())
        .map(|i| if axes.contains(&i) { 1 } else { input[i] })
        .collect();
    let s = strides(&kept);
    (0..input.len())
        .map(|i| if axes.contains(&i) { 0 } else { s[i] })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_walk_a_transposed_view() {
        // A 2x3 matrix read as its 3x2 transpose.
        assert_eq!(offsets(&[3, 2], &[1, 3]), vec![0, 3, 1, 4, 2, 5]);
        assert_eq!(expand(&[1, 2], &[2, 1], &[2, 3]), vec![1, 1, 1, 2, 2, 2]);
        assert_eq!(expand(&[1, 2, 3], &[3], &[2, 3]), vec![1, 2, 3, 1, 2, 3]);
        assert_eq!(reduce_strides(&[2, 3], &[1]), vec![1, 0]);
    }

    #[test]
    fn walks_match_the_general_offsets() {
        let cases: [(&[usize], &[usize]); 7] = [
            (&[3, 2, 5], &[1, 15, 3]),
            (&[2, 3, 5], &[20, 5, 1]),
            (&[2, 3, 4], &[12, 4, 1]),
            (&[2, 3, 4], &[0, 0, 1]),
            (&[2, 3, 4], &[4, 0, 1]),
            (&[2, 1, 3, 4], &[1, 0, 8, 2]),
            (&[5, 2, 3, 2], &[6, 0, 2, 1]),
        ];
        for (dims, st) in cases {
            let mut got = vec![];
            walk(dims, [st], |[o]| got.push(o));
            assert_eq!(got, offsets(dims, st), "{dims:?} {st:?}");
            // Reading a tensor at those offsets, contiguous rows copied whole.
            let x: Vec<usize> = (0..100).collect();
            assert_eq!(
                gather_strided(&x, dims, st),
                offsets(dims, st),
                "{dims:?} {st:?}"
            );
        }
    }
}
