//! Progress output: the per-epoch or per-interval bar and the figures of the log lines
//! (losses, learning rates, step rates).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// "12.3 ms/step, 81.3 steps/s" for a rate in steps per second (empty before the first step).
pub(super) fn step_rate(per_sec: f64) -> String {
    if !(per_sec.is_finite() && per_sec > 0.0) {
        return String::new();
    }
    let ms = 1e3 / per_sec;
    if ms >= 1e3 {
        format!("{:.2} s/step", ms / 1e3)
    } else {
        format!("{ms:.1} ms/step, {per_sec:.1} steps/s")
    }
}

/// A loss or other figure for a log line: four decimals in the usual range, and scientific
/// notation where fixed point would print twenty digits or only zeros.
pub fn figure(x: f64) -> String {
    let a = x.abs();
    if x == 0.0 || !x.is_finite() || (1e-3..1e5).contains(&a) {
        format!("{x:.4}")
    } else {
        format!("{x:.4e}")
    }
}

/// A learning rate for the epoch line: five significant digits at most, `1e-2` rather than
/// `9.910934720625748e-3`'s sixteen.
pub(super) fn rate(lr: f64) -> String {
    let t = format!("{lr:.4e}");
    match t.split_once('e') {
        Some((m, e)) if m.contains('.') => {
            format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => t,
    }
}

/// A progress bar over `total` steps headed `prefix` (hidden when not on a terminal).
pub(super) fn bar(total: u64, progress: bool, prefix: String) -> ProgressBar {
    let pb = ProgressBar::new(total).with_prefix(prefix);
    if !progress || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    // indicatif's own {per_sec} reads "236.7729/s"; a step rate and its inverse say more.
    let style = ProgressStyle::with_template(
        "{prefix} {bar:30} {pos}/{len} steps  {msg}  {rate}  ETA {eta}",
    )
    .map(|st| {
        st.with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}", step_rate(state.per_sec()));
            },
        )
    })
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}

#[cfg(test)]
mod tests {
    use super::{figure, rate, step_rate};

    #[test]
    fn figures_stay_readable_at_any_scale() {
        assert_eq!(figure(0.2345678), "0.2346");
        assert_eq!(figure(0.0), "0.0000");
        // was printed as 117019788811415109632.0000
        assert_eq!(figure(117019788811415109632.0), "1.1702e20");
        assert_eq!(figure(2.5e-6), "2.5000e-6");
        assert_eq!(figure(f64::NAN), "NaN");
        assert_eq!(step_rate(236.7729), "4.2 ms/step, 236.8 steps/s");
        assert_eq!(step_rate(0.5), "2.00 s/step");
        assert_eq!(step_rate(0.0), "");
        assert_eq!(rate(9.910934720625748e-3), "9.9109e-3");
        assert_eq!(rate(0.01), "1e-2");
        assert_eq!(rate(5e-4), "5e-4");
    }
}
