//! A ConsumeQueue: the per topic/queue index of 20-byte units (commit-log offset i64, size i32,
//! tag hash code i64), in files named by their start byte offset like RocketMQ's.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::StoreError;
use crate::mapped_file_queue::MappedFileQueue;

pub const CQ_UNIT_SIZE: usize = 20;

/// One consume-queue unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqUnit {
    pub phy_offset: i64,
    pub size: i32,
    pub tags_code: i64,
}

impl CqUnit {
    pub fn encode(&self) -> [u8; CQ_UNIT_SIZE] {
        let mut b = [0u8; CQ_UNIT_SIZE];
        b[..8].copy_from_slice(&self.phy_offset.to_be_bytes());
        b[8..12].copy_from_slice(&self.size.to_be_bytes());
        b[12..].copy_from_slice(&self.tags_code.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; CQ_UNIT_SIZE] = b.get(..CQ_UNIT_SIZE)?.try_into().ok()?;
        let mut p = [0u8; 8];
        p.copy_from_slice(&b[..8]);
        let mut s = [0u8; 4];
        s.copy_from_slice(&b[8..12]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[12..]);
        Some(Self {
            phy_offset: i64::from_be_bytes(p),
            size: i32::from_be_bytes(s),
            tags_code: i64::from_be_bytes(t),
        })
    }

    /// A unit standing for a record this replica never held (see [`ConsumeQueue::start_at`]).
    pub fn is_filler(&self) -> bool {
        self.phy_offset == 0 && self.size == i32::MAX
    }

    /// A written unit always has a positive size; zeroes mark the end of the queue.
    pub fn is_valid(&self) -> bool {
        self.phy_offset >= 0 && self.size > 0
    }
}

#[derive(Debug)]
pub struct ConsumeQueue {
    topic: String,
    queue_id: i32,
    files: MappedFileQueue,
    min_logic_offset: AtomicI64,
}

