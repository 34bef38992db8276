//! Fuzz campaigns of the runtime's file readers (issue 31): checkpoints (tensors and their
//! checked metadata) and `.npy` arrays, arbitrary bytes and mutations of valid files. No case
//! may panic or take over 5 s; each campaign prints how many cases ran and its slowest. A
//! short run here; a campaign:
//! `NETC_FUZZ_CASES=5000 cargo test -p netc-runtime --test suite fuzz_campaign:: -- --nocapture`.

use netc_runtime::io::{read_npy_f32, write_npy_f32, Checkpoint};
use proptest::prelude::*;
use std::path::Path;

#[path = "../../../compiler/tests/support/campaign.rs"]
mod campaign;
use campaign::campaign;

/// `bytes` with a byte set, a span cut out, a run of `value` inserted and a tail dropped.
fn mutate(mut b: Vec<u8>, at: usize, value: u8, cut: usize, keep: usize) -> Vec<u8> {
    let i = at % b.len().max(1);
    if i < b.len() {
        b[i] = value;
    }
    let j = (i + cut % 8).min(b.len());
    b.splice(i..j, std::iter::repeat_n(value, cut % 3));
    b.truncate(keep.max(1).min(b.len().max(1)));
    b
}

/// A valid checkpoint of a run (tensors, an Adam state and the metadata `train` writes).
fn checkpoint_bytes(dir: &Path) -> Vec<u8> {
    let c = Checkpoint {
        tensors: vec![
            (
                "a.weight".into(),
                vec![2, 3],
                (0..6).map(|i| i as f32).collect(),
            ),
            ("a.weight.exp_avg_sq".into(), vec![2, 3], vec![0.25; 6]),
            ("a.bias".into(), vec![2], vec![0.5, -0.5]),
        ],
        metadata: [
            ("step", "7"),
            ("epoch", "1"),
            ("lr", "1e-3"),
            ("lr_scale", "1e0"),
            ("image_std", "[0.5]"),
            ("val_fraction", "0.1"),
            ("classes", "[\"a\",\"b\"]"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    let p = dir.join("c.safetensors");
    c.save(&p).expect("save");
    std::fs::read(p).expect("read")
}

#[test]
fn checkpoint_campaign() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = checkpoint_bytes(dir.path());
    Checkpoint::load(&dir.path().join("c.safetensors")).expect("the valid checkpoint loads");
    let strategy = (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..300),
        (any::<usize>(), any::<u8>(), any::<usize>(), 0usize..4000),
    );
    campaign(
        "checkpoint",
        strategy,
        |(arbitrary, bytes, (at, value, cut, keep))| {
            let p = dir.path().join("m.safetensors");
            let b = if arbitrary {
                bytes
            } else {
                mutate(good.clone(), at, value, cut, keep)
            };
            std::fs::write(&p, b).expect("write");
            if let Ok(c) = Checkpoint::load(&p) {
                for (_, shape, data) in &c.tensors {
                    assert_eq!(shape.iter().product::<usize>(), data.len());
                }
            }
        },
    );
}

#[test]
fn npy_campaign() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("good.npy");
    let v: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32 / 7.0).collect();
    write_npy_f32(&p, &[2, 1, 3, 4], &v).expect("write npy");
    let good = std::fs::read(&p).expect("read");
    let strategy = (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..200),
        (any::<usize>(), any::<u8>(), any::<usize>(), 0usize..300),
    );
    campaign(
        "npy",
        strategy,
        |(arbitrary, bytes, (at, value, cut, keep))| {
            let p = dir.path().join("m.npy");
            let b = if arbitrary {
                bytes
            } else {
                mutate(good.clone(), at, value, cut, keep)
            };
            std::fs::write(&p, b).expect("write");
            if let Ok((shape, data)) = read_npy_f32(&p) {
                assert_eq!(shape.iter().product::<usize>(), data.len());
            }
        },
    );
}
