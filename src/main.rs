//! The `netc` command line: `main` makes the process-wide settings (`setup`), parses the
//! arguments (`cli`) and runs the command (`commands`; `common` holds what they share).

use clap::Parser;
use cli::{Cli, Command};
use commands::{
    bench, check, devices, eval, export, generate, gradcheck, graph, import, predict, sample,
    score, stdlib, train,
};
use common::{load, Failure};
use std::process::ExitCode;

mod cli;
mod commands;
mod common;
mod setup;

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Check {
            file,
            format,
            batch,
        } => check::check(&file, format, batch)?,
        Command::Graph { file } => graph::graph(&file)?,
        Command::Ir { file, fused } => graph::ir(&file, fused)?,
        Command::Stdlib { name } => stdlib::stdlib(name.as_deref())?,
        Command::Gradcheck {
            file,
            batch,
            samples,
            seed,
        } => gradcheck::gradcheck(&load(&file)?, batch, samples, seed)?,
        Command::Train {
            file,
            over,
            run,
            quiet,
            profile,
        } => train::train(&file, over, run, quiet, profile)?,
        Command::Eval {
            file,
            weights,
            data_dir,
            device,
            format,
        } => eval::eval(&file, &weights, data_dir, &device, format)?,
        Command::Sample {
            file,
            weights,
            count,
            format,
            out,
            seed,
            scale,
            diffusion,
        } => sample::sample(
            &file,
            &weights,
            count,
            format,
            out,
            (seed, scale),
            &diffusion,
        )?,
        Command::Export {
            file,
            weights,
            out,
            network,
            batch,
        } => export::export(&file, &weights, out, network, batch)?,
        Command::Import(args) => import::import(&args)?,
        Command::Score(args) => score::run(args)?,
        Command::Generate {
            file,
            weights,
            prompt,
            tokens,
            temperature,
            top_k,
            seed,
        } => generate::generate(
            &file,
            &weights,
            generate::Request {
                prompt,
                tokens,
                sampling: netc_runtime::text_gen::Sampling {
                    temperature,
                    top_k,
                    seed,
                },
            },
        )?,
        Command::Predict {
            file,
            weights,
            inputs,
            top,
            format,
            device,
        } => predict::predict(&file, &weights, &inputs, (top, format), &device)?,
        Command::Devices => devices::devices(),
        Command::Bench {
            device,
            reps,
            model,
            batch,
            profile,
            gemm,
            epoch,
            data_dir,
            loader,
            data_parallel,
        } => bench::run(
            &device,
            model,
            data_dir,
            (reps, batch),
            profile,
            &gemm,
            (epoch, loader, data_parallel),
        )?,
    }
    Ok(())
}

fn main() -> ExitCode {
    setup::tune_allocator();
    setup::default_sigpipe();
    // The CPU executor's products and per-sample loops run on rayon's pool (one thread per
    // core; RAYON_NUM_THREADS overrides), flushing subnormals as this thread does.
    netc_runtime::cpu::flush_subnormals();
    let pool_flushes = netc_runtime::cpu::flush_subnormals_in_pool();
    debug_assert!(pool_flushes, "nothing starts rayon's pool before main");
    setup::quiet_headless_vulkan_layer();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code)) => ExitCode::from(code),
    }
}
