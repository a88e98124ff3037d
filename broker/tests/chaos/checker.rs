//! The safety checker of the Raft chaos drills. Pure: it is fed what producers were told
//! (acknowledged sends), what consumers and replica scans read, and judges:
//!
//! - **no acknowledged message lost**: after healing, every acknowledged send is on every
//!   replica at the (queue, queue offset) its SendResult named, with the same body and the same
//!   CommitLog offset (the msgId);
//! - **never two different messages at one (topic, queue, queue offset)**, across replicas and
//!   across time: the first record read at a position is remembered and every later read of
//!   that position, from any replica, must be byte-identical;
//! - **offsets monotonic per queue**: a read run returns strictly increasing, contiguous queue
//!   offsets, and one sequential producer's acknowledged offsets in a queue only grow.
//!
//! Every violation carries the seed of the run, so a failure can be replayed.

use std::collections::BTreeMap;
use std::fmt;

/// (topic, queue id, queue offset).
pub type Position = (String, i32, i64);

/// What a SendResult acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The sequential producer that sent it (its acknowledged offsets per queue only grow).
    pub producer: u32,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    /// The CommitLog offset the msgId names.
    pub commit_log_offset: i64,
    pub body: Vec<u8>,
}

/// One record read back from a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub queue_offset: i64,
    pub commit_log_offset: i64,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    commit_log_offset: i64,
    body: Vec<u8>,
    source: String,
}

/// A broken safety property, with enough to find the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Two acknowledgements named the same position for different messages.
    DoubleAck {
        position: Position,
        first: String,
        second: String,
    },
    /// A position was read with different contents at different times or on different replicas.
    Divergent {
        position: Position,
        first: String,
        first_source: String,
        second: String,
        second_source: String,
    },
    /// A read run went backwards or skipped offsets.
    NotMonotonic {
        source: String,
        topic: String,
        queue_id: i32,
        previous: i64,
        next: i64,
    },
    /// A sequential producer was acknowledged an offset not above its previous one in the queue.
    AckOffsetNotIncreasing {
        producer: u32,
        topic: String,
        queue_id: i32,
        previous: i64,
        next: i64,
    },
    /// An acknowledged message is missing (or different) on a replica after healing.
    Lost {
        position: Position,
        replica: String,
        expected: String,
        found: Option<String>,
    },
}

/// A short printable form of a record: its body (cut) and CommitLog offset.
fn describe(body: &[u8], commit_log_offset: i64) -> String {
    let text = String::from_utf8_lossy(body);
    let cut: String = text.chars().take(48).collect();
    let more = if text.chars().count() > 48 { "…" } else { "" };
    format!(
        "{cut:?}{more} ({} B) at CommitLog {commit_log_offset}",
        body.len()
    )
}

/// The judge of one run.
#[derive(Debug)]
pub struct Checker {
    seed: u64,
    acked: BTreeMap<Position, Ack>,
    /// Every acknowledgement, also those at a position acknowledged before (each must survive).
    all_acks: Vec<Ack>,
    last_ack: BTreeMap<(u32, String, i32), i64>,
    seen: BTreeMap<Position, Seen>,
    violations: Vec<Violation>,
    reads: u64,
}

/// The outcome of [`Checker::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub acknowledged: usize,
    pub lost: usize,
    pub reads: u64,
    pub positions: usize,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn is_safe(&self) -> bool {
        self.lost == 0 && self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} acknowledged, {} lost, {} violations, {} records read at {} positions",
            self.seed,
            self.acknowledged,
            self.lost,
            self.violations.len(),
            self.reads,
            self.positions
        )?;
        for v in self.violations.iter().take(20) {
            write!(f, "\n  seed {}: {v:?}", self.seed)?;
        }
        if self.violations.len() > 20 {
            write!(f, "\n  … {} more", self.violations.len() - 20)?;
        }
        Ok(())
    }
}

