//! `netc score --compare a.npy b.npy ...`: several sets of samples (a GAN's, a VAE's, ...)
//! scored with one classifier against the same real images, as one table, so the families
//! are compared on equal terms.

use super::{real_images, ScoreArgs, ScoreFormat};
use crate::common::{fail, Failure};
use netc_runtime::score::{Score, Scorer};
use std::path::Path;

/// One row: what was scored and its figures.
struct Row {
    name: String,
    score: Score,
}

pub(super) fn run(args: &ScoreArgs, scorer: &Scorer, classifier: &str) -> Result<(), Failure> {
    // The real images: the reference every row's Frechet distance is measured against, and
    // their own figures, the ceiling.
    let real = match &args.data_dir {
        Some(d) => {
            let imgs = real_images(Path::new(d), args.real)?;
            let out = scorer.outputs(&imgs).map_err(fail)?;
            let own = scorer.score(&imgs, None).map_err(fail)?;
            Some((out, own, d.clone()))
        }
        None => None,
    };
    let mut rows = vec![];
    for path in &args.compare {
        let (shape, values) = netc_runtime::io::read_npy_f32(Path::new(path)).map_err(fail)?;
        scorer
            .check_samples(&shape, &values)
            .map_err(|e| fail(format!("{path}: {e}")))?;
        let score = scorer
            .score(&values, real.as_ref().map(|r| &r.0))
            .map_err(fail)?;
        rows.push(Row {
            name: path.clone(),
            score,
        });
    }
    if let Some((_, own, d)) = &real {
        rows.push(Row {
            name: format!("real images ({d})"),
            score: own.clone(),
        });
    }
    match args.format {
        ScoreFormat::Text => {
            println!("scored with {classifier}");
            print!("{}", table(&rows));
            if real.is_none() {
                println!("(no Frechet distance: pass --data-dir with the real images)");
            }
        }
        ScoreFormat::Json => {
            let v: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "samples": r.name,
                        "count": r.score.count,
                        "inception_score": r.score.inception_score,
                        "confident": r.score.confident,
                        "classes_present": present(&r.score),
                        "histogram": r.score.histogram,
                        "frechet_distance": r.score.fid,
                    })
                })
                .collect();
            let v = serde_json::json!({ "classifier": classifier, "rows": v });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
    Ok(())
}

/// Classes that are some image's most likely class.
fn present(s: &Score) -> usize {
    s.histogram.iter().filter(|&&n| n > 0).count()
}

/// The table: a row per set, the columns aligned.
fn table(rows: &[Row]) -> String {
    let head = [
        "samples",
        "count",
        "IS",
        "confident",
        "classes",
        "fewest",
        "Frechet",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            let s = &r.score;
            [
                r.name.clone(),
                s.count.to_string(),
                format!("{:.3}", s.inception_score),
                format!("{:.1}%", 100.0 * s.confident),
                format!("{}/{}", present(s), s.histogram.len()),
                // The rarest class's share: a collapsed mode shows here before the IS moves.
                format!(
                    "{:.1}%",
                    100.0 * s.histogram.iter().copied().min().unwrap_or(0) as f64
                        / s.count.max(1) as f64
                ),
                s.fid.map_or("-".into(), |f| format!("{f:.3}")),
            ]
        })
        .collect();
    let width = |k: usize| {
        cells
            .iter()
            .map(|c| c[k].chars().count())
            .chain([head[k].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let line = |c: &[String]| {
        let mut s = format!("{:<w$}", c[0], w = widths[0]);
        for (k, v) in c.iter().enumerate().skip(1) {
            s.push_str(&format!("  {v:>w$}", w = widths[k]));
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(&head.map(String::from));
    out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
    }
    out
}
