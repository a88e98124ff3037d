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
    /// Run the controllers against the cluster of the ambient kubeconfig / service account.
    Run,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", ferrum_operator::crd::crds_yaml()?);
            Ok(())
        }
        Command::Run => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let client = kube::Client::try_default().await?;
            ferrum_operator::controller::run(client).await;
            Ok(())
        }
    }
}