impl Checker {
    pub fn new(seed: u64) -> Self {
        Checker {
            seed,
            acked: BTreeMap::new(),
            all_acks: Vec::new(),
            last_ack: BTreeMap::new(),
            seen: BTreeMap::new(),
            violations: Vec::new(),
            reads: 0,
        }
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    fn violate(&mut self, v: Violation) {
        self.violations.push(v);
    }

    /// Records an acknowledged send.
    pub fn ack(&mut self, ack: Ack) {
        let key = (ack.producer, ack.topic.clone(), ack.queue_id);
        if let Some(previous) = self.last_ack.get(&key).copied()
            && ack.queue_offset <= previous
        {
            self.violate(Violation::AckOffsetNotIncreasing {
                producer: ack.producer,
                topic: ack.topic.clone(),
                queue_id: ack.queue_id,
                previous,
                next: ack.queue_offset,
            });
        }
        self.last_ack.insert(key, ack.queue_offset);
        self.all_acks.push(ack.clone());
        let position = (ack.topic.clone(), ack.queue_id, ack.queue_offset);
        if let Some(first) = self.acked.get(&position) {
            if first.body != ack.body || first.commit_log_offset != ack.commit_log_offset {
                let v = Violation::DoubleAck {
                    position,
                    first: describe(&first.body, first.commit_log_offset),
                    second: describe(&ack.body, ack.commit_log_offset),
                };
                self.violate(v);
            }
            return;
        }
        self.acked.insert(position, ack);
    }

    /// Records one run of reads of a queue from `source` (a consumer, or a replica's scan), in
    /// the order they were returned. `after` is the offset the run was asked to start at.
    pub fn reads(&mut self, source: &str, topic: &str, queue_id: i32, after: i64, run: &[Read]) {
        let mut expected = after;
        for read in run {
            if read.queue_offset != expected {
                self.violate(Violation::NotMonotonic {
                    source: source.to_owned(),
                    topic: topic.to_owned(),
                    queue_id,
                    previous: expected - 1,
                    next: read.queue_offset,
                });
            }
            expected = read.queue_offset + 1;
            self.observe(source, topic, queue_id, read);
        }
    }

    fn observe(&mut self, source: &str, topic: &str, queue_id: i32, read: &Read) {
        self.reads += 1;
        let position = (topic.to_owned(), queue_id, read.queue_offset);
        match self.seen.get(&position) {
            None => {
                self.seen.insert(
                    position,
                    Seen {
                        commit_log_offset: read.commit_log_offset,
                        body: read.body.clone(),
                        source: source.to_owned(),
                    },
                );
            }
            Some(first)
                if first.body == read.body && first.commit_log_offset == read.commit_log_offset => {
            }
            Some(first) => {
                let v = Violation::Divergent {
                    position,
                    first: describe(&first.body, first.commit_log_offset),
                    first_source: first.source.clone(),
                    second: describe(&read.body, read.commit_log_offset),
                    second_source: source.to_owned(),
                };
                self.violate(v);
            }
        }
    }

    /// Judges the final scans, one per replica after healing (each a map of every record it
    /// serves): every acknowledged message must be on every replica, and the scans are checked
    /// against each other and against everything read before (through [`Checker::reads`]).
    pub fn finish(mut self, replicas: &BTreeMap<String, BTreeMap<Position, Read>>) -> Report {
        let mut lost = 0;
        let acked = std::mem::take(&mut self.all_acks);
        for ack in &acked {
            let mut missing = false;
            let position = (ack.topic.clone(), ack.queue_id, ack.queue_offset);
            for (replica, records) in replicas {
                let found = records.get(&position);
                let same = found.is_some_and(|r| {
                    r.body == ack.body && r.commit_log_offset == ack.commit_log_offset
                });
                if !same {
                    missing = true;
                    let v = Violation::Lost {
                        position: position.clone(),
                        replica: replica.clone(),
                        expected: describe(&ack.body, ack.commit_log_offset),
                        found: found.map(|r| describe(&r.body, r.commit_log_offset)),
                    };
                    self.violate(v);
                }
            }
            lost += usize::from(missing);
        }
        for (replica, records) in replicas {
            let source = format!("final scan of {replica}");
            for ((topic, queue_id, _), read) in records {
                self.observe(&source, topic, *queue_id, read);
            }
        }
        // A position one replica serves and another does not is a divergence too.
        let all: std::collections::BTreeSet<&Position> =
            replicas.values().flat_map(|r| r.keys()).collect();
        for position in all {
            let holders: Vec<&String> = replicas
                .iter()
                .filter(|(_, r)| r.contains_key(position))
                .map(|(name, _)| name)
                .collect();
            if holders.len() != replicas.len() {
                let missing: Vec<&String> = replicas
                    .keys()
                    .filter(|name| !holders.contains(name))
                    .collect();
                let v = Violation::Divergent {
                    position: position.clone(),
                    first: "present".to_owned(),
                    first_source: format!("{holders:?}"),
                    second: "absent".to_owned(),
                    second_source: format!("{missing:?}"),
                };
                self.violate(v);
            }
        }
        Report {
            seed: self.seed,
            acknowledged: acked.len(),
            lost,
            reads: self.reads,
            positions: self.seen.len(),
            violations: self.violations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "T";

    fn ack(producer: u32, queue_id: i32, queue_offset: i64, body: &str) -> Ack {
        Ack {
            producer,
            topic: T.to_owned(),
            queue_id,
            queue_offset,
            commit_log_offset: queue_offset * 100 + i64::from(queue_id),
            body: body.as_bytes().to_vec(),
        }
    }

    fn read(queue_offset: i64, queue_id: i32, body: &str) -> Read {
        Read {
            queue_offset,
            commit_log_offset: queue_offset * 100 + i64::from(queue_id),
            body: body.as_bytes().to_vec(),
        }
    }

    fn replica(records: &[(i32, Read)]) -> BTreeMap<Position, Read> {
        records
            .iter()
            .map(|(q, r)| ((T.to_owned(), *q, r.queue_offset), r.clone()))
            .collect()
    }

    fn replicas(sets: &[&[(i32, Read)]]) -> BTreeMap<String, BTreeMap<Position, Read>> {
        sets.iter()
            .enumerate()
            .map(|(i, s)| (format!("n{i}"), replica(s)))
            .collect()
    }

    #[test]
    fn a_clean_run_is_safe() {
        let mut c = Checker::new(7);
        c.ack(ack(0, 0, 0, "a"));
        c.ack(ack(0, 1, 0, "b"));
        c.ack(ack(0, 0, 1, "c"));
        c.reads("consumer", T, 0, 0, &[read(0, 0, "a"), read(1, 0, "c")]);
        // An unacknowledged (timed-out) send that was committed anyway is fine.
        let r: &[(i32, Read)] = &[
            (0, read(0, 0, "a")),
            (0, read(1, 0, "c")),
            (0, read(2, 0, "timed-out")),
            (1, read(0, 1, "b")),
        ];
        let report = c.finish(&replicas(&[r, r, r]));
        assert!(report.is_safe(), "{report}");
        assert_eq!(report.acknowledged, 3);
        assert_eq!(report.positions, 4);
        assert_eq!(report.reads, 2 + 12);
    }

    #[test]
    fn an_acknowledged_message_missing_on_one_replica_is_lost() {
        let mut c = Checker::new(7);
        c.ack(ack(0, 0, 0, "a"));
        c.ack(ack(0, 0, 1, "b"));
        let full: &[(i32, Read)] = &[(0, read(0, 0, "a")), (0, read(1, 0, "b"))];
        let short: &[(i32, Read)] = &[(0, read(0, 0, "a"))];
        let report = c.finish(&replicas(&[full, short, full]));
        assert_eq!(report.lost, 1, "{report}");
        assert!(report.violations.iter().any(|v| matches!(
            v,
            Violation::Lost { replica, found: None, position, .. }
                if replica == "n1" && position.2 == 1
        )));
        assert!(report.to_string().contains("seed 7"));
    }

    #[test]
    fn an_acknowledged_message_replaced_by_another_is_lost_and_divergent() {
        let mut c = Checker::new(1);
        c.ack(ack(0, 0, 0, "acked"));
        let other: &[(i32, Read)] = &[(0, read(0, 0, "other"))];
        let good: &[(i32, Read)] = &[(0, read(0, 0, "acked"))];
        let report = c.finish(&replicas(&[good, other, good]));
        assert_eq!(report.lost, 1);
        assert!(
            report
                .violations
                .iter()
                .any(|v| matches!(v, Violation::Divergent { .. }))
        );
    }

    #[test]
    fn the_same_position_read_differently_over_time_is_divergent() {
        let mut c = Checker::new(3);
        c.reads("consumer", T, 2, 0, &[read(0, 2, "x"), read(1, 2, "y")]);
        // A deposed leader served an uncommitted record at offset 1, later replaced.
        c.reads("scan n1", T, 2, 1, &[read(1, 2, "z")]);
        assert_eq!(c.violations().len(), 1);
        assert!(matches!(
            &c.violations()[0],
            Violation::Divergent { position, first_source, second_source, .. }
                if position.2 == 1 && first_source == "consumer" && second_source == "scan n1"
        ));
        // Same body at another CommitLog offset is a different record too.
        let mut moved = read(0, 2, "x");
        moved.commit_log_offset += 1;
        c.reads("scan n2", T, 2, 0, &[moved]);
        assert_eq!(c.violations().len(), 2);
    }

    #[test]
    fn runs_must_be_contiguous_and_increasing() {
        let mut c = Checker::new(3);
        c.reads("consumer", T, 0, 5, &[read(5, 0, "a"), read(7, 0, "b")]);
        c.reads("consumer", T, 1, 0, &[read(1, 1, "c")]);
        c.reads("consumer", T, 3, 0, &[read(0, 3, "d"), read(0, 3, "d")]);
        let kinds: Vec<(i64, i64)> = c
            .violations()
            .iter()
            .map(|v| match v {
                Violation::NotMonotonic { previous, next, .. } => (*previous, *next),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, vec![(5, 7), (-1, 1), (0, 0)]);
    }

    #[test]
    fn two_acks_at_one_position_and_shrinking_ack_offsets_are_violations() {
        let mut c = Checker::new(9);
        c.ack(ack(0, 0, 4, "a"));
        c.ack(ack(1, 0, 4, "b"));
        assert!(matches!(
            &c.violations()[0],
            Violation::DoubleAck { position, .. } if position.2 == 4
        ));
        c.ack(ack(0, 0, 3, "c"));
        assert!(matches!(
            &c.violations()[1],
            Violation::AckOffsetNotIncreasing {
                previous: 4,
                next: 3,
                producer: 0,
                ..
            }
        ));
        // Another producer's offsets are its own sequence; another queue too.
        c.ack(ack(1, 1, 0, "d"));
        assert_eq!(c.violations().len(), 2);
        // The same acknowledgement reported twice is not a second message.
        c.ack(ack(0, 1, 9, "e"));
        c.ack(ack(2, 1, 9, "e"));
        assert_eq!(c.violations().len(), 2);
        // Whatever the replicas hold at position 4, one of the two acknowledged there is lost.
        let r: &[(i32, Read)] = &[
            (0, read(4, 0, "a")),
            (1, read(0, 1, "d")),
            (1, read(9, 1, "e")),
        ];
        let report = c.finish(&replicas(&[r, r, r]));
        assert_eq!(report.acknowledged, 6);
        assert_eq!(report.lost, 2, "b at offset 4 and c at offset 3: {report}");
    }

    #[test]
    fn a_position_only_some_replicas_serve_is_divergent() {
        let c = Checker::new(5);
        let two: &[(i32, Read)] = &[(0, read(0, 0, "a")), (0, read(1, 0, "b"))];
        let one: &[(i32, Read)] = &[(0, read(0, 0, "a"))];
        let report = c.finish(&replicas(&[two, one, two]));
        assert_eq!(report.lost, 0);
        assert_eq!(report.violations.len(), 1, "{report}");
        assert!(!report.is_safe());
    }
}
