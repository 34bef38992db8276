//! Tiles a batch of images into one PNG (generated samples, first-layer filters, inputs).

use std::path::Path;

use super::{encode_png, write_atomic, IoError};

/// Gray of the 1-pixel lines around and between the tiles.
const SEPARATOR: u8 = 128;

/// How a grid of images is laid out and shaded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Images drawn (the first `count` of the buffer).
    pub count: usize,
    /// Channels (1 or 3), height and width of one image (CHW).
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    pub cols: usize,
    /// Each pixel drawn as a `scale` x `scale` block (nearest neighbour), so 28x28 digits are
    /// large enough to look at.
    pub scale: usize,
    /// The values drawn black and white (a tanh generator's [-1, 1]); outside, clamped.
    pub range: (f32, f32),
}

impl Grid {
    /// `count` images of `(channels, h, w)` in rows of 8, each cell at least 64 pixels on its
    /// longer side, values in [0, 1].
    pub fn of(count: usize, (channels, h, w): (usize, usize, usize)) -> Grid {
        Grid {
            count,
            channels,
            h,
            w,
            cols: 8,
            scale: 64usize.div_ceil(h.max(w).max(1)).max(1),
            range: (0.0, 1.0),
        }
    }
}

/// Writes the first `g.count` images of `images` (CHW each, `channels` 1 or 3; NaN drawn
/// black) as a grid of `g.cols` columns with 1-pixel gray separators.
pub fn write_image_grid(path: &Path, images: &[f32], g: &Grid) -> Result<(), IoError> {
    let Grid {
        count,
        channels,
        h,
        w,
        cols,
        scale,
        range,
    } = *g;
    let invalid = |problem: String| IoError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    if channels != 1 && channels != 3 {
        return Err(invalid(format!(
            "{channels} channels; an image grid needs 1 or 3"
        )));
    }
    if count == 0 || h == 0 || w == 0 || cols == 0 || scale == 0 {
        return Err(invalid(format!(
            "empty image grid ({count} images of {h}x{w} in {cols} columns at scale {scale})"
        )));
    }
    if range.0.partial_cmp(&range.1) != Some(std::cmp::Ordering::Less) {
        return Err(invalid(format!(
            "the value range [{}, {}] is empty",
            range.0, range.1
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
    let (ch, cw) = (h.saturating_mul(scale), w.saturating_mul(scale));
    let width = cols.saturating_mul(cw + 1).saturating_add(1);
    let height = rows.saturating_mul(ch + 1).saturating_add(1);
    let (Ok(width_u32), Ok(height_u32)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(invalid(format!("image grid {width}x{height} is too large")));
    };
    if width_u32 > 1 << 15 || height_u32 > 1 << 15 {
        return Err(invalid(format!(
            "image grid {width}x{height} is too large (at most 32768 pixels a side); lower the count or the scale"
        )));
    }
    let span = range.1 - range.0;

    // Output is interleaved (HWC), the input planar (CHW).
    let mut pixels = vec![SEPARATOR; width * height * channels];
    for (k, image) in images[..needed].chunks_exact(per_image).enumerate() {
        let (x0, y0) = ((k % cols) * (cw + 1) + 1, (k / cols) * (ch + 1) + 1);
        for y in 0..ch {
            for x in 0..cw {
                for c in 0..channels {
                    let v = image[(c * h + y / scale) * w + x / scale];
                    pixels[((y0 + y) * width + x0 + x) * channels + c] =
                        to_byte((v - range.0) / span);
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

    fn grid(count: usize, channels: usize, h: usize, w: usize, cols: usize) -> Grid {
        Grid {
            count,
            channels,
            h,
            w,
            cols,
            scale: 1,
            range: (0.0, 1.0),
        }
    }

    #[test]
    fn cells_scale_up_and_a_range_maps_to_black_and_white() {
        let dir = test_dir("grid-scale");
        let p = dir.join("s.png");
        // One 1x2 image [-1, 1] at scale 3 in [-1, 1]: a 3x6 cell, black then white.
        let g = Grid {
            scale: 3,
            range: (-1.0, 1.0),
            ..grid(1, 1, 1, 2, 8)
        };
        write_image_grid(&p, &[-1.0, 1.0], &g).unwrap();
        let (w, h, _, px) = decode_png(&p);
        assert_eq!((w, h), (8, 5));
        for y in 1..4 {
            assert_eq!(&px[y * 8..(y + 1) * 8], &[128, 0, 0, 0, 255, 255, 255, 128]);
        }
        // 28x28 digits default to 3x cells.
        assert_eq!(Grid::of(64, (1, 28, 28)).scale, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
        write_image_grid(&p, &images, &grid(3, 1, 2, 2, 2)).unwrap();
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
        write_image_grid(&p, &[1.0, 0.0, 0.0, 1.0, 0.0, 0.0], &grid(1, 3, 1, 2, 8)).unwrap();
        let (w, h, color, px) = decode_png(&p);
        assert_eq!((w, h, color), (4, 3, png::ColorType::Rgb));
        let row1 = &px[4 * 3..8 * 3];
        assert_eq!(row1, &[128, 128, 128, 255, 0, 0, 0, 255, 0, 128, 128, 128]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_arguments() {
        let p = Path::new("unused.png");
        let e = write_image_grid(p, &[0.0; 10], &grid(3, 1, 2, 2, 2))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "unused.png: 3 images of 1x2x2 need 12 values but the buffer has 10"
        );
        assert!(write_image_grid(p, &[0.0; 8], &grid(2, 2, 2, 1, 1)).is_err());
        assert!(write_image_grid(p, &[], &grid(0, 1, 2, 2, 1)).is_err());
        assert!(!p.exists());
    }
}
