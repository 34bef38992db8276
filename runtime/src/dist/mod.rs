//! Data-parallel training across processes (`mpirun -n N netc train ...`): what the training
//! loop asks of the other processes, written against [`Comm`] so that a build without MPI (one
//! process, [`Dist::solo`]) runs the same code. docs/distributed.md says how a run is split.
//!
//! Every call here is collective: each rank makes the same calls in the same order, which the
//! loop guarantees by deciding everything that changes its course (a stop, a non-finite loss)
//! from reduced values only.

#[cfg(feature = "mpi")]
mod mpi;
mod overlap;

pub use overlap::BUCKET_BYTES;

use crate::cpu::LossStats;
use crate::session::Grads;
use std::cell::Cell;
use std::rc::Rc;

/// What a group of processes does together. Rank 0 is the root: it owns the run folder and
/// is the source of broadcasts.
pub trait Comm {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// The rank among the processes of this machine (picks a GPU where there are several).
    fn local_rank(&self) -> usize;
    /// Replaces `v` on every rank by its element-wise sum over the ranks.
    fn sum_f32(&self, v: &mut [f32]);
    fn sum_f64(&self, v: &mut [f64]);
    /// Whether `flag` is set on any rank.
    fn any(&self, flag: bool) -> bool;
    /// Replaces `bytes` on every rank by rank 0's.
    fn broadcast(&self, bytes: &mut Vec<u8>);
    /// Ends every process of the job with `code` (after a failure on this rank).
    fn abort(&self, code: i32) -> !;
    /// A channel of its own for one other thread's sums (the communication thread that
    /// overlaps the reduction with the backward pass), where the library lets threads take
    /// turns calling it.
    fn lane(&self) -> Option<&dyn Lane> {
        None
    }
    /// Whether every rank runs on this machine (the reduction is then memory copies made
    /// by the same cores as the backward pass).
    fn one_machine(&self) -> bool {
        true
    }
}

/// Sums made from another thread than the main one, while the main thread makes no call.
pub trait Lane: Sync {
    /// Replaces `v` on every rank by its element-wise sum over the ranks.
    fn sum_f32(&self, v: &mut [f32]);
}

/// The processes a run is split over: one ([`Dist::solo`]) or an MPI job, with the time and
/// bytes its gradient reductions took. Only the main thread calls MPI through it, hence `Rc`
/// (the overlap's communication thread has a [`Lane`] of its own).
#[derive(Clone)]
pub struct Dist(Rc<dyn Comm>, Rc<Cell<Traffic>>);

/// What the gradient reductions of a run cost on this rank.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    /// Reductions made, and the gradient bytes each rank sent into them.
    pub reductions: u64,
    pub bytes: u64,
    /// Seconds the training step waited for them: the transfer and the wait for the slowest
    /// rank (with the overlap, only what was left after the backward pass).
    pub seconds: f64,
    /// With the overlap, seconds the communication thread spent in the all-reduces, most of
    /// them while the backward pass ran.
    pub overlapped: f64,
}

impl std::fmt::Debug for Dist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dist(rank {} of {})", self.rank(), self.size())
    }
}

impl Default for Dist {
    fn default() -> Dist {
        Dist::solo()
    }
}

/// A process on its own.
struct Solo;

impl Comm for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn sum_f32(&self, _: &mut [f32]) {}
    fn sum_f64(&self, _: &mut [f64]) {}
    fn any(&self, flag: bool) -> bool {
        flag
    }
    fn broadcast(&self, _: &mut Vec<u8>) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// Why a run cannot start on the processes it was given.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DistError(pub String);

/// The variables a launcher sets in the processes it starts: Open MPI's mpirun, MPICH's and
/// Intel MPI's Hydra (PMI), PMIx launchers (srun --mpi=pmix, prterun).
const LAUNCH_VARS: &[&str] = &["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK"];

/// Whether a launcher started this process, and among how many where it says.
fn launched() -> Option<Option<usize>> {
    LAUNCH_VARS
        .iter()
        .any(|v| std::env::var_os(v).is_some())
        .then(|| {
            ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
                .iter()
                .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
        })
}

/// Whether a launcher started this process as one of several (whatever the build).
pub fn launched_among_several() -> bool {
    matches!(launched(), Some(Some(n)) if n > 1)
}

impl Dist {
    /// One process, no communication.
    pub fn solo() -> Dist {
        Dist(Rc::new(Solo), Rc::default())
    }

