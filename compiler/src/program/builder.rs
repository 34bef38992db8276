//! The [`Builder`]: the device settings a program is lowered for (read path, binding and
//! per-stage limits, CPU threads), and the calls that record it: tensors, passes, kernel
//! dispatches, copies, and the shared host inputs (dropout seed, optimizer hyper-parameters).

use super::{Command, Kind, ParamBinding, ParamSet, Pass, Tensor, TensorId};
use crate::kernels::{self, Gemm, KernelSource, ReadPath, Store};
use std::collections::HashMap;

/// Records a [`super::Program`]: ops emit their dispatches into its current pass, the graph
/// walks in `schedule` call them node by node, and [`Builder::finish`] plans the buffers.
pub struct Builder {
    pub(super) tensors: Vec<Tensor>,
    pub(super) kernels: Vec<KernelSource>,
    kernel_ids: HashMap<String, usize>,
    pub(super) passes: Vec<Pass>,
    cur: Option<Pass>,
    pub(super) params: Vec<ParamBinding>,
    hyper: HashMap<String, TensorId>,
    rng: Option<TensorId>,
    health: Option<TensorId>,
    /// How the generated kernels read their inputs (storage loads, or texture mirrors).
    reads: ReadPath,
    /// The device's storage buffers and textures of the read path's kind (sampled, or
    /// storage textures for [`ReadPath::Image`]) per shader stage: how many tensors one
    /// optimizer dispatch may update.
    max_storage: u32,
    max_textures: u32,
    /// CPU threads that run a CPU adapter's invocations (the texture-path matmul's tiles).
    threads: u64,
    /// The device's largest storage binding, in bytes: larger dense layers are split.
    max_binding: u64,
    /// The first sample of the micro-batch being lowered (dropout masks index the whole batch).
    sample0: u64,
    /// How parameter gradients are stored: written by the first micro-batch, added by the rest.
    param_store: Store,
    /// Lowered for its memory plan only (`netc check`): micro-batches that repeat another's
    /// commands at other offsets are counted, not lowered (see [`Builder::for_memory`]).
    memory_only: bool,
    /// Activation bytes the micro-batches left out by `memory_only` would have added.
    pub(super) repeated_bytes: u64,
    /// A data-parallel rank's part of a global batch (see [`Builder::rank_rows`]).
    rank_rows: Option<RankRows>,
}

