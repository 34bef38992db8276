//! Errors of the tensor primitives stay located: a broadcast or rank mismatch names both
//! shapes and the line; a misspelt primitive or library block gets the nearest name.

use netc_compiler::compile;

fn error(src: &str) -> String {
    match compile("e.net", src) {
        Ok(_) => panic!("compiled: {src}"),
        Err(d) => d.render(),
    }
}

#[test]
fn a_broadcast_mismatch_names_both_shapes_and_the_line() {
    let e = error("net t {\n input x: 5x8\n w = param(3x8)\n y = mul(x, w)\n}");
    assert!(e.contains("Bx5x8 and 3x8 do not broadcast"), "{e}");
    assert!(e.contains("e.net:4:"), "{e}");
}

#[test]
fn a_matmul_with_unequal_inner_sizes_says_which() {
    let e = error("net t {\n input x: 5x8\n w = param(7x3)\n y = matmul(x, w)\n}");
    assert!(e.contains("inner sizes 8 and 7 differ"), "{e}");
}

#[test]
fn an_axis_out_of_range_is_located() {
    let e = error("net t {\n input x: 5x8\n y = mean(axis=2)\n}");
    assert!(e.contains("axis 2 is out of range for shape Bx5x8"), "{e}");
    assert!(e.contains("e.net:3:"), "{e}");
}

#[test]
fn misspelt_primitives_and_blocks_get_the_nearest_name() {
    let e = error("net t {\n input x: 5x8\n y = layernrm(8)\n}");
    assert!(e.contains("did you mean `layernorm`?"), "{e}");
    let e = error("net t {\n input x: 5x8\n y = x -> maximun(x)\n}");
    assert!(e.contains("did you mean `maximum`?"), "{e}");
}

#[test]
fn an_error_inside_a_library_block_points_at_the_call() {
    // layernorm(7) on 8 features: its scale of 7 does not broadcast against 5x8.
    let e = error("net t {\n input x: 5x8\n y = layernorm(7)\n}");
    assert!(e.contains("e.net:3:"), "{e}");
    assert!(
        e.contains("`y/scaled`") && e.contains("Bx5x8 and 7 do not broadcast"),
        "{e}"
    );
}

#[test]
fn a_layer_refuses_a_parameter_input() {
    let e = error(
        "net t {\n input x: 8\n w = param(4x8)\n y = w -> relu -> dense(3)\n o = add(x, y)\n}",
    );
    assert!(e.contains("needs a batched tensor"), "{e}");
}

#[test]
fn the_vit_has_pytorchs_parameter_count() {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/vit.net"))
        .expect("models/vit.net");
    let m = compile("vit.net", &src).unwrap_or_else(|d| panic!("{}", d.render()));
    // PyTorch's twin (runtime/tests/fixtures/vit_twin.py): patch conv 3,200, class token 64,
    // positions 1,088, four blocks of 33,472, final norm 128, head 650.
    assert_eq!(m.networks[0].totals().params, 139_018);
}
