//! The master side: the HA listener and one streaming task per authenticated slave.
//!
//! A connection is first challenged; only after a HELLO whose group and MAC check out does its
//! offset count towards SYNC_MASTER acknowledgements. Bytes are sent as whole records from the
//! slave's reported offset, at most `haTransferBatchSize` per frame (more only for a single
//! larger record) and at most `haMaxBytesInFlight` ahead of the slave's last report.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::codec::{self, Challenge, HandshakeFrame, Hello};
use crate::processor::BrokerCore;

/// Why an HA connection ended; logged with the peer.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("{0}")]
    Codec(#[from] codec::HaCodecError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("peer silent for {0:?}")]
    Silent(Duration),
    #[error("refused: {0}")]
    Refused(String),
    #[error("store: {0}")]
    Store(String),
}

/// Reads one handshake frame within `timeout`.
pub(crate) async fn read_handshake<R: AsyncReadExt + Unpin>(
    rd: &mut R,
    timeout: Duration,
) -> Result<HandshakeFrame, HaError> {
    tokio::time::timeout(timeout, async {
        let mut prefix = [0u8; codec::PREFIX_LEN];
        rd.read_exact(&mut prefix).await?;
        let (kind, len) = codec::decode_prefix(&prefix)?;
        let mut body = vec![0u8; len];
        rd.read_exact(&mut body).await?;
        Ok(codec::decode_body(kind, &body)?)
    })
    .await
    .unwrap_or(Err(HaError::Silent(timeout)))
}

