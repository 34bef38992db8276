//! Large host allocations are sized and checked against the memory the machine has before they
//! are made: a request that cannot fit is a clear error saying how much it needed, not an
//! abort ("memory allocation of 160000000000 bytes failed") in the middle of setting up.

use netc_compiler::ir::Network;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{what} needs {} of memory but this machine has {} available", size(*.need), size(*.available))]
pub struct MemoryError {
    pub what: String,
    pub need: u128,
    pub available: u128,
}

/// A byte count for people: kB, MB, GB (10^3 steps, as `netc check` prints memory).
pub fn size(bytes: u128) -> String {
    let b = bytes as f64;
    match bytes {
        0..=999_999 => format!("{:.1} kB", b / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.1} GB", b / 1e9),
    }
}

/// Bytes the machine can still give this process: Linux's MemAvailable (free memory plus what
/// the kernel can reclaim). None where it cannot be read (no check is made there).
pub fn available() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Fails when `need` bytes exceed what the machine has available.
pub fn ensure(need: u128, what: impl FnOnce() -> String) -> Result<(), MemoryError> {
    match available() {
        Some(available) if need > available => Err(MemoryError {
            what: what(),
            need,
            available,
        }),
        _ => Ok(()),
    }
}

/// Parameters of a network (every tensor, state included).
pub fn parameters(net: &Network) -> u128 {
    net.param_specs()
        .iter()
        .map(|p| p.shape.iter().map(|&d| d as u128).product::<u128>())
        .sum()
}

/// Bytes a training step of `net` at `batch` holds on the CPU executor, of `elem` bytes per
/// value: the parameters with their gradients and `slots` optimizer tensors, and every layer's
/// output kept for the backward pass together with its gradient.
pub fn training_bytes(net: &Network, batch: usize, slots: usize, elem: usize) -> u128 {
    let activations: u128 = net
        .order
        .iter()
        .map(|&n| {
            net.graph[n]
                .shape
                .iter()
                .map(|&d| d as u128)
                .product::<u128>()
        })
        .sum();
    (parameters(net) * (2 + slots as u128) + 2 * activations * batch as u128) * elem as u128
}

/// [`ensure`] for a training step of `net` (see [`training_bytes`]).
pub fn ensure_training(
    net: &Network,
    batch: usize,
    slots: usize,
    elem: usize,
) -> Result<(), MemoryError> {
    ensure(training_bytes(net, batch, slots, elem), || {
        format!("training network `{}` at batch {batch}", net.name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(1_500), "1.5 kB");
        assert_eq!(size(160_000_000_000), "160.0 GB");
        let e = MemoryError {
            what: "training network `a` at batch 1".into(),
            need: 160_000_000_000,
            available: 23_000_000_000,
        };
        assert_eq!(
            e.to_string(),
            "training network `a` at batch 1 needs 160.0 GB of memory but this machine has 23.0 GB available"
        );
    }

    #[test]
    fn an_impossible_request_is_refused_where_memory_can_be_read() {
        if available().is_none() {
            return;
        }
        assert!(ensure(1 << 100, || "a test".into()).is_err());
        assert!(ensure(1 << 10, || "a test".into()).is_ok());
    }
}
