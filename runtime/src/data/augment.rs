//! What happens to one image between the file and the network: decode, resize the shorter
//! side, crop (random or centre, or the ten evaluation crops), flip, PCA colour noise, and
//! per-channel normalisation, written as the network's CxHxW floats.
//!
//! Every random choice comes from an [`Rng`] the caller seeds from (seed, epoch, image), so a
//! view does not depend on which loader thread made it or in what order.

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::rng::Rng;

/// Colour channels of a decoded image as the network sees them: 1 (grey, with or without
/// alpha) or 3 (RGB, alpha dropped).
pub fn colour_channels(c: image::ColorType) -> usize {
    if c.has_color() {
        3
    } else {
        1
    }
}

/// Width, height and colour channels from the file's header, without decoding the pixels.
pub fn probe(path: &Path) -> Result<(u32, u32, usize), String> {
    let (file, _) = open_image(path)?;
    let reader = ImageReader::new(std::io::BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not a JPEG or PNG image".into());
    }
    let dec = reader.into_decoder().map_err(|e| e.to_string())?;
    let (w, h) = dec.dimensions();
    if w == 0 || h == 0 {
        return Err(format!("empty image ({w}x{h})"));
    }
    Ok((w, h, colour_channels(dec.color_type())))
}

/// An image file opened for reading: a regular file of at most
/// [`MAX_IMAGE_FILE_BYTES`](crate::io::MAX_IMAGE_FILE_BYTES), refused before it is read
/// otherwise. The error names no path (the callers' errors do).
fn open_image(path: &Path) -> Result<(std::fs::File, u64), String> {
    crate::io::open_capped(path, crate::io::MAX_IMAGE_FILE_BYTES, "an image")
        .map_err(|e| e.problem())
}

/// An image decoded to 8-bit channels, interleaved (HWC).
#[derive(Clone, Debug)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// Decodes `path` with `channels` colour channels (grey images become RGB and the other way
/// round; whether that is allowed was decided when the folder was indexed).
pub fn decode(path: &Path, channels: usize) -> Result<DynamicImage, String> {
    let (file, size) = open_image(path)?;
    let bytes = crate::io::input::read_exactly(file, size, path).map_err(|e| e.problem())?;
    let reader = ImageReader::new(std::io::Cursor::new(&bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format() == Some(image::ImageFormat::Jpeg) && !jpeg_complete(&bytes) {
        return Err("truncated JPEG: no end-of-image marker after its last scan".into());
    }
    let img = reader.decode().map_err(|e| e.to_string())?;
    Ok(match (channels, img) {
        (1, img @ DynamicImage::ImageLuma8(_)) | (3, img @ DynamicImage::ImageRgb8(_)) => img,
        (1, img) => DynamicImage::ImageLuma8(img.to_luma8()),
        (_, img) => DynamicImage::ImageRgb8(img.to_rgb8()),
    })
}

/// Whether a JPEG's data reaches its end-of-image marker (FF D9). The decoder (zune-jpeg,
/// lenient like browsers) fills a cut file with grey instead of failing, which would train on
/// half-grey images without a word. The marker segments are walked from the start (a
/// thumbnail inside an APP segment is skipped with it; what follows the end marker, as in
/// motion photos, is not read); inside a scan's entropy-coded data an FF is followed by 00 or
/// a restart marker, so the next other marker ends the scan.
pub fn jpeg_complete(b: &[u8]) -> bool {
    if b.len() < 4 || b[0] != 0xFF || b[1] != 0xD8 {
        return false;
    }
    let mut i = 2;
    loop {
        // Fill bytes (FF FF ...) may pad between segments.
        while i < b.len() && b[i] == 0xFF && b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if i + 1 >= b.len() || b[i] != 0xFF {
            return false;
        }
        let m = b[i + 1];
        i += 2;
        match m {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {
                let Some(len) = b
                    .get(i..i + 2)
                    .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
                else {
                    return false;
                };
                i += len;
                if m == 0xDA {
                    // Entropy-coded data up to the next marker that is not a stuffed byte or
                    // a restart.
                    loop {
                        match b.get(i..i + 2) {
                            None => return false,
                            Some([0xFF, n]) if *n != 0x00 && !(0xD0..=0xD7).contains(n) => break,
                            Some(_) => i += 1,
                        }
                    }
                }
            }
        }
    }
}

/// The image with its shorter side `side` pixels long (aspect kept, the longer side rounded),
/// resampled with a triangle (bilinear) filter widened when shrinking, as PIL does.
pub fn resize_shorter(img: &DynamicImage, side: u32) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    let (nw, nh) = if w <= h {
        (
            side,
            ((h as u64 * side as u64 + w as u64 / 2) / w as u64).max(1) as u32,
        )
    } else {
        (
            ((w as u64 * side as u64 + h as u64 / 2) / h as u64).max(1) as u32,
            side,
        )
    };
    if (nw, nh) == (w, h) {
        return img.clone();
    }
    img.resize_exact(nw, nh, FilterType::Triangle)
}

/// Interleaved 8-bit pixels of a decoded (and converted) image.
pub fn pixels(img: DynamicImage) -> Pixels {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let (channels, data) = match img {
        DynamicImage::ImageLuma8(b) => (1, b.into_raw()),
        other => (3, other.to_rgb8().into_raw()),
    };
    Pixels {
        width,
        height,
        channels,
        data,
    }
}

/// AlexNet's colour noise: the principal components of the training pixels' RGB covariance.
#[derive(Clone, Debug, PartialEq)]
pub struct Pca {
    pub eigenvalues: [f32; 3],
    /// Column k is eigenvector k.
    pub eigenvectors: [[f32; 3]; 3],
}

/// How a crop becomes the network's input.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalise {
    /// Pixels in [0, 1] are mapped onto [low, high] (the training section's `range`) ...
    pub range: (f32, f32),
    /// ... then the mean is subtracted and the result divided by std, per channel.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

/// A crop's place in the resized image and whether it is mirrored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crop {
    pub x: usize,
    pub y: usize,
    pub flip: bool,
}

