//! Random crops after padding and flips of IDX images (`crop_padding`, `flip`): the pixels
//! of a crop and of its mirror on a tiny image, and the choices reproducible per (seed, epoch,
//! image) and covering every offset.

use netc_runtime::data::idx_augment::{IdxAugment, View};
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