/// Accepts HA connections until `shutdown`.
pub async fn serve(
    core: Arc<BrokerCore>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    if core.config.ha_secret.0.is_empty() {
        tracing::warn!(
            "haSecret is empty: any host that can reach the HA port and knows the broker group's name can replicate and acknowledge SYNC_MASTER writes; set haSecret (env FERRUM_BROKER_HA_SECRET) on every broker of the group"
        );
    }
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let core = core.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        match session(&core, stream, peer, shutdown).await {
                            Ok(()) => tracing::info!(%peer, "HA connection closed"),
                            Err(error) => tracing::warn!(%peer, %error, "HA connection closed"),
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "HA accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

fn nonce() -> Result<[u8; codec::NONCE_LEN], HaError> {
    let mut n = [0u8; codec::NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| HaError::Io(std::io::Error::other(e.to_string())))?;
    Ok(n)
}

/// The checks a HELLO must pass; `Err` is the reason sent back before closing.
pub(crate) fn check_hello(
    core: &BrokerCore,
    nonce: &[u8; codec::NONCE_LEN],
    hello: &Hello,
    master_epoch: u32,
) -> Result<(), String> {
    let config = &core.config;
    if core.ha.is_slave() {
        return Err("this broker is a slave, not a master".into());
    }
    if hello.version != codec::HA_PROTOCOL_VERSION {
        return Err(format!(
            "HA protocol version {} is not supported (this master speaks {})",
            hello.version,
            codec::HA_PROTOCOL_VERSION
        ));
    }
    if hello.cluster_name != config.broker_cluster_name || hello.broker_name != config.broker_name {
        return Err(format!(
            "broker group {}/{} is not this master's {}/{}",
            hello.cluster_name, hello.broker_name, config.broker_cluster_name, config.broker_name
        ));
    }
    if !codec::verify_hello(config.ha_secret.0.as_bytes(), nonce, hello) {
        return Err("the HELLO's MAC does not verify: haSecret differs".into());
    }
    if hello.broker_id <= 0 {
        return Err(format!("brokerId {} is not a slave id", hello.broker_id));
    }
    if hello.last_epoch > master_epoch {
        return Err(format!(
            "the slave's epoch {} is newer than this master's {}: this master is stale",
            hello.last_epoch, master_epoch
        ));
    }
    Ok(())
}

async fn session(
    core: &Arc<BrokerCore>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), HaError> {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let housekeeping = Duration::from_millis(core.config.ha_housekeeping_interval);
    let nonce = nonce()?;
    let master_epoch = core.ha.current_epoch();
    wr.write_all(&codec::encode_handshake(&HandshakeFrame::Challenge(
        Challenge {
            version: codec::HA_PROTOCOL_VERSION,
            nonce,
            master_epoch,
        },
    )))
    .await?;
    let hello = match read_handshake(&mut rd, housekeeping).await? {
        HandshakeFrame::Hello(hello) => hello,
        other => {
            return Err(codec::HaCodecError::Unexpected {
                expected: "HELLO",
                got: other.name(),
            }
            .into());
        }
    };
    if let Err(reason) = check_hello(core, &nonce, &hello, master_epoch) {
        core.ha.count_handshake_rejection();
        let _ = wr
            .write_all(&codec::encode_handshake(&HandshakeFrame::Reject {
                reason: reason.clone(),
            }))
            .await;
        return Err(HaError::Refused(reason));
    }
    wr.write_all(&codec::encode_handshake(&HandshakeFrame::Welcome {
        epochs: core.ha.epochs(),
        master_max_offset: core.store.max_phy_offset(),
    }))
    .await?;
    // The slave truncates any divergent tail, then reports where it stands.
    let mut report = [0u8; codec::REPORT_LEN];
    tokio::time::timeout(housekeeping, rd.read_exact(&mut report))
        .await
        .map_err(|_| HaError::Silent(housekeeping))??;
    let start = codec::decode_report(&report)?;
    let max = core.store.max_phy_offset();
    if start > max {
        return Err(HaError::Refused(format!(
            "slave reports offset {start} beyond this master's max {max}"
        )));
    }
    tracing::info!(%peer, broker_id = hello.broker_id, offset = start, master_max = max, "slave authenticated");
    let conn = core.ha.add_slave(peer.to_string(), hello.broker_id, start);
    let result = stream_to(core, conn, rd, &mut wr, start, &mut shutdown).await;
    core.ha.remove_slave(conn);
    result
}

/// Reads reports into `tx` until the connection fails.
async fn read_reports(mut rd: OwnedReadHalf, tx: watch::Sender<(i64, Instant)>) -> HaError {
    let mut report = [0u8; codec::REPORT_LEN];
    loop {
        if let Err(e) = rd.read_exact(&mut report).await {
            return e.into();
        }
        match codec::decode_report(&report) {
            Ok(offset) => {
                let _ = tx.send((offset, Instant::now()));
            }
            Err(e) => return e.into(),
        }
    }
}

async fn stream_to(
    core: &Arc<BrokerCore>,
    conn: u64,
    rd: OwnedReadHalf,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    start: i64,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), HaError> {
    let config = &core.config;
    let housekeeping = Duration::from_millis(config.ha_housekeeping_interval);
    let heartbeat = Duration::from_millis(config.ha_send_heartbeat_interval);
    let batch = config.ha_transfer_batch_size;
    let in_flight = config.ha_max_bytes_in_flight as i64;
    let file_size = core.store.config().mapped_file_size_commit_log as i64;
    let (tx, mut reports) = watch::channel((start, Instant::now()));
    let mut reader = tokio::spawn(read_reports(rd, tx));
    let mut role = core.ha.subscribe();
    // A fresh slave starts where the master's oldest retained file starts.
    let mut next = start.max(core.store.min_phy_offset());
    // Bytes below the first one sent are not in flight (an empty slave never had them).
    let mut acked = next;
    let mut last_sent = Instant::now();
    let result = loop {
        // Registered before looking at the store, so an append in between is not missed.
        let appended = core.ha.appended.notified();
        tokio::pin!(appended);
        appended.as_mut().enable();
        let (reported, at) = *reports.borrow_and_update();
        // A report beyond what was sent is not believed: it would acknowledge unsent bytes.
        acked = reported.min(next).max(acked);
        core.ha
            .slave_acked(conn, acked, core.store.max_phy_offset());
        if at.elapsed() >= housekeeping {
            break Err(HaError::Silent(housekeeping));
        }
        if role.borrow_and_update().is_slave() {
            break Err(HaError::Refused("this broker became a slave".into()));
        }
        let mut sent_any = false;
        while next < core.store.max_phy_offset() && next - acked < in_flight {
            let Some(chunk) = core.store.read_raw(next, batch) else {
                break;
            };
            let walk = codec::walk_records(&chunk, next, file_size);
            let data = if walk.whole_bytes > 0 {
                chunk.slice(..walk.whole_bytes)
            } else if let Some(size) = walk.next_record_size {
                match core.store.read_raw(next, size) {
                    Some(record) if record.len() == size => record,
                    _ => break,
                }
            } else {
                reader.abort();
                return Err(HaError::Store(format!(
                    "no CommitLog record at offset {next}: cannot replicate"
                )));
            };
            let header = codec::encode_transfer_header(next, data.len() as i32);
            wr.write_all(&header).await?;
            wr.write_all(&data).await?;
            next += data.len() as i64;
            sent_any = true;
        }
        if sent_any {
            last_sent = Instant::now();
        } else if last_sent.elapsed() >= heartbeat {
            wr.write_all(&codec::encode_transfer_header(next, 0))
                .await?;
            last_sent = Instant::now();
        }
        tokio::select! {
            _ = appended => {}
            changed = reports.changed() => if changed.is_err() {
                break match (&mut reader).await {
                    Ok(error) => Err(error),
                    Err(e) => Err(HaError::Io(std::io::Error::other(e.to_string()))),
                };
            },
            _ = role.changed() => {}
            // Appends by paths that do not notify (delay, retry) are found by this poll.
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = shutdown.changed() => break Ok(()),
        }
    };
    reader.abort();
    result
}
