//! The kernels' unit tests: every variant is valid WGSL, the read paths bind what they
//! should, and the helpers (tiles, grids, literals) do what they say.

const ADAM_RULE: Optimizer = Optimizer::Adam {
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weight_decay: 1e-4,
};
const SGD_RULE: Optimizer = Optimizer::Sgd {
    momentum: 0.9,
    weight_decay: 5e-4,
};

#[test]
fn resources_read_from_the_source() {
    let g = Gemm {
        trans_b: true,
        bias: true,
        ..Gemm::new(128, 10, 784)
    };
    let r = matmul(g, ReadPath::Storage).resources().expect("parses");
    // Two 16x64 f32 tiles; a, b, bias read-only storage and c.
    assert_eq!(r.workgroup_size, [16, 16, 1]);
    assert_eq!(r.workgroup_bytes, 2 * 16 * 64 * 4);
    assert_eq!((r.storage_buffers, r.textures), (4, 0));
    let r = matmul(g, ReadPath::Texture).resources().expect("parses");
    assert_eq!(r.workgroup_bytes, 0);
    assert_eq!(
        (r.storage_buffers, r.textures, r.storage_textures),
        (1, 3, 0)
    );
    let r = matmul(g, ReadPath::Image).resources().expect("parses");
    assert_eq!(
        (r.storage_buffers, r.textures, r.storage_textures),
        (1, 0, 3)
    );
    let r = softmax_xent(128, 10, 1.0, ReadPath::Storage)
        .resources()
        .expect("parses");
    assert_eq!((r.workgroup_size, r.workgroup_bytes), ([64, 1, 1], 64 * 16));
}

use super::matmul_texture::{texture_tile, TEX_GEMM_WORKGROUP};
use super::template::grid;
use super::*;
use crate::ops::{activation, add, dropout, softmax};

#[test]
fn every_kernel_variant_is_valid_wgsl() {
    let mut all = vec![];
    for path in [ReadPath::Storage, ReadPath::Texture, ReadPath::Image] {
        // Shapes that take each fetch mode of the texture path: 4-aligned and not.
        for (m, n, k) in [(37, 53, 71), (36, 52, 72), (128, 10, 128), (12, 8, 10)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for act in [
                    Act::Identity,
                    Act::Relu,
                    Act::LeakyRelu(0.2),
                    Act::Sigmoid,
                    Act::Tanh,
                ] {
                    for store in [Store::Write, Store::Accumulate] {
                        for bias in [true, false] {
                            all.push(matmul(
                                Gemm {
                                    trans_a: ta,
                                    trans_b: tb,
                                    bias,
                                    act,
                                    store,
                                    ..Gemm::new(m, n, k)
                                },
                                path,
                            ));
                        }
                    }
                }
            }
        }
        for act in [
            Act::Identity,
            Act::Relu,
            Act::LeakyRelu(0.01),
            Act::Sigmoid,
            Act::Tanh,
        ] {
            all.push(activation::forward_kernel(act, 1000, path));
            all.push(activation::backward_kernel(act, 1000, Store::Write, path));
            all.push(activation::backward_kernel(
                act,
                1000,
                Store::Accumulate,
                path,
            ));
        }
        all.push(add::forward_kernel(77, path));
        all.push(copy(77, Store::Write, path));
        all.push(copy(77, Store::Accumulate, path));
        all.push(dropout::kernel(77, 0.5, 0, false, Store::Write, path));
        all.push(dropout::kernel(77, 0.5, 231, true, Store::Accumulate, path));
        all.push(softmax::forward_kernel(7, 10, path));
        all.push(softmax::backward_kernel(7, 10, Store::Accumulate, path));
        all.push(softmax_xent(7, 10, 1.0 / 7.0, path));
        all.push(bce_logits(7, 1.0 / 7.0, path));
        all.push(softmax_xent(300, 7, 1.0 / 300.0, path));
        all.push(bias_grad(7, 10, Store::Write, path));
        all.push(bias_grad(7, 10, Store::Accumulate, path));
        all.push(bias_grad(7, 12, Store::Accumulate, path));
        all.push(adam(1002, 0.9, 0.999, 1e-8, 0.0, path));
        all.push(activation::backward_kernel(
            Act::Relu,
            1003,
            Store::Accumulate,
            path,
        ));
        all.push(sgd(1000, 0.9, 5e-4, path));
        all.push(adam(1000, 0.9, 0.999, 1e-8, 0.0, path));
        for lens in [&[10][..], &[1280, 10, 100352, 7], &[5, 6, 7, 8, 9, 10, 11]] {
            all.push(update_group(lens, ADAM_RULE, path));
            all.push(update_group(lens, SGD_RULE, path));
        }
    }
    for k in &all {
        if let Err(e) = validate(&k.source) {
            panic!("{} is invalid:\n{e}\n{}", k.name, k.source);
        }
        let textures = k.source.matches("texture_2d<").count()
            + k.source.matches("texture_storage_2d<").count();
        assert_eq!(textures, k.mirrors.len(), "{}: mirrors listed", k.name);
    }
}

