//! Index arithmetic baked into generated WGSL: row-major strides, the strides that read one
//! shape as a broadcast, permuted or sliced view of another, and the expression of an element's
//! offset in such a view from its flat index in the output (sizes are constants in the text).

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

/// Strides reading the input of a permutation in output order.
pub fn permuted_strides(input: &[usize], perm: &[usize]) -> Vec<usize> {
    let s = strides(input);
    perm.iter().map(|&p| s[p]).collect()
}

/// `dims` read with strides `st`, adjacent axes merged where the view is regular across them
/// and size-1 axes dropped, so the generated offset has as few divisions as the view allows.
fn collapse(dims: &[usize], st: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let (mut d, mut s): (Vec<usize>, Vec<usize>) = (vec![], vec![]);
    for i in 0..dims.len() {
        if dims[i] == 1 {
            continue;
        }
        match (d.last_mut(), s.last_mut()) {
            (Some(pd), Some(ps)) if *ps == st[i] * dims[i] => {
                *pd *= dims[i];
                *ps = st[i];
            }
            _ => {
                d.push(dims[i]);
                s.push(st[i]);
            }
        }
    }
    (d, s)
}

/// The WGSL (u32) offset of the element at flat index `idx` (an expression below the product
/// of `dims`) of `dims` in a view with strides `st`: `sum(coord_d * st_d)`, 0u for a scalar.
pub fn offset(idx: &str, dims: &[usize], st: &[usize]) -> String {
    let idx = &atom(idx);
    let (d, s) = collapse(dims, st);
    let row = strides(&d);
    let mut terms = vec![];
    for a in 0..d.len() {
        if s[a] == 0 {
            continue;
        }
        let mut c = if row[a] == 1 {
            idx.to_string()
        } else {
            format!("({idx} / {}u)", row[a])
        };
        // The first axis needs no modulo: the index is below the whole product.
        if a > 0 {
            c = format!("({c} % {}u)", d[a]);
        }
        terms.push(if s[a] == 1 {
            c
        } else {
            format!("{c} * {}u", s[a])
        });
    }
    match terms.is_empty() {
        true => "0u".into(),
        false => format!("({})", terms.join(" + ")),
    }
}

/// An index expression safe to divide or multiply: a name or number as it is, else in
/// parentheses (an offset read by a fused node is a sum).
fn atom(idx: &str) -> String {
    match idx.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        true => idx.to_string(),
        false => format!("({idx})"),
    }
}

/// The coordinate along axis `axis` of the element at flat index `idx` of `dims`.
pub fn coord(idx: &str, dims: &[usize], axis: usize) -> String {
    let idx = &atom(idx);
    let s = strides(dims)[axis];
    let c = if s == 1 {
        idx.to_string()
    } else {
        format!("({idx} / {s}u)")
    };
    match axis {
        0 => c,
        _ => format!("({c} % {}u)", dims[axis]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evaluates an offset expression the way WGSL would, for index `i`.
    fn eval(expr: &str, i: usize) -> usize {
        let src = expr.replace('u', "").replace("idx", &i.to_string());
        let tokens: Vec<char> = src.chars().filter(|c| !c.is_whitespace()).collect();
        let mut pos = 0;
        parse_sum(&tokens, &mut pos)
    }

    fn parse_sum(t: &[char], p: &mut usize) -> usize {
        let mut v = parse_prod(t, p);
        while *p < t.len() && t[*p] == '+' {
            *p += 1;
            v += parse_prod(t, p);
        }
        v
    }

    fn parse_prod(t: &[char], p: &mut usize) -> usize {
        let mut v = parse_atom(t, p);
        while *p < t.len() && matches!(t[*p], '*' | '/' | '%') {
            let op = t[*p];
            *p += 1;
            let r = parse_atom(t, p);
            v = match op {
                '*' => v * r,
                '/' => v / r,
                _ => v % r,
            };
        }
        v
    }

    fn parse_atom(t: &[char], p: &mut usize) -> usize {
        if t[*p] == '(' {
            *p += 1;
            let v = parse_sum(t, p);
            *p += 1;
            return v;
        }
        let start = *p;
        while *p < t.len() && t[*p].is_ascii_digit() {
            *p += 1;
        }
        t[start..*p].iter().collect::<String>().parse().unwrap()
    }

    /// The offsets every element of `dims` reads in a view with strides `st`, walked directly.
    fn direct(dims: &[usize], st: &[usize]) -> Vec<usize> {
        let n: usize = dims.iter().product();
        let row = strides(dims);
        (0..n)
            .map(|i| {
                (0..dims.len())
                    .map(|a| (i / row[a]) % dims[a] * st[a])
                    .sum()
            })
            .collect()
    }

    #[test]
    fn offsets_match_a_direct_walk() {
        let cases: [(&[usize], Vec<usize>); 5] = [
            (&[3, 5, 7], broadcast_strides(&[5, 1], &[3, 5, 7])),
            (&[3, 5, 7], broadcast_strides(&[3, 1, 7], &[3, 5, 7])),
            (&[3, 5, 7], permuted_strides(&[5, 7, 3], &[2, 0, 1])),
            (&[2, 1, 4], strides(&[2, 1, 4])),
            (&[4, 6], vec![12, 1]),
        ];
        for (dims, st) in cases {
            let e = offset("idx", dims, &st);
            let got: Vec<usize> = (0..dims.iter().product()).map(|i| eval(&e, i)).collect();
            assert_eq!(got, direct(dims, &st), "{dims:?} {st:?}: {e}");
        }
        assert_eq!(offset("idx", &[1, 1], &[1, 1]), "0u");
        assert_eq!(eval(&coord("idx", &[3, 5, 7], 1), 40), 0);
    }
}
