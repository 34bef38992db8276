//! Image folders: indexing, the training and evaluation views, the loader, and bad files, on
//! folders of MNIST digits the tests write (PNG and JPEG, grey and tinted RGB).

#[path = "../../../tests/support/digit_folder.rs"]
mod digit_folder;

use std::path::Path;
use std::sync::Arc;

use digit_folder::{break_files, write, Spec};
use netc_compiler::train_config::{BadImages, ChannelStat, ImageConfig};
use netc_runtime::data::folder::{self, FolderSet, Needs};
use netc_runtime::data::loader::Loader;
use netc_runtime::data::{DataError, Source};

fn spec(classes: usize, per_class: usize) -> Spec {
    Spec::grey(classes, per_class)
}

const GREY24: Needs = Needs {
    channels: 1,
    size: (24, 24),
};

fn set(dir: &Path, cfg: &ImageConfig, needs: Needs, train: bool) -> FolderSet {
    let ix = folder::index(dir, cfg, needs, 1, (false, false)).unwrap();
    let stats = folder::measure(
        &FolderSet {
            items: ix.train.clone(),
            ..base(&ix.classes, needs, cfg, true)
        },
        1,
    )
    .unwrap();
    let norm = folder::normalise(cfg, needs.channels, (0.0, 1.0), Some(&stats)).unwrap();
    let items = if train { ix.train } else { ix.val };
    FolderSet {
        items,
        norm,
        jitter: (cfg.color_jitter > 0.0)
            .then(|| (cfg.color_jitter as f32, stats.pca.clone().unwrap())),
        ..base(&ix.classes, needs, cfg, train)
    }
}

fn base(classes: &[String], needs: Needs, cfg: &ImageConfig, train: bool) -> FolderSet {
    FolderSet {
        items: vec![],
        classes: classes.to_vec(),
        needs,
        train,
        resize: cfg.resize.map(|r| r as u32),
        random_crop: cfg.random_crop,
        flip: cfg.flip,
        norm: netc_runtime::data::augment::Normalise {
            range: (0.0, 1.0),
            mean: vec![0.0; needs.channels],
            std: vec![1.0; needs.channels],
        },
        jitter: None,
        eval_crops: cfg.eval_crops as usize,
        bad_images: cfg.bad_images,
        seed: 1,
        failed: Default::default(),
    }
}

fn views(s: &FolderSet, epoch: u64, i: usize) -> Vec<f32> {
    let mut v = vec![0.0; s.views() * s.view_len()];
    s.load(epoch, i, &mut v).unwrap();
    v
}

#[test]
fn classes_are_the_sorted_folders_and_a_share_of_each_is_held_out() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &spec(4, 20));
    std::fs::write(dir.path().join("digit2/notes.txt"), "not an image").unwrap();
    let cfg = ImageConfig::default();
    let ix = folder::index(dir.path(), &cfg, GREY24, 1, (false, false)).unwrap();
    assert_eq!(ix.classes, ["digit0", "digit1", "digit2", "digit3"]);
    assert_eq!((ix.train.len(), ix.val.len()), (72, 8));
    assert_eq!(ix.ignored, 1);
    for c in 0..4 {
        assert_eq!(ix.val.iter().filter(|i| i.label == c).count(), 2);
    }
    // The held-out images follow the seed, and only the seed.
    let again = folder::index(dir.path(), &cfg, GREY24, 1, (false, false)).unwrap();
    assert_eq!(again.val, ix.val);
    let other = folder::index(dir.path(), &cfg, GREY24, 2, (false, false)).unwrap();
    assert_ne!(other.val, ix.val);
    assert!(ix.note.unwrap().contains("held out"));

    // train/ and val/ are used as they are.
    let split = tempfile::tempdir().unwrap();
    write(
        split.path(),
        &Spec {
            split: true,
            ..spec(3, 8)
        },
    );
    let ix = folder::index(split.path(), &cfg, GREY24, 1, (false, false)).unwrap();
    assert_eq!((ix.train.len(), ix.val.len()), (18, 6));
    assert!(ix
        .val
        .iter()
        .all(|i| i.path.starts_with(split.path().join("val"))));
    assert!(ix.note.is_none());
}