#[test]
fn texture_path_reads_no_storage_buffer_but_the_dropout_seed() {
    for path in [ReadPath::Texture, ReadPath::Image] {
        let k = adam(1000, 0.9, 0.999, 1e-8, 0.0, path);
        assert!(!k.source.contains("var<storage, read>"), "{}", k.source);
        assert_eq!(k.mirrors.len(), 5);
        let g = Gemm {
            store: Store::Accumulate,
            bias: true,
            ..Gemm::new(128, 784, 128)
        };
        let k = matmul(g, path);
        assert!(!k.source.contains("var<storage, read>"));
        // a, b, bias at their own bindings, and c's mirror for the accumulation.
        let mut m: Vec<(u32, u32)> = k.mirrors.iter().map(|m| (m.binding, m.of)).collect();
        m.sort();
        assert_eq!(m, vec![(0, 0), (1, 1), (3, 3), (34, 2)]);
    }
}

#[test]
fn image_path_differs_from_the_sampled_one_only_in_how_a_mirror_is_bound_and_loaded() {
    let g = Gemm {
        trans_b: true,
        bias: true,
        act: Act::Relu,
        ..Gemm::new(128, 128, 784)
    };
    let sampled = matmul(g, ReadPath::Texture);
    let image = matmul(g, ReadPath::Image);
    assert_eq!(
        image
            .source
            .replace("texture_storage_2d<rgba32float, read>", "texture_2d<f32>")
            .replace("u)); }", "u), 0); }"),
        sampled.source
    );
    assert_eq!(
        (image.groups, &image.mirrors),
        (sampled.groups, &sampled.mirrors)
    );
    assert!(image.name.ends_with(" img]") && sampled.name.ends_with(" tex]"));
}

#[test]
fn texture_tiles_shrink_when_more_threads_share_the_work() {
    // One 16-invocation workgroup per thread, the largest tile (at most 16x16) that leaves
    // that many.
    assert_eq!(texture_tile(128, 128, 2 * TEX_GEMM_WORKGROUP), (16, 4));
    assert_eq!(texture_tile(128, 128, 4 * TEX_GEMM_WORKGROUP), (16, 4));
    assert_eq!(texture_tile(128, 128, 8 * TEX_GEMM_WORKGROUP), (16, 2));
    assert_eq!(texture_tile(1024, 1024, 64 * TEX_GEMM_WORKGROUP), (16, 4));
    assert_eq!(texture_tile(128, 10, 4 * TEX_GEMM_WORKGROUP), (4, 1));
    let eight = matmul_for(Gemm::new(128, 128, 784), ReadPath::Texture, 8);
    let four = matmul(Gemm::new(128, 128, 784), ReadPath::Texture);
    assert_eq!((eight.groups[0], four.groups[0]), (8, 4));
    // The storage path does not depend on it.
    let s2 = matmul_for(Gemm::new(128, 128, 784), ReadPath::Storage, 2);
    assert_eq!(
        s2.source,
        matmul(Gemm::new(128, 128, 784), ReadPath::Storage).source
    );
}

#[test]
fn grid_folds_large_work() {
    assert_eq!(grid(1000, 256).0, [4, 1, 1]);
    let (g, row) = grid(128 * 290_400, 256);
    assert!(g[0] as u64 <= MAX_GROUPS && g[1] > 1);
    assert!(g[0] as u64 * g[1] as u64 * 256 >= 128 * 290_400);
    assert_eq!(row, MAX_GROUPS * 256);
}

#[test]
fn float_literals_round_trip() {
    assert_eq!(f32_lit(1.0), "1.0");
    assert_eq!(f32_lit(1e-8), "1e-8");
    assert_eq!(f32_lit(0.999), "0.999");
    assert_eq!(f32_lit(1.0 / 128.0), "0.0078125");
}
