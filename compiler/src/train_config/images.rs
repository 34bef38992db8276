//! The image-folder settings of the training section (resize, crop, flip, mean, std, colour
//! noise, evaluation crops, bad images, validation share), the augmentation of IDX data
//! (crop_padding, flip), and their reader.

use super::reader::Reader;

/// A per-channel statistic of the training images: none, given, or measured on a sample of
/// the training set before training (`auto`).
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelStat {
    None,
    Auto,
    Values(Vec<f64>),
}

/// What to do with an image that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadImages {
    /// Stop (before training when the header is already bad), naming the file.
    Stop,
    /// Leave it out and say how many were left out.
    Skip,
}

/// The image-folder pipeline of the training section: AlexNet's resize, random crop, flip,
/// mean subtraction and PCA colour noise, and the evaluation crops.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    /// Resize the shorter side to this many pixels first (aspect kept).
    pub resize: Option<u64>,
    /// Training crops are random (else the centre).
    pub random_crop: bool,
    /// Random horizontal flips in training (image folders and IDX data).
    pub flip: bool,
    /// IDX data: random crops of the image's size from the image padded with this many black
    /// pixels on each side (torchvision's RandomCrop(size, padding)); 0 = off.
    pub crop_padding: u64,
    /// Subtracted per channel, in the units of `range` (pixels in [0, 1] by default).
    pub mean: ChannelStat,
    /// Divided per channel after the mean.
    pub std: ChannelStat,
    /// Standard deviation of AlexNet's PCA colour noise; 0 = off.
    pub color_jitter: f64,
    /// Crops averaged per evaluation image: 1 (centre) or 10 (corners, centre and flips).
    pub eval_crops: u64,
    pub bad_images: BadImages,
    /// Share of each class held out for evaluation when the folder has no val/ split.
    pub val_fraction: f64,
    /// Convert images whose channel count is not the network's (grey to RGB, RGB to grey)
    /// instead of refusing them.
    pub convert_channels: bool,
    /// Decode every image when indexing (not only its header), so a cut file stops the run
    /// (or is left out) before training.
    pub verify_images: bool,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            resize: None,
            random_crop: true,
            flip: false,
            crop_padding: 0,
            mean: ChannelStat::None,
            std: ChannelStat::None,
            color_jitter: 0.0,
            eval_crops: 1,
            bad_images: BadImages::Stop,
            val_fraction: 0.1,
            convert_channels: false,
            verify_images: false,
        }
    }
}

/// The image-folder keys (`resize`, `crop`, `flip`, `mean`, `std`, `color_jitter`,
/// `eval_crops`, `bad_images`, `val_fraction`, `convert_channels`).
pub(super) fn images(r: &mut Reader) -> ImageConfig {
    let d = ImageConfig::default();
    let resize = r.get("resize").map(|_| r.positive("resize", 256));
    if let (Some(n), Some(v)) = (resize, r.get("resize")) {
        if n > 16384 {
            r.bad(v, "resize", "a side of at most 16384 pixels");
        }
    }
    let random_crop = match r.name("crop", "random").as_str() {
        "random" => true,
        "center" | "centre" => false,
        _ => {
            if let Some(v) = r.get("crop") {
                r.bad(v, "crop", "random or center");
            }
            true
        }
    };
    let bad_images = match r.name("bad_images", "stop").as_str() {
        "stop" => BadImages::Stop,
        "skip" => BadImages::Skip,
        _ => {
            if let Some(v) = r.get("bad_images") {
                r.bad(v, "bad_images", "stop or skip");
            }
            BadImages::Stop
        }
    };
    let eval_crops = r.uint("eval_crops", 1);
    if eval_crops != 1 && eval_crops != 10 {
        if let Some(v) = r.get("eval_crops") {
            r.bad(
                v,
                "eval_crops",
                "1 (the centre) or 10 (corners, centre and their flips)",
            );
        }
    }
    ImageConfig {
        resize,
        random_crop,
        flip: r.flag("flip", d.flip),
        crop_padding: {
            let p = r.uint("crop_padding", d.crop_padding);
            match r.get("crop_padding") {
                Some(v) if p > 64 => {
                    r.bad(v, "crop_padding", "a padding of at most 64 pixels, e.g. 4");
                    d.crop_padding
                }
                _ => p,
            }
        },
        mean: r.channel_stat("mean", false),
        std: r.channel_stat("std", true),
        color_jitter: r.number(
            "color_jitter",
            0.0,
            (0.0, 10.0),
            "a standard deviation between 0 and 10 (AlexNet's is 0.1)",
        ),
        eval_crops: if eval_crops == 10 { 10 } else { 1 },
        bad_images,
        val_fraction: {
            let f = r.number(
                "val_fraction",
                d.val_fraction,
                (0.0, 1.0),
                "a share between 0 and 1, e.g. 0.1",
            );
            if f <= 0.0 || f >= 1.0 {
                if let Some(v) = r.get("val_fraction") {
                    r.bad(v, "val_fraction", "a share between 0 and 1, e.g. 0.1");
                }
                d.val_fraction
            } else {
                f
            }
        },
        convert_channels: r.flag("convert_channels", d.convert_channels),
        verify_images: r.flag("verify_images", d.verify_images),
    }
}
