//! `ferrum-broker -c broker.conf [-n namesrv] [--set key=value]...`

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use ferrum_broker::{config, controller, metrics};

/// A RocketMQ-compatible broker.
#[derive(Debug, Parser)]
#[command(name = "ferrum-broker", version)]
struct Cli {
    /// A RocketMQ broker.conf (Java properties).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// NameServer addresses, `host:port;host:port` (overrides namesrvAddr).
    #[arg(short = 'n', long = "namesrv")]
    namesrv: Option<String>,
    /// Overrides one key, e.g. `--set listenPort=10911`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[tokio::main]
async fn main() {
    if let Err(error) = run().await {
        // `{:#}` prints the whole cause chain on one line, e.g. the key and value refused.
        eprintln!("ferrum-broker: {error:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // Installed before the start line is printed: a supervisor may signal as soon as it sees it.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let loaded = config::load_from(cli.config.as_deref(), cli.namesrv, cli.set)
        .context("invalid broker configuration")?;
    let broker = controller::start(loaded.config)
        .await
        .context("broker failed to start")?;
    println!(
        "ferrum-broker {} listening on {} (VIP {}), advertised as {}",
        broker.core.config.broker_name,
        broker.listen_addr,
        broker.vip_addr,
        broker.core.broker_addr
    );
    tracing::info!(addr = %broker.listen_addr, vip = %broker.vip_addr, "broker started");
    // Metrics are auxiliary: a taken port is logged, not fatal, so the broker still serves.
    let metrics_addr = std::net::SocketAddr::new(
        broker.core.config.bind_address,
        broker.core.config.metrics_port,
    );
    match tokio::net::TcpListener::bind(metrics_addr).await {
        Ok(listener) => {
            if let Ok(addr) = listener.local_addr() {
                println!("ferrum-broker metrics on http://{addr}/metrics");
            }
            let core = broker.core.clone();
            tokio::spawn(async move {
                if let Err(error) = metrics::serve(listener, core).await {
                    tracing::error!(%error, "metrics endpoint stopped");
                }
            });
        }
        Err(error) => {
            tracing::error!(addr = %metrics_addr, %error, "metrics endpoint not started")
        }
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    broker.shutdown().await;
    Ok(())
}
