//! The lowered training program of the shipped MLP: the schedule listing and the WGSL of every
//! kernel are snapshot-tested, and every kernel is valid WGSL for naga (no adapter needed).

use netc_compiler::compile;
use netc_compiler::kernels::{validate, ReadPath};
use netc_compiler::schedule::{Builder, Kind, Optimizer};

#[test]
fn mlp_training_program() {
    // Storage loads (GPUs) and texture mirrors (CPU adapters; sampled, and storage textures)
    // each get their own snapshots.
    for (reads, suffix) in [
        (ReadPath::Storage, ""),
        (ReadPath::Texture, "_texture"),
        (ReadPath::Image, "_image"),
    ] {
        mlp_program(reads, suffix);
    }
}

#[test]
fn small_tensors_share_an_update_dispatch_as_limits_allow() {
    // Under the adapter's (large) limits the three small tensors of the MLP share one
    // dispatch; the 100,352-element weight keeps its own.
    for reads in [ReadPath::Storage, ReadPath::Texture, ReadPath::Image] {
        let p = mlp_lowered(Builder::with_reads(reads).with_limits(1 << 20, 1 << 20));
        let updates: Vec<&str> = p
            .kernels
            .iter()
            .map(|k| k.name.as_str())
            .filter(|n| n.starts_with("adam"))
            .collect();
        assert_eq!(updates, ["adam[100352]", "adam[128+1280+10]"], "{reads:?}");
    }
}

fn mlp_program(reads: ReadPath, suffix: &str) {
    let p = mlp_lowered(Builder::with_reads(reads));
    insta::assert_snapshot!(format!("mlp_program{suffix}"), p.printout());
    let mut wgsl = String::new();
    for k in &p.kernels {
        validate(&k.source).unwrap_or_else(|e| panic!("{}: {e}", k.name));
        wgsl.push_str(&format!(
            "// ===== {} (groups {:?})\n{}\n",
            k.name, k.groups, k.source
        ));
    }
    insta::assert_snapshot!(format!("mlp_kernels{suffix}"), wgsl);
    // The first layer's input gradient is never computed (nothing upstream needs it).
    assert!(!p.printout().contains("hidden backward input"));
}

/// The shipped MLP's training step (batch 128, Adam) lowered with `b`.
fn mlp_lowered(mut b: Builder) -> netc_compiler::schedule::Program {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/mlp.net"))
        .expect("mlp.net");
    let m = compile("mlp.net", &src).expect("compiles");
    let net = &m.networks[0];
    let mut set = b.params(net, true);
    let x = b.tensor("x", 128 * 784, Kind::HostInput);
    let y = b.tensor("y", 128 * 10, Kind::HostInput);
    let stats = b.tensor("stats", 4, Kind::Stats);
    b.begin_pass("train_step");
    let f = b.forward(net, &set, x, 128, true).expect("lowers");
    let dz = b.softmax_xent(f.logit, y, 128, 10, 1.0 / 128.0, stats);
    b.backward(net, &set, &f, f.logit_node, dz, false);
    b.update(
        &mut set,
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        "adam",
    );
    b.end_pass();
    b.finish()
}

