//! `netc score`'s figures with the built-in LeNet, at their ends of the scale: real MNIST test
//! digits score near the ceiling (Inception Score close to 10, nearly all confident, a small
//! Frechet distance between two halves), pure noise near the floor.

use netc_runtime::data::{load_split, Split};
use netc_runtime::rng::Rng;
use netc_runtime::score::Scorer;

#[test]
fn real_digits_score_near_the_ceiling_and_noise_near_the_floor() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/mnist-sample");
    let test = load_split(std::path::Path::new(dir), Split::Test).expect("shipped sample");
    let scorer = Scorer::builtin().expect("the built-in LeNet loads");
    assert_eq!((scorer.classes, scorer.image_len), (10, 784));
    let n = 2000;
    let (a, b) = (&test.images[..n * 784], &test.images[n * 784..2 * n * 784]);
    let real_b = scorer.outputs(b).expect("features");
    let real = scorer.score(a, Some(&real_b)).expect("score");
    assert!(real.inception_score > 9.3, "{real:?}");
    assert!(real.confident > 0.95, "{real:?}");
    assert!(real.histogram.iter().all(|&c| c > n / 20), "{real:?}");
    let fid_real = real.fid.expect("fid");
    let mut rng = Rng::new(3);
    let noise: Vec<f32> = (0..n * 784).map(|_| rng.next_f64() as f32).collect();
    let bad = scorer.score(&noise, Some(&real_b)).expect("score");
    assert!(bad.inception_score < 1.5, "{bad:?}");
    let fid_noise = bad.fid.expect("fid");
    assert!(
        fid_noise > 20.0 * fid_real,
        "noise {fid_noise} against real halves {fid_real}"
    );
    // A wrong image size is an error naming both sizes, not a panic.
    let e = scorer.score(&noise[..100], None).expect_err("size");
    assert!(e.to_string().contains("784"), "{e}");
}
