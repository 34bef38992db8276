//! The `netc` command line: check, graph (and, as the runtime grows, gradcheck, train, ...).

use clap::{Parser, Subcommand, ValueEnum};
use netc_compiler::{compile, ir::Model, report};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "netc",
    version,
    about = "Declarative neural-network compiler and runner"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum CheckFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and shape-check a model; print the per-layer table with parameters, connections, MACs
    Check {
        /// Model file (.net DSL, or .yaml/.yml)
        file: String,
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: CheckFormat,
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
    },
}

/// A failure that has already been explained to the user; carries the exit code.
struct Failure(u8);

fn load(path: &str) -> Result<Model, Failure> {
    let source = std::fs::read(path).map_err(|e| {
        eprintln!("error: cannot read model file `{path}`: {e}");
        Failure(1)
    })?;
    let source = String::from_utf8(source).map_err(|e| {
        eprintln!(
            "error: model file `{path}` is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        );
        Failure(1)
    })?;
    compile(path, &source).map_err(|d| {
        eprint!("{}", d.render());
        Failure(1)
    })
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Check { file, format } => {
            let model = load(&file)?;
            match format {
                CheckFormat::Text => print!("{}", report::check_text(&model)),
                CheckFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report::check_json(&model)).unwrap_or_default()
                ),
            }
        }
        Command::Graph { file } => print!("{}", report::dot(&load(&file)?)),
        Command::Ir { file } => print!("{}", load(&file)?.printout()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code)) => ExitCode::from(code),
    }
}
