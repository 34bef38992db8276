//! The run folder: made ready and locked for one run, its metrics log (metrics.jsonl) and the
//! loss plot drawn from it (loss.png).

use super::TrainError;
use crate::io;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// What a finished or interrupted run leaves in its folder.
const RUN_FILES: [&str; 2] = ["checkpoint.safetensors", "metrics.jsonl"];

/// Checks before any work: the output folder can be written, and a run already in it is
/// neither truncated nor replaced unless the user said so.
/// Makes the run folder ready: locks it for this run (the returned file holds the lock until it
/// is dropped; the system releases it when the process ends however it ends), refuses a
/// folder that holds another run unless resuming or overwriting, and removes what a killed run
/// left half-written.
pub(super) fn prepare_out(
    out: &Path,
    resume: bool,
    overwrite: bool,
) -> Result<std::fs::File, TrainError> {
    std::fs::create_dir_all(out).map_err(|e| {
        TrainError::Setup(format!(
            "cannot create output folder {}: {e}",
            out.display()
        ))
    })?;
    let lock = lock_out(out)?;
    let existing: Vec<&str> = RUN_FILES
        .into_iter()
        .filter(|f| out.join(f).exists())
        .collect();
    if !existing.is_empty() && !resume && !overwrite {
        return Err(TrainError::Setup(format!(
            "{} already holds a run ({}); pass --resume to continue it, --overwrite to replace it, or --out for another folder",
            out.display(),
            existing.join(", ")
        )));
    }
    // Temporary files of a run killed mid-write (kill -9, power loss): never complete, never
    // read; this netc's (`.tmp-netc-*`) and earlier versions' (`<file>.tmp-<pid>-<n>`).
    if let Ok(entries) = std::fs::read_dir(out) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".tmp-netc-")
                || name.contains(".safetensors.tmp-")
                || name.contains(".png.tmp-")
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if overwrite && !resume {
        // The old run goes first, so an early stop cannot leave its checkpoint beside the new
        // run's metrics.
        for f in RUN_FILES.into_iter().chain(["loss.png"]) {
            let _ = std::fs::remove_file(out.join(f));
        }
    }
    probe_writable(out)?;
    Ok(lock)
}

/// Fails unless a file can be created and written in `out`. The probe is a fresh temporary
/// file (created exclusively, so a planted link is never followed), removed when it is dropped
/// on every path: `.netc-write-test` used to stay behind when the write failed (a full disk).
/// Its name is one the next run clears if this process is killed before the removal.
fn probe_writable(out: &Path) -> Result<(), TrainError> {
    let not_writable = |e: std::io::Error| {
        TrainError::Setup(format!(
            "output folder {} is not writable: {e}",
            out.display()
        ))
    };
    let mut probe = tempfile::Builder::new()
        .prefix(".tmp-netc-write-test-")
        .tempfile_in(out)
        .map_err(not_writable)?;
    probe.write_all(b"ok").map_err(not_writable)?;
    probe.flush().map_err(not_writable)?;
    probe.close().map_err(not_writable)
}

/// An exclusive advisory lock on `<out>/.netc-lock`: a second run into the same folder is
/// refused (two runs used to interleave their metrics lines and replace each other's
/// checkpoints). The file keeps the holder's process id for the message.
fn lock_out(out: &Path) -> Result<std::fs::File, TrainError> {
    use std::io::{Read, Seek, Write as _};
    let path = out.join(".netc-lock");
    let mut file = open_lock(&path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(TrainError::Setup(format!(
                "another netc run{} is writing to {}; wait for it, or use --out for another folder",
                match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (process {pid})"),
                },
                out.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(TrainError::Setup(format!(
                "cannot lock {}: {e}",
                path.display()
            )))
        }
    }
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
}

/// Opens (or creates) the lock file, which must be a regular file in the folder itself: a link
/// is not followed (one planted as `.netc-lock` made the run truncate its target and write the
/// process id into it), and the open does not block on a FIFO.
fn open_lock(path: &Path) -> Result<std::fs::File, TrainError> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).read(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let refuse = |what: &str| {
        TrainError::Setup(format!(
            "{} is {what}; netc's lock file must be a regular file: remove it",
            path.display()
        ))
    };
    let file = options.open(path).map_err(|e| {
        let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if link {
            refuse("a symbolic link")
        } else {
            TrainError::Setup(format!("cannot open {}: {e}", path.display()))
        }
    })?;
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        Ok(m) => Err(refuse(io::output::kind(m.file_type()))),
        Err(e) => Err(TrainError::Setup(format!(
            "cannot open {}: {e}",
            path.display()
        ))),
    }
}

