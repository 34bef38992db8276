//! Training curves as one PNG of side-by-side panels (loss; accuracy, or a GAN's D(x) and
//! D(G(z)); a GAN's sample score), each with a title, axis titles and a legend. plotters draws
//! into an RGB buffer, its text set in DejaVu Sans (runtime/assets, embedded: no system font
//! or fontconfig is needed, and the picture is the same on every machine); the png crate
//! encodes it.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::{encode_png, write_atomic, IoError};

pub(super) const FONT: &str = "sans-serif";
static DEJAVU: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Series colours (matplotlib's "tab10"), reused cyclically.
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// One chart: its title, the y axis's title and its curves (name, (x, y) points).
#[derive(Debug)]
pub struct Panel<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    pub series: Vec<(&'a str, &'a [(f64, f64)])>,
}

pub(super) fn register() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        register_font(FONT, FontStyle::Normal, DEJAVU)
            .map_err(|_| "the embedded font does not load".to_string())
    })
    .clone()
}

/// Writes `panels` side by side, sharing the x axis's title, to `path` (`width` x `height`
/// pixels). Non-finite points are left out and break the line; an axis spans its finite data,
/// or [0, 1] when there is none.
pub fn write_chart(
    path: &Path,
    x_label: &str,
    panels: &[Panel],
    width: u32,
    height: u32,
) -> Result<(), IoError> {
    let invalid = |problem: String| IoError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    if !(200..=8192).contains(&width) || !(150..=8192).contains(&height) || panels.is_empty() {
        return Err(invalid(format!(
            "a chart of {} panels at {width}x{height} (at least one, 200x150 ..= 8192x8192)",
            panels.len()
        )));
    }
    register().map_err(invalid)?;
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        let areas = root.split_evenly((1, panels.len()));
        for (area, panel) in areas.iter().zip(panels) {
            draw_panel(area, x_label, panel).map_err(|e| invalid(format!("drawing: {e}")))?;
        }
        root.present()
            .map_err(|e| invalid(format!("drawing: {e}")))?;
    }
    let png = encode_png(path, &rgb, width, height, 3)?;
    write_atomic(path, &png)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw_panel(area: &Area, x_label: &str, panel: &Panel) -> Result<(), Box<dyn std::error::Error>> {
    let finite = || {
        panel
            .series
            .iter()
            .flat_map(|(_, pts)| pts.iter())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    // A little room on the right, so a curve's last point (a one-epoch run's test loss) is
    // not drawn on the frame.
    let (x0, x1) = padded_range(finite().map(|p| p.0), 0.02);
    let (y0, y1) = padded_range(finite().map(|p| p.1), 0.05);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, (FONT, 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    // Steps are counts: whole numbers on the axis once the span allows it.
    let whole = |v: &f64| format!("{v:.0}");
    let decimal = |v: &f64| format!("{v}");
    let x_fmt: &dyn Fn(&f64) -> String = if x1 - x0 >= 10.0 { &whole } else { &decimal };
    chart
        .configure_mesh()
        .x_label_formatter(x_fmt)
        .x_desc(x_label)
        .y_desc(panel.y_label)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (i, (name, points)) in panel.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        // A non-finite point ends a segment: the line does not bridge it.
        let segments = points
            .split(|(x, y)| !(x.is_finite() && y.is_finite()))
            .filter(|s| !s.is_empty());
        let mut first = true;
        // Within the axes (the range clamps extreme values, and plotters maps to i32 pixels).
        let inside = |&(x, y): &(f64, f64)| (x.clamp(x0, x1), y.clamp(y0, y1));
        for seg in segments {
            let style = color.stroke_width(2);
            let drawn = if seg.len() == 1 {
                // A lone point (a one-epoch run's test loss) would be invisible as a line.
                let dot = Circle::new(inside(&seg[0]), 4, color.filled());
                chart.draw_series(std::iter::once(dot))?
            } else {
                chart.draw_series(LineSeries::new(seg.iter().map(inside), style))?
            };
            if first {
                drawn
                    .label(*name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
                first = false;
            }
        }
    }
    // The legend goes in the right-hand corner away from where the curves end (a loss ends
    // low, an accuracy high).
    let ends: Vec<f64> = panel
        .series
        .iter()
        .filter_map(|(_, pts)| {
            pts.iter()
                .rev()
                .find(|(x, y)| x.is_finite() && y.is_finite())
        })
        .map(|p| (p.1.clamp(y0, y1) - y0) / (y1 - y0))
        .collect();
    let high = !ends.is_empty() && ends.iter().sum::<f64>() / ends.len() as f64 > 0.5;
    chart
        .configure_series_labels()
        .position(if high {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        })
        .label_font((FONT, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    Ok(())
}

/// [min, max] of `vals` widened by `pad` of the span (or by 1 around a single value); [0, 1]
/// when empty. Values are clamped to +-1e30, so the scale stays finite.
fn padded_range(vals: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        let v = v.clamp(-1e30, 1e30);
        (a.min(v), b.max(v))
    });
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 1.0, hi + 1.0);
    }
    let p = (hi - lo) * pad;
    (lo - p, hi + p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{decode_png, test_dir};

    /// Pixels of `px` (RGB) within a few levels of `c`.
    fn count(px: &[u8], c: RGBColor) -> usize {
        px.chunks_exact(3)
            .filter(|p| {
                p.iter()
                    .zip([c.0, c.1, c.2])
                    .all(|(&a, b)| (a as i32 - b as i32).abs() < 8)
            })
            .count()
    }

    #[test]
    fn draws_each_panel_with_its_series_and_text() {
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
        let acc = [(100.0, 0.9)];
        let panels = [
            Panel {
                title: "loss",
                y_label: "cross-entropy",
                series: vec![("train", &train), ("test", &val)],
            },
            Panel {
                title: "accuracy",
                y_label: "top-1",
                series: vec![("test", &acc)],
            },
        ];
        write_chart(&p, "step", &panels, 800, 400).unwrap();
        let (w, h, color, px) = decode_png(&p);
        assert_eq!((w, h, color), (800, 400, png::ColorType::Rgb));
        assert!(count(&px, PALETTE[0]) > 300, "train curve drawn");
        assert!(count(&px, PALETTE[1]) > 100, "test curve drawn");
        // The lone accuracy point is a dot on the right half, not nothing.
        let right: Vec<u8> = px
            .chunks_exact(800 * 3)
            .flat_map(|row| row[400 * 3..].to_vec())
            .collect();
        assert!(
            count(&right, PALETTE[0]) > 20,
            "a one-point series is drawn"
        );
        // Text: dark antialiased pixels beyond the axes' lines.
        let dark = px
            .chunks_exact(3)
            .filter(|p| p.iter().all(|&v| v < 80))
            .count();
        assert!(dark > 800, "titles, tick labels and legends drawn ({dark})");
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
            let panel = Panel {
                title: "edge cases: {}[]",
                y_label: "",
                series: vec![("s", s)],
            };
            write_chart(&p, "", &[panel], 300, 200).unwrap();
        }
        assert_eq!(decode_png(&p).0, 300);
        let empty = Panel {
            title: "",
            y_label: "",
            series: vec![],
        };
        assert!(write_chart(&p, "", std::slice::from_ref(&empty), 10, 10).is_err());
        assert!(write_chart(&p, "", &[], 300, 200).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ranges() {
        assert_eq!(padded_range([10.0].into_iter(), 0.05), (9.0, 11.0));
        assert_eq!(padded_range([0.0, 0.0].into_iter(), 0.05), (-1.0, 1.0));
        assert_eq!(padded_range(std::iter::empty(), 0.05), (0.0, 1.0));
        assert_eq!(padded_range([0.0, 10.0].into_iter(), 0.1), (-1.0, 11.0));
    }
}