#[test]
fn training_views_are_random_crops_and_flips_fixed_by_seed_epoch_and_image() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &spec(2, 10));
    let cfg = ImageConfig {
        resize: Some(32),
        flip: true,
        ..ImageConfig::default()
    };
    let s = set(dir.path(), &cfg, GREY24, true);
    assert_eq!(s.view_len(), 24 * 24);
    let a = views(&s, 0, 3);
    assert_eq!(a, views(&s, 0, 3));
    // Another epoch draws other crops for most images.
    let differ = (0..s.items.len())
        .filter(|&i| views(&s, 0, i) != views(&s, 1, i))
        .count();
    assert!(
        differ >= s.items.len() * 3 / 4,
        "{differ} of {}",
        s.items.len()
    );
    // Batches are the same whatever the number of loader threads.
    let s = Arc::new(s);
    let order: Vec<Vec<usize>> = (0..6).map(|b| vec![b, b + 6, 17 - b]).collect();
    let one: Vec<_> = Loader::start(s.clone(), 2, order.clone(), 1, 1)
        .map(|b| b.unwrap())
        .collect();
    let three: Vec<_> = Loader::start(s.clone(), 2, order, 3, 2)
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(one.len(), 6);
    assert_eq!(one, three);
    assert_eq!(one[0].images.len(), 3 * 24 * 24);
    assert_eq!(
        one[0].labels,
        [s.items[0].label, s.items[6].label, s.items[17].label]
    );
}

#[test]
fn auto_mean_and_std_normalise_the_views_and_colour_noise_moves_them() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &Spec {
            rgb: true,
            size: 30,
            ..spec(3, 20)
        },
    );
    let needs = Needs {
        channels: 3,
        size: (26, 26),
    };
    let cfg = ImageConfig {
        random_crop: false,
        mean: ChannelStat::Auto,
        std: ChannelStat::Auto,
        ..ImageConfig::default()
    };
    let s = set(dir.path(), &cfg, needs, true);
    let (mut sum, mut sq, mut n) = ([0f64; 3], [0f64; 3], 0f64);
    for i in 0..s.items.len() {
        let v = views(&s, 0, i);
        for c in 0..3 {
            for &x in &v[c * 26 * 26..(c + 1) * 26 * 26] {
                sum[c] += x as f64;
                sq[c] += (x as f64).powi(2);
            }
        }
        n += (26 * 26) as f64;
    }
    for c in 0..3 {
        let m = sum[c] / n;
        let sd = (sq[c] / n - m * m).sqrt();
        assert!(m.abs() < 0.02, "channel {c} mean {m}");
        assert!((sd - 1.0).abs() < 0.02, "channel {c} std {sd}");
    }
    // AlexNet's colour noise shifts a whole image by one colour.
    let noisy = set(
        dir.path(),
        &ImageConfig {
            color_jitter: 0.1,
            ..cfg
        },
        needs,
        true,
    );
    let (a, b) = (views(&s, 0, 5), views(&noisy, 0, 5));
    let plane = 26 * 26;
    for c in 0..3 {
        let d: Vec<f32> = (0..plane)
            .map(|k| b[c * plane + k] - a[c * plane + k])
            .collect();
        assert!(d.iter().all(|x| (x - d[0]).abs() < 1e-4), "channel {c}");
    }
    assert!((0..3).any(|c| (b[c * plane] - a[c * plane]).abs() > 1e-4));
}

#[test]
fn evaluation_is_the_centre_or_ten_crops_and_never_changes() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &spec(2, 10));
    let cfg = ImageConfig {
        resize: Some(30),
        eval_crops: 10,
        ..ImageConfig::default()
    };
    let s = set(dir.path(), &cfg, GREY24, false);
    assert_eq!(s.views(), 10);
    let v = views(&s, 0, 1);
    assert_eq!(v, views(&s, 7, 1));
    let centre = set(
        dir.path(),
        &ImageConfig {
            eval_crops: 1,
            ..cfg
        },
        GREY24,
        false,
    );
    let c = views(&centre, 0, 1);
    assert_eq!(&v[4 * 576..5 * 576], &c[..]);
    // The fifth view's mirror is the tenth.
    for y in 0..24 {
        for x in 0..24 {
            assert_eq!(v[4 * 576 + y * 24 + x], v[9 * 576 + y * 24 + 23 - x]);
        }
    }
}