/// The run's metrics.jsonl, open for appending rows (on rank 0 of a data-parallel run only:
/// the other ranks keep no file).
pub(super) struct Metrics {
    file: Option<std::fs::File>,
}

impl Metrics {
    /// [`Metrics::open`] on the rank that owns the run folder; nothing on the others.
    pub(super) fn open_run(
        opts: &super::Options,
        resumed: Option<u64>,
    ) -> Result<Metrics, TrainError> {
        if opts.dist.is_root() {
            Metrics::open(&opts.out, resumed)
        } else {
            Ok(Metrics { file: None })
        }
    }

    /// Opens the run's metrics; resuming from step `resumed`, the rows logged after that step
    /// (the part of the run the checkpoint does not hold, which is trained again) are dropped
    /// first, so no step appears twice.
    pub(super) fn open(out: &Path, resumed: Option<u64>) -> Result<Metrics, TrainError> {
        let path = out.join("metrics.jsonl");
        let append = resumed.is_some();
        if let (Some(step), Some(text)) = (resumed, read_text(&path)) {
            let keep: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            if keep.len() != text.len() {
                io::write_atomic(&path, keep.as_bytes())?;
            }
        }
        let file = match io::output_target(&path)? {
            io::Output::Through(file) => file,
            io::Output::Replace(_) => std::fs::OpenOptions::new()
                .create(true)
                .append(append)
                .write(true)
                .truncate(!append)
                .open(&path)
                .map_err(|e| TrainError::Setup(format!("cannot write {}: {e}", path.display())))?,
        };
        Ok(Metrics { file: Some(file) })
    }
    /// One row: `kind` says which (`train` for a log interval, `epoch` for an evaluated
    /// epoch); counters are written as integers.
    pub(super) fn log(&mut self, kind: &str, m: &BTreeMap<String, f64>) -> Result<(), TrainError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut row = serde_json::Map::new();
        row.insert("kind".into(), kind.into());
        for (k, &v) in m {
            let counter = matches!(k.as_str(), "step" | "epoch") && v >= 0.0 && v.fract() == 0.0;
            let value = if counter {
                serde_json::Value::from(v as u64)
            } else {
                serde_json::Value::from(v)
            };
            row.insert(k.clone(), value);
        }
        let line = serde_json::Value::Object(row).to_string();
        writeln!(file, "{line}")
            .map_err(|e| TrainError::Setup(format!("cannot write metrics: {e}")))?;
        Ok(())
    }
}

/// Reads metrics.jsonl back (for plots and tests): the numeric fields of each row.
pub fn read_metrics(out: &Path) -> Vec<BTreeMap<String, f64>> {
    read_text(&out.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(l).ok())
        .map(|row| {
            row.into_iter()
                .filter_map(|(k, v)| v.as_f64().map(|v| (k, v)))
                .collect()
        })
        .collect()
}

/// A text file of the run folder, if it is a regular file (see io::input; metrics.jsonl may be a
/// device or a FIFO the metrics are written through, which is not read back).
fn read_text(path: &Path) -> Option<String> {
    let bytes = io::read_capped(path, u64::MAX, "a text file").ok()?;
    String::from_utf8(bytes).ok()
}

/// The (step, `key`) points of metrics.jsonl.
fn curve(all: &[BTreeMap<String, f64>], key: &str) -> Vec<(f64, f64)> {
    all.iter()
        .filter_map(|m| Some((*m.get("step")?, *m.get(key)?)))
        .collect()
}

/// One panel of loss.png: its title, the y axis's title, its curves (label, metrics key) and
/// the factor its values are drawn at (100 for an accuracy in percent, as the terminal prints
/// it).
pub(super) type PanelSpec = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    f64,
);

