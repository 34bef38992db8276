//! `netc train`: the training loops for classifiers and GANs, with data, progress, metrics,
//! pictures, atomic checkpoints, resume and failure handling. The same loop drives the GPU
//! program and the CPU reference (a [`crate::session`]).
//!
//! [`run`] prepares the data and the run folder and hands over to a task (classifier.rs,
//! gan.rs), which the loop in skeleton.rs drives: a new task is a new file implementing
//! [`skeleton::Task`]. What a checkpoint holds and how its tensors are named is in
//! [`crate::io::run_checkpoint`].

mod classifier;
mod data_setup;
mod evaluate;
mod gan;
mod generate;
mod image_folder;
mod language_model;
mod minimise;
mod profile;
mod progress;
mod run;
mod run_folder;
mod signals;
mod skeleton;
mod split;

pub use data_setup::{
    check_images, check_source, classifier_data, datasets, image_input, ClassifierData, Purpose,
    Recorded,
};
pub(crate) use evaluate::onehot;
pub use evaluate::{confusion, evaluate, in_order, mean_softmax};
pub use generate::{generate, image_shape};
pub use language_model::VOCAB_KEY;
pub use profile::profile_lines;
pub use run::{executor, run, Options, Summary, TrainError};
pub use signals::stop_signal;

use data_setup::short_list;
use run::{nonfinite_tensor, nothing_left, start_weights};
use run_folder::prepare_out;
use signals::interrupt_flag;
