//! `data = synthetic`: a learnable stand-in data set shaped to the network, for running a
//! model's training end to end before its real data is at hand (AlexNet until image folders
//! are read) and for benchmarks. Each class has a random prototype image; an example is half
//! its class's prototype and half fresh uniform noise, so a network can learn the classes
//! and its test accuracy says whether training works. Deterministic for a seed.

use super::Dataset;
use crate::rng::{mix64, Rng};

/// Training examples per synthetic data set, in batches (kept small: AlexNet's 3x227x227
/// images take 618 KB each as f32).
pub const SYNTHETIC_TRAIN_BATCHES: usize = 4;
/// Test examples, in batches.
pub const SYNTHETIC_TEST_BATCHES: usize = 1;
/// Classes that occur (the first ones of the network's outputs): AlexNet's 1000 classes would
/// leave most classes without a single example among a few hundred images.
pub const SYNTHETIC_CLASSES: usize = 10;

/// The train and test splits for a network taking `(channels, rows, cols)` images into
/// `classes` outputs at `batch`; labels are the first `SYNTHETIC_CLASSES` of them.
pub fn synthetic(
    (channels, rows, cols): (usize, usize, usize),
    classes: usize,
    batch: usize,
    seed: u64,
) -> (Dataset, Dataset) {
    let len = channels * rows * cols;
    let classes = classes.clamp(1, SYNTHETIC_CLASSES);
    let mut protos = Rng::new(mix64(seed ^ 0x5A_17E7));
    let prototypes: Vec<f32> = (0..classes * len)
        .map(|_| protos.next_f64() as f32)
        .collect();
    let split = |n: usize, stream: u64| {
        let mut rng = Rng::new(mix64(seed) ^ mix64(stream));
        let mut images = Vec::with_capacity(n * len);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            // Classes in turn, so every split holds each class about equally often.
            let c = i % classes;
            let p = &prototypes[c * len..(c + 1) * len];
            images.extend(p.iter().map(|&v| 0.5 * v + 0.5 * rng.next_f64() as f32));
            labels.push(c as u32);
        }
        Dataset {
            images,
            labels,
            n,
            channels,
            rows,
            cols,
            augment: None,
        }
    };
    let batch = batch.max(1);
    (
        split(SYNTHETIC_TRAIN_BATCHES * batch, 1),
        split(SYNTHETIC_TEST_BATCHES * batch, 2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_to_the_network_and_reproducible() {
        let (train, test) = synthetic((3, 5, 7), 4, 6, 9);
        assert_eq!((train.n, test.n), (24, 6));
        assert_eq!(train.image_len(), 105);
        assert_eq!(train.images.len(), 24 * 105);
        assert!(train.images.iter().all(|v| (0.0..1.0).contains(v)));
        assert_eq!(train.labels[..5], [0, 1, 2, 3, 0]);
        assert_eq!(synthetic((3, 5, 7), 4, 6, 9).0, train);
        assert_ne!(synthetic((3, 5, 7), 4, 6, 10).0.images, train.images);
        // The test split draws its own noise around the same prototypes.
        assert_ne!(test.images[..105], train.images[..105]);
    }

    #[test]
    fn many_outputs_use_the_first_classes() {
        let (train, _) = synthetic((1, 2, 2), 1000, 8, 1);
        assert_eq!(*train.labels.iter().max().expect("labels"), 9);
        assert_eq!(train.labels.iter().filter(|&&l| l == 0).count(), 4);
    }

    #[test]
    fn examples_of_a_class_are_closer_to_each_other_than_to_other_classes() {
        let (train, _) = synthetic((1, 8, 8), 3, 30, 1);
        let dist = |a: usize, b: usize| -> f32 {
            train
                .image(a)
                .iter()
                .zip(train.image(b))
                .map(|(x, y)| (x - y) * (x - y))
                .sum()
        };
        // examples 0, 3, 6 are class 0; 1 is class 1
        assert!(dist(0, 3) < dist(0, 1));
        assert!(dist(0, 6) < dist(0, 2));
    }
}
