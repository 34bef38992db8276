//! How good generated images are, by a classifier netc trained on the real ones (LeNet on
//! MNIST for digits): the Inception Score exp(E_x KL(p(y|x) || p(y))) (Salimans et al. 2016,
//! with this classifier in place of Inception-v3), the share of samples classified with
//! confidence above 0.9, the class histogram, and the Frechet distance between the
//! classifier's penultimate-layer features of the samples and of real images (Heusel et al.
//! 2017's FID, on this classifier's features: comparable between runs scored with the same
//! classifier, not with Inception-v3 FIDs).

use crate::cpu::{self, Params};
use crate::io::Checkpoint;
use ndarray::{Array2, ArrayView2, Axis};
use netc_compiler::ir::Network;
use petgraph::graph::NodeIndex;

/// The built-in scoring classifier: models/lenet.net (Caffe's MNIST LeNet) with the weights
/// `netc train models/lenet.net --data-dir MNIST --device cpu` wrote (models/README.md), built
/// into netc so scoring works from any folder.
pub const LENET_PATH: &str = "models/lenet.net";
const LENET: &str = include_str!("../../models/lenet.net");
pub const LENET_WEIGHTS_PATH: &str = "models/lenet.safetensors";
const LENET_WEIGHTS: &[u8] = include_bytes!("../../models/lenet.safetensors");

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("the scoring classifier `{net}` {problem}")]
    Classifier { net: String, problem: String },
    #[error("{count} images of {got} values each, but the scoring classifier takes {want} (a {shape} image)")]
    ImageSize {
        count: usize,
        got: usize,
        want: usize,
        shape: String,
    },
    #[error("the samples are an array of shape {found}, but the scoring classifier takes N x {want} (N images of {want})")]
    SampleShape { found: String, want: String },
    #[error("the samples are not all finite numbers: element {index} is {value}")]
    NotFinite { index: String, value: f32 },
    #[error("the samples must lie in [0, 1] as `netc sample --format npy` writes them (to within {SAMPLE_TOLERANCE}), but element {index} is {value}")]
    OutOfRange { index: String, value: f32 },
    #[error("{0} images are too few to score (at least 2 are needed for a covariance)")]
    TooFew(usize),
    #[error(transparent)]
    Cpu(#[from] cpu::CpuError),
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
}

/// A trained classifier run in evaluation mode, a batch at a time.
pub struct Scorer {
    net: Network,
    params: Params<f32>,
    logit: NodeIndex,
    feature: NodeIndex,
    pub classes: usize,
    pub image_len: usize,
}

/// Class probabilities and penultimate-layer features of a set of images.
pub struct Outputs {
    pub probs: Array2<f64>,
    pub features: Array2<f64>,
}

/// What `netc score` reports.
#[derive(Debug, Clone)]
pub struct Score {
    pub count: usize,
    pub inception_score: f64,
    /// Share of the images whose most likely class has probability above 0.9.
    pub confident: f64,
    /// Images per most likely class.
    pub histogram: Vec<usize>,
    /// Frechet distance to the real images' features, when real images were given.
    pub fid: Option<f64>,
}

/// How far outside [0, 1] a sample value may lie (rounding in a writer other than netc's);
/// anything further is not an image of the kind scored (1e30 gave an FID of 1.5e63).
pub const SAMPLE_TOLERANCE: f32 = 1e-3;

/// Images per batch through the classifier (bounds the activations' memory).
const BATCH: usize = 500;

impl Scorer {
    /// The built-in LeNet (see [`LENET_PATH`]).
    pub fn builtin() -> Result<Scorer, ScoreError> {
        let bad = |problem: String| ScoreError::Classifier {
            net: "lenet".into(),
            problem,
        };
        let model = netc_compiler::compile(LENET_PATH, LENET)
            .map_err(|d| bad(format!("does not compile: {}", d.render())))?;
        let net = model
            .networks
            .first()
            .ok_or_else(|| bad("has no network".into()))?;
        let ck = Checkpoint::from_bytes(LENET_WEIGHTS, std::path::Path::new(LENET_WEIGHTS_PATH))?;
        let like: Params<f32> = Params::init(net, &mut crate::rng::Rng::new(0));
        let (p, _) = crate::io::run_checkpoint::load_params(&ck, net, &like, 0)
            .map_err(|e| bad(format!("does not load its weights: {e}")))?;
        Scorer::new(net, p)
    }

