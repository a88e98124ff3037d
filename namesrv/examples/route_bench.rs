//! Route-query load generator: GET_ROUTEINFO_BY_TOPIC over several pipelined connections against
//! any RocketMQ-compatible NameServer, reporting answers per second. The same binary drives
//! Ferrum's and other NameServers so the figures compare like with like.
//!
//! `route_bench --namesrv 127.0.0.1:9876 --topic T --connections 16 --depth 8 --seconds 10`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use ferrum_protocol::headers::GetRouteInfoRequestHeader;
use ferrum_protocol::{LanguageCode, RemotingCodec, RemotingCommand, RequestCode};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long)]
    namesrv: String,
    #[arg(long)]
    topic: String,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 8)]
    depth: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of load before counting starts.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
}

fn request(topic: &str, opaque: i32) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(
        RequestCode::GET_ROUTEINFO_BY_TOPIC,
        &GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
            accept_standard_json_only: None,
        },
    )
    .with_opaque(opaque);
    // What the Java client sends; every NameServer knows it.
    cmd.language = Some(LanguageCode::JAVA);
    cmd
}

async fn worker(
    addr: String,
    topic: String,
    depth: usize,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let stream = TcpStream::connect(&addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let mut framed = Framed::new(stream, RemotingCodec::default());
    let mut opaque = 0i32;
    for _ in 0..depth {
        opaque = opaque.wrapping_add(1);
        framed.feed(request(&topic, opaque)).await?;
    }
    SinkExt::<RemotingCommand>::flush(&mut framed).await?;
    while !stop.load(Ordering::Relaxed) {
        let answer = framed
            .next()
            .await
            .context("the NameServer closed the connection")??;
        if answer.code != 0 {
            bail!(
                "route query failed: code {} {:?}",
                answer.code,
                answer.remark
            );
        }
        if counting.load(Ordering::Relaxed) {
            answered.fetch_add(1, Ordering::Relaxed);
        }
        opaque = opaque.wrapping_add(1);
        framed.send(request(&topic, opaque)).await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        tasks.push(tokio::spawn(worker(
            args.namesrv.clone(),
            args.topic.clone(),
            args.depth.max(1),
            counting.clone(),
            stop.clone(),
            answered.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    counting.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    let total = answered.load(Ordering::Relaxed);
    for task in tasks {
        if task.is_finished() {
            task.await??;
        } else {
            task.abort();
        }
    }
    println!(
        "route queries: {total} in {:.2} s = {:.0}/s ({} connections x {} in flight)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        args.connections,
        args.depth
    );
    Ok(())
}