/// The rows of a global batch one process of a data-parallel run computes: the loss is
/// scaled by the global batch, dropout masks index from `row0`, and the training step is two
/// passes, the gradients and the update, so the host can sum the gradients between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RankRows {
    pub global_batch: u64,
    pub row0: u64,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    pub fn new() -> Self {
        Builder {
            tensors: vec![],
            kernels: vec![],
            kernel_ids: HashMap::new(),
            passes: vec![],
            cur: None,
            params: vec![],
            hyper: HashMap::new(),
            rng: None,
            health: None,
            reads: ReadPath::Storage,
            // WebGPU's guaranteed minimums, until `with_limits` says more.
            max_storage: 8,
            max_textures: 16,
            threads: kernels::TEX_GEMM_THREADS,
            // WebGPU's guaranteed minimum, until `with_binding_limit` says more.
            max_binding: 128 << 20,
            sample0: 0,
            param_store: Store::Write,
            memory_only: false,
            repeated_bytes: 0,
            rank_rows: None,
        }
    }

    /// Lowers a training step for one rank's rows of a data-parallel batch (see [`RankRows`]).
    pub fn rank_rows(mut self, rows: RankRows) -> Self {
        self.rank_rows = Some(rows);
        self
    }

    /// The rank's rows this builder lowers for, if any.
    pub fn rank_rows_of(&self) -> Option<RankRows> {
        self.rank_rows
    }

    /// A builder whose program is for its memory plan, never run: of a batch cut into many
    /// micro-batches it lowers the first, the second and the last (the others repeat the
    /// second's commands at other offsets, and their transient tensors are dead when the
    /// next begins, so the buffer plan is the same), keeping `netc check` independent of the
    /// number of micro-batches.
    pub fn for_memory(mut self) -> Self {
        self.memory_only = true;
        self
    }

    pub(crate) fn memory_only(&self) -> bool {
        self.memory_only
    }

    /// Tensors recorded so far (the id the next one gets).
    pub(crate) fn tensor_count(&self) -> TensorId {
        self.tensors.len()
    }

    /// Counts the activation tensors recorded since `since` `times` more (micro-batches a
    /// memory plan leaves out): the figure without buffer reuse stays that of the whole step.
    pub(crate) fn count_repeated(&mut self, since: TensorId, times: u64) {
        let bytes: u64 = self.tensors[since..]
            .iter()
            .filter(|t| t.kind == Kind::Activation)
            .map(|t| super::padded_len(t.len) * 4)
            .sum();
        self.repeated_bytes = self
            .repeated_bytes
            .saturating_add(bytes.saturating_mul(times));
    }

    /// The device's largest storage-buffer binding in bytes (dense layers whose weight exceeds
    /// it are split into row blocks).
    pub fn with_binding_limit(mut self, bytes: u64) -> Self {
        self.max_binding = bytes.max(4);
        self
    }

    /// The device's largest storage-buffer binding in bytes.
    pub fn max_binding(&self) -> u64 {
        self.max_binding
    }

    /// How the current backward pass stores parameter gradients (see [`Builder::micro_batches`]).
    pub fn param_store(&self) -> Store {
        self.param_store
    }

    /// Lowers what follows as one part of a batch run in parts: dropout masks index from
    /// sample `first_sample`, and parameter gradients are written (the first part) or added
    /// to the earlier parts' (`Store::Accumulate`) before one update.
    pub fn set_part(&mut self, first_sample: u64, param_store: Store) {
        self.sample0 = first_sample;
        self.param_store = param_store;
    }

    /// The CPU threads a CPU adapter runs invocations on (lavapipe: one per core).
    pub fn with_threads(mut self, threads: u64) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The dense kernel for this builder's device.
    pub fn matmul(&self, g: Gemm) -> KernelSource {
        kernels::matmul_for(g, self.reads, self.threads)
    }

    /// The device's storage buffers and textures (of the read path's kind) per shader stage.
    pub fn with_limits(mut self, storage_buffers: u32, textures: u32) -> Self {
        self.max_storage = storage_buffers;
        self.max_textures = textures;
        self
    }

    /// How many tensors one update dispatch may take under the limits (at least one).
    pub(crate) fn group_size(&self, per: u32) -> usize {
        let g = match self.reads {
            // Every operand a storage buffer: per tensor `per`, plus hyper and health.
            ReadPath::Storage => self.max_storage.saturating_sub(2) / per,
            // w and state written (storage), and health; g, the mirrors of w and state, and
            // hyper read as textures.
            ReadPath::Texture | ReadPath::Image => (self.max_storage.saturating_sub(1) / (per - 1))
                .min(self.max_textures.saturating_sub(1) / per),
        };
        (g as usize).clamp(1, kernels::MAX_GROUP)
    }

    /// A builder whose kernels read their inputs the given way.
    pub fn with_reads(reads: ReadPath) -> Self {
        Builder {
            reads,
            // WebGPU guarantees 16 sampled but only 4 storage textures per stage.
            max_textures: if reads == ReadPath::Image { 4 } else { 16 },
            ..Builder::new()
        }
    }

    pub fn reads(&self) -> ReadPath {
        self.reads
    }

    pub fn tensor(&mut self, name: impl Into<String>, len: u64, kind: Kind) -> TensorId {
        let persistent = kind != Kind::Activation;
        self.tensors.push(Tensor {
            name: name.into(),
            len,
            kind,
            persistent,
        });
        self.tensors.len() - 1
    }

    /// Appends a dispatch of a kernel to the current pass (also for hand-built test programs).
    pub fn emit(&mut self, k: KernelSource, bindings: Vec<TensorId>, label: String) {
        let id = match self.kernel_ids.get(&k.source) {
            Some(&id) => id,
            None => {
                self.kernels.push(k.clone());
                self.kernel_ids
                    .insert(k.source.clone(), self.kernels.len() - 1);
                self.kernels.len() - 1
            }
        };
        self.cur
            .as_mut()
            .expect("emit inside a pass")
            .commands
            .push(Command::Dispatch {
                kernel: id,
                bindings,
                label,
            });
    }

    pub fn copy(
        &mut self,
        src: TensorId,
        src_offset: u64,
        dst: TensorId,
        dst_offset: u64,
        len: u64,
    ) {
        self.cur
            .as_mut()
            .expect("copy inside a pass")
            .commands
            .push(Command::Copy {
                src,
                src_offset,
                dst,
                dst_offset,
                len,
            });
    }

    pub fn zero(&mut self, dst: TensorId) {
        self.cur
            .as_mut()
            .expect("zero inside a pass")
            .commands
            .push(Command::Zero { dst });
    }

    pub fn begin_pass(&mut self, name: &str) {
        assert!(self.cur.is_none(), "passes do not nest");
        self.cur = Some(Pass {
            name: name.into(),
            commands: vec![],
            keep: vec![],
        });
    }

    /// Marks a tensor the host reads after a pass; it gets its own buffer so later passes
    /// cannot overwrite it.
    pub fn keep(&mut self, t: TensorId) {
        self.tensors[t].persistent = true;
        self.cur.as_mut().expect("keep inside a pass").keep.push(t);
    }

    pub fn end_pass(&mut self) -> usize {
        let p = self.cur.take().expect("end_pass after begin_pass");
        self.passes.push(p);
        self.passes.len() - 1
    }

    /// The shared dropout seed (a u32 the host writes before each pass).
    pub fn rng(&mut self) -> TensorId {
        match self.rng {
            Some(t) => t,
            None => {
                let t = self.tensor("rng_seed", 1, Kind::HostInput);
                self.rng = Some(t);
                t
            }
        }
    }

    /// The step at which an optimizer update first wrote a NaN or infinite weight, 0 while
    /// none did (see `kernels::update_group`); the host zeroes it and reads it at intervals.
    pub fn health(&mut self) -> TensorId {
        match self.health {
            Some(t) => t,
            None => {
                let t = self.tensor("param_health", 4, Kind::Stats);
                self.health = Some(t);
                t
            }
        }
    }

    /// Host-written hyper-parameters of an optimizer: [lr, 1 - beta1^t, 1 - beta2^t, step],
    /// the step the one a non-finite update is marked with.
    pub fn hyper(&mut self, name: &str) -> TensorId {
        if let Some(&t) = self.hyper.get(name) {
            return t;
        }
        let t = self.tensor(format!("hyper:{name}"), 4, Kind::HostInput);
        self.hyper.insert(name.into(), t);
        t
    }

    /// Registers a parameter set's bindings in the program (call once per set, after updates).
    pub fn register(&mut self, set: &ParamSet) {
        self.params.extend(set.bindings.iter().cloned());
    }

    /// The first sample of the micro-batch being lowered (see [`Builder::set_part`]).
    pub(crate) fn sample0(&self) -> u64 {
        self.sample0
    }
}