    /// `net` must end in logits (a softmax after them is fine); its penultimate layer is the
    /// input of the node the logits come from.
    pub fn new(net: &Network, params: Params<f32>) -> Result<Scorer, ScoreError> {
        let bad = |problem: &str| ScoreError::Classifier {
            net: net.name.clone(),
            problem: problem.into(),
        };
        let (_, logit) = net.output_and_logit().ok_or_else(|| bad("has no output"))?;
        let feature = *net
            .inputs_of(logit)
            .first()
            .ok_or_else(|| bad("has no layer before its logits"))?;
        let size = |n: NodeIndex| net.graph[n].shape.iter().product::<u64>() as usize;
        let classes = size(logit);
        if classes < 2 {
            return Err(bad("needs at least two classes"));
        }
        Ok(Scorer {
            image_len: size(net.inputs[0]),
            classes,
            logit,
            feature,
            params,
            net: net.clone(),
        })
    }

    /// Checks an array of samples read from a file before it is scored: N images of the
    /// classifier's input shape (any shape of as many values for a classifier of flat input),
    /// every value finite and in [0, 1] (see [`SAMPLE_TOLERANCE`]). Without it, a NaN array
    /// scored IS 1.000 and a 16x3x28x28 array 48 grey images.
    pub fn check_samples(&self, shape: &[usize], values: &[f32]) -> Result<(), ScoreError> {
        let input = &self.net.graph[self.net.inputs[0]].shape;
        let want: Vec<usize> = input.iter().map(|&d| d as usize).collect();
        let per = shape.get(1..).unwrap_or(&[]);
        let fits = shape.len() >= 2
            && (per == want.as_slice()
                || (want.len() == 1 && per.iter().product::<usize>() == want[0]));
        if !fits {
            return Err(ScoreError::SampleShape {
                found: if shape.is_empty() {
                    "scalar".into()
                } else {
                    shape
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join("x")
                },
                want: netc_compiler::ast::shape_str(input),
            });
        }
        let index = |i: usize| format!("{:?}", unravel(i, shape));
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(ScoreError::NotFinite {
                index: index(i),
                value: values[i],
            });
        }
        let range = -SAMPLE_TOLERANCE..=1.0 + SAMPLE_TOLERANCE;
        if let Some(i) = values.iter().position(|v| !range.contains(v)) {
            return Err(ScoreError::OutOfRange {
                index: index(i),
                value: values[i],
            });
        }
        Ok(())
    }

    /// Probabilities and features of `images` (`image_len` values each, in the classifier's
    /// input range).
    pub fn outputs(&self, images: &[f32]) -> Result<Outputs, ScoreError> {
        if images.is_empty() || !images.len().is_multiple_of(self.image_len) {
            return Err(ScoreError::ImageSize {
                count: images.len() / self.image_len.max(1),
                got: images.len(),
                want: self.image_len,
                shape: netc_compiler::ast::shape_str(&self.net.graph[self.net.inputs[0]].shape),
            });
        }
        let n = images.len() / self.image_len;
        let dim = self.net.graph[self.feature].shape.iter().product::<u64>() as usize;
        let mut probs = Array2::<f64>::zeros((n, self.classes));
        let mut features = Array2::<f64>::zeros((n, dim));
        for (b, chunk) in images.chunks(BATCH * self.image_len).enumerate() {
            let rows = chunk.len() / self.image_len;
            let x = ArrayView2::from_shape((rows, self.image_len), chunk)
                .expect("whole images per chunk");
            let acts = cpu::forward(&self.net, &self.params, x, false, 0)?;
            let r0 = b * BATCH;
            for (i, z) in acts.get(self.logit).rows().into_iter().enumerate() {
                let m = z.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
                let e: Vec<f64> = z.iter().map(|&v| (v as f64 - m).exp()).collect();
                let s: f64 = e.iter().sum();
                for (c, v) in e.iter().enumerate() {
                    probs[[r0 + i, c]] = v / s;
                }
            }
            let f = acts.get(self.feature).mapv(|v| v as f64);
            features
                .slice_mut(ndarray::s![r0..r0 + rows, ..])
                .assign(&f);
        }
        Ok(Outputs { probs, features })
    }

    /// Scores `images`, with the Frechet distance to `real` when given.
    pub fn score(&self, images: &[f32], real: Option<&Outputs>) -> Result<Score, ScoreError> {
        let out = self.outputs(images)?;
        let n = out.probs.nrows();
        if n < 2 {
            return Err(ScoreError::TooFew(n));
        }
        let mut histogram = vec![0; self.classes];
        let mut confident = 0;
        for row in out.probs.rows() {
            let (arg, best) =
                row.iter()
                    .enumerate()
                    .fold((0, f64::MIN), |a, (c, &p)| if p > a.1 { (c, p) } else { a });
            histogram[arg] += 1;
            confident += usize::from(best > 0.9);
        }
        Ok(Score {
            count: n,
            inception_score: inception_score(&out.probs),
            confident: confident as f64 / n as f64,
            histogram,
            fid: real.map(|r| frechet_distance(&out.features, &r.features)),
        })
    }
}

