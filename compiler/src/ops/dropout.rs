//! dropout: in training, each element is kept with probability 1 - p and scaled by 1/(1 - p)
//! (inverted dropout); the identity in evaluation. The mask is a hash of the step's seed and
//! the element index ([`keep`]), identical on every executor.

use super::registry::OpDef;
use super::{ArgDef, Op, Parsed, Ty};
use crate::diag::Diagnostic;

pub(super) const DEF: OpDef = OpDef {
    name: "dropout",
    aliases: &[],
    args: ARGS,
    example: "dropout(0.5)",
    named_inputs: false,
    main_call: false,
    parse: from_args,
};

const ARGS: &[ArgDef] = &[("p", &["rate"], Ty::Float, false, true)];

fn from_args(p: &Parsed, errors: &mut Vec<Diagnostic>) -> Op {
    let prob = p.float("p", 0.5);
    if !(0.0..1.0).contains(&prob) {
        let sp = p.get("p").map_or(p.span, |v| v.span);
        errors.push(
            Diagnostic::error(format!("dropout probability {prob} is outside [0, 1)"))
                .at(sp, "out of range"),
        );
    }
    Op::Dropout { p: prob }
}

pub(super) fn describe(p: f64) -> String {
    format!("dropout[{p}]")
}

// ---------------------------------------------------------------------------------------------
// GPU: kernels and lowering.

use crate::kernels::{
    acc_tag, elementwise, f32_lit, store_scalar, with_old, KernelSource, ReadPath, Reads, Store,
};
use crate::program::{Builder, TensorId};

const PCG_HASH: &str = "fn pcg(v: u32) -> u32 {\n    let state = v * 747796405u + 2891336453u;\n    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;\n    return (word >> 22u) ^ word;\n}\n";

/// The dropout keep decision for element `i` under `seed`, shared with the CPU reference so
/// both drop exactly the same units: keep when pcg(i ^ pcg(seed)) >= p * 2^32.
pub fn keep(seed: u32, i: u32, p: f64) -> bool {
    fn pcg(v: u32) -> u32 {
        let state = v.wrapping_mul(747796405).wrapping_add(2891336453);
        let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277803737);
        (word >> 22) ^ word
    }
    (pcg(i ^ pcg(seed)) as f64) >= p * 4294967296.0
}

fn dropout_threshold(p: f64) -> String {
    // Compare in u32: threshold = ceil(p * 2^32) clamped.
    let t = (p * 4294967296.0).ceil().min(4294967295.0) as u64;
    format!("{t}u")
}

/// y = x * keep / (1 - p) (or, backward, dx = dy * keep / (1 - p)); the seed is a u32 stored
/// in `rng[0]`, written by the host each step (read from storage on both paths: a mirror
/// would carry it as a float). `offset` is the index of element 0 in the whole batch (a
/// micro-batch's first sample times the features), so the mask is the whole batch's.
pub fn kernel(
    len: u64,
    p: f64,
    offset: u64,
    backward: bool,
    store: Store,
    path: ReadPath,
) -> KernelSource {
    let reads = Reads::new(path)
        .input(0, "x")
        .output(1, "y", store == Store::Accumulate)
        .extra("@group(0) @binding(2) var<storage, read> rng: array<u32>;")
        .extra(PCG_HASH.trim_end());
    let scale = f32_lit(1.0 / (1.0 - p));
    let index = if offset == 0 {
        "i".to_string()
    } else {
        format!("(i + {offset}u)")
    };
    let v = format!(
        "select(0.0, x * {scale}, pcg({index} ^ seed) >= {})",
        dropout_threshold(p)
    );
    elementwise(
        format!(
            "dropout[{len} p={p}{}{}{}]",
            if offset == 0 {
                String::new()
            } else {
                format!(" at {offset}")
            },
            if backward { " bwd" } else { "" },
            acc_tag(store)
        ),
        len,
        reads,
        &with_old(store, "y", "y_old", vec![("x", "x")]),
        "let seed = pcg(rng[0]);",
        &store_scalar(store, "y", &v),
    )
}

/// The dispatch of a dropout node in training, forward (`x` -> `y`, Write) or backward (`dy` ->
/// the input's gradient slot): the same mask both ways. `offset` is the index of the batch
/// element 0 stands for (micro-batches).
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower(
    b: &mut Builder,
    p: f64,
    offset: u64,
    len: u64,
    backward: bool,
    x: TensorId,
    (y, store): (TensorId, Store),
    label: String,
) {
    let rng = b.rng();
    b.emit(
        kernel(len, p, offset, backward, store, b.reads()),
        vec![x, y, rng],
        label,
    );
}

#[cfg(test)]
mod tests {
    use super::keep;

    #[test]
    fn dropout_keeps_about_one_minus_p() {
        let kept = (0..100_000u32).filter(|&i| keep(42, i, 0.5)).count();
        assert!((49_000..51_000).contains(&kept), "{kept}");
        assert_eq!((0..1000u32).filter(|&i| keep(7, i, 0.0)).count(), 1000);
    }
}