#[test]
fn batchnorm_refuses_a_batch_cut_into_micro_batches_naming_its_layer() {
    // Under a 4 KiB binding the 4x8x8 activations (1 KiB a sample) split batch 8 into parts,
    // and batch statistics over a part are not the batch's: a typed error, not a quietly
    // different normalisation. The same network without batchnorm runs in parts.
    let src = "net c { input x: 1x8x8\n a = conv(4, k=3, pad=1, bias=false)\n bn = batchnorm -> relu\n o = flatten -> dense(2) }";
    let m = compile("c.net", src).expect("compiles");
    let sgd = Optimizer::Sgd {
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let e = Builder::new()
        .with_binding_limit(4 << 10)
        .classifier(&m.networks[0], sgd, 8)
        .expect_err("batchnorm over micro-batches");
    let msg = e.to_string();
    assert!(msg.contains("layer `bn` (batchnorm)"), "{msg}");
    assert!(msg.contains("at most 4 fits"), "{msg}");
    let plain =
        compile("p.net", &src.replace("bn = batchnorm -> relu", "bn = relu")).expect("compiles");
    let b = Builder::new().with_binding_limit(4 << 10);
    assert_eq!(b.micro_batches(&plain.networks[0], 8).len(), 2);
    b.classifier(&plain.networks[0], sgd, 8)
        .expect("runs in parts");
    // The whole batch in one binding: batchnorm lowers.
    Builder::new()
        .classifier(&m.networks[0], sgd, 8)
        .expect("batchnorm lowers");
}

#[test]
fn transient_buffers_are_reused_without_overlap() {
    let src = "net d { input x: 64\n a = dense(64) -> relu\n b = dense(64) -> relu\n c = dense(64) -> relu\n e = dense(64) -> relu\n o = dense(10) }";
    let m = compile("d.net", src).expect("compiles");
    let net = &m.networks[0];
    let mut b = Builder::new();
    let mut set = b.params(net, true);
    let x = b.tensor("x", 32 * 64, Kind::HostInput);
    let y = b.tensor("y", 32 * 10, Kind::HostInput);
    let stats = b.tensor("stats", 4, Kind::Stats);
    b.begin_pass("train_step");
    let f = b.forward(net, &set, x, 32, true).expect("lowers");
    let dz = b.softmax_xent(f.logit, y, 32, 10, 1.0 / 32.0, stats);
    b.backward(net, &set, &f, f.logit_node, dz, false);
    b.update(
        &mut set,
        Optimizer::Sgd {
            momentum: 0.9,
            weight_decay: 0.0,
        },
        "sgd",
    );
    b.end_pass();
    let p = b.finish();
    assert!(p.buffer_bytes() < p.unplanned_bytes(), "{}", p.printout());
    // No two tensors that are live at the same command share a buffer.
    let pass = &p.passes[0];
    let uses = |t: usize| -> Vec<usize> {
        pass.commands
            .iter()
            .enumerate()
            .filter(|(_, c)| match c {
                netc_compiler::schedule::Command::Dispatch { bindings, .. } => {
                    bindings.contains(&t)
                }
                _ => false,
            })
            .map(|(i, _)| i)
            .collect()
    };
    for t1 in 0..p.tensors.len() {
        for t2 in t1 + 1..p.tensors.len() {
            if p.assignment[t1] != p.assignment[t2] {
                continue;
            }
            let (u1, u2) = (uses(t1), uses(t2));
            let (Some(&a1), Some(&b1), Some(&a2), Some(&b2)) =
                (u1.first(), u1.last(), u2.first(), u2.last())
            else {
                continue;
            };
            assert!(
                b1 < a2 || b2 < a1,
                "{} and {} share buffer {} while both live",
                p.tensors[t1].name,
                p.tensors[t2].name,
                p.assignment[t1]
            );
        }
    }
}

#[test]
fn a_dense_weight_over_the_binding_limit_is_split_into_row_blocks() {
    let m = compile(
        "s.net",
        "net s { input x: 37\n a = dense(300) -> relu\n o = dense(11) }",
    )
    .expect("compiles");
    let net = &m.networks[0];
    let mut b = Builder::new().with_binding_limit(16 << 10);
    let set = b.params(net, true);
    // 16 KiB / 4 bytes / 37 inputs = 110 rows per block: 110, 110, 80.
    let w: Vec<(u64, u64)> = set
        .parts("a.weight")
        .iter()
        .map(|p| (p.offset, p.len))
        .collect();
    assert_eq!(
        w,
        vec![(0, 110 * 37), (110 * 37, 110 * 37), (220 * 37, 80 * 37)]
    );
    let bias: Vec<(u64, u64)> = set
        .parts("a.bias")
        .iter()
        .map(|p| (p.offset, p.len))
        .collect();
    assert_eq!(bias, vec![(0, 110), (110, 110), (220, 80)]);
    assert_eq!(set.parts("o.weight").len(), 1, "11x300 fits");
    let x = b.tensor("x", 2 * 37, Kind::HostInput);
    b.begin_pass("p");
    let fwd = b.forward(net, &set, x, 2, true).expect("lowers");
    let dz = b.tensor("dz", 2 * 11, Kind::Activation);
    b.backward(net, &set, &fwd, fwd.logit_node, dz, false);
    b.end_pass();
    let text = b.finish().printout();
    // Three products and three block copies forward; three dy blocks backward.
    assert_eq!(text.matches("s.a forward: matmul").count(), 3, "{text}");
    assert_eq!(text.matches("s.a forward: concat_fwd").count(), 3, "{text}");
    assert_eq!(text.matches("backward dy block").count(), 3, "{text}");
}