/// A random crop of `(h, w)` and a coin for the flip (when `flip`).
pub fn random_crop(p: &Pixels, (h, w): (usize, usize), flip: bool, rng: &mut Rng) -> Crop {
    let x = rng.below((p.width - w + 1) as u64) as usize;
    let y = rng.below((p.height - h + 1) as u64) as usize;
    let flip = flip && rng.below(2) == 1;
    Crop { x, y, flip }
}

/// The centre crop (the extra pixel of an odd margin on the bottom/right).
pub fn centre_crop(p: &Pixels, (h, w): (usize, usize)) -> Crop {
    Crop {
        x: (p.width - w) / 2,
        y: (p.height - h) / 2,
        flip: false,
    }
}

/// The paper's ten test crops: the four corners and the centre, each also mirrored.
pub fn ten_crops(p: &Pixels, (h, w): (usize, usize)) -> [Crop; 10] {
    let (r, b) = (p.width - w, p.height - h);
    let c = centre_crop(p, (h, w));
    let at = |x, y, flip| Crop { x, y, flip };
    [
        at(0, 0, false),
        at(r, 0, false),
        at(0, b, false),
        at(r, b, false),
        at(c.x, c.y, false),
        at(0, 0, true),
        at(r, 0, true),
        at(0, b, true),
        at(r, b, true),
        at(c.x, c.y, true),
    ]
}

