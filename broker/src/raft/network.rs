//! The replicas' Raft RPC: AppendEntries, Vote and InstallSnapshot over TCP.
//!
//! Each frame is a 4-byte big-endian length and a JSON body; an AppendEntries request carries
//! its entries' CommitLog bytes after the JSON as raw blobs (see `encode_request`). One
//! connection per peer carries one request at a time (openraft sends to a peer from one
//! replication task). A failed or timed-out call drops the connection, reports the peer
//! unreachable and the next call dials again. openraft bounds every AppendEntries by the
//! heartbeat interval, so the encoding must stay cheap: JSON number arrays for message bytes
//! made followers under load miss that bound on every batch and fall behind for good. The [`NetworkSwitch`] cuts a replica off in both directions, for fault drills and
//! tests of partitions.
//!
//! Besides openraft's three RPCs the transport carries Ferrum's `TimeoutNow`: a leader handing
//! over its leadership asks the chosen follower to campaign at once (see `transfer`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, BufMut};
use futures::{SinkExt, StreamExt};
use openraft::BasicNode;
use openraft::EntryPayload;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::transfer::{TimeoutNowRequest, TimeoutNowResponse, campaign};
use super::{RaftNode, RaftRequest, TypeConfig};

type NodeId = u64;
/// Largest RPC frame: a batch of entries of up to 4 MiB messages each.
const MAX_FRAME: usize = 256 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
enum RpcRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    TimeoutNow(TimeoutNowRequest),
}

#[derive(Debug, Serialize, Deserialize)]
enum RpcResponse {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    TimeoutNow(TimeoutNowResponse),
}

#[derive(Debug, thiserror::Error)]
enum RpcError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed RPC frame: {0}")]
    Json(#[from] serde_json::Error),
    #[error("malformed RPC frame: {0}")]
    Frame(String),
    #[error("the connection closed")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("this replica is cut off by its network switch")]
    Isolated,
    #[error("the peer answered a different RPC")]
    Mismatch,
}

/// A request frame: a 4-byte length and the JSON of the request with every entry's CommitLog
/// bytes taken out, then those bytes as a 4-byte count and length-prefixed blobs, so message
/// bytes travel as they are instead of as JSON numbers.
fn encode_request(mut req: RpcRequest) -> Result<bytes::Bytes, RpcError> {
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    if let RpcRequest::Append(a) = &mut req {
        for e in &mut a.entries {
            if let EntryPayload::Normal(RaftRequest::Stored { data, .. }) = &mut e.payload {
                blobs.push(std::mem::take(data));
            }
        }
    }
    let json = serde_json::to_vec(&req)?;
    let blob_bytes: usize = blobs.iter().map(|b| 4 + b.len()).sum();
    let mut out = bytes::BytesMut::with_capacity(8 + json.len() + blob_bytes);
    out.put_u32(json.len() as u32);
    out.put_slice(&json);
    out.put_u32(blobs.len() as u32);
    for b in &blobs {
        out.put_u32(b.len() as u32);
        out.put_slice(b);
    }
    Ok(out.freeze())
}

fn decode_request(frame: &[u8]) -> Result<RpcRequest, RpcError> {
    let bad = |why: &str| RpcError::Frame(why.to_owned());
    let mut buf = frame;
    if buf.remaining() < 4 {
        return Err(bad("shorter than its JSON length"));
    }
    let json_len = buf.get_u32() as usize;
    if buf.remaining() < json_len + 4 {
        return Err(bad("shorter than its JSON"));
    }
    let mut req: RpcRequest = serde_json::from_slice(&buf[..json_len])?;
    buf.advance(json_len);
    let count = buf.get_u32() as usize;
    let mut blobs = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        if buf.remaining() < 4 {
            return Err(bad("truncated blob length"));
        }
        let len = buf.get_u32() as usize;
        if buf.remaining() < len {
            return Err(bad("truncated blob"));
        }
        blobs.push(buf[..len].to_vec());
        buf.advance(len);
    }
    let mut blobs = blobs.into_iter();
    if let RpcRequest::Append(a) = &mut req {
        for e in &mut a.entries {
            if let EntryPayload::Normal(RaftRequest::Stored { data, .. }) = &mut e.payload {
                *data = blobs
                    .next()
                    .ok_or_else(|| bad("fewer blobs than entries"))?;
            }
        }
    }
    if blobs.next().is_some() || buf.has_remaining() {
        return Err(bad("more data than entries"));
    }
    Ok(req)
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Cuts a replica off from its peers (both directions) while set.
#[derive(Debug, Clone, Default)]
pub struct NetworkSwitch(Arc<AtomicBool>);

