//! Fused regions on the CPU executor: a region run tile by tile (a few examples at a time, in
//! parallel) gives exactly what its graph gives over the whole batch at once, forward and
//! backward (parameter gradients summed over the tiles), and a backward reading the values
//! its training pass kept gives what one computing them again gives; and regions are the convex runs of
//! primitives the executors rely on.

use ndarray::Array2;
use netc_compiler::compile;
use netc_compiler::ir::Network;
use netc_compiler::prim::NodeId;
use netc_runtime::cpu::prim::{eval, region};
use netc_runtime::cpu::{self, Params};
use netc_runtime::rng::Rng;
use std::collections::HashMap;

fn network(src: &str) -> Network {
    let m = compile("r.net", src).unwrap_or_else(|d| panic!("{}", d.render()));
    m.networks.into_iter().next().expect("one network")
}

/// Every region's tiled forward and backward against one evaluation of its graphs over the
/// whole batch, in f64 (the same sums in another order: equal to 1e-12).
fn tiles_agree_with_the_whole_batch(src: &str, batch: usize) {
    agree_on(&network(src), batch);
}

fn agree_on(net: &Network, batch: usize) {
    let mut rng = Rng::new(3);
    let p: Params<f64> = Params::init(net, &mut rng);
    let width = net.graph[net.inputs[0]].shape.iter().product::<u64>() as usize;
    let x = Array2::from_shape_fn((batch, width), |_| rng.normal());
    let acts = cpu::forward(net, &p, x.view(), true, 1).expect("forward");
    let regions = net.regions().expect("regions");
    assert!(!regions.list.is_empty());
    for r in &regions.list {
        let tiled = region::forward(r, &acts.values, batch).expect("tiled forward");
        let (keeping, kept) = region::forward_keeping(r, &acts.values, batch).expect("keeping");
        assert_eq!(keeping, tiled, "a training pass's outputs are the same");
        let feeds: HashMap<NodeId, &[f64]> = r
            .inputs
            .iter()
            .map(|&(n, leaf)| (leaf, acts.get(n).as_slice().expect("standard")))
            .collect();
        let outs: Vec<NodeId> = r.outputs.iter().map(|o| o.1).collect();
        let whole = eval(&r.graph, batch, &feeds, &outs).expect("whole forward");
        for (t, w) in tiled.iter().zip(&whole) {
            close(t.as_slice().expect("standard"), w, "forward");
        }
        let dys: Vec<Array2<f64>> = tiled.iter().map(|t| t.mapv(|_| rng.normal())).collect();
        let some: Vec<Option<Array2<f64>>> = dys.iter().cloned().map(Some).collect();
        let grads = region::backward(r, &acts.values, None, &some, batch).expect("tiled backward");
        // Reading the kept values instead of computing them again gives the same gradients.
        let from_kept = region::backward(r, &acts.values, Some(&kept), &some, batch).expect("kept");
        for (a, b) in grads.iter().flatten().zip(from_kept.iter().flatten()) {
            close(
                a.as_slice().expect("standard"),
                b.as_slice().expect("standard"),
                "kept",
            );
        }
        let mut feeds = feeds;
        for (&s, d) in r.seeds.iter().zip(&dys) {
            feeds.insert(s, d.as_slice().expect("standard"));
        }
        let want: Vec<NodeId> = r.grads.iter().flatten().copied().collect();
        let whole = eval(&r.backward, batch, &feeds, &want).expect("whole backward");
        let mut whole = whole.iter();
        for g in grads.iter().flatten() {
            let w = whole.next().expect("one per gradient");
            close(g.as_slice().expect("standard"), w, "backward");
        }
    }
}

fn close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
            "{what}: {x} against {y}"
        );
    }
}

#[test]
fn a_wide_layernorm_runs_one_example_per_tile() {
    // 64 x 256 values per example: a tile holds one example, so 5 tiles.
    tiles_agree_with_the_whole_batch(
        "net t { input x: 64x256\n h = layernorm(256)\n o = flatten -> dense(3) }",
        5,
    );
}

