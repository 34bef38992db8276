//! Index arithmetic for the primitive reference: row-major strides, and the offset of every
//! element of one shape in a strided view of another (broadcast, reduced, permuted, sliced).

/// Row-major strides of `dims`.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Strides reading an `input` shape broadcast to `out` (aligned right; 0 where it stretches).
pub fn broadcast_strides(input: &[usize], out: &[usize]) -> Vec<usize> {
    let own = strides(input);
    let lead = out.len() - input.len();
    (0..out.len())
        .map(|i| match i.checked_sub(lead) {
            Some(k) if input[k] != 1 || out[i] == 1 => own[k],
            _ => 0,
        })
        .collect()
}

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
    let mut d: Vec<usize> = vec![];
    let mut s: [Vec<usize>; K] = std::array::from_fn(|_| vec![]);
    for i in 0..dims.len() {
        if dims[i] == 1 {
            continue;
        }
        let merge =
            !d.is_empty() && (0..K).all(|k| s[k][s[k].len() - 1] == strides[k][i] * dims[i]);
        if merge {
            let last = d.len() - 1;
            d[last] *= dims[i];
            for k in 0..K {
                let l = s[k].len() - 1;
                s[k][l] = strides[k][i];
            }
        } else {
            d.push(dims[i]);
            for k in 0..K {
                s[k].push(strides[k][i]);
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
        _ => {
            let offs: Vec<Vec<usize>> = (0..K).map(|k| offsets(&d, &s[k])).collect();
            let n: usize = d.iter().product();
            (0..n).for_each(|i| f(std::array::from_fn(|k| offs[k][i])));
        }
    }
}

/// `x` (of `input` shape) broadcast to `out`.
pub fn expand<T: Copy>(x: &[T], input: &[usize], out: &[usize]) -> Vec<T> {
    let mut y = Vec::with_capacity(out.iter().product());
    walk(out, [&broadcast_strides(input, out)], |[o]| y.push(x[o]));
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

/// Strides reading the input of a permutation in output order.
pub fn permuted_strides(input: &[usize], perm: &[usize]) -> Vec<usize> {
    let s = strides(input);
    perm.iter().map(|&p| s[p]).collect()
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
        let cases: [(&[usize], &[usize]); 5] = [
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
        }
    }
}