impl NetworkSwitch {
    pub fn set_isolated(&self, isolated: bool) {
        self.0.store(isolated, Ordering::Release);
    }

    pub fn is_isolated(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Dials peers at the address in their `BasicNode`.
#[derive(Debug, Clone, Default)]
pub struct RaftNetworkFactoryImpl {
    pub switch: NetworkSwitch,
}

impl RaftNetworkFactoryImpl {
    pub fn new(switch: NetworkSwitch) -> Self {
        Self { switch }
    }
}

/// The connection to one peer.
#[derive(Debug)]
pub struct RaftPeerClient {
    target: NodeId,
    addr: String,
    conn: Option<Framed<TcpStream, LengthDelimitedCodec>>,
    switch: NetworkSwitch,
}

impl RaftNetworkFactory<TypeConfig> for RaftNetworkFactoryImpl {
    type Network = RaftPeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        RaftPeerClient {
            target,
            addr: node.addr.clone(),
            conn: None,
            switch: self.switch.clone(),
        }
    }
}

impl RaftPeerClient {
    async fn call(&mut self, req: RpcRequest, option: &RPCOption) -> Result<RpcResponse, RpcError> {
        if self.switch.is_isolated() {
            self.conn = None;
            return Err(RpcError::Isolated);
        }
        let ttl = option.hard_ttl();
        // The connection is taken for the call and only put back after a complete answer:
        // openraft drops this future on its own timeout, and a connection with an answer
        // still in flight must never serve the next request (a stale success would be taken
        // for the new one).
        let conn = self.conn.take();
        match tokio::time::timeout(ttl, self.round_trip(conn, req)).await {
            Ok(Ok((conn, r))) => {
                self.conn = Some(conn);
                Ok(r)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(RpcError::Timeout(ttl)),
        }
    }

    async fn round_trip(
        &self,
        conn: Option<Framed<TcpStream, LengthDelimitedCodec>>,
        req: RpcRequest,
    ) -> Result<(Framed<TcpStream, LengthDelimitedCodec>, RpcResponse), RpcError> {
        let mut conn = match conn {
            Some(c) => c,
            None => {
                let stream = TcpStream::connect(&self.addr).await?;
                stream.set_nodelay(true)?;
                Framed::new(stream, codec())
            }
        };
        conn.send(encode_request(req)?).await?;
        let frame = conn.next().await.ok_or(RpcError::Closed)??;
        let resp = serde_json::from_slice(&frame)?;
        Ok((conn, resp))
    }

    fn unreachable<E: std::error::Error>(
        &self,
        e: RpcError,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        tracing::debug!(target_node = self.target, addr = %self.addr, error = %e, "raft rpc failed");
        match e {
            RpcError::Json(_) | RpcError::Frame(_) | RpcError::Mismatch => {
                RPCError::Network(NetworkError::new(&e))
            }
            _ => RPCError::Unreachable(Unreachable::new(&e)),
        }
    }
}

/// How long the leader waits before it dials an unreachable peer again. openraft's 500 ms
/// default left a restarted replica without entries for up to half a second: if the leader died
/// meanwhile, that replica campaigned first, lost on its shorter log and its term clashed with
/// the real winner's, which cost the winner another election timeout. A refused dial is cheap,
/// and one that hangs is bounded by the RPC timeout.
const RECONNECT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

impl RaftNetwork<TypeConfig> for RaftPeerClient {
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(RECONNECT_BACKOFF))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RpcRequest::Append(rpc), &option).await {
            Ok(RpcResponse::Append(Ok(r))) => Ok(r),
            Ok(RpcResponse::Append(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unreachable(RpcError::Mismatch)),
            Err(e) => Err(self.unreachable(e)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        match self.call(RpcRequest::Snapshot(rpc), &option).await {
            Ok(RpcResponse::Snapshot(Ok(r))) => Ok(r),
            Ok(RpcResponse::Snapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unreachable(RpcError::Mismatch)),
            Err(e) => Err(self.unreachable(e)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(RpcRequest::Vote(rpc), &option).await {
            Ok(RpcResponse::Vote(Ok(r))) => Ok(r),
            Ok(RpcResponse::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unreachable(RpcError::Mismatch)),
            Err(e) => Err(self.unreachable(e)),
        }
    }
}

/// Sends `TimeoutNow` to the replica whose Raft listener is `addr` on a connection of its own
/// and waits up to `ttl` for the answer, which comes once that replica leads or gave up.
pub async fn timeout_now(
    addr: &str,
    req: TimeoutNowRequest,
    ttl: std::time::Duration,
    switch: &NetworkSwitch,
) -> Result<TimeoutNowResponse, String> {
    let mut client = RaftPeerClient {
        target: 0,
        addr: addr.to_owned(),
        conn: None,
        switch: switch.clone(),
    };
    let option = RPCOption::new(ttl);
    match client.call(RpcRequest::TimeoutNow(req), &option).await {
        Ok(RpcResponse::TimeoutNow(r)) => Ok(r),
        Ok(_) => Err(RpcError::Mismatch.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Serves peers' RPCs to the local [`RaftNode`]; dropping it (or [`Self::shutdown`]) closes
/// the listener and every connection.
#[derive(Debug)]
pub struct RaftRpcServer {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl RaftRpcServer {
    pub fn start(
        listener: TcpListener,
        raft: RaftNode,
        switch: NetworkSwitch,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let raft = raft.clone();
                            let switch = switch.clone();
                            conns.spawn(serve_connection(stream, raft, switch));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "raft rpc accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Self { addr, task })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn shutdown(&self) {
        self.task.abort();
    }
}

impl Drop for RaftRpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_connection(stream: TcpStream, raft: RaftNode, switch: NetworkSwitch) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let mut conn = Framed::new(stream, codec());
    while let Some(frame) = conn.next().await {
        if switch.is_isolated() {
            return;
        }
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(?peer, error = %e, "raft rpc connection failed");
                return;
            }
        };
        let req = match decode_request(&frame) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(?peer, error = %e, "malformed raft rpc frame; closing");
                return;
            }
        };
        let resp = match req {
            RpcRequest::Append(r) => RpcResponse::Append(raft.append_entries(r).await),
            RpcRequest::Vote(r) => RpcResponse::Vote(raft.vote(r).await),
            RpcRequest::Snapshot(r) => RpcResponse::Snapshot(raft.install_snapshot(r).await),
            RpcRequest::TimeoutNow(r) => RpcResponse::TimeoutNow(campaign(&raft, r).await),
        };
        if switch.is_isolated() {
            return;
        }
        let bytes = match serde_json::to_vec(&resp) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(?peer, error = %e, "cannot encode raft rpc response");
                return;
            }
        };
        if conn.send(bytes::Bytes::from(bytes)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, LogId, Vote};

    use super::*;

    fn append_request() -> RpcRequest {
        let entry = |index: u64, payload| Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
            payload,
        };
        RpcRequest::Append(AppendEntriesRequest {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 9)),
            leader_commit: None,
            entries: vec![
                entry(10, EntryPayload::Blank),
                entry(
                    11,
                    EntryPayload::Normal(RaftRequest::Stored {
                        offset: 4096,
                        data: (0..=255).collect(),
                    }),
                ),
                entry(
                    12,
                    EntryPayload::Normal(RaftRequest::Stored {
                        offset: 4352,
                        data: vec![7; 3],
                    }),
                ),
            ],
        })
    }

    #[test]
    fn entry_bytes_travel_raw_and_come_back_in_place() {
        let frame = encode_request(append_request()).expect("encodes");
        assert!(
            frame.windows(256).any(|w| w.iter().copied().eq(0..=255u8)),
            "message bytes are in the frame as they are"
        );
        let decoded = decode_request(&frame).expect("decodes");
        assert_eq!(format!("{decoded:?}"), format!("{:?}", append_request()));
    }

    #[test]
    fn malformed_frames_are_errors() {
        let frame = encode_request(append_request()).expect("encodes");
        for cut in [0, 3, 10, frame.len() - 1] {
            assert!(decode_request(&frame[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = frame.to_vec();
        extra.push(0);
        assert!(decode_request(&extra).is_err());
        let mut garbage = vec![0, 0, 0, 2];
        garbage.extend_from_slice(b"{]\0\0\0\0");
        assert!(matches!(decode_request(&garbage), Err(RpcError::Json(_))));
    }
}
