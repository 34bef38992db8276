//! `train --profile`: the per-kernel times of one pass of the GPU program and its replay
//! counters, as lines for the user.

use super::TrainError;
use crate::session::RunError;

/// Per-kernel times of one pass, and the replay counters, as lines for the user.
pub fn profile_lines(
    prog: &mut crate::gpu::GpuProgram,
    pass: usize,
    what: &str,
) -> Result<Vec<String>, TrainError> {
    let before = prog.counters;
    let (times, stamps) = prog.profile(pass).map_err(RunError::from)?;
    let mut out = vec![format!(
        "profile of one {what} ({}):",
        if stamps {
            "timestamp queries"
        } else {
            "wall-clock, one submission per kernel"
        }
    )];
    let total: f64 = times.iter().map(|t| t.seconds).sum();
    for t in &times {
        out.push(format!(
            "  {:>9.3} ms  {:<44} {}",
            t.seconds * 1e3,
            t.label,
            t.kernel
        ));
    }
    out.push(format!("  {:>9.3} ms  total", total * 1e3));
    let c = prog.counters;
    out.push(format!(
        "replay: {} pipelines, {} bind groups, {} buffers and {} textures were created once, before the first step ({} since); {} submissions in all, one per pass",
        c.pipelines_created,
        c.bind_groups_created,
        c.buffers_created,
        c.textures_created,
        c.pipelines_created - before.pipelines_created + c.bind_groups_created - before.bind_groups_created
            + c.buffers_created - before.buffers_created + c.textures_created - before.textures_created,
        c.submissions
    ));
    if c.textures_created > 0 {
        out.push(format!(
            "reads through texture mirrors: {} buffer-to-texture copies per {what}",
            prog.mirror_refreshes(pass)
        ));
    }
    Ok(out)
}

/// What `--profile` tells after a run: the profile of each of the program's training passes
/// (pass, what it is), or `cpu_note` when the CPU executor ran (no kernels to time).
pub(super) fn log_profile(
    program: Option<(&mut crate::gpu::GpuProgram, Vec<(usize, &str)>)>,
    cpu_note: &str,
    log: &mut dyn FnMut(&str),
) -> Result<(), TrainError> {
    match program {
        Some((prog, passes)) => {
            for (pass, what) in passes {
                profile_lines(prog, pass, what)?.iter().for_each(|l| log(l));
            }
        }
        None => log(cpu_note),
    }
    Ok(())
}
