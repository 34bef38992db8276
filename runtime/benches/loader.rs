//! The image-folder loader alone, on 256x256-ish photo-like JPEGs, with AlexNet's pipeline
//! (resize the shorter side to 256, random 227x227 crops, flips, mean subtraction, PCA colour
//! noise): `cargo bench -p netc-runtime --bench loader`. It writes the folder once (1,000
//! images in 10 classes under target/loader-bench-images) and prints images per second on one
//! thread and on every core; `netc bench --loader --model models/alexnet.net --data-dir
//! target/loader-bench-images` times the same through the CLI. README, "Image folders",
//! records the figures beside the images per second AlexNet's step consumes.

use std::path::Path;
use std::sync::Arc;

use image::{ImageBuffer, Rgb};
use netc_compiler::train_config::{BadImages, ChannelStat, ImageConfig};
use netc_runtime::data::augment::Normalise;
use netc_runtime::data::folder::{self, FolderSet, Needs};
use netc_runtime::rng::Rng;

const CLASSES: usize = 10;
const PER_CLASS: usize = 100;

/// Smooth colour fields, a few discs and pixel noise: JPEGs about as costly to decode per pixel
/// as photographs (flat images decode much faster).
fn write_folder(root: &Path) {
    let mut rng = Rng::new(7);
    for c in 0..CLASSES {
        let dir = root.join(format!("class{c}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..PER_CLASS {
            let (w, h) = (256 + rng.below(128) as u32, 256 + rng.below(64) as u32);
            let base: [f64; 3] = std::array::from_fn(|_| rng.uniform(40.0, 200.0));
            let discs: Vec<(f64, f64, f64, [f64; 3])> = (0..6)
                .map(|_| {
                    (
                        rng.uniform(0.0, w as f64),
                        rng.uniform(0.0, h as f64),
                        rng.uniform(10.0, 80.0),
                        std::array::from_fn(|_| rng.uniform(-60.0, 60.0)),
                    )
                })
                .collect();
            let img = ImageBuffer::from_fn(w, h, |x, y| {
                let (xf, yf) = (x as f64, y as f64);
                let mut px = base.map(|b| b + 40.0 * (xf / 37.0).sin() * (yf / 53.0).cos());
                for (cx, cy, r, col) in &discs {
                    if (xf - cx).powi(2) + (yf - cy).powi(2) < r * r {
                        px.iter_mut().zip(col).for_each(|(p, d)| *p += d);
                    }
                }
                Rgb(px.map(|p| (p + rng.uniform(-20.0, 20.0)).clamp(0.0, 255.0) as u8))
            });
            img.save(dir.join(format!("{i:04}.jpg"))).unwrap();
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/loader-bench-images");
    if !root.join(format!("class{}", CLASSES - 1)).is_dir() {
        println!(
            "writing {} JPEGs to {}",
            CLASSES * PER_CLASS,
            root.display()
        );
        write_folder(&root);
    }
    let cfg = ImageConfig {
        resize: Some(256),
        flip: true,
        mean: ChannelStat::Auto,
        color_jitter: 0.1,
        ..ImageConfig::default()
    };
    let needs = Needs {
        channels: 3,
        size: (227, 227),
    };
    let ix = folder::index(&root, &cfg, needs, 1, (false, false)).unwrap();
    let mut set = FolderSet {
        items: ix.train,
        classes: ix.classes,
        needs,
        train: true,
        resize: Some(256),
        random_crop: true,
        flip: true,
        norm: Normalise {
            range: (0.0, 1.0),
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        },
        jitter: None,
        eval_crops: 1,
        bad_images: BadImages::Stop,
        seed: 1,
        failed: Default::default(),
    };
    let stats = folder::measure(&set, 1).unwrap();
    set.norm = folder::normalise(&cfg, 3, (0.0, 1.0), Some(&stats)).unwrap();
    set.jitter = stats.pca.map(|p| (0.1, p));
    let set = Arc::new(set);
    let all = netc_runtime::data::loader::default_threads();
    for threads in [1, all] {
        let mut rates = vec![];
        for _ in 0..3 {
            let (n, secs) = netc_runtime::bench::loader(set.clone(), 128, 4, threads).unwrap();
            rates.push(n as f64 / secs);
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "loader, AlexNet pipeline, {threads} thread(s): median {:.0} images/s (of {:.0}-{:.0}; 512 images per run)",
            rates[1], rates[0], rates[2]
        );
    }
}
