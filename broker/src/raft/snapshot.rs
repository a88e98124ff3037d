//! Raft snapshots: the starting point a replica is reset to when the entries it needs are no
//! longer in the leader's CommitLog.
//!
//! The state machine is the CommitLog itself, so a snapshot cannot be "the state": it is a
//! place in the CommitLog where a replica can start. It names
//!
//! - `start`: the leader's first retained CommitLog byte, a file start (retention deletes whole
//!   files), where the replica's empty CommitLog will begin;
//! - `end`: the CommitLog offset just past the snapshot's last entry (`meta.last_log_id`), which
//!   is the last entry that starts below `start` (its bytes are partly or wholly deleted). The
//!   bytes `[start, end)` travel inside the snapshot: the records of that last entry that lie in
//!   the first retained file (an entry is the padding that closed the previous file plus records
//!   in one file, so this is at most one file and usually one message);
//! - each consume queue's logical offset at `start` (`queues`). Records carry their own queue
//!   offset and are dispatched at it, so queues with records after `start` line up by
//!   themselves; the list also starts the queues with nothing after `start` at the right number,
//!   so the next message of such a queue gets the same queue offset on every replica (without
//!   it, a replica that installed the snapshot and later led would number it 0).
//!
//! Installing resets the replica's store to `start` (`MessageStore::reset_to`), appends the
//! carried bytes and makes `end` the committed offset; openraft then streams the entries after
//! `last_log_id` from the leader's log, whose bytes all lie in retained files. Messages below
//! `start` are gone from that replica as retention removed them from the leader: consumers
//! reading older queue offsets get the queue's min offset, as anywhere after retention.
//!
//! The snapshot is persisted in `raft/snapshot.bin` (written atomically), so a restarted replica
//! knows its applied position and membership although the log entries holding them were purged.
//!
//! It must not touch the store or the Raft log itself: `log_store` decides when to build and how
//! to install; this module is the format and the offset arithmetic.

use openraft::{BasicNode, SnapshotMeta};
use serde::{Deserialize, Serialize};

/// The file a replica keeps its latest snapshot in, next to the Raft log.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
const MAGIC: &[u8; 4] = b"FRS1";

/// Where a consume queue stands at the snapshot's `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStart {
    pub topic: String,
    pub queue_id: i32,
    /// Logical offset of the queue's first record at or after `start`.
    pub offset: i64,
}

/// What a snapshot says besides the bytes it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub meta: SnapshotMeta<u64, BasicNode>,
    /// First CommitLog byte of a replica that installs it: a CommitLog file start.
    pub start: i64,
    /// End of the snapshot's last entry; `[start, end)` are the carried bytes.
    pub end: i64,
    pub queues: Vec<QueueStart>,
}

/// Why snapshot data cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot data is {0} bytes, too short for its header")]
    Short(usize),
    #[error("snapshot data does not start with the Ferrum snapshot magic")]
    Magic,
    #[error("snapshot header: {0}")]
    Header(#[from] serde_json::Error),
    #[error("snapshot carries {got} bytes for CommitLog range [{start}, {end})")]
    Length { start: i64, end: i64, got: usize },
}

/// `magic | header length u32 | header JSON | CommitLog bytes [start, end)`.
pub fn encode(header: &SnapshotHeader, bytes: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(header)?;
    let mut out = Vec::with_capacity(8 + json.len() + bytes.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(bytes);
    Ok(out)
}

/// The header and the carried bytes of snapshot data from a peer or from disk.
pub fn decode(data: &[u8]) -> Result<(SnapshotHeader, &[u8]), SnapshotError> {
    let head = data.get(..8).ok_or(SnapshotError::Short(data.len()))?;
    if &head[..4] != MAGIC {
        return Err(SnapshotError::Magic);
    }
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    let json = data
        .get(8..8 + len)
        .ok_or(SnapshotError::Short(data.len()))?;
    let header: SnapshotHeader = serde_json::from_slice(json)?;
    let bytes = &data[8 + len..];
    if header.start < 0
        || header.end < header.start
        || (header.end - header.start) as usize != bytes.len()
    {
        return Err(SnapshotError::Length {
            start: header.start,
            end: header.end,
            got: bytes.len(),
        });
    }
    Ok((header, bytes))
}

/// One Raft log entry's bytes in the CommitLog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub index: u64,
    pub offset: i64,
    pub len: u64,
}

