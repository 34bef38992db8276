//! The command line's definition: the clap types of every command and flag, and the value
//! parsers that turn a bad count or rate into a usage error.

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "netc",
    version,
    about = "Declarative neural-network compiler and runner"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// What `--device` takes, in the same words for every command that has it.
const DEVICE_HELP: &str = "Where to run: auto (a hardware GPU, else the CPU), cpu, gpu, a backend (vulkan, gl, ...) or an adapter name (part of it)";

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CheckFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SampleFormat {
    Png,
    Npy,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum ScoreFormat {
    Text,
    Json,
}

/// How `netc sample` runs a diffusion model's reverse chain.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct DiffusionArgs {
    /// Diffusion models: the reverse process, ancestral DDPM over all T steps or DDIM
    /// [default: ddpm, or ddim when --steps is given]
    #[arg(long, value_enum)]
    pub(crate) sampler: Option<DiffusionSampler>,
    /// Diffusion models: DDIM's number of steps, evenly spaced over the T noising steps
    #[arg(long, value_parser = at_least_one_usize)]
    pub(crate) steps: Option<usize>,
    /// Diffusion models: DDIM's eta (0: deterministic given the start noise; 1: as noisy as DDPM)
    #[arg(long, default_value_t = 0.0)]
    pub(crate) eta: f64,
    /// Diffusion models: also save the chain's intermediate images as one picture (a row per
    /// sample, a column per snapshot of x_t, noise on the left)
    #[arg(long)]
    pub(crate) chain: Option<String>,
    /// Diffusion models: sample with the trained weights, not their moving average (ema.*)
    #[arg(long)]
    pub(crate) no_ema: bool,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
pub(crate) enum DiffusionSampler {
    Ddpm,
    Ddim,
}

/// Command-line overrides of the training section.
#[derive(clap::Args)]
pub(crate) struct Overrides {
    /// Train for this many epochs
    #[arg(long, conflicts_with = "steps", value_parser = at_least_one)]
    pub(crate) epochs: Option<u64>,
    /// Train for this many steps (generator steps for a GAN)
    #[arg(long, value_parser = at_least_one)]
    pub(crate) steps: Option<u64>,
    /// Examples per step
    #[arg(long, value_parser = at_least_one)]
    pub(crate) batch: Option<u64>,
    /// Learning rate (of both optimizers for a GAN)
    #[arg(long, allow_hyphen_values = true, value_parser = positive_real)]
    pub(crate) lr: Option<f64>,
    /// Seed of the initialisation, the shuffling, the noise and the dropout masks
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Compute each process's rows of a batch in this many micro-batches, their gradients
    /// summed before the one update (CPU executor; classifiers, language models, GANs and
    /// declared losses; the batch must split evenly). Under `mpirun -n N` every process takes
    /// batch/N contiguous rows, on the CPU executor or, with --device naming a GPU, on its
    /// machine's adapter by its local rank (docs/distributed.md)
    #[arg(long, value_parser = at_least_one)]
    pub(crate) micro_batches: Option<u64>,
    #[arg(long, default_value = "auto", help = DEVICE_HELP)]
    pub(crate) device: String,
    /// Folder with the IDX files (train-images-idx3-ubyte[.gz], ...), or for a classifier an
    /// image folder (one folder per class, under train/ and val/ or directly), or for a
    /// language model a UTF-8 text file (or a folder holding one .txt file)
    #[arg(long)]
    pub(crate) data_dir: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Parse and shape-check a model; print the per-layer table with parameters, connections, MACs
    Check {
        /// Model file (.net DSL, or .yaml/.yml)
        file: String,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: CheckFormat,
        /// Batch for the training-memory figures (default: the training section's)
        #[arg(long, value_parser = at_least_one)]
        batch: Option<u64>,
    },
    /// Print the IR as Graphviz DOT (shapes on the edges): `netc graph m.net | dot -Tpng > m.png`
    Graph {
        /// Model file
        file: String,
    },
    /// Print the IR printout (the form the snapshot tests record)
    Ir {
        /// Model file
        file: String,
        /// Instead, print the fused regions of the tensor primitives and the kernel groups of
        /// their forward and backward graphs (elementwise chains and the reduction ending them)
        #[arg(long)]
        fused: bool,
    },
    /// Print the standard library (layernorm, gelu, attention, transformer, ...: blocks written
    /// from tensor primitives, callable by name from any model file), or one block of it
    Stdlib {
        /// A block's name (all blocks when omitted)
        name: Option<String>,
    },
    /// Gradient check: analytic gradients (CPU reference, f64) against central differences
    Gradcheck {
        /// Model file
        file: String,
        /// Examples in the random batch
        #[arg(long, default_value_t = 4, value_parser = at_least_one_usize)]
        batch: usize,
        /// Entries checked per parameter tensor (all when the tensor is smaller)
        #[arg(long, default_value_t = 20, value_parser = at_least_one_usize)]
        samples: usize,
        /// Seed of the random weights, batch and labels (and dropout masks) checked
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Train the model as its training section says (classifier, GAN, declared loss or
    /// language model)
    Train {
        /// Model file with a training section
        file: String,
        #[command(flatten)]
        over: Overrides,
        #[command(flatten)]
        run: RunFolder,
        /// No progress bar (also off when stderr is not a terminal)
        #[arg(long)]
        quiet: bool,
        /// After training, print per-kernel times of one step and the replay counters
        #[arg(long)]
        profile: bool,
    },
    /// Accuracy (top-1, top-5, per class), loss and confusion matrix of a trained classifier on
    /// the test split of the data it was trained on (or --data-dir); writes confusion.png
    Eval {
        /// Model file
        file: String,
        /// Checkpoint written by `netc train` (safetensors)
        #[arg(long)]
        weights: String,
        /// Folder with the IDX files, or the image folder the classifier was trained on
        /// [default: the data the checkpoint recorded, else the model's data_dir]
        #[arg(long)]
        data_dir: Option<String>,
        #[arg(long, default_value = "auto", help = DEVICE_HELP)]
        device: String,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: ScoreFormat,
    },
    /// Top classes of a trained classifier for image files (JPEG, PNG) or IDX image files
    Predict {
        /// Model file
        file: String,
        /// Checkpoint written by `netc train`
        #[arg(long)]
        weights: String,
        /// Images (.jpg, .jpeg, .png) or IDX image files (e.g. t10k-images-idx3-ubyte.gz)
        #[arg(required = true)]
        inputs: Vec<String>,
        /// Classes shown per input
        #[arg(long, default_value_t = 5, value_parser = at_least_one_usize)]
        top: usize,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: ScoreFormat,
        #[arg(long, default_value = "auto", help = DEVICE_HELP)]
        device: String,
    },
    /// Draw samples from a trained generative model (a GAN's generator; a VAE's decoder fed
    /// N(0, I) draws at its `sample` latent): a PNG grid, or an (N, C, H, W) float32 .npy
    Sample {
        /// Model file
        file: String,
        /// Checkpoint written by `netc train`
        #[arg(long)]
        weights: String,
        /// Number of samples
        #[arg(long, default_value_t = 64, value_parser = at_least_one_usize)]
        count: usize,
        /// Output format [default: from --out's extension, else png]
        #[arg(long, value_enum)]
        format: Option<SampleFormat>,
        /// Output file [default: samples-seed<SEED>.png (or .npy) beside the weights, in the
        /// run's folder]
        #[arg(long)]
        out: Option<String>,
        /// Seed of the noise
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Draw each pixel as an N x N block in the PNG grid [default: cells of at least 64
        /// pixels, 3 for 28x28 digits]
        #[arg(long, value_parser = at_least_one_usize)]
        scale: Option<usize>,
        #[command(flatten)]
        diffusion: DiffusionArgs,
    },
    /// Text from a trained character-level language model (task = language_model), streamed
    /// to stdout as it is drawn; the same text for the same seed
    Generate {
        /// Model file
        file: String,
        /// Checkpoint written by `netc train` (it carries the vocabulary)
        #[arg(long)]
        weights: String,
        /// Text to continue [default: a newline, as nanoGPT starts]
        #[arg(long)]
        prompt: Option<String>,
        /// Characters to draw
        #[arg(long, default_value_t = 500)]
        tokens: usize,
        /// Divides the logits: below 1 sharper, above 1 more varied; 0 always takes the most
        /// likely character
        #[arg(long, default_value_t = 0.8, value_parser = temperature)]
        temperature: f64,
        /// Draw only from the K most likely characters [default: all]
        #[arg(long, value_parser = at_least_one_usize)]
        top_k: Option<usize>,
        /// Seed of the draws
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Write a network with its trained weights as an ONNX model (IR version 8, opset 17) that
    /// onnxruntime and other runtimes run to netc's outputs; initializers are named as the
    /// checkpoint names them
    Export {
        /// Model file
        file: String,
        /// Checkpoint written by `netc train` (a GAN's holds both networks)
        #[arg(long)]
        weights: String,
        /// Output file [default: <network>.onnx beside the weights]
        #[arg(short = 'o', long = "out")]
        out: Option<String>,
        /// Network to export [default: the model's only network; a GAN's generator or
        /// discriminator must be named]
        #[arg(long)]
        network: Option<String>,
        /// The batch of the graph's inputs and outputs: a number, or `dynamic` for any batch
        #[arg(long, default_value = "dynamic", value_parser = export_batch)]
        batch: netc_runtime::export::onnx::Batch,
    },
    /// Convert a Caffe model into a .net file: the network (deploy or train_val .prototxt, one
    /// statement per Caffe layer, named as Caffe names it), its training section (data layers'
    /// phases and transform_param, the solver, lr_mult/decay_mult) and its weights (a
    /// .caffemodel as a safetensors checkpoint); what netc cannot express is reported, all at
    /// once, with its line
    Import(ImportArgs),
    /// How good a generative model's samples are (a GAN's, a VAE's, a diffusion model's), by
    /// a digit classifier netc trained: Inception Score, confident share, class histogram and
    /// Frechet distance to real images; --compare a.npy b.npy ... prints one table
    Score(ScoreArgs),
    /// List the adapters wgpu can use (and the CPU executor)
    Devices,
    /// Benchmark the dense kernel and a model's training step (an MLP by default; a GAN's D and G
    /// steps), on the GPU path (the --device adapter; none with --device cpu) and the CPU
    /// executor
    Bench {
        #[arg(long, default_value = "auto", help = DEVICE_HELP)]
        device: String,
        /// Timed repetitions per figure (the median is reported)
        #[arg(long, default_value_t = 20, value_parser = at_least_one_usize)]
        reps: usize,
        /// Model whose training step is timed [default: models/mlp.net, built into netc]
        #[arg(long)]
        model: Option<String>,
        /// Batch of the timed training step
        #[arg(long, default_value_t = 128, value_parser = at_least_one_usize)]
        batch: usize,
        /// Print per-kernel times of one step and the replay counters
        #[arg(long)]
        profile: bool,
        /// Also time the dense kernel at this shape: MxNxK (C[M,N] = A[M,K] B[K,N]), with
        /// `:ta` / `:tb` for a transposed operand, as `--profile` labels kernels (repeatable)
        #[arg(long, value_name = "MxNxK[:ta][:tb]")]
        gemm: Vec<String>,
        /// Instead of single steps, time one training epoch of the model's training section
        /// (its optimizer, learning rate and batch; no evaluation) on each executor
        #[arg(long)]
        epoch: bool,
        /// Folder with the IDX files for `--epoch` (else the training section's data_dir), or
        /// the image folder for `--loader`
        #[arg(long)]
        data_dir: Option<String>,
        /// Instead, time the image-folder loader alone (decode, resize, crop, flip, colour
        /// noise, normalise) with the model's pipeline on --data-dir: images per second on one
        /// thread and on all cores, --reps batches of --batch each
        #[arg(long, conflicts_with = "epoch")]
        loader: bool,
        /// Instead, time the data-parallel training step of a classifier as `mpirun -n N netc
        /// train` runs it, at global batch --batch: compute and the gradient all-reduce per
        /// step, and the bytes reduced. Implied under mpirun with several processes (`mpirun
        /// -n 2 netc bench --model M`); without mpirun, the one-process step to compare with.
        /// --device cpu or auto: the CPU executor; a GPU named: each rank's by its local rank
        #[arg(long, conflicts_with_all = ["epoch", "loader", "profile", "gemm"])]
        data_parallel: bool,
    },
}

#[derive(clap::Args)]
pub(crate) struct ScoreArgs {
    /// Generative model file whose samples are scored (with --weights): a GAN, or a declared
    /// loss with a `sample` setting (a VAE); a diffusion model's come from `netc sample --out
    /// x.npy`, scored with --samples
    #[arg(required_unless_present_any = ["samples", "compare"])]
    pub(crate) file: Option<String>,
    /// The model's checkpoint, written by `netc train`
    #[arg(long, requires = "file")]
    pub(crate) weights: Option<String>,
    /// Score these images instead: an (N, C, H, W) float32 .npy in [0, 1], as `netc sample
    /// --format npy` writes
    #[arg(long, conflicts_with_all = ["file", "weights"])]
    pub(crate) samples: Option<String>,
    /// Score several such .npy files with the same classifier and real images (--data-dir)
    /// and print one table, a row per file
    #[arg(long, num_args = 1.., value_name = "NPY", conflicts_with_all = ["file", "weights", "samples"])]
    pub(crate) compare: Vec<String>,
    /// Samples drawn from the model
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one_usize)]
    pub(crate) count: usize,
    /// Seed of the noise
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Real images for the Frechet distance: a folder with IDX files (its test split, else
    /// its training split) [default: the data the model's checkpoint recorded, else its
    /// data_dir]
    #[arg(long)]
    pub(crate) data_dir: Option<String>,
    /// How many real images the Frechet distance compares with
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one_usize)]
    pub(crate) real: usize,
    /// Classifier model [default: models/lenet.net, built in]
    #[arg(long, requires = "classifier_weights")]
    pub(crate) classifier: Option<String>,
    /// The classifier's checkpoint [default: models/lenet.safetensors, built in]
    #[arg(long, requires = "classifier")]
    pub(crate) classifier_weights: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: ScoreFormat,
}

/// Counts (epochs, steps, batch, samples): 0 would silently become 1 further down, so it is a
/// usage error naming the flag.
fn at_least_one(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(format!("`{s}` is not a whole number ({e})")),
    }
}

fn at_least_one_usize(s: &str) -> Result<usize, String> {
    at_least_one(s).and_then(|v| usize::try_from(v).map_err(|e| e.to_string()))
}

/// A sampling temperature: finite and not negative.
fn temperature(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err("must be a number >= 0".into()),
        Err(e) => Err(format!("`{s}` is not a number ({e})")),
    }
}

