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
        /// Namespace of the leader Lease; when set, only the replica holding it reconciles.
        #[arg(long, env = "POD_NAMESPACE")]
        leader_election_namespace: Option<String>,
        /// `cluster=host:port[;host:port]`: reach that cluster's NameServers at these
        /// addresses instead of their Services' DNS names (an operator outside the cluster
        /// network). Repeatable; the env form separates items with spaces.
        #[arg(
            long = "namesrv-override",
            env = "FERRUM_OPERATOR_NAMESRV_OVERRIDES",
            value_delimiter = ' '
        )]
        namesrv_overrides: Vec<String>,
        /// Manage only these namespaces (comma-separated), which needs a Role in each of
        /// them instead of a ClusterRole. Empty: every namespace.
        #[arg(
            long = "watch-namespaces",
            env = "FERRUM_WATCH_NAMESPACES",
            value_delimiter = ','
        )]
        watch_namespaces: Vec<String>,
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
        Command::Run {
            metrics_listen,
            leader_election_namespace,
            namesrv_overrides,
            watch_namespaces,
        } => {
            let watch_namespaces: Vec<String> = watch_namespaces
                .into_iter()
                .filter(|n| !n.is_empty())
                .collect();
            let overrides =
                ferrum_operator::topic_controller::NamesrvOverrides::parse(&namesrv_overrides)
                    .map_err(anyhow::Error::msg)?;
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
            let ctx = ferrum_operator::controller::Context::with_metrics(client.clone(), metrics)
                .with_namesrv_overrides(overrides);
            let Some(ns) = leader_election_namespace else {
                run_controllers(ctx, &watch_namespaces).await;
                return Ok(());
            };
            let identity = std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("ferrum-operator-{}", std::process::id()));
            let elector = ferrum_operator::leader::LeaderElector::new(
                kube::Api::namespaced(client, &ns),
                "ferrum-operator",
                &identity,
                std::time::Duration::from_secs(15),
            );
            elector.acquire(std::time::Duration::from_secs(2)).await;
            tracing::info!(%identity, "leading");
            tokio::select! {
                () = run_controllers(ctx, &watch_namespaces) => Ok(()),
                // Exiting lets the Deployment restart us as a follower; continuing to
                // reconcile without the lease could fight the new leader.
                lost = elector.keep_leading() => Err(lost.into()),
            }
        }
    }
}

/// Both controllers side by side, cluster-wide or once per watched namespace; each stops
/// on the shutdown signal.
async fn run_controllers(ctx: ferrum_operator::controller::Context, namespaces: &[String]) {
    if namespaces.is_empty() {
        tokio::join!(
            ferrum_operator::controller::run_with(ctx.clone()),
            ferrum_operator::topic_controller::run(ctx),
        );
        return;
    }
    let per_namespace = namespaces.iter().map(|ns| {
        let ctx = ctx.clone();
        async move {
            tokio::join!(
                ferrum_operator::controller::run_namespaced(ctx.clone(), ns),
                ferrum_operator::topic_controller::run_namespaced(ctx, ns),
            );
        }
    });
    futures::future::join_all(per_namespace).await;
}
