//! Every op's backward against central differences in f64 on the CPU reference (< 1e-7).

use netc_compiler::compile;
use netc_runtime::gradcheck::{check, THRESHOLD};

fn passes(src: &str) {
    let m = compile("g.net", src).unwrap_or_else(|d| panic!("{}", d.render()));
    for net in &m.networks {
        let r = check(net, 5, 40, 9).expect("gradcheck runs");
        for t in &r.tensors {
            assert!(
                t.rel_diff < THRESHOLD,
                "{}: {} relative difference {:e}",
                r.net,
                t.name,
                t.rel_diff
            );
            assert!(
                t.analytic_norm > 0.0,
                "{}: {} has a zero gradient, nothing was checked",
                r.net,
                t.name
            );
            // Points next to a kink are skipped; most must still be compared.
            assert!(
                t.checked >= 3 * t.kinks && t.checked > 0,
                "{}: {} compared {} entries, {} at kinks",
                r.net,
                t.name,
                t.checked,
                t.kinks
            );
        }
        assert!(r.passed(), "{r:?}");
    }
}

#[test]
fn dense_and_relu() {
    passes("net t { input x: 13\n h = dense(17) -> relu\n o = dense(6) }");
}

#[test]
fn leaky_relu_sigmoid_tanh() {
    passes("net t { input x: 9\n a = dense(11) -> leaky_relu(0.1)\n b = dense(7) -> sigmoid\n c = dense(8) -> tanh\n o = dense(4) }");
}

#[test]
fn softmax_in_the_middle_and_add() {
    passes("net t { input x: 10\n h = dense(12)\n a = h -> relu\n b = h -> tanh\n s = add(a, b) -> dense(5) -> softmax\n o = dense(3) }");
}

#[test]
fn flatten_reshape_and_shared_input() {
    passes("net t { input x: 12\n r = reshape(3x2x2) -> flatten\n a = r -> dense(12) -> sigmoid\n s = add(a, r, x)\n o = dense(4) }");
}

#[test]
fn dropout_with_a_fixed_mask() {
    passes("net t { input x: 10\n h = dense(20) -> relu -> dropout(0.4)\n o = dense(3) }");
}

#[test]
fn binary_cross_entropy_head() {
    passes("net t { input x: 8\n h = dense(6) -> relu\n o = dense(1) -> sigmoid }");
}

#[test]
fn conv_same_with_an_odd_padding_total_and_groups() {
    // 7x6 with k=4: three padding rows, the odd one after; groups 2 and 4.
    passes("net t { input x: 4x7x6\n a = conv(6, k=4, pad=same, groups=2) -> relu\n b = conv(8, k=3, pad=1, groups=2) -> tanh\n c = conv(8, k=1, groups=4)\n o = flatten -> dense(3) }");
}

#[test]
fn conv_stride_larger_than_the_kernel_dilation_and_no_bias() {
    // (11 - 2) is not a multiple of 3: the last input column gets no gradient but keeps its size.
    passes("net t { input x: 3x11x10\n a = conv(5, k=2, s=3, bias=false) -> leaky_relu(0.1)\n b = conv(4, k=3, pad=2, dilation=2) -> relu\n o = flatten -> dense(4) }");
}

#[test]
fn pooling_with_padding_and_overlap() {
    passes("net t { input x: 3x9x8\n a = conv(4, k=3) -> relu\n p = maxpool(k=3, s=2, pad=1)\n q = avgpool(k=3, s=2, pad=1)\n r = maxpool(k=2, s=2, pad=same)\n o = flatten -> dense(4) }");
}