    /// The processes this one was started among: an MPI job when a launcher (mpirun, srun)
    /// started several and netc was built with the `mpi` feature; one process when none did.
    /// Several processes without MPI support are refused: each would train alone.
    pub fn launch() -> Result<Dist, DistError> {
        let Some(size) = launched() else {
            return Ok(Dist::solo());
        };
        #[cfg(feature = "mpi")]
        {
            let _ = size;
            mpi::Mpi::init().map(|m| Dist(Rc::new(m), Rc::default()))
        }
        #[cfg(not(feature = "mpi"))]
        match size {
            Some(n) if n > 1 => Err(DistError(format!(
                "started as one of {n} processes (by mpirun or srun), but this netc was built without MPI support, so each would train alone; build it with `cargo build --release --features mpi` (docs/distributed.md)"
            ))),
            _ => Ok(Dist::solo()),
        }
    }

    pub fn rank(&self) -> usize {
        self.0.rank()
    }

    pub fn size(&self) -> usize {
        self.0.size()
    }

    pub fn local_rank(&self) -> usize {
        self.0.local_rank()
    }

    /// Whether this process owns the run folder (and prints).
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// Whether the run is split over several processes.
    pub fn is_split(&self) -> bool {
        self.size() > 1
    }

    /// Whether `flag` is set on any rank.
    pub fn any(&self, flag: bool) -> bool {
        self.0.any(flag)
    }

    pub fn abort(&self, code: i32) -> ! {
        self.0.abort(code)
    }

    /// Fault injection for the tests of a failing rank: `NETC_TEST_PANIC=RANK:STEP` panics
    /// rank RANK once it has trained step STEP.
    pub fn test_fault(&self, step: u64) {
        let Ok(v) = std::env::var("NETC_TEST_PANIC") else {
            return;
        };
        if v.split_once(':')
            .and_then(|(r, s)| Some((r.parse().ok()?, s.parse().ok()?)))
            == Some((self.rank(), step))
        {
            panic!(
                "NETC_TEST_PANIC={v}: rank {} panics at step {step}",
                self.rank()
            );
        }
    }

    /// This rank's contiguous rows of a global batch of `batch` rows.
    pub fn rows(&self, batch: usize) -> std::ops::Range<usize> {
        let per = batch / self.size();
        self.rank() * per..(self.rank() + 1) * per
    }

    /// Sums the gradients of every rank, in one message (the frozen tensors' `None` stay).
    pub fn sum_grads(&self, grads: &mut Grads) {
        if !self.is_split() {
            return;
        }
        let mut flat: Vec<f32> = grads.iter().flatten().flatten().copied().collect();
        let t0 = std::time::Instant::now();
        self.0.sum_f32(&mut flat);
        let mut t = self.1.get();
        t.reductions += 1;
        t.bytes += 4 * flat.len() as u64;
        t.seconds += t0.elapsed().as_secs_f64();
        self.1.set(t);
        let mut rest = &flat[..];
        for g in grads.iter_mut().flatten() {
            let (mine, tail) = rest.split_at(g.len());
            g.copy_from_slice(mine);
            rest = tail;
        }
    }

    /// What the gradient reductions cost so far on this rank.
    pub fn traffic(&self) -> Traffic {
        self.1.get()
    }

    /// Sums a step's loss figures over the ranks.
    pub fn sum_stats(&self, st: &mut LossStats) {
        let mut v = [st.loss, st.correct, st.top5, st.rows];
        self.0.sum_f64(&mut v);
        [st.loss, st.correct, st.top5, st.rows] = v;
    }

    pub fn sum_f64(&self, v: &mut [f64]) {
        self.0.sum_f64(v)
    }

    /// Rank 0's `values` on every rank.
    pub fn broadcast_f32(&self, values: &mut [f32]) {
        if !self.is_split() {
            return;
        }
        let mut bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.0.broadcast(&mut bytes);
        for (v, b) in values.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }

