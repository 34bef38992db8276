//! The gradient reduction overlapped with the backward pass: the gradients the backward pass
//! has finished (the last layers' first) are packed into buckets of about
//! [`BUCKET_BYTES`] in the order they finish, the same on every rank, and a communication
//! thread all-reduces each bucket with a blocking call while the main thread computes the
//! earlier layers' (Open MPI progresses non-blocking collectives only inside MPI calls, so a
//! thread blocked in the all-reduce is what moves the data). MPI must allow threads to take
//! turns (MPI_THREAD_SERIALIZED): the main thread calls MPI again only after the last bucket.

use super::{Dist, Lane};
use crate::session::Grads;
use std::sync::mpsc;
use std::time::Instant;

/// About the bucket size PyTorch's DistributedDataParallel and Horovod use: large enough
/// that the per-call latency is negligible, small enough that the first bucket leaves early.
pub const BUCKET_BYTES: usize = 25_000_000;

/// A bucket: the parameter indices it holds, in order, and their gradients end to end.
type Bucket = (Vec<usize>, Vec<f32>);

/// Packs the gradients as they finish and sends each full bucket to the communication thread.
struct Packer {
    tx: Option<mpsc::Sender<Bucket>>,
    trainable: Vec<bool>,
    sent: Vec<bool>,
    bucket: Bucket,
    limit: usize,
    bytes: u64,
}

impl Packer {
    /// Takes the trainable gradients that are there and were not taken yet, in index order.
    fn take(&mut self, grads: &[Option<Vec<f32>>]) {
        for (i, g) in grads.iter().enumerate() {
            let Some(g) = g else { continue };
            if self.sent[i] || !self.trainable.get(i).copied().unwrap_or(false) {
                continue;
            }
            self.sent[i] = true;
            self.bucket.0.push(i);
            self.bucket.1.extend_from_slice(g);
            self.bytes += 4 * g.len() as u64;
            if 4 * self.bucket.1.len() >= self.limit {
                self.flush();
            }
        }
    }

    fn flush(&mut self) {
        if self.bucket.0.is_empty() {
            return;
        }
        let b = std::mem::take(&mut self.bucket);
        if let Some(tx) = &self.tx {
            // The thread ends only when this sender is dropped, so the send cannot fail.
            let _ = tx.send(b);
        }
    }
}

impl Dist {
    /// Whether this run overlaps its reductions with the backward pass, and in buckets of
    /// how many bytes: split over ranks, with an MPI library that lets a second thread call
    /// it; by default ([`BUCKET_BYTES`]) when the ranks span several machines, where the
    /// transfer waits on the network while the cores compute. Ranks on one machine reduce
    /// with the cores the backward pass needs, where the overlap measured no gain
    /// (docs/distributed.md). `NETC_BUCKET_MB` overrides both ways (0: no overlap).
    fn overlap_lane(&self) -> Option<(&dyn Lane, usize)> {
        if !self.is_split() {
            return None;
        }
        let limit = match std::env::var("NETC_BUCKET_MB") {
            Ok(v) => (v.trim().parse::<f64>().ok()? * 1e6) as usize,
            Err(_) if self.0.one_machine() => 0,
            Err(_) => BUCKET_BYTES,
        };
        if limit == 0 {
            return None;
        }
        self.0.lane().map(|l| (l, limit))
    }

    /// Runs a backward pass (`backward` calls its argument with the parameter gradients so
    /// far after each layer, see `cpu::backward_observed`) and returns its gradients summed
    /// over the ranks: reduced bucket by bucket on a communication thread while the pass
    /// runs, or after it in one message where the run does not overlap (see
    /// [`Dist::sum_grads`]). The sums are the same bits either way on two ranks.
    pub fn backward_summed(
        &self,
        trainable: &[bool],
        backward: impl FnOnce(&mut crate::cpu::Progress<'_, f32>) -> Grads,
    ) -> Grads {
        let Some((lane, limit)) = self.overlap_lane() else {
            let mut g = backward(&mut |_| {});
            self.sum_grads(&mut g);
            return g;
        };
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<Bucket>();
            let comm = scope.spawn(move || {
                let mut done = vec![];
                let mut busy = 0.0;
                for mut b in rx {
                    let t0 = Instant::now();
                    lane.sum_f32(&mut b.1);
                    busy += t0.elapsed().as_secs_f64();
                    done.push(b);
                }
                (done, busy)
            });
            let mut packer = Packer {
                tx: Some(tx),
                trainable: trainable.to_vec(),
                sent: vec![false; trainable.len()],
                bucket: (vec![], vec![]),
                limit,
                bytes: 0,
            };
            let mut grads = backward(&mut |g| packer.take(g));
            packer.take(&grads);
            packer.flush();
            packer.tx = None;
            let t0 = Instant::now();
            let (done, busy) = match comm.join() {
                Ok(r) => r,
                // The panic hook has already ended the job (see `mpi::Mpi::init`).
                Err(p) => std::panic::resume_unwind(p),
            };
            let waited = t0.elapsed().as_secs_f64();
            for (ids, sums) in done {
                let mut rest = &sums[..];
                for i in ids {
                    if let Some(g) = grads.get_mut(i).and_then(|g| g.as_mut()) {
                        let (mine, tail) = rest.split_at(g.len());
                        g.copy_from_slice(mine);
                        rest = tail;
                    }
                }
            }
            let mut t = self.1.get();
            t.reductions += 1;
            t.bytes += packer.bytes;
            t.seconds += waited;
            t.overlapped += busy;
            self.1.set(t);
            grads
        })
    }
}