#[test]
fn pooling_with_ceil_rounding_on_odd_sizes() {
    // After the conv 4x8x7. maxpool k3 s2 pad1 ceil: 5x4 (floor 4x4), the last row window
    // overhangs the padding; avgpool k3 s2 pad1 ceil on 5x4: 3x3 (floor 3x2), the last column
    // window divides by 2x3 taps; avgpool k2 s2 ceil without padding on 3x3: 2x2 (floor 1x1),
    // the overhang counts only the input.
    passes("net t { input x: 3x10x9\n a = conv(4, k=3) -> relu\n p = maxpool(k=3, s=2, pad=1, ceil=true)\n q = avgpool(k=3, s=2, pad=1, ceil=true)\n r = avgpool(k=2, s=2, ceil=true)\n o = flatten -> dense(4) }");
    // 2x9x7: maxpool k2 s2 ceil gives 5x4 (floor 4x3); with pad=1 on 5x4, ceil's 4th row
    // window would start in the padding after, so it is dropped (3x3); avgpool k2 s2 pad1 ceil
    // on 3x3 drops one too (2x2).
    passes("net t { input x: 2x9x7\n a = conv(3, k=1) -> tanh\n m = maxpool(k=2, s=2, ceil=true)\n n = maxpool(k=2, s=2, pad=1, ceil=true)\n v = avgpool(k=2, s=2, pad=1, ceil=true)\n o = flatten -> dense(3) }");
}

#[test]
fn lrn_at_the_channel_edges_and_concat() {
    passes("net t { input x: 3x5x5\n a = conv(7, k=3) -> lrn(size=5, alpha=0.1, beta=0.75, k=2)\n b = x -> conv(4, k=3) -> lrn(size=4, alpha=0.5, beta=0.75, k=1)\n c = concat(a, b)\n d = conv(6, k=3) -> relu\n e = concat(d, d, axis=1)\n o = flatten -> dense(4) }");
}

#[test]
fn dropout_and_add_on_images() {
    passes("net t { input x: 3x6x7\n a = conv(4, k=3, pad=1) -> relu -> dropout(0.3)\n b = x -> conv(4, k=3, pad=1) -> leaky_relu(0.2)\n s = add(a, b)\n o = flatten -> dense(3) }");
}

#[test]
fn a_small_alexnet() {
    // AlexNet's op sequence at 35x35: conv/relu/lrn/maxpool twice (grouped SAME conv2), three
    // 3x3 convs (groups 2 on the last two), maxpool, two dense layers with dropout, logits.
    passes("net t { input x: 3x35x35\n c1 = conv(8, k=5, s=2) -> relu -> lrn(size=5, alpha=1e-2, beta=0.75, k=2)\n p1 = maxpool(k=3, s=2)\n c2 = conv(8, k=5, pad=same, groups=2) -> relu -> lrn(size=5, alpha=1e-2, beta=0.75, k=2)\n p2 = maxpool(k=3, s=2)\n c3 = conv(12, k=3, pad=1) -> relu\n c4 = conv(12, k=3, pad=1, groups=2) -> relu\n c5 = conv(8, k=3, pad=1, groups=2) -> relu\n p5 = maxpool(k=3, s=2)\n f6 = flatten -> dense(16) -> relu -> dropout(0.5)\n f7 = dense(16) -> relu -> dropout(0.5)\n f8 = dense(5) }");
}

#[test]
fn conv_transpose_strides_output_padding_groups_dilation() {
    // Stride 2 with padding 1 (DCGAN's upsampling), stride 3 with output_padding 1 and two
    // groups, dilation 2 without bias, SAME, and an output_padding that reaches the stride
    // (allowed below the dilation, as in PyTorch).
    passes("net t { input x: 4x3x4\n a = conv_transpose(6, k=4, s=2, pad=1) -> relu\n b = conv_transpose(4, k=3, s=3, pad=1, output_padding=1, groups=2) -> tanh\n c = conv_transpose(3, k=2, dilation=2, bias=false)\n d = conv_transpose(2, k=3, s=2, pad=same)\n o = flatten -> dense(3) }");
    passes("net t { input x: 2x3x3\n a = conv_transpose(3, k=3, s=2, output_padding=2, dilation=3)\n o = flatten -> dense(2) }");
}

