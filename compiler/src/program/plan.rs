//! The physical buffer plan: persistent tensors get buffers of their own, transient ones
//! share buffers once their last reader in a pass has run.

use super::{Builder, Command, Program, TensorId};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

impl Builder {
    /// Plans physical buffers: persistent tensors get their own; transient tensors share buffers
    /// once their last reader in the pass has run (first fit among free buffers of enough size).
    pub fn finish(self) -> Program {
        let mut assignment = vec![usize::MAX; self.tensors.len()];
        let mut buffers: Vec<u64> = vec![];
        for (i, t) in self.tensors.iter().enumerate() {
            if t.persistent {
                assignment[i] = buffers.len();
                buffers.push(t.len.max(1));
            }
        }
        // A tensor used by several passes must survive between them: make it persistent.
        let mut tensors = self.tensors;
        let mut first_pass: HashMap<TensorId, usize> = HashMap::new();
        for (pi, pass) in self.passes.iter().enumerate() {
            for c in &pass.commands {
                for t in command_tensors(c) {
                    if *first_pass.entry(t).or_insert(pi) != pi && !tensors[t].persistent {
                        tensors[t].persistent = true;
                        assignment[t] = buffers.len();
                        buffers.push(tensors[t].len.max(1));
                    }
                }
            }
        }
        let transient_start = buffers.len();
        for pass in &self.passes {
            // First and last command using each transient tensor.
            let mut span: HashMap<TensorId, (usize, usize)> = HashMap::new();
            for (ci, c) in pass.commands.iter().enumerate() {
                for t in command_tensors(c) {
                    if !tensors[t].persistent {
                        let e = span.entry(t).or_insert((ci, ci));
                        e.1 = ci;
                    }
                }
            }
            let end = pass.commands.len();
            for &k in &pass.keep {
                if let Some(e) = span.get_mut(&k) {
                    e.1 = end;
                }
            }
            let mut order: Vec<(TensorId, (usize, usize))> = span.into_iter().collect();
            order.sort_by_key(|(t, (a, _))| (*a, *t));
            // First fit among free buffers of enough size, the smallest (then the lowest
            // index): the free ones are kept ordered by (size, index), the busy ones in a heap
            // by the last command that uses them, freed as the walk passes it. The same
            // choice as scanning every buffer per tensor, in O(n log n), not O(n^2).
            let mut free: BTreeSet<(u64, usize)> = (transient_start..buffers.len())
                .map(|b| (buffers[b], b))
                .collect();
            let mut busy: BinaryHeap<Reverse<(usize, usize)>> = BinaryHeap::new();
            for (t, (first, last)) in order {
                while let Some(&Reverse((until, b))) = busy.peek() {
                    if until >= first {
                        break;
                    }
                    busy.pop();
                    free.insert((buffers[b], b));
                }
                let need = tensors[t].len.max(1);
                let b = match free.range((need, 0)..).next().copied() {
                    Some(entry) => {
                        free.remove(&entry);
                        entry.1
                    }
                    None => {
                        buffers.push(need);
                        buffers.len() - 1
                    }
                };
                assignment[t] = b;
                busy.push(Reverse((last, b)));
            }
        }
        for a in assignment.iter_mut() {
            if *a == usize::MAX {
                // Never used by any command: give it a small buffer of its own.
                *a = buffers.len();
                buffers.push(1);
            }
        }
        Program {
            tensors,
            kernels: self.kernels,
            passes: self.passes,
            params: self.params,
            buffers,
            assignment,
            repeated_bytes: self.repeated_bytes,
        }
    }
}

fn command_tensors(c: &Command) -> Vec<TensorId> {
    match c {
        Command::Dispatch { bindings, .. } => bindings.clone(),
        Command::Copy { src, dst, .. } => vec![*src, *dst],
        Command::Zero { dst } => vec![*dst],
    }
}