/// Writes the crop as CxHxW floats into `out` (`channels * h * w` values): pixels / 255, plus
/// `shift` per channel (the colour noise), then [`Normalise`].
pub fn write_crop(
    p: &Pixels,
    crop: Crop,
    (h, w): (usize, usize),
    shift: &[f32],
    norm: &Normalise,
    out: &mut [f32],
) {
    let c = p.channels;
    let (low, span) = (norm.range.0, norm.range.1 - norm.range.0);
    for ch in 0..c {
        let plane = &mut out[ch * h * w..(ch + 1) * h * w];
        let (m, s) = (norm.mean[ch], norm.std[ch]);
        let add = shift.get(ch).copied().unwrap_or(0.0);
        for y in 0..h {
            let row = &p.data[((crop.y + y) * p.width + crop.x) * c..];
            let dst = &mut plane[y * w..(y + 1) * w];
            for (x, d) in dst.iter_mut().enumerate() {
                let sx = if crop.flip { w - 1 - x } else { x };
                let v = row[sx * c + ch] as f32 / 255.0 + add;
                *d = (low + span * v - m) / s;
            }
        }
    }
}

/// The colour shift of one image: sum over k of eigenvector_k * alpha_k * sqrt(eigenvalue_k),
/// with alpha_k ~ N(0, std) drawn once per image (Krizhevsky et al. 2012, section 4.1). The
/// paper writes the eigenvalue itself; its square root (the component's standard deviation,
/// as fb.resnet.torch's Lighting and the reimplementations after it use) keeps the shift in
/// pixel units whatever the pixel scale: with the eigenvalue of pixels in [0, 1] the shift
/// would be about one grey level, with pixels in [0, 255] hundreds.
pub fn pca_shift(pca: &Pca, std: f32, rng: &mut Rng) -> [f32; 3] {
    let alpha: [f32; 3] = std::array::from_fn(|_| rng.normal() as f32 * std);
    std::array::from_fn(|i| {
        (0..3)
            .map(|k| pca.eigenvectors[i][k] * alpha[k] * pca.eigenvalues[k].max(0.0).sqrt())
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(width: usize, height: usize, channels: usize) -> Pixels {
        let data = (0..width * height * channels)
            .map(|i| (i % 251) as u8)
            .collect();
        Pixels {
            width,
            height,
            channels,
            data,
        }
    }

    fn plain() -> Normalise {
        Normalise {
            range: (0.0, 1.0),
            mean: vec![0.0; 3],
            std: vec![1.0; 3],
        }
    }

    #[test]
    fn a_crop_is_the_pixels_it_names_and_a_flip_mirrors_it() {
        let p = ramp(7, 5, 3);
        let (h, w) = (3, 4);
        let mut a = vec![0.0; 3 * h * w];
        let mut b = vec![0.0; 3 * h * w];
        let crop = Crop {
            x: 2,
            y: 1,
            flip: false,
        };
        write_crop(&p, crop, (h, w), &[], &plain(), &mut a);
        write_crop(
            &p,
            Crop { flip: true, ..crop },
            (h, w),
            &[],
            &plain(),
            &mut b,
        );
        for ch in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    let want = p.data[((1 + y) * 7 + 2 + x) * 3 + ch] as f32 / 255.0;
                    assert_eq!(a[ch * h * w + y * w + x], want);
                    assert_eq!(b[ch * h * w + y * w + (w - 1 - x)], want);
                }
            }
        }
    }

    #[test]
    fn normalisation_maps_range_then_mean_and_std() {
        let p = Pixels {
            width: 1,
            height: 1,
            channels: 3,
            data: vec![0, 255, 51],
        };
        let norm = Normalise {
            range: (-1.0, 1.0),
            mean: vec![0.5, 0.0, -0.5],
            std: vec![2.0, 1.0, 0.5],
        };
        let mut out = vec![0.0; 3];
        let crop = Crop {
            x: 0,
            y: 0,
            flip: false,
        };
        write_crop(&p, crop, (1, 1), &[0.0, 0.0, 0.1], &norm, &mut out);
        assert_eq!(out[0], (-1.0 - 0.5) / 2.0);
        assert_eq!(out[1], 1.0);
        let v = 51.0f32 / 255.0 + 0.1;
        assert!((out[2] - (-1.0 + 2.0 * v + 0.5) / 0.5).abs() < 1e-6);
    }

    #[test]
    fn random_crops_cover_every_offset_and_flip_about_half_the_time() {
        let p = ramp(10, 8, 1);
        let mut rng = Rng::new(3);
        let (mut xs, mut ys, mut flips) = (vec![0; 4], vec![0; 3], 0);
        for _ in 0..4000 {
            let c = random_crop(&p, (6, 7), true, &mut rng);
            xs[c.x] += 1;
            ys[c.y] += 1;
            flips += c.flip as usize;
        }
        assert!(xs.iter().all(|&n| n > 800), "{xs:?}");
        assert!(ys.iter().all(|&n| n > 1100), "{ys:?}");
        assert!((1800..2200).contains(&flips), "{flips}");
        // Without flips asked for, none.
        assert!(!(0..100).any(|_| random_crop(&p, (6, 7), false, &mut rng).flip));
    }

    #[test]
    fn ten_crops_are_the_corners_the_centre_and_their_mirrors() {
        let p = ramp(9, 6, 1);
        let crops = ten_crops(&p, (4, 5));
        let places: Vec<(usize, usize)> = crops[..5].iter().map(|c| (c.x, c.y)).collect();
        assert_eq!(places, [(0, 0), (4, 0), (0, 2), (4, 2), (2, 1)]);
        assert!(crops[..5].iter().all(|c| !c.flip));
        assert!(crops[5..].iter().all(|c| c.flip));
        assert_eq!(
            crops[5..].iter().map(|c| (c.x, c.y)).collect::<Vec<_>>(),
            places
        );
    }

    #[test]
    fn a_jpeg_is_whole_when_its_segments_reach_the_end_marker() {
        // SOI, an APP1 holding a thumbnail's own SOI..EOI, a scan (header of length 3, data
        // with a stuffed FF and a restart marker), EOI, then appended bytes.
        let app = [0xFF, 0xE1, 0x00, 0x08, 0xFF, 0xD8, 0xFF, 0xDA, 0xFF, 0xD9];
        let scan = [
            0xFF, 0xDA, 0x00, 0x03, 0x01, 7, 0xFF, 0x00, 8, 0xFF, 0xD3, 9,
        ];
        let mut whole = vec![0xFF, 0xD8];
        whole.extend(app);
        whole.extend(scan);
        whole.extend([0xFF, 0xD9, 0xFF, 0xDA, 1, 2]);
        assert!(jpeg_complete(&whole));
        // Cut anywhere before the end marker: not whole (the thumbnail's EOI does not count).
        let eoi = whole.len() - 6;
        for cut in 2..eoi + 1 {
            assert!(!jpeg_complete(&whole[..cut]), "cut at {cut}");
        }
        assert!(!jpeg_complete(b"not a jpeg"));
    }

    #[test]
    fn the_shorter_side_is_resized_and_the_aspect_kept() {
        let img = DynamicImage::new_rgb8(300, 200);
        let r = resize_shorter(&img, 100);
        assert_eq!((r.width(), r.height()), (150, 100));
        let img = DynamicImage::new_luma8(201, 403);
        let r = resize_shorter(&img, 256);
        assert_eq!((r.width(), r.height()), (256, 513));
    }

    #[test]
    fn pca_noise_moves_along_the_components_scaled_by_their_eigenvalues() {
        let pca = Pca {
            eigenvalues: [0.2, 0.02, 0.0],
            eigenvectors: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        };
        let mut rng = Rng::new(9);
        let n = 20000;
        let mut sq = [0f64; 3];
        for _ in 0..n {
            let s = pca_shift(&pca, 0.1, &mut rng);
            for k in 0..3 {
                sq[k] += (s[k] as f64).powi(2);
            }
        }
        // Standard deviations 0.1 * sqrt(eigenvalue) along the components.
        let sd: Vec<f64> = sq.iter().map(|v| (v / n as f64).sqrt()).collect();
        assert!((sd[0] - 0.1 * 0.2f64.sqrt()).abs() < 0.001, "{sd:?}");
        assert!((sd[1] - 0.1 * 0.02f64.sqrt()).abs() < 0.0003, "{sd:?}");
        assert_eq!(sd[2], 0.0);
    }
}
