//! The runtime's front doors (IDX data files and checkpoints) turn any bytes into data or a
//! typed error, never a panic. A short run here; a longer campaign:
//! `NETC_FUZZ_CASES=200000 cargo test --release -p netc-runtime --test suite fuzz_readers::`.

use netc_runtime::data::idx::{read_idx_images, read_idx_labels};
use netc_runtime::io::Checkpoint;
use proptest::prelude::*;
use std::io::Write;

fn cases() -> u32 {
    std::env::var("NETC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

/// A valid IDX images file of `n` images of 3x2 and its labels file.
fn idx_pair(n: u8) -> (Vec<u8>, Vec<u8>) {
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, n, 0, 0, 0, 3, 0, 0, 0, 2];
    images.extend((0..6 * n as usize).map(|i| i as u8));
    let mut labels = vec![0, 0, 8, 1, 0, 0, 0, n];
    labels.extend((0..n).map(|i| i % 10));
    (images, labels)
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
    e.write_all(bytes).expect("compress");
    e.finish().expect("compress")
}

/// A valid checkpoint's bytes.
fn checkpoint_bytes(dir: &std::path::Path) -> Vec<u8> {
    let c = Checkpoint {
        tensors: vec![
            (
                "a.weight".into(),
                vec![2, 3],
                (0..6).map(|i| i as f32).collect(),
            ),
            ("a.bias".into(), vec![2], vec![0.5, -0.5]),
        ],
        metadata: [("step".to_string(), "7".to_string())].into(),
    };
    let p = dir.join("c.safetensors");
    c.save(&p).expect("save");
    std::fs::read(p).expect("read")
}

/// `bytes` with a byte set, a span cut out and a tail dropped, as the cases say.
fn mutate(mut bytes: Vec<u8>, at: usize, value: u8, cut: usize, keep: usize) -> Vec<u8> {
    if !bytes.is_empty() {
        let i = at % bytes.len();
        bytes[i] = value;
        let j = (i + cut % 8).min(bytes.len());
        bytes.drain(i..j);
    }
    bytes.truncate(keep.max(1).min(bytes.len().max(1)));
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn idx_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64), zip in any::<bool>()) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        std::fs::write(&p, if zip { gz(&bytes) } else { bytes }).expect("write");
        let _ = read_idx_images(&p);
        let _ = read_idx_labels(&p);
    }

    #[test]
    fn idx_mutations(n in 0u8..6, at in any::<usize>(), value in any::<u8>(), cut in any::<usize>(),
                     keep in 0usize..200, zip in any::<bool>()) {
        let dir = tempfile::tempdir().expect("tmp");
        let (images, labels) = idx_pair(n);
        for (name, bytes) in [("i", images), ("l", labels)] {
            let mut m = mutate(bytes, at, value, cut, keep);
            if zip {
                m = gz(&m);
            }
            let p = dir.path().join(name);
            std::fs::write(&p, &m).expect("write");
            if let Ok((pixels, count, rows, cols)) = read_idx_images(&p) {
                prop_assert_eq!(pixels.len(), count * rows * cols);
            }
            let _ = read_idx_labels(&p);
        }
    }

    #[test]
    fn checkpoint_mutations(at in any::<usize>(), value in any::<u8>(), cut in any::<usize>(),
                            keep in 0usize..2000) {
        let dir = tempfile::tempdir().expect("tmp");
        let good = checkpoint_bytes(dir.path());
        let p = dir.path().join("m.safetensors");
        std::fs::write(&p, mutate(good, at, value, cut, keep)).expect("write");
        if let Ok(c) = Checkpoint::load(&p) {
            for (_, shape, data) in &c.tensors {
                prop_assert_eq!(shape.iter().product::<usize>(), data.len());
            }
        }
    }

    #[test]
    fn checkpoint_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("a.safetensors");
        std::fs::write(&p, &bytes).expect("write");
        let _ = Checkpoint::load(&p);
    }
}
