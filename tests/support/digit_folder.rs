//! Image folders made from the shipped MNIST sample for the image-folder tests: one folder per
//! digit, as grey PNGs and as tinted, resized RGB JPEGs, with broken files where asked.

use std::path::{Path, PathBuf};

use image::{ImageBuffer, Luma, Rgb};

/// What to write.
pub struct Spec {
    /// Digits 0..classes get a folder each.
    pub classes: usize,
    /// Images per class.
    pub per_class: usize,
    /// `train/` and `val/` (with `per_class / 4` validation images per class), or class folders
    /// directly under the root.
    pub split: bool,
    /// RGB JPEGs (tinted per image) instead of grey PNGs.
    pub rgb: bool,
    /// Width and height the digits are scaled to (28 keeps them as they are); every third image
    /// gets two extra columns, so sizes vary.
    pub size: u32,
}

impl Spec {
    /// Grey 28x28 PNGs in class folders directly under the root.
    pub fn grey(classes: usize, per_class: usize) -> Spec {
        Spec {
            classes,
            per_class,
            split: false,
            rgb: false,
            size: 28,
        }
    }
}

/// The MNIST sample's test images and labels, in [0, 255].
pub fn mnist_sample() -> (Vec<u8>, Vec<u8>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("data/mnist-sample").is_dir())
        .expect("data/mnist-sample")
        .join("data/mnist-sample");
    let (px, _, _, _) = netc_runtime::data::read_idx_images(&dir.join("t10k-images-idx3-ubyte.gz"))
        .expect("sample images");
    let labels = netc_runtime::data::read_idx_labels(&dir.join("t10k-labels-idx1-ubyte.gz"))
        .expect("sample labels");
    (px, labels)
}

/// Writes the folder under `root`; returns the files written, per class.
pub fn write(root: &Path, spec: &Spec) -> Vec<Vec<PathBuf>> {
    let (px, labels) = mnist_sample();
    let mut files = vec![vec![]; spec.classes];
    let mut taken = vec![0usize; spec.classes];
    for (i, &l) in labels.iter().enumerate() {
        let c = l as usize;
        if c >= spec.classes || taken[c] >= spec.per_class {
            continue;
        }
        let k = taken[c];
        taken[c] += 1;
        let part = if !spec.split {
            root.to_path_buf()
        } else if k < spec.per_class / 4 {
            root.join("val")
        } else {
            root.join("train")
        };
        let dir = part.join(format!("digit{c}"));
        std::fs::create_dir_all(&dir).unwrap();
        let digit =
            ImageBuffer::<Luma<u8>, _>::from_raw(28, 28, px[i * 784..(i + 1) * 784].to_vec())
                .unwrap();
        let w = spec.size + if k.is_multiple_of(3) { 2 } else { 0 };
        let digit =
            image::imageops::resize(&digit, w, spec.size, image::imageops::FilterType::Triangle);
        let path = if spec.rgb {
            // A tint per image: the class is in the shape, not the colour.
            let tint = [
                (k * 37 % 200) as u16 + 55,
                (k * 91 % 200) as u16 + 55,
                (k * 53 % 200) as u16 + 55,
            ];
            let rgb = ImageBuffer::<Rgb<u8>, _>::from_fn(w, spec.size, |x, y| {
                let v = digit.get_pixel(x, y)[0] as u16;
                Rgb(tint.map(|t| (v * t / 255) as u8))
            });
            let p = dir.join(format!("{i:05}.jpg"));
            rgb.save(&p).unwrap();
            p
        } else {
            let p = dir.join(format!("{i:05}.png"));
            digit.save(&p).unwrap();
            p
        };
        files[c].push(path);
    }
    files
}

/// Breaks files in place: the first is cut to half its bytes, the second's bytes are replaced
/// by text, the third is emptied.
pub fn break_files(files: &[&Path]) {
    for (k, p) in files.iter().enumerate() {
        let bytes = std::fs::read(p).unwrap();
        let new = match k % 3 {
            0 => bytes[..bytes.len() / 2].to_vec(),
            1 => b"this is not an image at all".to_vec(),
            _ => vec![],
        };
        std::fs::write(p, new).unwrap();
    }
}