/// A panel's curves read from the metrics: (label, points).
type Curves = Vec<(&'static str, Vec<(f64, f64)>)>;

/// The x axis's title and each panel's curves, scaled as its spec says. A classifier's curves
/// are drawn against the epoch (fractional between evaluations), as the terminal counts its
/// progress; a GAN's (and a first epoch's) against the step.
fn panel_curves(all: &[BTreeMap<String, f64>], specs: &[PanelSpec]) -> (&'static str, Vec<Curves>) {
    let (x_label, per_unit) = match epoch_steps(all) {
        Some(spe) => ("epoch", spe),
        None => ("step", 1.0),
    };
    let curves = specs
        .iter()
        .map(|(_, _, series, scale)| {
            series
                .iter()
                .map(|&(l, k)| {
                    let pts = curve(all, k)
                        .into_iter()
                        .map(|(x, y)| (x / per_unit, y * scale));
                    (l, pts.collect())
                })
                .collect()
        })
        .collect();
    (x_label, curves)
}

/// The steps per epoch of a classifier run, from its first evaluated epoch's row (the step at
/// which epoch `e` ended, over `e`); None for a GAN's metrics, or before the first epoch ends.
fn epoch_steps(all: &[BTreeMap<String, f64>]) -> Option<f64> {
    let row = all.iter().find(|m| m.contains_key("epoch_seconds"))?;
    let (step, epoch) = (*row.get("step")?, *row.get("epoch")?);
    (epoch >= 1.0 && step > 0.0).then(|| step / epoch)
}

/// loss.png from the run's metrics so far: a panel per spec, side by side, against the epoch
/// or the step (a panel whose curves have no points yet is left out). Redrawn (atomically) after every
/// classifier evaluation and GAN log interval, so it can be watched during training.
pub(super) fn plot(out: &Path, specs: &[PanelSpec]) -> Result<(), TrainError> {
    let (x_label, curves) = panel_curves(&read_metrics(out), specs);
    let panels: Vec<io::Panel> = specs
        .iter()
        .zip(&curves)
        .filter(|(_, c)| c.iter().any(|(_, pts)| !pts.is_empty()))
        .map(|(&(title, y_label, _, _), c)| io::Panel {
            title,
            y_label,
            series: c.iter().map(|(l, pts)| (*l, pts.as_slice())).collect(),
        })
        .collect();
    if panels.is_empty() {
        return Ok(());
    }
    let width = 460 * panels.len() as u32;
    io::write_chart(&out.join("loss.png"), x_label, &panels, width, 400)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
    }

    /// loss.png counts epochs on its x axis once an epoch has ended, and an accuracy in
    /// percent, as the terminal prints both.
    #[test]
    fn curves_are_drawn_against_epochs_with_accuracy_in_percent() {
        const SPECS: &[PanelSpec] = &[
            ("loss", "l", &[("train", "train_loss")], 1.0),
            ("accuracy", "top-1 (%)", &[("train", "train_acc")], 100.0),
        ];
        let first = [row(&[
            ("step", 3.0),
            ("train_loss", 2.0),
            ("train_acc", 0.25),
        ])];
        let (label, c) = panel_curves(&first, SPECS);
        assert_eq!((label, c[0][0].1.clone()), ("step", vec![(3.0, 2.0)]));
        let all = [
            first[0].clone(),
            row(&[
                ("step", 6.0),
                ("epoch", 1.0),
                ("epoch_seconds", 0.1),
                ("train_loss", 1.5),
                ("train_acc", 0.5),
            ]),
            row(&[("step", 9.0), ("train_loss", 1.0), ("train_acc", 0.75)]),
        ];
        let (label, c) = panel_curves(&all, SPECS);
        assert_eq!(label, "epoch");
        assert_eq!(c[0][0].1, vec![(0.5, 2.0), (1.0, 1.5), (1.5, 1.0)]);
        assert_eq!(c[1][0].1, vec![(0.5, 25.0), (1.0, 50.0), (1.5, 75.0)]);
    }
}
