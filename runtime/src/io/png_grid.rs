//! Tiles a batch of images into one PNG (generated samples, first-layer filters, inputs).

use std::path::Path;

use super::{encode_png, write_atomic, IoError};

/// Gray of the 1-pixel lines around and between the tiles.
const SEPARATOR: u8 = 128;

/// Writes the first `count` images of `images` (CHW each, `channels` 1 or 3, values in [0, 1],
/// clamped; NaN drawn black) as a grid of `cols` columns with 1-pixel gray separators.
pub fn write_image_grid(
    path: &Path,
    images: &[f32],
    count: usize,
    channels: usize,
    h: usize,
    w: usize,
    cols: usize,
) -> Result<(), IoError> {
    let invalid = |problem: String| IoError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    if channels != 1 && channels != 3 {
        return Err(invalid(format!(
            "{channels} channels; an image grid needs 1 or 3"
        )));
    }
    if count == 0 || h == 0 || w == 0 || cols == 0 {
        return Err(invalid(format!(
            "empty image grid ({count} images of {h}x{w} in {cols} columns)"
        )));
    }
    // Saturating: absurd sizes then fail the buffer-length check instead of overflowing.
    let per_image = channels.saturating_mul(h).saturating_mul(w);
    let needed = count.saturating_mul(per_image);
    if images.len() < needed {
        return Err(invalid(format!(
            "{count} images of {channels}x{h}x{w} need {needed} values but the buffer has {}",
            images.len()
        )));
    }
    let cols = cols.min(count);
    let rows = count.div_ceil(cols);
    let width = cols * (w + 1) + 1;
    let height = rows * (h + 1) + 1;
    let (Ok(width_u32), Ok(height_u32)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(invalid(format!("image grid {width}x{height} is too large")));
    };

    // Output is interleaved (HWC), the input planar (CHW).
    let mut pixels = vec![SEPARATOR; width * height * channels];
    for (k, image) in images[..needed].chunks_exact(per_image).enumerate() {
        let (x0, y0) = ((k % cols) * (w + 1) + 1, (k / cols) * (h + 1) + 1);
        for y in 0..h {
            for x in 0..w {
                for c in 0..channels {
                    let v = image[(c * h + y) * w + x];
                    pixels[((y0 + y) * width + x0 + x) * channels + c] = to_byte(v);
                }
            }
        }
    }
    let png = encode_png(path, &pixels, width_u32, height_u32, channels)?;
    write_atomic(path, &png)
}

/// [0, 1] to 0..=255, clamping; NaN becomes 0 (`clamp` keeps NaN, `as u8` maps it to 0).
fn to_byte(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{decode_png, test_dir};

    #[test]
    fn grayscale_grid_layout() {
        let dir = test_dir("grid-gray");
        let p = dir.join("g.png");
        // 3 images of 2x2 in 2 columns: 2 rows, 2*(2+1)+1 = 7 wide and tall.
        let images = [
            0.0,
            1.0,
            0.5,
            2.0, // image 0 (2.0 clamps to 255)
            -1.0,
            0.25,
            1.0,
            1.0, // image 1
            f32::NAN,
            0.0,
            0.0,
            0.0, // image 2
        ];
        write_image_grid(&p, &images, 3, 1, 2, 2, 2).unwrap();
        let (w, h, color, px) = decode_png(&p);
        assert_eq!((w, h, color), (7, 7, png::ColorType::Grayscale));
        let at = |x: usize, y: usize| px[y * 7 + x];
        assert_eq!(at(0, 0), SEPARATOR);
        assert_eq!(at(3, 1), SEPARATOR);
        assert_eq!([at(1, 1), at(2, 1), at(1, 2), at(2, 2)], [0, 255, 128, 255]);
        assert_eq!([at(4, 1), at(5, 1)], [0, 64]);
        assert_eq!(at(1, 4), 0); // NaN
        assert_eq!(at(4, 4), SEPARATOR); // empty cell
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rgb_from_chw() {
        let dir = test_dir("grid-rgb");
        let p = dir.join("c.png");
        // One 1x2 image: R plane [1, 0], G plane [0, 1], B plane [0, 0].
        write_image_grid(&p, &[1.0, 0.0, 0.0, 1.0, 0.0, 0.0], 1, 3, 1, 2, 8).unwrap();
        let (w, h, color, px) = decode_png(&p);
        assert_eq!((w, h, color), (4, 3, png::ColorType::Rgb));
        let row1 = &px[4 * 3..8 * 3];
        assert_eq!(row1, &[128, 128, 128, 255, 0, 0, 0, 255, 0, 128, 128, 128]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_arguments() {
        let p = Path::new("unused.png");
        let e = write_image_grid(p, &[0.0; 10], 3, 1, 2, 2, 2)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "unused.png: 3 images of 1x2x2 need 12 values but the buffer has 10"
        );
        assert!(write_image_grid(p, &[0.0; 8], 2, 2, 2, 1, 1).is_err());
        assert!(write_image_grid(p, &[], 0, 1, 2, 2, 1).is_err());
        assert!(!p.exists());
    }
}
