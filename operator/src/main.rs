//! `ferrum-operator` binary.

use anyhow::Context as _;
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
    Run {
        /// Address of the `/metrics`, `/healthz` and `/readyz` endpoint.
        #[arg(
            long,
            env = "FERRUM_OPERATOR_METRICS_LISTEN",
            default_value = "0.0.0.0:8080"
        )]
        metrics_listen: std::net::SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", ferrum_operator::crd::crds_yaml()?);
            Ok(())
        }
        Command::Run { metrics_listen } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info".into()),
                )
                .init();
            let metrics = ferrum_operator::metrics::Metrics::new()?;
            let listener = tokio::net::TcpListener::bind(metrics_listen)
                .await
                .with_context(|| format!("binding the metrics endpoint on {metrics_listen}"))?;
            tokio::spawn(ferrum_operator::metrics::serve(listener, metrics.clone()));
            let client = kube::Client::try_default().await?;
            ferrum_operator::controller::run_with(
                ferrum_operator::controller::Context::with_metrics(client, metrics),
            )
            .await;
            Ok(())
        }
    }
}
