//! The tokio side: accept connections, move frames to and from [`NameServer`], scan liveness.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::codec::Framed;
use tracing::{debug, info, warn};

use ferrum_protocol::{FrameError, RemotingCodec, RemotingCommand, ResponseCode};

use crate::config::Settings;
use crate::metrics::NamesrvMetrics;
use crate::processor::NameServer;
use crate::route_info::ConnId;

struct Shared {
    state: Mutex<NameServer>,
    started: Instant,
    settings: Settings,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> MutexGuard<'_, NameServer> {
        // A panic while holding the lock cannot leave the tables half-updated in a way that
        // matters more than stopping to serve, so keep going with the inner value.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves `listener` until `shutdown` completes, then stops accepting and closes every
/// connection.
pub async fn serve(
    listener: TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with_metrics(listener, settings, NamesrvMetrics::new(), shutdown).await
}

/// [`serve`] counting into `metrics`, which the caller also exposes over HTTP.
pub async fn serve_with_metrics(
    listener: TcpListener,
    settings: Settings,
    metrics: NamesrvMetrics,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        state: Mutex::new(NameServer {
            metrics,
            ..NameServer::new()
        }),
        started: Instant::now(),
        settings,
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(scan_loop(shared.clone()));
    let next_conn = AtomicU64::new(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let conn = ConnId(next_conn.fetch_add(1, Ordering::Relaxed));
                    debug!(%peer, conn = conn.0, "connection accepted");
                    tasks.spawn(connection(shared.clone(), socket, conn, peer.to_string()));
                }
                // Out of file descriptors and the like: keep serving the connections we have.
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = tasks.join_next(), if tasks.len() > 1 => {}
        }
    }
    info!("shutting down");
    tasks.shutdown().await;
    Ok(())
}

async fn scan_loop(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(shared.settings.scan_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let expiry_ms = u64::try_from(shared.settings.broker_expiry.as_millis()).unwrap_or(u64::MAX);
    loop {
        interval.tick().await;
        let now = shared.now_ms();
        let expired = {
            let mut state = shared.lock();
            let expired = state.routes.scan_not_active_brokers(now, expiry_ms);
            let live = state.routes.live_broker_count();
            state.metrics.removed("expired", expired.len(), live);
            expired
        };
        for broker in expired {
            warn!(
                cluster = %broker.cluster_name,
                broker = %broker.broker_addr,
                "broker expired after {} ms of silence",
                expiry_ms
            );
        }
    }
}

/// Sends `response`. One the codec refuses (larger than a frame may be) is replaced by a
/// SYSTEM_ERROR saying why, so the caller hears back instead of waiting out its timeout; the
/// encoder wrote nothing, so the stream is still in step.
async fn send_answer(
    framed: &mut Framed<TcpStream, RemotingCodec>,
    request: &RemotingCommand,
    response: RemotingCommand,
    peer: &str,
) -> Result<(), FrameError> {
    match framed.send(response).await {
        Err(FrameError::Io(e)) => Err(FrameError::Io(e)),
        Err(refused) => {
            warn!(%peer, code = request.code, error = %refused, "answer refused by the codec");
            let remark = format!("the answer cannot be sent: {refused}");
            framed
                .send(request.error_to(ResponseCode::SYSTEM_ERROR, remark))
                .await
        }
        Ok(()) => Ok(()),
    }
}

async fn connection(shared: Arc<Shared>, socket: TcpStream, conn: ConnId, peer: String) {
    let _ = socket.set_nodelay(true);
    let mut framed = Framed::new(socket, RemotingCodec::default());
    let connections = shared.lock().metrics.connections.clone();
    connections.inc();
    while let Some(frame) = framed.next().await {
        let request = match frame {
            Ok(request) => request,
            Err(e) => {
                warn!(%peer, error = %e, "closing connection after an unreadable frame");
                break;
            }
        };
        if request.is_response() {
            continue;
        }
        let now = shared.now_ms();
        let response = shared.lock().handle(&request, conn, now);
        if let Some(response) = response
            && let Err(e) = send_answer(&mut framed, &request, response, &peer).await
        {
            debug!(%peer, error = %e, "send failed");
            break;
        }
    }
    if shared.settings.drop_on_close {
        let gone = {
            let mut state = shared.lock();
            let gone = state.routes.connection_closed(conn);
            let live = state.routes.live_broker_count();
            state.metrics.removed("connection_closed", gone.len(), live);
            gone
        };
        for broker in gone {
            info!(
                cluster = %broker.cluster_name,
                broker = %broker.broker_addr,
                "broker dropped: its connection closed"
            );
        }
    }
    connections.dec();
    debug!(%peer, "connection closed");
}