/// A learning rate: finite and above zero.
fn positive_real(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err("must be a positive number".into()),
        Err(e) => Err(format!("`{s}` is not a number ({e})")),
    }
}

/// Where a training run writes and what it starts from.
#[derive(clap::Args)]
pub(crate) struct RunFolder {
    /// Output folder for checkpoints, metrics, plots and samples [default: runs/<model name>]
    #[arg(long)]
    pub(crate) out: Option<String>,
    /// Continue from <out>/checkpoint.safetensors, on the data it recorded unless --data-dir
    /// names other data
    #[arg(long, conflicts_with = "overwrite")]
    pub(crate) resume: bool,
    /// With --resume: continue on other data than the checkpoint was trained on (--data-dir)
    /// instead of refusing
    #[arg(long, requires = "resume")]
    pub(crate) allow_other_data: bool,
    /// Replace the run already in <out> (its checkpoint, metrics and plots)
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Start from this checkpoint's weights (fine-tuning, transfer) instead of the
    /// initialisers; the optimizer and the schedule start afresh
    #[arg(long, conflicts_with = "resume")]
    pub(crate) weights: Option<String>,
}

/// `--batch` of `export`: `dynamic` or a count of at least 1.
fn export_batch(s: &str) -> Result<netc_runtime::export::onnx::Batch, String> {
    use netc_runtime::export::onnx::Batch;
    match s {
        "dynamic" => Ok(Batch::Dynamic),
        _ => match s.parse::<u64>() {
            Ok(b) if b >= 1 => Ok(Batch::Fixed(b)),
            _ => Err(format!(
                "`{s}` is neither `dynamic` nor a batch of at least 1"
            )),
        },
    }
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The Caffe prototxt: deploy (an `Input` layer) or train_val (TRAIN/TEST Data layers)
    pub prototxt: String,
    /// The .net file to write
    #[arg(short = 'o', long = "out")]
    pub out: String,
    /// Caffe's solver.prototxt: base_lr, momentum, weight_decay, lr_policy (fixed, step, exp,
    /// inv, multistep, poly), max_iter, display, ... become the training section
    #[arg(long)]
    pub solver: Option<String>,
    /// Trained weights (.caffemodel), written as a safetensors checkpoint with netc's names
    /// for `netc eval/predict --weights` (a BatchNorm's statistics divided by its scale factor,
    /// the Scale after it as the batchnorm's weight and bias)
    #[arg(long)]
    pub weights: Option<String>,
    /// Where the converted weights go [default: the .net file's path with .safetensors]
    #[arg(long)]
    pub weights_out: Option<String>,
    /// A train_val's input shape CxHxW (Caffe reads it from the data), e.g. 1x28x28
    #[arg(long)]
    pub input_shape: Option<String>,
}