impl Span {
    pub fn end(&self) -> i64 {
        self.offset + self.len as i64
    }
}

/// The position in `spans` (ascending by index) of the last entry that starts below
/// `first_retained` and is applied (index at most `applied`): the entries up to it cannot all
/// be read any more and are what a snapshot must cover and the log may purge. `None` when every
/// entry starts at or above `first_retained`.
pub fn last_gone(spans: &[Span], first_retained: i64, applied: Option<u64>) -> Option<usize> {
    let applied = applied?;
    let below = spans.partition_point(|s| s.offset < first_retained);
    let applied_end = spans.partition_point(|s| s.index <= applied);
    below.min(applied_end).checked_sub(1)
}

/// The CommitLog range a snapshot whose last entry ends at `entry_end` carries when the
/// replica installing it starts at `first_retained`: `[first_retained, max(first_retained,
/// entry_end))`.
pub fn carried_range(first_retained: i64, entry_end: i64) -> (i64, i64) {
    (first_retained, entry_end.max(first_retained))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    fn span(index: u64, offset: i64, len: u64) -> Span {
        Span { index, offset, len }
    }

    #[test]
    fn the_last_entry_starting_in_a_deleted_file_is_the_snapshot_point() {
        // Files of 1000 bytes; entry 4 begins with the padding that closed file 0 and carries a
        // record at 1000..1150; entries 5 (blank, no bytes) and 6 follow.
        let spans = [
            span(1, 0, 0),
            span(2, 0, 400),
            span(3, 400, 500),
            span(4, 900, 250),
            span(5, 1150, 0),
            span(6, 1150, 300),
        ];
        assert_eq!(last_gone(&spans, 0, Some(6)), None, "nothing deleted");
        let at = last_gone(&spans, 1000, Some(6)).expect("file 0 deleted");
        assert_eq!(spans[at].index, 4);
        assert_eq!(
            carried_range(1000, spans[at].end()),
            (1000, 1150),
            "the record of entry 4 that lies in the retained file travels"
        );
        // Only what is applied can be covered.
        assert_eq!(
            last_gone(&spans, 1000, Some(3)).map(|i| spans[i].index),
            Some(3)
        );
        assert_eq!(last_gone(&spans, 1000, None), None);
        // The whole log below the retained start, e.g. after a forced clean of every old file.
        let at = last_gone(&spans, 2000, Some(6)).expect("all gone");
        assert_eq!(spans[at].index, 6);
        assert_eq!(carried_range(2000, spans[at].end()), (2000, 2000));
        // An entry exactly at the retained start stays readable.
        assert_eq!(last_gone(&spans[4..], 1150, Some(6)), None);
    }

    #[test]
    fn data_round_trips_and_damage_is_refused() {
        let header = SnapshotHeader {
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
                last_membership: StoredMembership::default(),
                snapshot_id: "3-42-1".into(),
            },
            start: 4096,
            end: 4100,
            queues: vec![QueueStart {
                topic: "T".into(),
                queue_id: 1,
                offset: 17,
            }],
        };
        let data = encode(&header, b"abcd").expect("encode");
        let (back, bytes) = decode(&data).expect("decode");
        assert_eq!((back, bytes), (header.clone(), &b"abcd"[..]));
        assert!(matches!(
            decode(&data[..data.len() - 1]),
            Err(SnapshotError::Length { got: 3, .. })
        ));
        assert!(matches!(decode(&data[..5]), Err(SnapshotError::Short(5))));
        let mut bad = data.clone();
        bad[0] = b'X';
        assert!(matches!(decode(&bad), Err(SnapshotError::Magic)));
        let mut bad = data;
        bad[10] = b'!';
        assert!(matches!(decode(&bad), Err(SnapshotError::Header(_))));
    }
}