#[test]
fn every_cpu_conv_lowering() {
    // The CPU lowers a conv one of three ways (runtime/src/cpu/conv.rs, `Lowering`); the
    // small convs above run per sample. From 16 input channels per group: channels-last, here
    // a DCGAN-like stride-2 conv, a transposed conv whose adjoint reads 32 channels, a grouped
    // dilated SAME conv with 16 per group. Few channels with a large weight (70 x 2 x 8 x 8):
    // planar, batched.
    passes("net t { input x: 2x11x10\n a = conv(70, k=8, s=3, pad=2) -> tanh\n o = flatten -> dense(3) }");
    passes("net t { input x: 16x6x5\n a = conv(16, k=4, s=2, pad=1) -> leaky_relu(0.2)\n b = conv_transpose(32, k=4, s=2, pad=1) -> tanh\n c = conv(4, k=3, pad=same, groups=2, dilation=2)\n o = flatten -> dense(3) }");
}

#[test]
fn batchnorm_in_training_through_the_batch_statistics() {
    // Per channel after a conv and a transposed conv, per feature after a dense layer. The
    // layers before a batchnorm have no bias: the batch mean cancels it (its true gradient is
    // zero, so there would be nothing to compare).
    passes("net t { input x: 3x5x4\n a = conv(4, k=3, pad=1, bias=false) -> batchnorm -> relu\n b = conv_transpose(2, k=2, s=2, bias=false) -> batchnorm(eps=1e-3) -> leaky_relu(0.2)\n h = flatten -> dense(7, bias=false) -> batchnorm -> tanh\n o = dense(3) }");
}

#[test]
fn shipped_models() {
    for f in ["mlp.net", "gan.yaml", "lenet.net"] {
        let path = format!("{}/../models/{f}", env!("CARGO_MANIFEST_DIR"));
        let src = std::fs::read_to_string(&path).expect("model file");
        let m = compile(f, &src).unwrap_or_else(|d| panic!("{}", d.render()));
        for net in &m.networks {
            let r = check(net, 4, 15, 1).expect("gradcheck runs");
            assert!(r.passed(), "{f} {}: {:?}", r.net, r.tensors);
        }
    }
}

#[test]
fn a_wrong_gradient_is_caught() {
    // Sanity of the checker itself: perturbing the analytic result must fail the 1e-7 mark.
    let m = compile("g.net", "net t { input x: 5\n o = dense(3) }").expect("compiles");
    let r = check(&m.networks[0], 3, 10, 2).expect("runs");
    assert!(r.passed());
    let worse = netc_runtime::gradcheck::TensorCheck {
        rel_diff: 1e-3,
        ..r.tensors[0].clone()
    };
    let bad = netc_runtime::gradcheck::Report {
        tensors: vec![worse],
        ..r
    };
    assert!(!bad.passed());
}

#[test]
fn a_generator_is_checked_with_its_own_loss_through_the_frozen_discriminator() {
    // Both generator losses, on a small generator with a leaky_relu and a sigmoid image.
    let m = compile(
        "gan.net",
        "net g {\n input z: 6\n h = dense(9) -> leaky_relu(0.2)\n img = dense(5) -> sigmoid\n output img\n}\n\
         net d {\n input x: 5\n h = dense(7) -> relu\n p = dense(1) -> sigmoid\n output p\n}\n",
    )
    .unwrap_or_else(|d| panic!("{}", d.render()));
    let (g, d) = (&m.networks[0], &m.networks[1]);
    for non_saturating in [true, false] {
        let r = netc_runtime::gradcheck::check_generator(g, d, non_saturating, 5, 30, 3)
            .expect("gradcheck runs");
        assert!(r.loss.contains("D(G(z))"), "{}", r.loss);
        // g's four tensors and the noise; none of d's, which is frozen.
        assert_eq!(r.tensors.len(), 5, "{:?}", r.tensors);
        for t in &r.tensors {
            assert!(t.rel_diff < THRESHOLD, "{}: {:e}", t.name, t.rel_diff);
            assert!(t.analytic_norm > 0.0 && t.checked > 0, "{}", t.name);
        }
        assert!(r.passed());
    }
}