/// A region keeps what it prepared for a tile size (its memo) and later calls reuse it: one
/// network run at batch sizes in turn, each giving what its graphs give, whatever ran before.
#[test]
fn a_region_run_at_several_batch_sizes_in_turn_agrees_at_each() {
    let net = network(
        "net t { input x: 6x8\n b = transformer(8, 2, 12, causal=true)\n o = flatten -> dense(3) }",
    );
    for batch in [37, 5, 37, 1, 38, 5] {
        agree_on(&net, batch);
    }
    let regions = net.regions().expect("regions");
    let kept = format!("{:?}", regions.list[0].memo);
    assert!(!kept.contains("(0 kept)"), "{kept}");
}

#[test]
fn a_transformer_block_in_uneven_tiles() {
    tiles_agree_with_the_whole_batch(
        "net t { input x: 6x8\n b = transformer(8, 2, 12, causal=true)\n o = flatten -> dense(3) }",
        37,
    );
}

#[test]
fn a_region_with_a_parameter_output_runs_the_batch_whole() {
    // `u` depends on the parameter alone and nothing reads it: an output without the batch,
    // so its gradient must be propagated once, not once per tile.
    let src = "net t { input x: 4\n w = param([4])\n u = w -> square\n y = x -> mul(w) }";
    let net = network(src);
    let regions = net.regions().expect("regions");
    assert!(regions.list.iter().any(|r| r.whole_batch()));
    tiles_agree_with_the_whole_batch(src, 9);
}

#[test]
fn regions_are_runs_of_the_topological_order_and_read_only_what_came_before() {
    let m = compile(
        "vit.net",
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/vit.net"))
            .expect("models/vit.net"),
    )
    .unwrap_or_else(|d| panic!("{}", d.render()));
    let net = &m.networks[0];
    let regions = net.regions().expect("regions");
    // Four blocks of layernorm, attention core, layernorm and GELU, and the final layernorm.
    assert!(regions.list.len() >= 17, "{}", regions.list.len());
    let pos = |n| net.order.iter().position(|&o| o == n).expect("ordered");
    for r in &regions.list {
        let (first, last) = (pos(r.nodes[0]), pos(*r.nodes.last().expect("nodes")));
        for &n in &net.order[first..=last] {
            let param = matches!(
                net.graph[n].op,
                netc_compiler::ops::Op::Prim(netc_compiler::ops::prim::PrimOp::Param { .. })
            );
            assert!(
                param || r.nodes.contains(&n),
                "{} inside a region",
                net.graph[n].name
            );
        }
        for &(i, _) in &r.inputs {
            assert!(pos(i) < last && !r.nodes.contains(&i));
        }
    }
}

/// A relu, sigmoid or tanh of a primitive's value joins the primitives' region (so a
/// groupnorm and the SiLU after it run as one fused loop); after a layer, or as the network's
/// output (where trainers take the logits), it stays a layer. Tiles still agree with the
/// whole batch in f64, forward and backward.
#[test]
fn activations_of_primitives_join_their_region() {
    let src = "net t {\n input x: 4x3x3\n g = groupnorm(2, 4) -> silu\n d = flatten -> dense(6) -> sigmoid\n e = d -> scale(2) -> tanh -> relu\n o = e -> dense(3) -> scale(0.5) -> sigmoid\n output o\n}";
    let net = network(src);
    let regions = net.regions().expect("regions");
    let region_of = |name: &str| {
        let n = net.resolve(name).unwrap_or_else(|| panic!("{name}"));
        regions.of.get(&n).copied()
    };
    let silu = region_of("g.silu/s").expect("the SiLU's sigmoid runs in a region");
    assert_eq!(region_of("g/out"), Some(silu), "with the groupnorm");
    assert_eq!(
        region_of("d.sigmoid"),
        None,
        "a dense's sigmoid stays a layer"
    );
    let tanh = region_of("e.tanh").expect("a tanh of a primitive runs in a region");
    assert_eq!(region_of("e.relu"), Some(tanh), "and the relu after it");
    assert_eq!(
        region_of("o.sigmoid"),
        None,
        "the output's sigmoid stays a layer"
    );
    tiles_agree_with_the_whole_batch(src, 7);
}
