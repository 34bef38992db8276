//! A minimal PNG line chart (loss and accuracy curves), rasterised by hand so that no plotting
//! crate (and no system font) is needed: white background, light grid, axes with numeric tick
//! labels in a built-in 5x7 bitmap font, one colour per series and a legend.

use std::path::Path;

use super::{encode_png, write_atomic, IoError};

type Rgb = [u8; 3];
const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const GRID: Rgb = [225, 225, 225];
const FRAME: Rgb = [160, 160, 160];
/// Distinct series colours (the matplotlib "tab10" palette), reused cyclically.
const PALETTE: [Rgb; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [23, 190, 207],
];
/// Character cell: 5x7 glyph plus one pixel of spacing.
const CHAR_W: i64 = 6;

/// Writes a line chart of `series` (name, points) to `path`. Non-finite points are skipped and
/// break the line; the axes span the finite data (or [0, 1] when there is none).
pub fn write_line_plot(
    path: &Path,
    title: &str,
    series: &[(&str, &[(f64, f64)])],
    width: u32,
    height: u32,
) -> Result<(), IoError> {
    if !(120..=8192).contains(&width) || !(80..=8192).contains(&height) {
        return Err(IoError::Invalid {
            path: path.to_path_buf(),
            problem: format!("plot size {width}x{height} is outside 120x80 ..= 8192x8192"),
        });
    }
    let finite = || {
        series
            .iter()
            .flat_map(|(_, pts)| pts.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let (xs, ys) = (finite().map(|p| p.0), finite().map(|p| p.1));
    let (x0, x1) = padded_range(xs, 0.0);
    let (y0, y1) = padded_range(ys, 0.05);
    let (xstep, ystep) = (nice_step(x1 - x0, 6.0), nice_step(y1 - y0, 5.0));
    let yticks = ticks(y0, y1, ystep);
    let ylabels: Vec<String> = yticks.iter().map(|&v| fmt_tick(v, ystep)).collect();
    let label_w = ylabels.iter().map(|s| s.len() as i64).max().unwrap_or(0) * CHAR_W;

    let mut c = Canvas::new(width as i64, height as i64);
    // Plot area in pixels: left/right/top/bottom.
    let (l, r, t, b) = (label_w + 10, c.w - 14, 22, c.h - 22);
    let px = |x: f64| (l as f64 + (x - x0) / (x1 - x0) * (r - l) as f64).clamp(-1e5, 1e5);
    let py = |y: f64| (b as f64 - (y - y0) / (y1 - y0) * (b - t) as f64).clamp(-1e5, 1e5);

    for (&v, label) in yticks.iter().zip(&ylabels) {
        let y = py(v).round() as i64;
        c.rect(l, y, r, y, GRID);
        c.text(l - 5 - label.len() as i64 * CHAR_W, y - 3, label, BLACK);
    }
    for v in ticks(x0, x1, xstep) {
        let x = px(v).round() as i64;
        c.rect(x, t, x, b, GRID);
        let label = fmt_tick(v, xstep);
        c.text(x - label.len() as i64 * CHAR_W / 2, b + 6, &label, BLACK);
    }
    c.rect(l, b, r, b, BLACK);
    c.rect(l, t, l, b, BLACK);
    c.text(
        (c.w - title.chars().count() as i64 * CHAR_W) / 2,
        7,
        title,
        BLACK,
    );

    c.clip = (l + 1, t, r, b - 1);
    for (k, (_, pts)) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let mut prev: Option<(f64, f64)> = None;
        for (i, &(x, y)) in pts.iter().enumerate() {
            if !(x.is_finite() && y.is_finite()) {
                prev = None;
                continue;
            }
            let p = (px(x), py(y));
            match prev {
                Some(q) => c.line(q, p, color),
                // An isolated point (no finite neighbour) gets a dot so that it is visible.
                None if !pts
                    .get(i + 1)
                    .is_some_and(|n| n.0.is_finite() && n.1.is_finite()) =>
                {
                    let (x, y) = (p.0.round() as i64, p.1.round() as i64);
                    c.rect(x - 1, y - 1, x + 1, y + 1, color);
                }
                None => {}
            }
            prev = Some(p);
        }
    }

    // Legend: top right of the plot area, one coloured box and name per series.
    c.clip = (0, 0, c.w - 1, c.h - 1);
    let max_chars = ((r - l) / 2 / CHAR_W).max(4) as usize;
    let names: Vec<String> = series
        .iter()
        .map(|(n, _)| n.chars().take(max_chars).collect())
        .collect();
    if !names.is_empty() {
        let text_w = names
            .iter()
            .map(|n| n.chars().count() as i64)
            .max()
            .unwrap_or(0)
            * CHAR_W;
        let (lw, lh) = (text_w + 22, names.len() as i64 * 12 + 6);
        let (lx, ly) = (r - lw - 4, t + 4);
        c.rect(lx, ly, lx + lw, ly + lh, FRAME);
        c.rect(lx + 1, ly + 1, lx + lw - 1, ly + lh - 1, WHITE);
        for (k, name) in names.iter().enumerate() {
            let y = ly + 4 + k as i64 * 12;
            c.rect(lx + 4, y, lx + 12, y + 8, PALETTE[k % PALETTE.len()]);
            c.text(lx + 17, y + 1, name, BLACK);
        }
    }
    let png = encode_png(path, &c.px, width, height, 3)?;
    write_atomic(path, &png)
}

/// Min and max of `values`, widened by `pad` of the span; a single value gets a unit-sized
/// (or 10%) window, no values give [0, 1].
fn padded_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if !span.is_finite() {
        return (lo.max(-f64::MAX / 4.0), hi.min(f64::MAX / 4.0));
    }
    if span <= lo.abs().max(hi.abs()) * 1e-12 {
        let half = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - half, hi + half);
    }
    (lo - span * pad, hi + span * pad)
}

