//! Rows of a table by ids, and the gradient that adds rows back. Ids are f32 whole numbers;
//! the CPU executor rejects one that is not a row, the GPU clamps it to the table (a kernel
//! cannot fail), so an out-of-range id reads or adds to the first or last row.

use super::Gen;

/// The row an id names, clamped to `rows` rows.
fn row(id: &str, rows: usize) -> String {
    format!("u32(clamp({id}, 0.0, {}.0))", rows.saturating_sub(1))
}

/// `gather(table, ids)`: element `c` of the row id `i / w` names, `w` a row's elements.
pub(super) fn gather(g: &Gen, _out: &[usize]) -> String {
    let t = &g.ins[0].dims;
    let w: usize = t[1..].iter().product();
    format!(
        "let id = {};\nlet v = {};",
        g.load(1, &format!("i / {w}u")),
        g.load(0, &format!("{} * {w}u + i % {w}u", row("id", t[0])))
    )
}

/// `scatter_add(g, ids)` into `rows` rows: each element of the result adds, in id order, the
/// gradient of every id that names its row (no float atomics in WGSL).
pub(super) fn scatter_add(g: &Gen, rows: usize, out: &[usize]) -> String {
    let ids: usize = g.ins[1].dims.iter().product();
    let w: usize = out[1..].iter().product();
    format!(
        "let r = i / {w}u;\nlet c = i % {w}u;\nvar acc = 0.0;\n\
         for (var j = 0u; j < {ids}u; j = j + 1u) {{\n    if ({} == r) {{ acc = acc + {}; }}\n}}\nlet v = acc;",
        row(&g.load(1, "j"), rows),
        g.load(0, &format!("j * {w}u + c"))
    )
}

/// `one_hot(ids)` over `n` classes: 1 where the element's class is its id (an id that is no
/// class gives a row of zeros; the CPU executor refuses it).
pub(super) fn one_hot(g: &Gen, n: usize) -> String {
    format!(
        "let id = {};\nlet v = select(0.0, 1.0, id == f32(i % {n}u));",
        g.load(0, &format!("i / {n}u"))
    )
}
