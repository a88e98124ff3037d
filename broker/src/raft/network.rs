//! The replicas' Raft RPC: AppendEntries, Vote and InstallSnapshot over TCP.
//!
//! Each frame is a 4-byte big-endian length and a JSON body; one connection per peer carries
//! one request at a time (openraft sends to a peer from one replication task). A failed or
//! timed-out call drops the connection, reports the peer unreachable and the next call dials
//! again. The [`NetworkSwitch`] cuts a replica off in both directions, for fault drills and
//! tests of partitions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{SinkExt, StreamExt};
use openraft::BasicNode;
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

use super::{RaftNode, TypeConfig};

type NodeId = u64;
/// Largest RPC frame: a batch of entries of up to 4 MiB messages each.
const MAX_FRAME: usize = 256 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
enum RpcRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

#[derive(Debug, Serialize, Deserialize)]
enum RpcResponse {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
}

#[derive(Debug, thiserror::Error)]
enum RpcError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed RPC frame: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the connection closed")]
    Closed,
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("this replica is cut off by its network switch")]
    Isolated,
    #[error("the peer answered a different RPC")]
    Mismatch,
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
    async fn call(
        &mut self,
        req: &RpcRequest,
        option: &RPCOption,
    ) -> Result<RpcResponse, RpcError> {
        if self.switch.is_isolated() {
            self.conn = None;
            return Err(RpcError::Isolated);
        }
        let ttl = option.hard_ttl();
        let result = tokio::time::timeout(ttl, self.round_trip(req)).await;
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(RpcError::Timeout(ttl))
            }
        }
    }

    async fn round_trip(&mut self, req: &RpcRequest) -> Result<RpcResponse, RpcError> {
        if self.conn.is_none() {
            let stream = TcpStream::connect(&self.addr).await?;
            stream.set_nodelay(true)?;
            self.conn = Some(Framed::new(stream, codec()));
        }
        let conn = self.conn.as_mut().ok_or(RpcError::Closed)?;
        conn.send(bytes::Bytes::from(serde_json::to_vec(req)?))
            .await?;
        let frame = conn.next().await.ok_or(RpcError::Closed)??;
        Ok(serde_json::from_slice(&frame)?)
    }

    fn unreachable<E: std::error::Error>(
        &self,
        e: RpcError,
    ) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
        tracing::debug!(target_node = self.target, addr = %self.addr, error = %e, "raft rpc failed");
        match e {
            RpcError::Json(_) | RpcError::Mismatch => RPCError::Network(NetworkError::new(&e)),
            _ => RPCError::Unreachable(Unreachable::new(&e)),
        }
    }
}

impl RaftNetwork<TypeConfig> for RaftPeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self.call(&RpcRequest::Append(rpc), &option).await {
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
        match self.call(&RpcRequest::Snapshot(rpc), &option).await {
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
        match self.call(&RpcRequest::Vote(rpc), &option).await {
            Ok(RpcResponse::Vote(Ok(r))) => Ok(r),
            Ok(RpcResponse::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unreachable(RpcError::Mismatch)),
            Err(e) => Err(self.unreachable(e)),
        }
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
        let req: RpcRequest = match serde_json::from_slice(&frame) {
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
