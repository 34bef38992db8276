//! Augmentation of images held in memory (IDX files): a random crop of the image's own size
//! from the image padded with `pad` pixels of the fill value on each side, then a random
//! horizontal flip, as torchvision's `RandomCrop(size, padding=pad)` followed by
//! `RandomHorizontalFlip()` (the CIFAR ResNets' augmentation). Each choice is drawn from
//! (seed, epoch, image), so a run is reproducible, each epoch differs, and a batch does not
//! depend on the order its images are prepared in.

use crate::rng::{mix64, Rng};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdxAugment {
    /// Pixels added on each side before the crop (0: no crop).
    pub pad: usize,
    /// Mirror half the images, left to right.
    pub flip: bool,
    /// The padding's value, in the data set's units (a black pixel: the low end of `range`).
    pub fill: f32,
    pub seed: u64,
}

/// Where the crop of one image starts in the padded image, and whether it is mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub dy: usize,
    pub dx: usize,
    pub flip: bool,
}

impl IdxAugment {
    /// The view of image `index` in `epoch`: offsets uniform in 0..=2*pad, a flip with
    /// probability 1/2.
    pub fn view(&self, epoch: u64, index: usize) -> View {
        let mut rng =
            Rng::new(mix64(self.seed ^ 0x1D8A_06E7) ^ mix64(epoch) ^ mix64(!(index as u64)));
        let span = 2 * self.pad as u64 + 1;
        let dy = rng.below(span) as usize;
        let dx = rng.below(span) as usize;
        let flip = self.flip && rng.below(2) == 1;
        View { dy, dx, flip }
    }

    /// Appends `img` (C x H x W, channel-major) seen as `v` to `out`: output pixel (y, x) is
    /// the input's (y + dy - pad, x' + dx - pad) with x' = W - 1 - x when mirrored, the fill
    /// value outside the image.
    pub fn write(
        &self,
        img: &[f32],
        (c, h, w): (usize, usize, usize),
        v: View,
        out: &mut Vec<f32>,
    ) {
        let pad = self.pad as isize;
        for ch in 0..c {
            let plane = &img[ch * h * w..(ch + 1) * h * w];
            for y in 0..h {
                let sy = y as isize + v.dy as isize - pad;
                for x in 0..w {
                    let cx = if v.flip { w - 1 - x } else { x };
                    let sx = cx as isize + v.dx as isize - pad;
                    let inside = (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx);
                    out.push(if inside {
                        plane[sy as usize * w + sx as usize]
                    } else {
                        self.fill
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aug(pad: usize, flip: bool) -> IdxAugment {
        IdxAugment {
            pad,
            flip,
            fill: -1.0,
            seed: 7,
        }
    }

    #[test]
    fn a_crop_shifts_the_image_and_fills_what_it_brings_in() {
        // A 1x3x4 image 0..12; the crop at (1, 3) of the image padded by 2 reads row y - 1 and
        // column x + 1 at (y, x): the image moved down one row and left one column.
        let img: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut out = vec![];
        aug(2, false).write(
            &img,
            (1, 3, 4),
            View {
                dy: 1,
                dx: 3,
                flip: false,
            },
            &mut out,
        );
        #[rustfmt::skip]
        let want = [
            -1.0, -1.0, -1.0, -1.0,
             1.0,  2.0,  3.0, -1.0,
             5.0,  6.0,  7.0, -1.0,
        ];
        assert_eq!(out, want);
        // Mirrored: each row of that crop read right to left.
        out.clear();
        aug(2, true).write(
            &img,
            (1, 3, 4),
            View {
                dy: 1,
                dx: 3,
                flip: true,
            },
            &mut out,
        );
        #[rustfmt::skip]
        let want = [
            -1.0, -1.0, -1.0, -1.0,
            -1.0,  3.0,  2.0,  1.0,
            -1.0,  7.0,  6.0,  5.0,
        ];
        assert_eq!(out, want);
        // The centre offset without a flip is the image itself.
        out.clear();
        aug(2, false).write(
            &img,
            (1, 3, 4),
            View {
                dy: 2,
                dx: 2,
                flip: false,
            },
            &mut out,
        );
        assert_eq!(out, img);
    }

    #[test]
    fn views_cover_every_offset_depend_on_seed_epoch_and_image_only() {
        let a = aug(2, true);
        let views: Vec<View> = (0..2000).map(|i| a.view(3, i)).collect();
        for d in 0..=4 {
            assert!(views.iter().any(|v| v.dy == d) && views.iter().any(|v| v.dx == d));
        }
        assert!(views.iter().all(|v| v.dy <= 4 && v.dx <= 4));
        let flips = views.iter().filter(|v| v.flip).count();
        assert!((800..1200).contains(&flips), "{flips} flips of 2000");
        assert_eq!(a.view(3, 17), aug(2, true).view(3, 17));
        assert!(
            (0..50).any(|i| a.view(3, i) != a.view(4, i)),
            "epochs differ"
        );
        assert!((0..50).any(|i| a.view(3, i) != IdxAugment { seed: 8, ..a }.view(3, i)));
        assert!(!(0..200).any(|i| aug(2, false).view(1, i).flip));
        assert!((0..200).all(|i| aug(0, true).view(1, i).dy == 0));
    }
}