impl ConsumeQueue {
    /// Opens the queue and finds its end: the first invalid unit.
    pub fn load(
        root: &Path,
        topic: &str,
        queue_id: i32,
        units_per_file: usize,
    ) -> Result<Self, StoreError> {
        let dir = root.join(topic).join(queue_id.to_string());
        let files = MappedFileQueue::load(&dir, units_per_file * CQ_UNIT_SIZE)?;
        // A file is created only once its predecessor is full, so only the tail is scanned.
        let all = files.files();
        let from = all.len().saturating_sub(2);
        let mut end = all
            .get(from)
            .map_or(files.min_offset(), |f| f.file_from_offset());
        'scan: for f in &all[from..] {
            let mut pos = 0;
            while pos + CQ_UNIT_SIZE <= f.file_size() {
                let unit = f
                    .read_raw(pos, CQ_UNIT_SIZE)
                    .and_then(|b| CqUnit::decode(&b));
                if !unit.is_some_and(|u| u.is_valid()) {
                    end = f.file_from_offset() + pos as i64;
                    break 'scan;
                }
                pos += CQ_UNIT_SIZE;
            }
            end = f.file_from_offset() + f.file_size() as i64;
        }
        // Zeroing the rest of a file costs a full write; it is needed only when something
        // follows the end (a hole left by a crash), not for the usual all-zero tail.
        let dirty_tail = files.find(end).is_some_and(|f| {
            let pos = (end - f.file_from_offset()) as usize;
            let len = (f.file_size() - pos).min(64 * CQ_UNIT_SIZE);
            f.read_raw(pos, len)
                .is_some_and(|b| b.iter().any(|x| *x != 0))
        });
        if dirty_tail {
            files.truncate_to(end)?;
        } else {
            files.truncate_to_fast(end)?;
        }
        let cq = Self {
            topic: topic.to_owned(),
            queue_id,
            min_logic_offset: AtomicI64::new(files.min_offset() / CQ_UNIT_SIZE as i64),
            files,
        };
        Ok(cq)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }
    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    /// The next logical offset to be written.
    pub fn max_offset(&self) -> i64 {
        self.files.max_offset() / CQ_UNIT_SIZE as i64
    }

    pub fn min_offset(&self) -> i64 {
        self.min_logic_offset
            .load(Ordering::Acquire)
            .min(self.max_offset())
    }

    pub fn get(&self, logic: i64) -> Option<CqUnit> {
        if logic < 0 || logic >= self.max_offset() {
            return None;
        }
        let b = self
            .files
            .slice(logic * CQ_UNIT_SIZE as i64, CQ_UNIT_SIZE)?;
        CqUnit::decode(&b)
    }

    /// Writes the unit for `logic`. Re-dispatching an already written offset is a no-op; a gap
    /// is only accepted on an empty queue (a replica starting mid-stream).
    pub fn put(&self, logic: i64, unit: CqUnit) -> Result<(), StoreError> {
        let max = self.max_offset();
        if logic < max {
            return Ok(());
        }
        if logic > max {
            if max == self.files.min_offset() / CQ_UNIT_SIZE as i64 {
                self.start_at(logic)?;
            } else {
                tracing::warn!(
                    topic = %self.topic, queue_id = self.queue_id, expected = max, got = logic,
                    "consume queue offset gap; writing at the expected offset"
                );
            }
        }
        let f = self.files.last_or_create(logic * CQ_UNIT_SIZE as i64)?;
        if !f.append(&unit.encode()) {
            return Err(StoreError::Corrupt(format!(
                "consume queue {}/{} file is not a multiple of the unit size",
                self.topic, self.queue_id
            )));
        }
        Ok(())
    }

    /// Empties the queue so that its next unit is logical offset `logic` (a replica that starts
    /// mid-stream, or one reset to a Raft snapshot). Units before `logic` in its file are filled
    /// so the file scans as written on the next load; they point at offset 0, below any
    /// retained CommitLog of a store that starts mid-stream, so reads skip them.
    pub fn start_at(&self, logic: i64) -> Result<(), StoreError> {
        self.files.reset_to(logic.max(0) * CQ_UNIT_SIZE as i64)?;
        if let Some(f) = self.files.first() {
            let filler = CqUnit {
                phy_offset: 0,
                size: i32::MAX,
                tags_code: 0,
            }
            .encode();
            for slot in 0..f.wrote_position() / CQ_UNIT_SIZE {
                f.write_at(slot * CQ_UNIT_SIZE, &filler);
            }
            f.flush_all()?;
        }
        self.min_logic_offset.store(logic.max(0), Ordering::Release);
        Ok(())
    }

    /// The logical offset of the first unit whose record starts at or after CommitLog offset
    /// `phy`, or the max offset when every unit lies below it: where this queue stands at `phy`.
    pub fn offset_at_phy(&self, phy: i64) -> i64 {
        let (mut lo, mut hi) = (
            self.files.min_offset() / CQ_UNIT_SIZE as i64,
            self.max_offset(),
        );
        // Filler units (offset 0) and units of deleted records sort below any retained `phy`.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(u) if !u.is_filler() && u.phy_offset >= phy => hi = mid,
                _ => lo = mid + 1,
            }
        }
        lo
    }

    /// Drops units pointing at or past `max_phy` (after a commit-log truncation).
    pub fn truncate_dirty(&self, max_phy: i64) -> Result<(), StoreError> {
        let mut logic = self.max_offset();
        let min = self.files.min_offset() / CQ_UNIT_SIZE as i64;
        while logic > min {
            match self.get(logic - 1) {
                Some(u) if !u.is_filler() && u.phy_offset + i64::from(u.size) > max_phy => {
                    logic -= 1
                }
                _ => break,
            }
        }
        if logic < self.max_offset() {
            self.files.truncate_to(logic * CQ_UNIT_SIZE as i64)?;
        }
        Ok(())
    }

    /// The commit-log end of the last unit, if any.
    pub fn last_phy_end(&self) -> Option<i64> {
        let u = self.get(self.max_offset() - 1)?;
        Some(u.phy_offset + i64::from(u.size))
    }

    pub fn flush(&self, least_pages: usize) -> Result<(), StoreError> {
        self.files.flush(least_pages).map(|_| ())
    }

    /// Moves the minimum past units whose messages were deleted from the commit log and deletes
    /// files that hold only such units.
    pub fn correct_min_offset(&self, min_phy: i64) -> Result<(), StoreError> {
        let unit_size = CQ_UNIT_SIZE;
        self.files.delete_leading(usize::MAX, |f| {
            let last = f.file_size() - unit_size;
            f.read_raw(last, unit_size)
                .and_then(|b| CqUnit::decode(&b))
                .is_some_and(|u| u.is_valid() && u.phy_offset < min_phy)
        })?;
        let mut logic = self
            .min_logic_offset
            .load(Ordering::Acquire)
            .max(self.files.min_offset() / CQ_UNIT_SIZE as i64);
        let max = self.max_offset();
        while logic < max {
            match self.get(logic) {
                Some(u) if u.phy_offset < min_phy => logic += 1,
                _ => break,
            }
        }
        self.min_logic_offset.store(logic, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_layout_is_rocketmq_s() {
        let u = CqUnit {
            phy_offset: 0x0102,
            size: 0x0304,
            tags_code: -1,
        };
        let b = u.encode();
        assert_eq!(&b[..8], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&b[8..12], &[0, 0, 3, 4]);
        assert_eq!(&b[12..], &[0xFF; 8]);
        assert_eq!(CqUnit::decode(&b), Some(u));
        assert_eq!(CqUnit::decode(&b[..19]), None);
    }

    #[test]
    fn queue_rolls_reloads_and_truncates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let unit = |i: i64| CqUnit {
            phy_offset: i * 100,
            size: 100,
            tags_code: i,
        };
        {
            let cq = ConsumeQueue::load(dir.path(), "T", 3, 4).expect("load");
            for i in 0..10 {
                cq.put(i, unit(i)).expect("put");
            }
            cq.put(5, unit(99)).expect("re-dispatch is a no-op");
            assert_eq!(cq.get(5), Some(unit(5)));
        }
        let cq = ConsumeQueue::load(dir.path(), "T", 3, 4).expect("reload");
        assert_eq!(cq.max_offset(), 10);
        assert_eq!(cq.get(9), Some(unit(9)));
        cq.truncate_dirty(650).expect("truncate");
        assert_eq!(cq.max_offset(), 6);
        cq.correct_min_offset(450).expect("min");
        assert_eq!(cq.min_offset(), 5);
        assert_eq!(
            cq.get(4),
            Some(unit(4)),
            "files still holding live units stay"
        );
    }
}
