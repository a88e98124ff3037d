//! `ferrum-operator` binary.

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "ferrum-operator", about = "Kubernetes operator for Ferrum")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print every CustomResourceDefinition as multi-document YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", ferrum_operator::crd::crds_yaml()?);
            Ok(())
        }
    }
}
