//! Batches of an image folder made on background threads, so decoding and augmentation run
//! while the executor trains on the batch before.
//!
//! Worker `w` of `t` makes batches `w, w + t, w + 2t, ...` and hands each to its own channel of
//! `depth` slots; the consumer takes them round-robin, so batches arrive in order and at most
//! `t * (depth + 1)` of them exist at once, whatever the data set's size. Each image's random
//! view is seeded by (seed, epoch, image), so the batches do not depend on the thread count.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::folder::FolderSet;
use super::DataError;

/// One batch: `rows * views * view_len` values and one label per example.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
}

/// Batches ready before they are asked for, in order.
pub struct Loader {
    rx: Vec<Receiver<Result<Batch, DataError>>>,
    next: usize,
    count: usize,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

/// Loader threads: one per core (decoding is the work), at most 8.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8))
}

impl Loader {
    /// Starts making `batches` (lists of example indices) of `set` for `epoch`.
    pub fn start(
        set: Arc<FolderSet>,
        epoch: u64,
        batches: Vec<Vec<usize>>,
        threads: usize,
        depth: usize,
    ) -> Self {
        let threads = threads.clamp(1, batches.len().max(1));
        let count = batches.len();
        let batches = Arc::new(batches);
        let stop = Arc::new(AtomicBool::new(false));
        let (mut rx, mut handles) = (vec![], vec![]);
        for w in 0..threads {
            let (tx, r) = sync_channel(depth.max(1));
            rx.push(r);
            let (set, batches, stop) = (set.clone(), batches.clone(), stop.clone());
            handles.push(std::thread::spawn(move || {
                for b in (w..batches.len()).step_by(threads) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let made = make(&set, epoch, &batches[b]);
                    let failed = made.is_err();
                    // The consumer has gone (a stop, an error elsewhere): nothing to do.
                    if tx.send(made).is_err() || failed {
                        return;
                    }
                }
            }));
        }
        Loader {
            rx,
            next: 0,
            count,
            stop,
            handles,
        }
    }
}

/// Decodes and prepares the images of one batch. An image that fails is an error under
/// `bad_images = stop`; under `skip` the next image of the set that decodes takes its place.
fn make(set: &FolderSet, epoch: u64, indices: &[usize]) -> Result<Batch, DataError> {
    let len = set.views() * set.view_len();
    let mut images = vec![0f32; indices.len() * len];
    let mut labels = Vec::with_capacity(indices.len());
    let n = set.items.len();
    for (k, &i) in indices.iter().enumerate() {
        let out = &mut images[k * len..(k + 1) * len];
        let mut j = i;
        loop {
            match set.load(epoch, j, out) {
                Ok(()) => break,
                Err(why) => {
                    if let Some(e) = set.failed(j, why) {
                        return Err(e);
                    }
                    j = (j + 1) % n;
                    if j == i {
                        return Err(DataError::Folder(
                            "no image of the set could be decoded".into(),
                        ));
                    }
                }
            }
        }
        labels.push(set.items[j].label);
    }
    Ok(Batch { images, labels })
}

impl Iterator for Loader {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let r = &self.rx[self.next % self.rx.len()];
        self.next += 1;
        match r.recv() {
            Ok(b) => Some(b),
            Err(_) => Some(Err(DataError::Folder(
                "a loader thread stopped without a batch".into(),
            ))),
        }
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers wakes workers blocked on a full channel.
        self.rx.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}