#[test]
fn broken_files_are_named_by_path_and_skipped_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let files = write(dir.path(), &spec(3, 10));
    let broken = [&files[0][2], &files[1][4], &files[2][7]];
    break_files(&broken.map(|p| p.as_path()));
    let cfg = ImageConfig::default();
    let err = folder::index(dir.path(), &cfg, GREY24, 1, (false, false)).unwrap_err();
    let msg = err.to_string();
    // The cut PNG still has its header; the other two do not.
    assert!(msg.starts_with("2 image files cannot be read"), "{msg}");
    assert!(msg.contains(&broken[1].display().to_string()), "{msg}");
    assert!(msg.contains(&broken[2].display().to_string()), "{msg}");
    assert!(msg.contains("bad_images = skip"), "{msg}");

    let skip = ImageConfig {
        bad_images: BadImages::Skip,
        ..cfg
    };
    let ix = folder::index(dir.path(), &skip, GREY24, 1, (false, false)).unwrap();
    assert_eq!(ix.skipped.len(), 2);
    assert_eq!(ix.train.len() + ix.val.len(), 28);
    // The cut file fails when decoded: under `skip` its place goes to the next image and it is
    // counted; under `stop` the batch is an error naming it.
    for (policy, items) in [
        (BadImages::Skip, ix.train.clone()),
        (BadImages::Stop, ix.train.clone()),
    ] {
        let at = items.iter().position(|i| i.path == *broken[0]).unwrap();
        let s = Arc::new(FolderSet {
            items,
            bad_images: policy,
            ..base(&ix.classes, GREY24, &skip, true)
        });
        let got: Vec<_> = Loader::start(s.clone(), 0, vec![vec![at, 0]], 2, 1).collect();
        match policy {
            BadImages::Skip => {
                assert!(got[0].is_ok());
                let failed = Source::Folder(s.clone()).failed();
                assert_eq!(failed.len(), 1);
                assert_eq!(failed[0].0, *broken[0]);
            }
            BadImages::Stop => {
                let e = got[0].as_ref().unwrap_err().to_string();
                assert!(e.contains(&broken[0].display().to_string()), "{e}");
            }
        }
    }
}

#[test]
fn a_cut_jpeg_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = write(
        dir.path(),
        &Spec {
            rgb: true,
            size: 160,
            ..spec(2, 6)
        },
    );
    break_files(&[files[1][3].as_path()]);
    let needs = Needs {
        channels: 3,
        size: (24, 24),
    };
    let cfg = ImageConfig::default();
    let ix = folder::index(dir.path(), &cfg, needs, 1, (false, false)).unwrap();
    let items: Vec<_> = ix.train.iter().chain(&ix.val).cloned().collect();
    let at = items.iter().position(|i| i.path == files[1][3]).unwrap();
    let s = FolderSet {
        items,
        ..base(&ix.classes, needs, &cfg, false)
    };
    let mut v = vec![0.0; s.view_len()];
    // Its header is whole, so indexing passes; decoding names what is wrong.
    let e = s.load(0, at, &mut v).unwrap_err();
    assert!(e.contains("truncated JPEG"), "{e}");
    let e = Loader::start(Arc::new(s), 0, vec![vec![0, at]], 1, 1)
        .next()
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(e.contains(&files[1][3].display().to_string()), "{e}");
}

