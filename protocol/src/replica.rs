//! The JSON body of Ferrum's replica-status answer (`FERRUM_GET_BROKER_REPLICA_STATUS`), shared by
//! the broker that writes it and the admin client / operator that read it.
//!
//! Field names follow RocketMQ's camelCase so the body reads like the other admin bodies.

use serde::{Deserialize, Serialize};

/// One broker's replication state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerReplicaStatus {
    pub cluster_name: String,
    pub broker_name: String,
    pub broker_id: i64,
    /// `ASYNC_MASTER`, `SYNC_MASTER` or `SLAVE`.
    pub role: String,
    /// This broker's own HA address (`brokerIP1:haListenPort`), where its slaves connect.
    pub ha_server_addr: String,
    /// The epoch this broker's history ends in (a master's current epoch).
    pub epoch: u32,
    /// The CommitLog offset at which that epoch began.
    pub epoch_start_offset: i64,
    /// A slave's master (broker address), when known.
    pub master_addr: Option<String>,
    /// The master's HA address a slave replicates from, when known.
    pub master_ha_addr: Option<String>,
    pub max_phy_offset: i64,
    pub min_phy_offset: i64,
    /// A master's authenticated slaves.
    pub slaves: Vec<SlaveReplicaStatus>,
    /// Messages dropped from this broker's tail because they diverged from a newer master's
    /// history (acknowledged by an ASYNC_MASTER but never replicated), since start.
    pub truncated_messages: u64,
    pub truncated_bytes: u64,
}

/// What a master knows about one authenticated slave.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlaveReplicaStatus {
    /// The slave's remote address on the HA connection.
    pub addr: String,
    pub broker_id: i64,
    /// The CommitLog offset the slave has confirmed holding.
    pub acked_offset: i64,
    /// Master max offset − acked offset.
    pub lag_bytes: i64,
    /// How long ago the slave last held everything the master had (0 when caught up).
    pub lag_millis: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_camel_case_names() {
        let status = BrokerReplicaStatus {
            cluster_name: "c".into(),
            broker_name: "b".into(),
            broker_id: 0,
            role: "SYNC_MASTER".into(),
            ha_server_addr: "127.0.0.1:10912".into(),
            epoch: 3,
            epoch_start_offset: 4096,
            master_addr: None,
            master_ha_addr: None,
            max_phy_offset: 8192,
            min_phy_offset: 0,
            slaves: vec![SlaveReplicaStatus {
                addr: "127.0.0.1:5".into(),
                broker_id: 1,
                acked_offset: 8000,
                lag_bytes: 192,
                lag_millis: 3,
            }],
            truncated_messages: 2,
            truncated_bytes: 300,
        };
        let json = serde_json::to_string(&status).expect("serializes");
        assert!(json.contains("\"epochStartOffset\":4096"));
        assert!(json.contains("\"ackedOffset\":8000"));
        let back: BrokerReplicaStatus = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, status);
        let sparse: BrokerReplicaStatus =
            serde_json::from_str("{\"role\":\"SLAVE\"}").expect("missing fields default");
        assert_eq!(sparse.role, "SLAVE");
    }
}

/// A Raft-mode replica's view of its group (`FERRUM_GET_RAFT_STATUS`); match index and lag of
/// peers are only known on the leader.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RaftStatus {
    pub node_id: u64,
    /// This replica's dLegerSelfId (`n0`), the name `FERRUM_RAFT_TRANSFER_LEADER` takes.
    pub self_id: String,
    pub term: u64,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub role: String,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    /// The commit index: the last entry this replica knows a majority holds (none until it
    /// learns one after a start).
    pub commit_index: Option<u64>,
    /// Highest index applied here: everything up to it is committed and readable.
    pub applied_index: Option<u64>,
    /// Every voter.
    pub peers: Vec<RaftPeerStatus>,
}

/// The node id a Raft replica uses for its DLedger id (`dLegerSelfId`, e.g. `n0`): FNV-1a
/// over the id's bytes, so it depends on the id alone and is the same in every version and on
/// every platform. [`RaftStatus::node_id`], `leader` and each peer's `node_id` are these ids,
/// which is how a reader that knows the DLedger ids tells which replica answered.
pub fn raft_node_id(dleger_id: &str) -> u64 {
    dleger_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One voter as a replica sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RaftPeerStatus {
    pub node_id: u64,
    /// The peer's dLegerSelfId (`n1`); empty for a node not in this replica's `dLegerPeers`.
    pub id: String,
    pub addr: String,
    pub match_index: Option<u64>,
    /// Entries the peer is behind the leader's last log index.
    pub lag: Option<u64>,
}

/// The answer to `FERRUM_RAFT_TRANSFER_LEADER`: who leads the group after the transfer, in
/// which term, so a caller can wait for the NameServers to list the new master.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RaftTransferResult {
    /// The new leader's term.
    pub term: u64,
    /// The new leader's dLegerSelfId (`n1`).
    pub leader_id: String,
    pub leader_node_id: u64,
    /// The new leader's Raft address from `dLegerPeers`.
    pub leader_raft_addr: String,
    /// The dLegerSelfId of the replica that led before.
    pub previous_leader_id: String,
    /// From the request's arrival until the old leader saw the new one lead.
    pub elapsed_millis: u64,
}
