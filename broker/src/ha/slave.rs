//! The slave side: while this broker is a slave, keep one connection to the master's HA port.
//!
//! Per connection: answer the challenge with an authenticated HELLO, compute the divergence
//! point from the master's epoch table, truncate anything past it (counted and logged), adopt
//! the master's epochs, report the max offset, then append streamed bytes at identical offsets
//! (the store dispatches them to consume queues and the index) and report after every append
//! and every `haSendHeartbeatInterval`. Failures reconnect with capped exponential back-off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::codec::{self, HandshakeFrame, Hello};
use super::master::{HaError, read_handshake};
use crate::processor::BrokerCore;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until `shutdown`; replicates whenever the role is SLAVE.
pub async fn run(core: Arc<BrokerCore>, mut shutdown: watch::Receiver<bool>) {
    let mut role = core.ha.subscribe();
    let mut backoff = MIN_BACKOFF;
    loop {
        let current = role.borrow_and_update().clone();
        if !current.is_slave() {
            tokio::select! {
                _ = role.changed() => continue,
                _ = shutdown.changed() => return,
            }
        }
        let Some(addr) = current.master_ha_addr.clone() else {
            tracing::debug!("slave waits for its master's HA address from the NameServer");
            tokio::select! {
                _ = role.changed() => continue,
                _ = shutdown.changed() => return,
            }
        };
        let started = Instant::now();
        let result = tokio::select! {
            r = session(&core, &addr) => r,
            // A promotion or a new master address ends this session.
            _ = role.changed() => Ok(()),
            _ = shutdown.changed() => return,
        };
        if let Err(error) = result {
            tracing::warn!(master = %addr, %error, retry_in_ms = backoff.as_millis() as u64, "replication from master interrupted");
        }
        if started.elapsed() > MAX_BACKOFF * 2 {
            backoff = MIN_BACKOFF;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn session(core: &Arc<BrokerCore>, addr: &str) -> Result<(), HaError> {
    let config = &core.config;
    let housekeeping = Duration::from_millis(config.ha_housekeeping_interval);
    let heartbeat = Duration::from_millis(config.ha_send_heartbeat_interval);
    let stream = tokio::time::timeout(housekeeping, TcpStream::connect(addr))
        .await
        .map_err(|_| HaError::Silent(housekeeping))??;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let challenge = match read_handshake(&mut rd, housekeeping).await? {
        HandshakeFrame::Challenge(c) => c,
        other => {
            return Err(codec::HaCodecError::Unexpected {
                expected: "CHALLENGE",
                got: other.name(),
            }
            .into());
        }
    };
    let epochs = core.ha.epochs();
    let role = core.ha.role();
    let mut hello = Hello {
        version: codec::HA_PROTOCOL_VERSION,
        cluster_name: config.broker_cluster_name.clone(),
        broker_name: config.broker_name.clone(),
        broker_id: role.broker_id,
        last_epoch: epochs.current_epoch(),
        last_epoch_start_offset: epochs.current_start(),
        max_offset: core.store.max_phy_offset(),
        mac: [0; codec::MAC_LEN],
    };
    hello.mac = codec::hello_mac(config.ha_secret.0.as_bytes(), &challenge.nonce, &hello);
    wr.write_all(&codec::encode_handshake(&HandshakeFrame::Hello(hello)))
        .await?;
    let (master_epochs, master_max) = match read_handshake(&mut rd, housekeeping).await? {
        HandshakeFrame::Welcome {
            epochs,
            master_max_offset,
        } => (epochs, master_max_offset),
        HandshakeFrame::Reject { reason } => return Err(HaError::Refused(reason)),
        other => {
            return Err(codec::HaCodecError::Unexpected {
                expected: "WELCOME",
                got: other.name(),
            }
            .into());
        }
    };
    let local_max = core.store.max_phy_offset();
    let point = epochs.divergence_point(local_max, &master_epochs, master_max);
    if point < local_max {
        let store = core.store.clone();
        let core2 = core.clone();
        let why = format!(
            "master {addr} is in epoch {} and its history diverges from ours at offset {point}",
            master_epochs.current_epoch()
        );
        tokio::task::spawn_blocking(move || {
            super::truncate_divergent(&core2.ha, &store, point, &why)
        })
        .await
        .map_err(|e| HaError::Store(e.to_string()))?
        .map_err(|e| HaError::Store(e.to_string()))?;
    }
    core.ha
        .replace_epochs(master_epochs)
        .map_err(|e| HaError::Store(e.to_string()))?;
    let max = core.store.max_phy_offset();
    wr.write_all(&codec::encode_report(max)).await?;
    tracing::info!(master = %addr, offset = max, master_max, "replicating from master");
    // The master's batch size may differ from ours; one frame never exceeds the larger of the
    // batch limit (16 MiB) and one record.
    let limit = (16 * 1024 * 1024).max(config.max_message_size + 64 * 1024);
    // Frames are read by their own task: a read cancelled by a timer could lose half a header.
    let (tx, mut frames) = tokio::sync::mpsc::channel::<(i64, Vec<u8>)>(4);
    let reader = tokio::spawn(async move {
        loop {
            let mut header = [0u8; codec::TRANSFER_HEADER_LEN];
            rd.read_exact(&mut header).await?;
            let (offset, size) = codec::decode_transfer_header(&header, limit)?;
            let mut body = vec![0u8; size];
            rd.read_exact(&mut body).await?;
            if tx.send((offset, body)).await.is_err() {
                return Ok::<(), HaError>(());
            }
        }
    });
    let result = follow(core, &mut frames, &mut wr, max, heartbeat, housekeeping).await;
    reader.abort();
    match result {
        // The reader ended first: its error is the reason.
        Ok(()) => match reader.await {
            Ok(Err(error)) => Err(error),
            _ => Err(HaError::Refused("the master closed the connection".into())),
        },
        Err(error) => Err(error),
    }
}

/// Appends frames and reports; `Ok` when the reader task ended.
async fn follow(
    core: &Arc<BrokerCore>,
    frames: &mut tokio::sync::mpsc::Receiver<(i64, Vec<u8>)>,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    mut max: i64,
    heartbeat: Duration,
    housekeeping: Duration,
) -> Result<(), HaError> {
    let mut last_report = Instant::now();
    let mut last_heard = Instant::now();
    loop {
        let wait = heartbeat.saturating_sub(last_report.elapsed());
        tokio::select! {
            frame = frames.recv() => {
                let Some((offset, body)) = frame else { return Ok(()) };
                last_heard = Instant::now();
                if body.is_empty() {
                    continue;
                }
                // The store refuses an offset other than its max (an empty store also takes a
                // file boundary, where a master with deleted files starts).
                max = append(core, offset, body).await?;
                wr.write_all(&codec::encode_report(max)).await?;
                last_report = Instant::now();
            }
            _ = tokio::time::sleep(wait) => {
                if last_heard.elapsed() >= housekeeping {
                    return Err(HaError::Silent(housekeeping));
                }
                wr.write_all(&codec::encode_report(max)).await?;
                last_report = Instant::now();
            }
        }
    }
}

/// Appends one frame under the promotion gate. On a multi-threaded runtime the (short, memory
/// copy) append runs in place, which saves a thread hand-off per frame on the SYNC_MASTER
/// acknowledgement path; elsewhere it goes to the blocking pool.
async fn append(core: &Arc<BrokerCore>, offset: i64, body: Vec<u8>) -> Result<i64, HaError> {
    let core = core.clone();
    let work = move || {
        let gate = core.ha.append_gate();
        let _gate = gate.lock().unwrap_or_else(|e| e.into_inner());
        if !core.ha.accepts_replica_bytes() {
            return Err(HaError::Refused("replication stopped: promoted".into()));
        }
        core.store
            .append_raw_at(offset, &body)
            .map(|()| core.store.max_phy_offset())
            .map_err(|e| HaError::Store(e.to_string()))
    };
    if tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread
    {
        tokio::task::block_in_place(work)
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| HaError::Store(e.to_string()))?
    }
}