    /// What rank 0's `read` gives (a file's bytes), on every rank: the others do not read,
    /// so a checkpoint need only be on rank 0's machine. An error there is every rank's.
    pub fn from_root(
        &self,
        read: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Vec<u8>, String> {
        if !self.is_split() {
            return read();
        }
        let mut msg = if self.is_root() {
            match read() {
                Ok(mut b) => {
                    b.insert(0, 1);
                    b
                }
                Err(e) => [&[0u8][..], e.as_bytes()].concat(),
            }
        } else {
            vec![]
        };
        self.0.broadcast(&mut msg);
        match msg.split_first() {
            Some((1, bytes)) => Ok(bytes.to_vec()),
            Some((_, why)) => Err(String::from_utf8_lossy(why).into_owned()),
            None => Err("rank 0 sent nothing".into()),
        }
    }

    /// Checks that every rank holds the same `values` (the starting weights and optimizer
    /// state): a digest of them compared with rank 0's, the ranks that differ named.
    pub fn verify_same(&self, what: &str, values: &[&[f32]]) -> Result<(), DistError> {
        if !self.is_split() {
            return Ok(());
        }
        let digest = digest(values);
        let mut all = vec![0.0f64; self.size()];
        // Exact in an f64 sum: each rank fills its own slot with a 48-bit value.
        all[self.rank()] = (digest >> 16) as f64;
        self.0.sum_f64(&mut all);
        let differ: Vec<String> = (1..self.size())
            .filter(|&r| all[r] != all[0])
            .map(|r| r.to_string())
            .collect();
        if differ.is_empty() {
            return Ok(());
        }
        Err(DistError(format!(
            "the {what} of rank(s) {} differ from rank 0's after the broadcast; the ranks would train different models",
            differ.join(", ")
        )))
    }
}

/// The rows of a global batch one process computes, and how: contiguous rows of the batch
/// (rank r of N takes rows r*B/N..(r+1)*B/N, so the data order is one process's), computed in
/// `parts` micro-batches whose gradients are summed in order, then summed over the ranks.
/// The loss is scaled by 1/B on every part, so the sum is the global batch's gradient.
#[derive(Clone, Debug)]
pub struct Shard {
    pub row0: usize,
    pub rows: usize,
    pub parts: usize,
    pub dist: Dist,
}

impl Shard {
    /// The whole batch in one part, on one process: training as without this module.
    pub fn whole(batch: usize) -> Shard {
        Shard {
            row0: 0,
            rows: batch,
            parts: 1,
            dist: Dist::solo(),
        }
    }

    /// This rank's rows of a global batch of `batch`, in `parts` micro-batches.
    pub fn new(batch: usize, parts: usize, dist: &Dist) -> Result<Shard, DistError> {
        let n = dist.size();
        let parts = parts.max(1);
        if !batch.is_multiple_of(n * parts) {
            let over = match (n, parts) {
                (n, 1) => format!("{n} processes"),
                (1, k) => format!("{k} micro-batches"),
                (n, k) => format!("{n} processes of {k} micro-batches each"),
            };
            return Err(DistError(format!(
                "the batch ({batch}) does not split evenly over {over}: it must be a multiple of {} (pass --batch, or run on another number of processes)",
                n * parts
            )));
        }
        let rows = dist.rows(batch);
        Ok(Shard {
            row0: rows.start,
            rows: rows.len(),
            parts,
            dist: dist.clone(),
        })
    }

    /// Whether the batch is computed as one piece, as without this module.
    pub fn is_whole(&self) -> bool {
        self.parts == 1 && !self.dist.is_split()
    }

    /// The rows of one micro-batch.
    pub fn part_rows(&self) -> usize {
        self.rows / self.parts
    }
}

/// A 64-bit FNV-1a digest of the values' bits.
fn digest(values: &[&[f32]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values.iter().flat_map(|s| s.iter()) {
        for b in v.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solo_rows_take_the_whole_batch_and_verify_passes() {
        let d = Dist::solo();
        assert_eq!(d.rows(12), 0..12);
        assert!(d.verify_same("weights", &[&[1.0, 2.0]]).is_ok());
        assert_eq!(d.from_root(|| Ok(vec![7])).unwrap(), vec![7]);
    }

    #[test]
    fn a_batch_that_does_not_split_is_refused() {
        let e = Shard::new(10, 4, &Dist::solo()).unwrap_err().to_string();
        assert!(e.contains("(10)") && e.contains("4 micro-batches"), "{e}");
        let s = Shard::new(12, 4, &Dist::solo()).unwrap();
        assert_eq!((s.row0, s.rows, s.part_rows()), (0, 12, 3));
        assert!(!s.is_whole() && Shard::whole(12).is_whole());
    }

    #[test]
    fn digest_sees_one_bit() {
        let a = [1.0f32, 2.0];
        let b = [1.0f32, f32::from_bits(2.0f32.to_bits() ^ 1)];
        assert_ne!(digest(&[&a]), digest(&[&b]));
    }
}
