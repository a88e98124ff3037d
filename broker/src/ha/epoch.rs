//! The epoch table: which master wrote which part of the CommitLog.
//!
//! Every promotion opens a new epoch at the promoted broker's max offset; a master that starts
//! fresh opens epoch 1 at its own max offset. Bytes below the first entry belong to an implicit
//! epoch 0. Two histories agree up to the end of the newest epoch they share (same number, same
//! start offset); past that point the replica's tail diverges and is truncated, which is how an
//! old master returning after a promotion loses exactly what it acknowledged but never
//! replicated — and nothing else. Persisted in `storePathRootDir/config/haEpoch.json` by the
//! crash-safe writer, so a restarted broker knows which history it holds.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::persist::{PersistError, read_json, write_json};

/// One epoch and the CommitLog offset it began at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochEntry {
    pub epoch: u32,
    pub start_offset: i64,
}

/// Epochs in increasing order with non-decreasing start offsets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochTable {
    pub entries: Vec<EpochEntry>,
}

/// Why an epoch could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    #[error("epoch {new} does not follow the current epoch {current}")]
    NotNewer { current: u32, new: u32 },
    #[error("epoch start offset {new} is before the current epoch's start {current}")]
    StartsBefore { current: i64, new: i64 },
}

impl EpochTable {
    pub fn last(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The newest epoch, 0 when none was opened.
    pub fn current_epoch(&self) -> u32 {
        self.last().map_or(0, |e| e.epoch)
    }

    pub fn current_start(&self) -> i64 {
        self.last().map_or(0, |e| e.start_offset)
    }

    /// Whether the entries are ordered as a table must be (a file edited by hand may not be).
    pub fn is_well_formed(&self) -> bool {
        self.entries
            .windows(2)
            .all(|w| w[0].epoch < w[1].epoch && w[0].start_offset <= w[1].start_offset)
    }

    /// Appends `epoch` starting at `start_offset`.
    pub fn open(&mut self, epoch: u32, start_offset: i64) -> Result<(), EpochError> {
        if let Some(last) = self.last() {
            if epoch <= last.epoch {
                return Err(EpochError::NotNewer {
                    current: last.epoch,
                    new: epoch,
                });
            }
            if start_offset < last.start_offset {
                return Err(EpochError::StartsBefore {
                    current: last.start_offset,
                    new: start_offset,
                });
            }
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        Ok(())
    }

    /// Where `epoch` ends in a log whose max offset is `max_offset`; `None` when this table
    /// never had it. Epoch 0 is every byte below the first entry.
    fn end_of(&self, epoch: u32, max_offset: i64) -> Option<i64> {
        if epoch == 0 {
            return Some(self.entries.first().map_or(max_offset, |e| e.start_offset));
        }
        let i = self.entries.iter().position(|e| e.epoch == epoch)?;
        Some(
            self.entries
                .get(i + 1)
                .map_or(max_offset, |next| next.start_offset)
                .min(max_offset),
        )
    }

    /// The newest epoch both tables hold with the same start offset (0 if none).
    fn newest_common(&self, other: &EpochTable) -> u32 {
        self.entries
            .iter()
            .rev()
            .find(|e| other.entries.contains(e))
            .map_or(0, |e| e.epoch)
    }

    /// The offset up to which a replica holding `self` (max `local_max`) agrees with a master
    /// holding `master` (max `master_max`). The replica truncates to it when it is below
    /// `local_max`.
    pub fn divergence_point(&self, local_max: i64, master: &EpochTable, master_max: i64) -> i64 {
        let common = self.newest_common(master);
        let local_end = self.end_of(common, local_max).unwrap_or(0);
        let master_end = master.end_of(common, master_max).unwrap_or(0);
        local_end.min(master_end).min(local_max).max(0)
    }

    /// Drops entries starting after `offset` (the replica's history after a truncation).
    pub fn truncate_after(&mut self, offset: i64) {
        self.entries.retain(|e| e.start_offset <= offset);
    }
}

/// The persisted table's file.
pub fn epoch_file(config_dir: &Path) -> PathBuf {
    config_dir.join("haEpoch.json")
}

pub fn load(path: &Path) -> Result<EpochTable, PersistError> {
    let table: EpochTable = read_json(path)?.unwrap_or_default();
    if !table.is_well_formed() {
        return Err(PersistError::Corrupt {
            path: path.to_owned(),
            reason: "epochs must increase and their start offsets must not decrease".into(),
        });
    }
    Ok(table)
}

pub fn store(path: &Path, table: &EpochTable) -> Result<(), PersistError> {
    write_json(path, table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(entries: &[(u32, i64)]) -> EpochTable {
        EpochTable {
            entries: entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        }
    }

    #[test]
    fn old_master_truncates_to_the_promotion_point() {
        // Old master wrote epoch 1 up to 1000; the slave had 600 when it was promoted.
        let old = table(&[(1, 0)]);
        let new = table(&[(1, 0), (2, 600)]);
        assert_eq!(old.divergence_point(1000, &new, 900), 600);
        // Nothing unreplicated: nothing to cut.
        assert_eq!(old.divergence_point(600, &new, 900), 600);
        // A lagging slave of the same epoch keeps everything it has.
        assert_eq!(old.divergence_point(300, &table(&[(1, 0)]), 900), 300);
    }

    #[test]
    fn fresh_replicas_and_unknown_histories() {
        let master = table(&[(1, 0)]);
        assert_eq!(EpochTable::default().divergence_point(0, &master, 500), 0);
        // Bytes with no epoch past the master's first epoch start are not its history.
        assert_eq!(
            EpochTable::default().divergence_point(800, &table(&[(1, 200)]), 900),
            200
        );
        // A replica whose epochs the master never had keeps only the common epoch-0 prefix.
        assert_eq!(
            table(&[(3, 100)]).divergence_point(900, &table(&[(1, 50), (2, 70)]), 1000),
            50
        );
    }

    #[test]
    fn open_refuses_older_epochs() {
        let mut t = table(&[(1, 0)]);
        assert!(t.open(1, 10).is_err());
        assert!(t.open(2, 10).is_ok());
        assert!(t.open(3, 5).is_err());
        assert_eq!(t.current_epoch(), 2);
        assert!(t.is_well_formed());
        t.truncate_after(9);
        assert_eq!(t.current_epoch(), 1);
    }

    #[test]
    fn persisted_table_round_trips_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = epoch_file(dir.path());
        assert_eq!(
            load(&path).expect("missing is empty"),
            EpochTable::default()
        );
        let t = table(&[(1, 0), (2, 4096)]);
        store(&path, &t).expect("writes");
        assert_eq!(load(&path).expect("reads"), t);
        std::fs::write(
            &path,
            br#"{"entries":[{"epoch":2,"startOffset":0},{"epoch":1,"startOffset":0}]}"#,
        )
        .expect("writes");
        assert!(load(&path).is_err());
    }

    proptest! {
        /// Whatever the histories, the divergence point never exceeds either log and a replica
        /// that is a prefix of the master's history is never truncated.
        #[test]
        fn divergence_is_bounded(
            starts in proptest::collection::vec(0i64..1000, 1..5),
            local_max in 0i64..2000,
            master_extra in 0i64..1000,
        ) {
            let mut sorted = starts.clone();
            sorted.sort_unstable();
            let master = EpochTable {
                entries: sorted.iter().enumerate().map(|(i, &s)| EpochEntry {
                    epoch: i as u32 + 1,
                    start_offset: s,
                }).collect(),
            };
            let master_max = sorted[sorted.len() - 1] + master_extra;
            let point = master.divergence_point(local_max, &master, master_max);
            prop_assert!(point <= local_max && point <= master_max);
            if local_max <= master_max {
                prop_assert_eq!(point, local_max);
            }
        }
    }
}
