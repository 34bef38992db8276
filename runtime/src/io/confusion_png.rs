//! A classifier's confusion matrix as a PNG (`netc eval` writes confusion.png in the run
//! folder): one cell per (true class, predicted class), shaded by the share of the true
//! class's images, with the count written in the cell while the matrix is small enough to read
//! and the class names along both axes.

use std::path::Path;

use plotters::prelude::*;

use super::plot::{register, FONT};
use super::{encode_png, write_atomic, IoError};

/// Classes above which the counts are left out of the cells (too small to read).
const COUNTS_UP_TO: usize = 20;

/// Writes the matrix `counts[true][predicted]` with the class `names` (one per row) to `path`.
pub fn write_confusion(path: &Path, names: &[String], counts: &[Vec<u64>]) -> Result<(), IoError> {
    let invalid = |problem: String| IoError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let n = names.len();
    if n == 0 || n > 1000 || counts.len() != n || counts.iter().any(|r| r.len() != n) {
        return Err(invalid(format!(
            "a confusion matrix of {n} classes needs {n} rows of {n} counts (1 ..= 1000 classes)"
        )));
    }
    register().map_err(invalid)?;
    let cell = (600 / n as u32).clamp(4, 60);
    let label = names.iter().map(|s| s.chars().count()).max().unwrap_or(1) as u32;
    let margin = if n <= 60 {
        (label * 7).clamp(30, 160)
    } else {
        30
    };
    let (width, height) = (margin + 40 + cell * n as u32, margin + 70 + cell * n as u32);
    let mut rgb = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area();
        draw(&root, names, counts, margin).map_err(|e| invalid(format!("drawing: {e}")))?;
        root.present()
            .map_err(|e| invalid(format!("drawing: {e}")))?;
    }
    let png = encode_png(path, &rgb, width, height, 3)?;
    write_atomic(path, &png)
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn draw(
    root: &Area,
    names: &[String],
    counts: &[Vec<u64>],
    margin: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    let n = names.len();
    let mut chart = ChartBuilder::on(root)
        .caption("confusion matrix (rows: true class)", (FONT, 16))
        .margin(10)
        .x_label_area_size(margin)
        .y_label_area_size(margin)
        // (A segmented 0..m has a segment for each of 0 ..= m.)
        .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())?;
    // A name at the centre of its cell; row 0 at the top, as a matrix is read.
    let name = |v: &SegmentValue<usize>, flip: bool| match *v {
        SegmentValue::CenterOf(i) if i < n => names[if flip { n - 1 - i } else { i }].clone(),
        _ => String::new(),
    };
    let show = n <= 60;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(if show { n } else { 0 })
        .y_labels(if show { n } else { 0 })
        .x_label_formatter(&|i| name(i, false))
        .y_label_formatter(&|i| name(i, true))
        .x_desc("predicted class")
        .y_desc("true class")
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 13))
        .draw()?;
    for (t, row) in counts.iter().enumerate() {
        let total = row.iter().sum::<u64>().max(1) as f64;
        for (p, &c) in row.iter().enumerate() {
            let share = c as f64 / total;
            let y = n - 1 - t;
            // White to dark blue by the share of the true class's images.
            let shade = |full: u8| (255.0 - share * (255.0 - full as f64)) as u8;
            let color = RGBColor(shade(8), shade(48), shade(107));
            let at = |x: usize, y: usize| (SegmentValue::Exact(x), SegmentValue::Exact(y));
            chart.draw_series(std::iter::once(Rectangle::new(
                [at(p, y), at(p + 1, y + 1)],
                color.filled(),
            )))?;
            if n <= COUNTS_UP_TO && c > 0 {
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let style = TextStyle::from((FONT, 11).into_font()).color(&ink).pos(
                    plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Center,
                    ),
                );
                let (x0, y0) = chart.backend_coord(&at(p, y + 1));
                let (x1, y1) = chart.backend_coord(&at(p + 1, y));
                root.draw_text(&c.to_string(), &style, ((x0 + x1) / 2, (y0 + y1) / 2))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{decode_png, test_dir};

    #[test]
    fn draws_the_matrix_and_refuses_a_ragged_one() {
        let dir = test_dir("confusion");
        let p = dir.join("c.png");
        let names: Vec<String> = ["cat", "dog", "Ankle boot"].map(String::from).to_vec();
        let counts = vec![vec![8, 1, 1], vec![0, 10, 0], vec![2, 3, 5]];
        write_confusion(&p, &names, &counts).unwrap();
        let (w, h, _, px) = decode_png(&p);
        assert!(w > 100 && h > 100);
        // The full diagonal cell (10 of 10) is the darkest blue.
        let dark = px
            .chunks_exact(3)
            .filter(|c| c[0] < 20 && c[1] < 60 && c[2] > 90 && c[2] < 120)
            .count();
        assert!(dark > 100, "{dark}");
        assert!(write_confusion(&p, &names, &counts[..2]).is_err());
        write_confusion(&p, &names[..1], &[vec![4]]).unwrap();
        assert!(write_confusion(&p, &[], &[]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
