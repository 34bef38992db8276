//! What one optimizer step does beyond the optimizer's formula: which parameter tensors get
//! weight decay (nanoGPT leaves biases and norms out: tensors of rank below 2) and the
//! clipping of the gradients by their global norm (torch.nn.utils.clip_grad_norm_). Both
//! executors read the same rule, so their steps agree.

use crate::kernels::Optimizer;

/// The tensors weight decay applies to: those of rank `min_rank` or more whose name matches
/// none of the `no_decay` glob patterns (`*` any run of characters, `?` one character).
/// The default decays every tensor, as torch.optim applies weight_decay to all parameters.
/// `mults` scale a tensor's learning rate and weight decay (Caffe's `lr_mult` and
/// `decay_mult`): the first pattern matching its name applies, none means 1 and 1.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecayRule {
    pub min_rank: usize,
    pub no_decay: Vec<String>,
    pub mults: Vec<ParamMult>,
}

/// `mult("*.bias", lr=2, decay=0)` of the training section's `param_mult`: tensors whose
/// `layer.param` name matches `pattern` learn at `lr` times the rate and decay at `decay`
/// times the weight decay.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamMult {
    pub pattern: String,
    pub lr: f64,
    pub decay: f64,
}

impl DecayRule {
    /// Whether the tensor `name` of rank `rank` gets weight decay.
    pub fn applies(&self, name: &str, rank: usize) -> bool {
        rank >= self.min_rank
            && !self.no_decay.iter().any(|p| glob(p, name))
            && self.mult(name).is_none_or(|m| m.decay != 0.0)
    }

    /// The multipliers of tensor `name`: the first `param_mult` pattern it matches.
    pub fn mult(&self, name: &str) -> Option<&ParamMult> {
        self.mults.iter().find(|m| glob(&m.pattern, name))
    }

    /// The factor tensor `name`'s learning rate is multiplied by (1 without a pattern).
    pub fn lr_mult(&self, name: &str) -> f64 {
        self.mult(name).map_or(1.0, |m| m.lr)
    }
}

/// Whether `name` matches the glob `pattern` as a whole (`*` any run, `?` one character).
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// An optimizer with its decay rule and gradient clipping: one training step's update.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateRule {
    pub opt: Optimizer,
    pub decay: DecayRule,
    /// Clip the gradients to this global L2 norm (over all trainable tensors), if set.
    pub clip: Option<f64>,
}

impl From<Optimizer> for UpdateRule {
    fn from(opt: Optimizer) -> UpdateRule {
        UpdateRule {
            opt,
            decay: DecayRule::default(),
            clip: None,
        }
    }
}

impl From<&UpdateRule> for UpdateRule {
    fn from(r: &UpdateRule) -> UpdateRule {
        r.clone()
    }
}

impl UpdateRule {
    /// The optimizer as it updates tensor `name` of rank `rank`: its weight decay 0 where
    /// the decay rule leaves the tensor out.
    pub fn for_tensor(&self, name: &str, rank: usize) -> Optimizer {
        if self.decay.applies(name, rank) {
            let m = self.decay.mult(name).map_or(1.0, |m| m.decay);
            self.opt.with_weight_decay(self.opt.weight_decay() * m)
        } else {
            self.opt.with_weight_decay(0.0)
        }
    }
}

/// The factor torch.nn.utils.clip_grad_norm_ multiplies every gradient by, given the global
/// norm: max_norm / (norm + 1e-6), clamped to at most 1 (so gradients within the norm stay
/// as they are, up to that factor's rounding).
pub fn clip_factor(max_norm: f64, norm: f64) -> f64 {
    (max_norm / (norm + 1e-6)).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("*.bias", "net.fc1.bias"));
        assert!(!glob("*.bias", "net.fc1.bias2"));
        assert!(glob("*cls*", "vit.cls_token"));
        assert!(glob("*pos*", "vit.pos"));
        assert!(glob("a?c", "abc") && !glob("a?c", "abbc"));
        assert!(glob("*", "") && glob("**", "x") && !glob("", "x"));
        assert!(glob("*a*b*c", "xxaxxbxxbc"));
        // Many stars on a long name finish at once (no exponential backtracking).
        assert!(!glob(&"*a".repeat(30), &"a".repeat(29)));
    }

    #[test]
    fn decay_by_rank_and_by_name() {
        let r = DecayRule {
            min_rank: 2,
            no_decay: vec!["*cls*".into(), "*pos*".into()],
            mults: vec![],
        };
        assert!(r.applies("m.fc.w", 2) && r.applies("m.conv.w", 4));
        assert!(!r.applies("m.fc.b", 1), "a bias (rank 1) is left out");
        assert!(!r.applies("m.cls_token", 3) && !r.applies("m.pos", 2));
        assert!(
            DecayRule::default().applies("m.fc.b", 1),
            "by default all decay"
        );
        let rule = UpdateRule {
            opt: Optimizer::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.1,
            },
            decay: r,
            clip: None,
        };
        assert_eq!(rule.for_tensor("m.fc.w", 2).weight_decay(), 0.1);
        assert_eq!(rule.for_tensor("m.fc.b", 1).weight_decay(), 0.0);
    }

    #[test]
    fn multipliers_scale_rate_and_decay_first_match_wins() {
        let m = |p: &str, lr, decay| ParamMult {
            pattern: p.into(),
            lr,
            decay,
        };
        let rule = UpdateRule {
            opt: Optimizer::Sgd {
                momentum: 0.9,
                weight_decay: 5e-4,
            },
            decay: DecayRule {
                min_rank: 0,
                no_decay: vec![],
                mults: vec![m("fc.bias", 3.0, 0.5), m("*.bias", 2.0, 0.0)],
            },
            clip: None,
        };
        assert_eq!(rule.decay.lr_mult("conv.bias"), 2.0);
        assert_eq!(rule.decay.lr_mult("fc.bias"), 3.0);
        assert_eq!(rule.decay.lr_mult("fc.weight"), 1.0);
        assert_eq!(rule.for_tensor("conv.bias", 1).weight_decay(), 0.0);
        assert_eq!(rule.for_tensor("fc.bias", 1).weight_decay(), 5e-4 * 0.5);
        assert_eq!(rule.for_tensor("fc.weight", 2).weight_decay(), 5e-4);
    }

    #[test]
    fn clip_factor_is_torchs() {
        // norm 5, max 1: 1 / (5 + 1e-6).
        assert_eq!(clip_factor(1.0, 5.0), 1.0 / (5.0 + 1e-6));
        assert_eq!(clip_factor(1.0, 0.5), 1.0);
        assert_eq!(clip_factor(1.0, 0.0), 1.0);
    }
}
