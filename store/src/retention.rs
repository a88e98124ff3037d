//! Which leading CommitLog files a retention pass may delete.
//!
//! A file goes when it is expired (older than `fileReservedTime`, in a deletion hour or under
//! `diskMaxUsedSpaceRatio` pressure) and holds no byte at or above the retention floor — the
//! lowest CommitLog offset the caller still needs (in Raft mode the offset of the Raft log's
//! oldest entry; see `MessageStore::set_retention_floor`). A forced clean
//! (`cleanFileForciblyEnable` with the disk at or above `diskSpaceCleanForciblyRatio`) deletes
//! the oldest file even at or above the floor: a full disk stops every write, so it wins, and
//! the caller has to cope with the missing bytes.

/// What retention knows about one leading CommitLog file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileFacts {
    /// The CommitLog offset just past the file (its start offset + file size).
    pub end: i64,
    /// Older than `fileReservedTime`.
    pub expired: bool,
}

/// Decides file by file, oldest first; `forced_left` is how many files a forced clean may
/// still delete regardless of age and floor.
#[derive(Debug)]
pub(crate) struct Retention {
    pub floor: i64,
    pub forced_left: usize,
    /// Expired files kept because the caller still needs their bytes.
    pub held_for_followers: usize,
}

impl Retention {
    pub(crate) fn new(floor: i64, forced: bool) -> Self {
        Retention {
            floor,
            forced_left: usize::from(forced),
            held_for_followers: 0,
        }
    }

    /// Whether `file`, the oldest remaining one, may be deleted now.
    pub(crate) fn may_delete(&mut self, file: FileFacts) -> bool {
        let needed = file.end > self.floor;
        if file.expired && !needed {
            return true;
        }
        if self.forced_left > 0 {
            self.forced_left -= 1;
            return true;
        }
        if file.expired {
            self.held_for_followers += 1;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: i64 = 1 << 20;

    fn file(end: i64, expired: bool) -> FileFacts {
        FileFacts { end, expired }
    }

    #[test]
    fn without_a_floor_expired_files_go() {
        let mut r = Retention::new(i64::MAX, false);
        assert!(r.may_delete(file(MB, true)));
        assert!(r.may_delete(file(2 * MB, true)));
        assert!(!r.may_delete(file(3 * MB, false)));
        assert_eq!(r.held_for_followers, 0);
    }

    #[test]
    fn files_holding_bytes_a_follower_needs_stay() {
        // A follower needs bytes from 1.5 MB on: the first file (0..1 MB) may go, the second
        // (1..2 MB) holds needed bytes and stays although expired.
        let mut r = Retention::new(MB + MB / 2, false);
        assert!(r.may_delete(file(MB, true)));
        assert!(!r.may_delete(file(2 * MB, true)));
        assert_eq!(r.held_for_followers, 1);
        // A floor exactly at a file end frees that file.
        let mut r = Retention::new(2 * MB, false);
        assert!(r.may_delete(file(MB, true)));
        assert!(r.may_delete(file(2 * MB, true)));
        assert!(!r.may_delete(file(3 * MB, true)));
    }

    #[test]
    fn a_full_disk_wins_over_a_lagging_follower() {
        let mut r = Retention::new(0, true);
        assert!(r.may_delete(file(MB, true)), "forced: one file goes");
        assert!(!r.may_delete(file(2 * MB, true)), "only one per pass");
        assert_eq!(r.held_for_followers, 1);
        // A forced clean of a file that is not expired and not needed by a follower.
        let mut r = Retention::new(i64::MAX, true);
        assert!(r.may_delete(file(MB, false)));
        assert!(!r.may_delete(file(2 * MB, false)));
    }
}
