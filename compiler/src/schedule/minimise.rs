//! The declared-loss plan (`task = minimise`): a network of several inputs whose loss is a
//! node of its own graph, one value per example. A training step is one pass: the forward
//! from every input, the loss's batch sum added on the device, the backward seeded with
//! d(batch mean)/d(each example's loss) = 1/batch, the optimizer update and, when kept, the
//! moving average of the weights; an evaluation pass adds the evaluated nodes' sums on the
//! device, read once per evaluation.

use super::{LowerError, UpdateRule};
use crate::ir::Network;
use crate::kernels;
use crate::kernels::Store;
use crate::program::{Builder, Kind, ParamSet, Program, TensorId};
use petgraph::graph::NodeIndex;

/// A declared loss's static program and the tensors the host uses.
#[derive(Debug, Clone)]
pub struct MinimisePlan {
    pub program: Program,
    pub set: ParamSet,
    /// One host tensor per network input, in `net.inputs` order.
    pub inputs: Vec<TensorId>,
    /// The loss's gradient per example (1/batch), written once by the host.
    pub seed: TensorId,
    /// [loss sum, rows, 0, 0] since the host last read it.
    pub stats: TensorId,
    pub hyper: TensorId,
    /// The step an update first wrote a non-finite weight at (see [`Builder::health`]).
    pub health: TensorId,
    pub rng: TensorId,
    /// With [`Builder::rank_rows`], the update pass (and the moving average's) the host runs
    /// after summing the ranks' gradients; `train` then computes the gradients only.
    pub update: Option<usize>,
    /// The moving average of each binding of `set` (in its order), when one is kept.
    pub ema: Vec<TensorId>,
    /// The number of real examples in the batch the evaluation pass reads (host-written).
    pub eval_rows: TensorId,
    /// [sum, examples] of each evaluated node, in order, since the host last read them.
    pub eval_stats: TensorId,
    pub train: usize,
    pub eval: usize,
}

impl Builder {
    /// The program minimising node `loss` of `net` at `batch` under `rule`; the evaluation
    /// pass computes `eval_nodes` (inference mode), and `ema` keeps a moving average of the
    /// weights with that decay. With [`Builder::rank_rows`], `batch` is the rank's rows (the
    /// host scales `seed` by the global batch) and the step is two passes.
    pub fn minimise(
        mut self,
        net: &Network,
        rule: impl Into<UpdateRule>,
        (batch, loss): (u64, NodeIndex),
        eval_nodes: &[NodeIndex],
        ema: Option<f64>,
    ) -> Result<MinimisePlan, LowerError> {
        let rule: UpdateRule = rule.into();
        if batch > super::MAX_BATCH {
            return Err(LowerError::Other(format!(
                "batch {batch} is over the largest batch netc plans a training step for ({})",
                super::MAX_BATCH
            )));
        }
        self.check_blocks(net)?;
        let micro = self.micro_split(net, batch);
        if micro.count > 1 {
            return Err(LowerError::Other(format!(
                "batch {batch} does not fit the device's storage binding in one piece (at most {} fits); a declared loss does not train in micro-batches on the GPU yet: lower the batch or use --device cpu",
                micro.per
            )));
        }
        let per_example = |n: NodeIndex| super::numel(&net.graph[n].shape);
        if per_example(loss) != 1 {
            return Err(LowerError::Other(format!(
                "the loss `{}` has {} values per example; it must have one",
                net.graph[loss].name,
                per_example(loss)
            )));
        }
        let mut set = self.params(net, true);
        let inputs: Vec<TensorId> = (net.inputs.iter())
            .map(|&i| {
                let name = format!("input:{}", net.graph[i].name);
                self.tensor(name, batch * per_example(i), Kind::HostInput)
            })
            .collect();
        let seed = self.tensor("dloss", batch, Kind::HostInput);
        let stats = self.tensor("train_stats", 4, Kind::Stats);
        self.begin_pass("train_step");
        // A rank's dropout masks index from its first row of the global batch.
        let row0 = self.rank_rows_of().map_or(0, |r| r.row0);
        self.set_part(row0, Store::Write);
        let fwd = self.forward_inputs(net, &set, &inputs, batch, true, (loss, loss))?;
        let l = fwd.values[&loss];
        self.emit(
            kernels::sum_into(batch, batch, self.reads()),
            vec![l, stats],
            format!("{}.{} loss sum", net.name, net.graph[loss].name),
        );
        self.backward(net, &set, &fwd, loss, seed, false);
        self.set_part(0, Store::Write);
        // A rank ends its gradient pass here; the update and the average, once a step, are
        // a pass of their own, run after the host sums the gradients.
        let grads = self.rank_rows_of().map(|_| {
            let g = self.end_pass();
            self.begin_pass("update");
            g
        });
        self.update(&mut set, &rule, "opt");
        let ema = match ema {
            Some(decay) => self.ema(&set, decay),
            None => vec![],
        };
        let last = self.end_pass();
        let (train, update) = match grads {
            Some(g) => (g, Some(last)),
            None => (last, None),
        };
        self.begin_pass("eval");
        let fe = self.forward_inputs(net, &set, &inputs, batch, false, (loss, loss))?;
        let eval_rows = self.tensor("eval_rows", 1, Kind::HostInput);
        let eval_stats = self.tensor("eval_stats", 2 * eval_nodes.len() as u64, Kind::Stats);
        for (k, &n) in eval_nodes.iter().enumerate() {
            let per = per_example(n);
            self.emit(
                kernels::sum_rows(per, batch, 2 * k as u64, self.reads()),
                vec![fe.values[&n], eval_rows, eval_stats],
                format!("{}.{} eval sum", net.name, net.graph[n].name),
            );
        }
        let eval = self.end_pass();
        let hyper = self.hyper("opt");
        let health = self.health();
        let rng = self.rng();
        self.register(&set);
        Ok(MinimisePlan {
            program: self.finish(),
            set,
            inputs,
            seed,
            stats,
            hyper,
            health,
            rng,
            update,
            ema,
            eval_rows,
            eval_stats,
            train,
            eval,
        })
    }

    /// The moving average of every binding of `set` after its update: trained tensors
    /// averaged, the others (running statistics) copied, as the CPU executor keeps it.
    fn ema(&mut self, set: &ParamSet, decay: f64) -> Vec<TensorId> {
        let mut out = vec![];
        for b in &set.bindings {
            let e = self.tensor(
                format!("{}:{}@{}.ema", b.net, b.name, b.offset),
                b.len,
                Kind::OptimizerState,
            );
            match b.grad {
                Some(_) => self.emit(
                    kernels::ema(b.len, decay, self.reads()),
                    vec![b.tensor, e],
                    format!("{}.{} ema", b.net, b.name),
                ),
                None => self.copy(b.tensor, 0, e, 0, b.len),
            }
            out.push(e);
        }
        out
    }
}
