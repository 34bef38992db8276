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
