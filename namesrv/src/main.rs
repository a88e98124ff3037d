//! `ferrum-namesrv` binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ferrum_namesrv::config::{PartialSettings, parse_config, parse_millis};

/// A RocketMQ-compatible NameServer.
#[derive(Debug, Parser)]
#[command(name = "ferrum-namesrv", version)]
struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "FERRUM_NAMESRV_LISTEN")]
    listen: Option<SocketAddr>,
    /// How often to look for silent brokers, in milliseconds [default: 10000].
    #[arg(long, env = "FERRUM_NAMESRV_SCAN_INTERVAL_MS", value_parser = millis)]
    scan_interval_ms: Option<Duration>,
    /// Silence after which a broker is dropped, in milliseconds [default: 120000].
    #[arg(long, env = "FERRUM_NAMESRV_BROKER_EXPIRY_MS", value_parser = millis)]
    broker_expiry_ms: Option<Duration>,
    /// Drop a broker as soon as the connection it registered on closes [default: true].
    #[arg(long, env = "FERRUM_NAMESRV_DROP_ON_CLOSE")]
    drop_on_close: Option<bool>,
    /// Address of the Prometheus `/metrics`, `/healthz` and `/readyz` endpoint (port 0 picks a
    /// free port; the bound address is printed). Not served unless set.
    #[arg(long, env = "FERRUM_NAMESRV_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Optional config file (key=value lines: listen, scanIntervalMs, brokerExpiryMs,
    /// dropOnClose, metricsListen). Flags and environment variables win over it.
    #[arg(long, short = 'c', env = "FERRUM_NAMESRV_CONFIG")]
    config: Option<PathBuf>,
}

fn millis(value: &str) -> Result<Duration, String> {
    parse_millis(value).map_err(str::to_owned)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            parse_config(&text).with_context(|| format!("in config file {}", path.display()))?
        }
        None => PartialSettings::default(),
    };
    let settings = PartialSettings {
        listen: args.listen,
        scan_interval: args.scan_interval_ms,
        broker_expiry: args.broker_expiry_ms,
        drop_on_close: args.drop_on_close,
        metrics_listen: args.metrics_listen,
    }
    .resolve(file);
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let bound = listener.local_addr()?;
    // Tests and scripts read this line to learn the port when asked for port 0.
    println!("ferrum-namesrv listening on {bound}");
    tracing::info!(
        %bound,
        scan_interval_ms = settings.scan_interval.as_millis() as u64,
        broker_expiry_ms = settings.broker_expiry.as_millis() as u64,
        drop_on_close = settings.drop_on_close,
        "NameServer started"
    );
    let metrics = ferrum_namesrv::metrics::NamesrvMetrics::new();
    if let Some(addr) = settings.metrics_listen {
        let metrics_listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics endpoint {addr}"))?;
        println!(
            "ferrum-namesrv metrics on http://{}/metrics",
            metrics_listener.local_addr()?
        );
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(error) = ferrum_namesrv::metrics::serve(metrics_listener, metrics).await {
                tracing::error!(%error, "metrics endpoint stopped");
            }
        });
    }
    ferrum_namesrv::serve_with_metrics(listener, settings, metrics, shutdown).await?;
    Ok(())
}

/// Installs the SIGTERM/SIGINT handlers now — before the "listening" line tells scripts they may
/// signal — and returns the future that completes on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let interrupt = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = interrupt => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = interrupt.await;
    }
}
