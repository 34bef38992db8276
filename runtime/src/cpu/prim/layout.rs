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

/// `x` (of `input` shape) broadcast to `out`.
pub fn expand<T: Copy>(x: &[T], input: &[usize], out: &[usize]) -> Vec<T> {
    offsets(out, &broadcast_strides(input, out))
        .into_iter()
        .map(|o| x[o])
        .collect()
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
}