/// A 1, 2 or 5 times a power of ten giving about `target` intervals over `span`.
fn nice_step(span: f64, target: f64) -> f64 {
    let raw = span / target;
    let mag = 10f64.powi(raw.log10().floor() as i32);
    let f = raw / mag;
    if !(mag.is_finite() && mag > 0.0 && f.is_finite()) {
        return raw; // spans near the limits of f64: no rounding
    }
    mag * if f < 1.5 {
        1.0
    } else if f < 3.5 {
        2.0
    } else if f < 7.5 {
        5.0
    } else {
        10.0
    }
}

/// Multiples of `step` in [lo, hi] (at most 50, in case of degenerate floating point).
fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let first = (lo / step).ceil();
    (0..50)
        .map(|i| (first + i as f64) * step)
        .take_while(|&v| v <= hi)
        .collect()
}

fn fmt_tick(v: f64, step: f64) -> String {
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
    if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.1e}")
    } else {
        let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// An RGB raster with a clip rectangle (inclusive) for all drawing.
struct Canvas {
    w: i64,
    h: i64,
    px: Vec<u8>,
    clip: (i64, i64, i64, i64),
}

impl Canvas {
    fn new(w: i64, h: i64) -> Self {
        Canvas {
            w,
            h,
            px: vec![255; (w * h * 3) as usize],
            clip: (0, 0, w - 1, h - 1),
        }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        let (x0, y0, x1, y1) = self.clip;
        if (x0..=x1).contains(&x) && (y0..=y1).contains(&y) {
            let i = ((y * self.w + x) * 3) as usize;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Filled rectangle, corners inclusive.
    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb) {
        for y in y0.max(0)..=y1.min(self.h - 1) {
            for x in x0.max(0)..=x1.min(self.w - 1) {
                self.set(x, y, c);
            }
        }
    }

    /// A 2-pixel-wide line, by stepping along its longer axis.
    fn line(&mut self, (xa, ya): (f64, f64), (xb, yb): (f64, f64), c: Rgb) {
        let n = (xb - xa).abs().max((yb - ya).abs()).ceil().max(1.0) as i64;
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = (
                (xa + t * (xb - xa)).round() as i64,
                (ya + t * (yb - ya)).round() as i64,
            );
            self.rect(x, y, x + 1, y + 1, c);
        }
    }

    fn text(&mut self, x: i64, y: i64, s: &str, c: Rgb) {
        for (k, ch) in s.chars().enumerate() {
            let rows = glyph(ch);
            for (dy, row) in rows.iter().enumerate() {
                for dx in 0..5 {
                    if row & (0x10 >> dx) != 0 {
                        self.set(x + k as i64 * CHAR_W + dx, y + dy as i64, c);
                    }
                }
            }
        }
    }
}

/// 5x7 glyph rows (bit 4 = leftmost column). Lower case is drawn as upper case; characters
/// without a glyph are drawn as `?`.
fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0; 7],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{decode_png, test_dir};

    #[test]
    fn draws_series_axes_and_legend() {
        let dir = test_dir("plot");
        let p = dir.join("loss.png");
        let train: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64, 2.3 * (-(i as f64) / 50.0).exp()))
            .collect();
        let mut val: Vec<(f64, f64)> = (0..20)
            .map(|i| (i as f64 * 10.0, 0.5 + 0.01 * i as f64))
            .collect();
        val[5].1 = f64::NAN;
        val[6].1 = f64::INFINITY;
        write_line_plot(
            &p,
            "Loss (MNIST)",
            &[("train", &train), ("val", &val)],
            400,
            300,
        )
        .unwrap();
        let (w, h, color, px) = decode_png(&p);
        assert_eq!((w, h, color), (400, 300, png::ColorType::Rgb));
        let count = |c: Rgb| px.chunks_exact(3).filter(|p| *p == c).count();
        assert!(count(PALETTE[0]) > 300, "train line drawn");
        assert!(count(PALETTE[1]) > 100, "val line drawn");
        assert!(count(BLACK) > 500, "axes and text drawn");
        assert!(count(GRID) > 200, "grid drawn");
        assert!(count(WHITE) > 400 * 300 / 2, "mostly background");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn degenerate_inputs_do_not_fail() {
        let dir = test_dir("plot-edge");
        let p = dir.join("e.png");
        let nan = [(f64::NAN, 1.0), (1.0, f64::NEG_INFINITY)];
        let one = [(3.0, 0.25)];
        let flat = [(0.0, 1.0), (1.0, 1.0)];
        let huge = [(0.0, -f64::MAX), (1.0, f64::MAX)];
        for s in [&nan[..], &one, &flat, &huge, &[]] {
            write_line_plot(&p, "edge cases: {}[]", &[("s", s)], 160, 100).unwrap();
        }
        write_line_plot(&p, "", &[], 120, 80).unwrap();
        assert_eq!(decode_png(&p).0, 120);
        assert!(write_line_plot(&p, "", &[], 10, 10).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tick_helpers() {
        assert!((nice_step(10.0, 5.0) - 2.0).abs() < 1e-12);
        assert!((nice_step(0.07, 5.0) - 0.01).abs() < 1e-15);
        assert!((nice_step(300.0, 6.0) - 50.0).abs() < 1e-9);
        assert_eq!(ticks(0.05, 1.0, 0.5), vec![0.5, 1.0]);
        assert_eq!(fmt_tick(0.5, 0.1), "0.5");
        assert_eq!(fmt_tick(1500.0, 500.0), "1500");
        assert_eq!(fmt_tick(2e-5, 1e-5), "2.0e-5");
        assert_eq!(fmt_tick(1e-17, 0.2), "0.0");
        assert_eq!(padded_range([10.0].into_iter(), 0.05), (9.0, 11.0));
        assert_eq!(padded_range([0.0, 0.0].into_iter(), 0.05), (-1.0, 1.0));
        assert_eq!(padded_range(std::iter::empty(), 0.05), (0.0, 1.0));
    }
}