#[test]
fn unusable_folders_are_clear_errors() {
    let cfg = ImageConfig::default();
    // An empty class folder.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &spec(2, 4));
    std::fs::create_dir(dir.path().join("digit9")).unwrap();
    let e = folder::index(dir.path(), &cfg, GREY24, 1, (false, false)).unwrap_err();
    assert!(
        matches!(e, DataError::EmptyClass(ref p) if p.ends_with("digit9")),
        "{e}"
    );
    // No images at all.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir(empty.path().join("cats")).unwrap();
    std::fs::write(empty.path().join("cats/readme.txt"), "x").unwrap();
    let e = folder::index(empty.path(), &cfg, GREY24, 1, (false, false)).unwrap_err();
    assert!(matches!(e, DataError::EmptyClass(_)), "{e}");
    let e = folder::index(
        tempfile::tempdir().unwrap().path(),
        &cfg,
        GREY24,
        1,
        (false, false),
    )
    .unwrap_err();
    assert!(matches!(e, DataError::NoImages(_)), "{e}");
    // RGB images for a grey network, unless converted.
    let rgb = tempfile::tempdir().unwrap();
    write(
        rgb.path(),
        &Spec {
            rgb: true,
            ..spec(2, 4)
        },
    );
    let e = folder::index(rgb.path(), &cfg, GREY24, 1, (false, false)).unwrap_err();
    assert!(
        e.to_string()
            .contains("3 colour channel(s) but the network takes 1"),
        "{e}"
    );
    assert!(e.to_string().contains("convert_channels"), "{e}");
    let conv = ImageConfig {
        convert_channels: true,
        ..cfg.clone()
    };
    assert!(folder::index(rgb.path(), &conv, GREY24, 1, (false, false)).is_ok());
    // Images smaller than the crop without a resize.
    let small = tempfile::tempdir().unwrap();
    write(small.path(), &spec(2, 4));
    let e = folder::index(
        small.path(),
        &cfg,
        Needs {
            channels: 1,
            size: (32, 32),
        },
        1,
        (false, false),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("smaller than the network's 32x32 input"),
        "{e}"
    );
    assert!(e.to_string().contains("set `resize`"), "{e}");
}

#[test]
fn hidden_entries_are_ignored_and_a_val_folder_needs_a_train_folder() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &spec(2, 6));
    // What macOS and Jupyter leave behind is neither a class nor a broken image.
    std::fs::create_dir(dir.path().join("__MACOSX")).unwrap();
    std::fs::create_dir(dir.path().join(".ipynb_checkpoints")).unwrap();
    std::fs::write(dir.path().join("digit0/._00003.png"), b"resource fork").unwrap();
    let cfg = ImageConfig::default();
    let ix = folder::index(dir.path(), &cfg, GREY24, 1, (false, false)).unwrap();
    assert_eq!(ix.classes, ["digit0", "digit1"]);
    assert_eq!(ix.train.len() + ix.val.len(), 12);
    assert_eq!(ix.ignored, 0);

    let only_val = tempfile::tempdir().unwrap();
    write(&only_val.path().join("val"), &spec(2, 4));
    let e = folder::index(only_val.path(), &cfg, GREY24, 1, (false, false)).unwrap_err();
    assert!(
        e.to_string()
            .contains("has a val folder but no train/ folder"),
        "{e}"
    );
}

#[test]
fn verify_images_finds_a_cut_file_before_training_and_evaluation_reads_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let files = write(
        dir.path(),
        &Spec {
            split: true,
            ..spec(2, 8)
        },
    );
    // The last files of each class are training images (the first quarter is val/).
    let cut = files[1][7].clone();
    break_files(&[cut.as_path()]);
    let cfg = ImageConfig::default();
    // Its header is whole: only decoding finds it.
    assert!(folder::index(dir.path(), &cfg, GREY24, 1, (false, false)).is_ok());
    let verify = ImageConfig {
        verify_images: true,
        ..cfg.clone()
    };
    let e = folder::index(dir.path(), &verify, GREY24, 1, (false, false)).unwrap_err();
    assert!(e.to_string().contains(&cut.display().to_string()), "{e}");
    // An evaluation reads only the evaluation images, so a broken training file is no error.
    let ix = folder::index(dir.path(), &verify, GREY24, 1, (false, true)).unwrap();
    assert_eq!((ix.train.len(), ix.val.len()), (12, 4));
}