/// The position in an array of `shape` of its `flat`-th element (row-major, as .npy stores).
fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut at = vec![0; shape.len()];
    for (a, &d) in at.iter_mut().zip(shape).rev() {
        *a = flat % d.max(1);
        flat /= d.max(1);
    }
    at
}

/// exp(mean over rows of KL(p(y|x) || p(y))), p(y) the mean row: 1 when every image gets the
/// same distribution, the number of classes when each is certain and the classes are used
/// equally.
pub fn inception_score(probs: &Array2<f64>) -> f64 {
    let marginal = probs.mean_axis(Axis(0)).expect("at least one row");
    let kl: f64 = probs
        .rows()
        .into_iter()
        .map(|p| {
            p.iter()
                .zip(&marginal)
                .filter(|(&pc, _)| pc > 0.0)
                .map(|(&pc, &m)| pc * (pc.ln() - m.ln()))
                .sum::<f64>()
        })
        .sum::<f64>()
        / probs.nrows() as f64;
    kl.exp()
}

/// Mean and (unbiased) covariance of the rows.
fn moments(x: &Array2<f64>) -> (ndarray::Array1<f64>, Array2<f64>) {
    let mean = x.mean_axis(Axis(0)).expect("at least one row");
    let centred = x - &mean;
    let cov = centred.t().dot(&centred) / (x.nrows().max(2) - 1) as f64;
    (mean, cov)
}

/// The Frechet distance between Gaussians fitted to the rows of `a` and of `b`:
/// |m_a - m_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2). The square roots come from
/// symmetric eigendecompositions (nalgebra), eigenvalues below 0 from rounding taken as 0.
pub fn frechet_distance(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let (ma, sa) = moments(a);
    let (mb, sb) = moments(b);
    let d = sa.nrows();
    let to_na = |m: &Array2<f64>| nalgebra::DMatrix::from_fn(d, d, |i, j| m[[i, j]]);
    let (na, nb) = (to_na(&sa), to_na(&sb));
    let eig = nalgebra::SymmetricEigen::new(na.clone());
    let roots = eig.eigenvalues.map(|l| l.max(0.0).sqrt());
    let sqrt_a =
        &eig.eigenvectors * nalgebra::DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose();
    let inner = &sqrt_a * &nb * &sqrt_a;
    let inner = (&inner + inner.transpose()) * 0.5;
    let trace_sqrt: f64 = nalgebra::SymmetricEigen::new(inner)
        .eigenvalues
        .iter()
        .map(|l| l.max(0.0).sqrt())
        .sum();
    let diff: f64 = ma.iter().zip(&mb).map(|(x, y)| (x - y) * (x - y)).sum();
    (diff + na.trace() + nb.trace() - 2.0 * trace_sqrt).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn inception_score_bounds() {
        // Certain and balanced over 4 classes: 4; the same distribution everywhere: 1.
        let certain = Array2::from_shape_fn((8, 4), |(r, c)| f64::from(u8::from(r % 4 == c)));
        assert!((inception_score(&certain) - 4.0).abs() < 1e-12);
        let same = Array2::from_elem((8, 4), 0.25);
        assert!((inception_score(&same) - 1.0).abs() < 1e-12);
        // Certain but all one class: 1 as well.
        let collapsed = Array2::from_shape_fn((8, 4), |(_, c)| f64::from(u8::from(c == 2)));
        assert!((inception_score(&collapsed) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn frechet_distance_of_known_gaussians() {
        // Samples of N(0, I) against N(mu, 4 I) in 3 dimensions: |mu|^2 + tr(I + 4I - 2*2I)
        // = |mu|^2 + 3, up to sampling error.
        let mut rng = Rng::new(5);
        let n = 20_000;
        let a = Array2::from_shape_fn((n, 3), |_| rng.normal());
        let b = Array2::from_shape_fn((n, 3), |(_, j)| 2.0 * rng.normal() + [1.0, -2.0, 0.5][j]);
        let fid = frechet_distance(&a, &b);
        let want = 1.0 + 4.0 + 0.25 + 3.0;
        assert!((fid - want).abs() < 0.15, "{fid} vs {want}");
        // A set against itself: 0 (up to rounding in the square roots).
        assert!(frechet_distance(&a, &a) < 1e-8);
    }
}
