//! The key index: RocketMQ's IndexFile, an on-disk hash table from `topic#key` to CommitLog
//! offsets for `KEYS` and `UNIQ_KEY`.
//!
//! Files live in `index/` and are named by their creation time (`yyyyMMddHHmmssSSS`, UTC here
//! where RocketMQ uses local time). Each is memory-mapped and laid out as RocketMQ's:
//! - a 40-byte header: beginTimestamp, endTimestamp, beginPhyOffset, endPhyOffset (i64 each),
//!   hashSlotCount (incremented by every put, as RocketMQ does), indexCount (i32 each), all
//!   big-endian;
//! - `maxHashSlotNum` slots of 4 bytes, each the number of the newest entry whose key hash falls
//!   in it (0 = empty);
//! - `maxIndexNum` entries of 20 bytes: keyHash i32, phyOffset i64, timeDiff i32 (seconds since
//!   beginTimestamp), prevIndex i32 (the previous entry of the same slot). Entry 0 is unused, so
//!   indexCount starts at 1; a file is full when indexCount reaches maxIndexNum.
//!
//! Memory held per file is constant (the mapping is page cache, not heap); nothing is kept per
//! key. With the defaults a file is 420 MB on disk; it is allocated in 1 MiB steps ahead of the
//! entries actually written (header and slots at creation), so a full disk yields an error
//! instead of SIGBUS and small stores stay small.
//!
//! The index is only a hint: entries may point at records that no longer carry the key (hash
//! collisions, files of a truncated tail, deleted CommitLog files). The store checks the record at
//! every offset it returns before serving it.
//!
//! Invariant kept by [`KeyIndex`]: entries across all files are in increasing phyOffset order,
//! and one record's keys are indexed together. Truncation rolls the tail back, recovery cuts the
//! last file back to its checkpointed, fsynced prefix and the store re-dispatches records from
//! there.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::MmapMut;

use crate::StoreError;

pub const HEADER_SIZE: usize = 40;
const SLOT_SIZE: usize = 4;
const ENTRY_SIZE: usize = 20;
const INVALID_INDEX: i32 = 0;
/// Entries are allocated on disk this far ahead of the write position.
const ALLOC_STEP: usize = 1 << 20;

/// Java's `String.hashCode` (over UTF-16 code units), which RocketMQ uses for index keys.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// RocketMQ's `indexKeyHashMethod`: the absolute hash, with `i32::MIN` mapped to 0.
pub fn key_hash(key: &str) -> i32 {
    let h = java_string_hash(key).wrapping_abs();
    if h < 0 { 0 } else { h }
}

pub fn slot_of(hash: i32, slot_num: usize) -> usize {
    // `hash` is never negative (see `key_hash`); a damaged entry's hash is taken modulo as well.
    (hash.unsigned_abs() as usize) % slot_num
}

/// `yyyyMMddHHmmssSSS` of a UTC instant in milliseconds, as a number (file names sort by it).
pub fn time_name(ms: i64) -> i64 {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    ((((year * 100 + month) * 100 + day) * 100 + h) * 100 + m) * 100_000 + s * 1000 + milli
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One decoded index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub key_hash: i32,
    pub phy_offset: i64,
    pub time_diff: i32,
    pub prev_index: i32,
}

/// Sizes of index files.
#[derive(Debug, Clone, Copy)]
pub struct IndexLimits {
    pub slot_num: usize,
    pub max_index_num: usize,
}

impl IndexLimits {
    pub fn file_size(&self) -> usize {
        HEADER_SIZE + self.slot_num * SLOT_SIZE + self.max_index_num * ENTRY_SIZE
    }
    fn entries_start(&self) -> usize {
        HEADER_SIZE + self.slot_num * SLOT_SIZE
    }
}

/// One memory-mapped IndexFile.
#[derive(Debug)]
pub struct IndexFile {
    path: PathBuf,
    name: i64,
    file: File,
    map: MmapMut,
    limits: IndexLimits,
    /// Bytes from the start of the file known to be allocated on disk.
    allocated: usize,
    dirty: bool,
}

fn get_i32(b: &[u8], pos: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[pos..pos + 4]);
    i32::from_be_bytes(a)
}

fn get_i64(b: &[u8], pos: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[pos..pos + 8]);
    i64::from_be_bytes(a)
}

impl IndexFile {
    /// Creates `dir/{name}` with the full size, allocating header and slots.
    pub fn create(dir: &Path, name: i64, limits: IndexLimits) -> Result<Self, StoreError> {
        let path = dir.join(format!("{name:017}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        let made = (|| {
            file.set_len(limits.file_size() as u64)
                .map_err(|e| StoreError::io(&path, e))?;
            fallocate(&file, &path, 0, limits.entries_start())?;
            let mut f = Self::map(path.clone(), name, file, limits)?;
            f.allocate(limits.entries_start() + ENTRY_SIZE)?;
            f.set_index_count(1);
            f.dirty = true;
            Ok(f)
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        made
    }

    /// Opens an existing file; it must have the size `limits` give.
    pub fn open(path: &Path, name: i64, limits: IndexLimits) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io(path, e))?;
        let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        if len != limits.file_size() as u64 {
            return Err(StoreError::Corrupt(format!(
                "index file {} has {len} bytes, {} expected for maxHashSlotNum {} and \
                 maxIndexNum {}",
                path.display(),
                limits.file_size(),
                limits.slot_num,
                limits.max_index_num
            )));
        }
        let mut f = Self::map(path.to_path_buf(), name, file, limits)?;
        let count = f.index_count();
        if count <= 0 || count as usize > limits.max_index_num {
            // A torn header: recovery rebuilds it from the entries it keeps.
            f.set_index_count(1);
        }
        Ok(f)
    }

    fn map(path: PathBuf, name: i64, file: File, limits: IndexLimits) -> Result<Self, StoreError> {
        // SAFETY: the file belongs to this store (one process per store directory, guarded by
        // the store's own locking above this module), it is never truncated or resized while
        // mapped, and the mapping is only reached through `&self`/`&mut self` of this struct, so
        // Rust's borrow rules serialize every access to it.
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| StoreError::io(&path, e))?;
        Ok(Self {
            path,
            name,
            file,
            map,
            allocated: limits.entries_start(),
            limits,
            dirty: false,
        })
    }

    /// Reserves disk blocks for `[allocated, end)` (rounded up to a step) so writes through the
    /// mapping cannot hit a hole on a full disk.
    fn allocate(&mut self, end: usize) -> Result<(), StoreError> {
        if end <= self.allocated {
            return Ok(());
        }
        let target = end
            .div_ceil(ALLOC_STEP)
            .saturating_mul(ALLOC_STEP)
            .min(self.limits.file_size());
        fallocate(
            &self.file,
            &self.path,
            self.allocated,
            target - self.allocated,
        )?;
        self.allocated = target;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn name(&self) -> i64 {
        self.name
    }
    pub fn begin_timestamp(&self) -> i64 {
        get_i64(&self.map, 0)
    }
    pub fn end_timestamp(&self) -> i64 {
        get_i64(&self.map, 8)
    }
    pub fn begin_phy_offset(&self) -> i64 {
        get_i64(&self.map, 16)
    }
    pub fn end_phy_offset(&self) -> i64 {
        get_i64(&self.map, 24)
    }
    pub fn hash_slot_count(&self) -> i32 {
        get_i32(&self.map, 32)
    }
    pub fn index_count(&self) -> i32 {
        get_i32(&self.map, 36)
    }
    /// Entries written (indexCount − 1).
    pub fn entries(&self) -> usize {
        self.index_count().max(1) as usize - 1
    }
    pub fn is_full(&self) -> bool {
        self.index_count() as usize >= self.limits.max_index_num
    }

    fn put_i32(&mut self, pos: usize, v: i32) {
        self.map[pos..pos + 4].copy_from_slice(&v.to_be_bytes());
    }
    fn put_i64(&mut self, pos: usize, v: i64) {
        self.map[pos..pos + 8].copy_from_slice(&v.to_be_bytes());
    }
    fn set_index_count(&mut self, v: i32) {
        self.put_i32(36, v);
    }

    fn slot_pos(&self, slot: usize) -> usize {
        HEADER_SIZE + slot * SLOT_SIZE
    }
    fn entry_pos(&self, i: usize) -> usize {
        self.limits.entries_start() + i * ENTRY_SIZE
    }
    fn slot(&self, slot: usize) -> i32 {
        get_i32(&self.map, self.slot_pos(slot))
    }
    fn set_slot(&mut self, slot: usize, v: i32) {
        let p = self.slot_pos(slot);
        self.put_i32(p, v);
    }

    pub fn entry(&self, i: usize) -> Entry {
        let p = self.entry_pos(i);
        Entry {
            key_hash: get_i32(&self.map, p),
            phy_offset: get_i64(&self.map, p + 4),
            time_diff: get_i32(&self.map, p + 12),
            prev_index: get_i32(&self.map, p + 16),
        }
    }

    fn write_entry(&mut self, i: usize, e: Entry) {
        let p = self.entry_pos(i);
        self.put_i32(p, e.key_hash);
        self.put_i64(p + 4, e.phy_offset);
        self.put_i32(p + 12, e.time_diff);
        self.put_i32(p + 16, e.prev_index);
    }

    /// A slot value that names an existing entry, or `INVALID_INDEX`.
    fn valid(&self, v: i32) -> i32 {
        if v <= INVALID_INDEX || v >= self.index_count() {
            INVALID_INDEX
        } else {
            v
        }
    }

    /// Adds an entry; `Ok(false)` if the file is full.
    pub fn put(&mut self, hash: i32, phy_offset: i64, store_ts: i64) -> Result<bool, StoreError> {
        if self.is_full() {
            return Ok(false);
        }
        let count = self.index_count();
        self.allocate(self.entry_pos(count as usize + 1))?;
        let slot = slot_of(hash, self.limits.slot_num);
        let prev = self.valid(self.slot(slot));
        if count <= 1 {
            self.put_i64(0, store_ts);
            self.put_i64(16, phy_offset);
        }
        let begin = self.begin_timestamp();
        let diff = if begin <= 0 {
            0
        } else {
            ((store_ts - begin) / 1000).clamp(0, i64::from(i32::MAX)) as i32
        };
        self.write_entry(
            count as usize,
            Entry {
                key_hash: hash,
                phy_offset,
                time_diff: diff,
                prev_index: prev,
            },
        );
        self.set_slot(slot, count);
        // RocketMQ counts every put here, not distinct slots.
        let n = self.hash_slot_count();
        self.put_i32(32, n.saturating_add(1));
        self.set_index_count(count + 1);
        self.put_i64(24, phy_offset);
        self.put_i64(8, store_ts.max(self.end_timestamp()));
        self.dirty = true;
        Ok(true)
    }

    /// Whether `[begin, end]` overlaps the file's time range.
    pub fn time_overlaps(&self, begin: i64, end: i64) -> bool {
        self.entries() > 0 && begin <= self.end_timestamp() && end >= self.begin_timestamp() - 1000
    }

    /// Walks the chain of `hash` newest first, calling `visit` with the offset of each entry
    /// with that hash stored within `[begin, end]` (to the second) until it returns false.
    /// Returns false if `visit` stopped the walk.
    pub fn walk(
        &self,
        hash: i32,
        begin: i64,
        end: i64,
        visit: &mut dyn FnMut(i64) -> bool,
    ) -> bool {
        let count = self.index_count();
        let base = self.begin_timestamp();
        let mut next = self.valid(self.slot(slot_of(hash, self.limits.slot_num)));
        // Each step moves to a strictly older entry, so the walk ends within `count` steps even
        // over damaged links.
        while next != INVALID_INDEX {
            let e = self.entry(next as usize);
            // timeDiff drops the milliseconds: an entry may be up to a second younger than it
            // reads; the store checks the real timestamp.
            let t = base + i64::from(e.time_diff) * 1000;
            if e.key_hash == hash && t >= begin - 1000 && t <= end && !visit(e.phy_offset) {
                return false;
            }
            if t < begin - 1000 || e.prev_index <= INVALID_INDEX || e.prev_index >= next {
                break;
            }
            next = e.prev_index.min(count - 1);
        }
        true
    }

    /// Rolls back to `count` (entries `[count, indexCount)` removed): each slot is pointed back
    /// at its previous entry.
    pub fn rollback_to(&mut self, count: usize) {
        let count = count.max(1);
        let old = self.index_count().max(1) as usize;
        for i in (count..old).rev() {
            let e = self.entry(i);
            let slot = slot_of(e.key_hash, self.limits.slot_num);
            if self.slot(slot) as usize == i {
                // A previous entry that is rolled back too is reached later in this loop (the
                // walk goes downwards) and hands the slot on to its own predecessor.
                let prev = if e.prev_index > INVALID_INDEX && (e.prev_index as usize) < i {
                    e.prev_index
                } else {
                    INVALID_INDEX
                };
                self.set_slot(slot, prev);
            }
            self.write_entry(
                i,
                Entry {
                    key_hash: 0,
                    phy_offset: 0,
                    time_diff: 0,
                    prev_index: 0,
                },
            );
        }
        self.set_index_count(count as i32);
        self.finish_header(count);
        self.dirty = true;
    }

    /// Header end fields (and begin fields of an empty file) after the entry count changed.
    fn finish_header(&mut self, count: usize) {
        self.put_i32(32, count.saturating_sub(1) as i32);
        if count <= 1 {
            for pos in [0, 8, 16, 24] {
                self.put_i64(pos, 0);
            }
        } else {
            let last = self.entry(count - 1);
            let ts = self.begin_timestamp() + i64::from(last.time_diff) * 1000;
            self.put_i64(24, last.phy_offset);
            self.put_i64(8, ts.max(self.end_timestamp().min(ts + 999)));
        }
    }

    /// After a crash: keeps entries `[1, count)` (fsynced before the checkpoint, never
    /// rewritten since) and rebuilds slots, chains and header from them, since slot and header
    /// pages written after the checkpoint may or may not have reached the disk.
    pub fn rebuild(&mut self, count: usize) {
        let count = count.clamp(1, self.limits.max_index_num);
        let old = (self.index_count().max(1) as usize).max(count);
        let slots_end = self.limits.entries_start();
        self.map[HEADER_SIZE..slots_end].fill(0);
        let end_zero = self.entry_pos(old).min(self.map.len());
        let start_zero = self.entry_pos(count);
        if start_zero < end_zero {
            self.map[start_zero..end_zero].fill(0);
        }
        self.set_index_count(count as i32);
        for i in 1..count {
            let mut e = self.entry(i);
            let slot = slot_of(e.key_hash, self.limits.slot_num);
            e.prev_index = self.slot(slot);
            self.write_entry(i, e);
            self.set_slot(slot, i as i32);
        }
        if count > 1 {
            let first = self.entry(1).phy_offset;
            self.put_i64(16, first);
        }
        self.put_i64(8, 0);
        self.finish_header(count);
        self.dirty = true;
    }

    /// Number of leading entries `[1, n)` with increasing offsets below `limit`.
    pub fn valid_prefix(&self, max_count: usize, limit: i64) -> usize {
        let max_count = max_count.min(self.limits.max_index_num);
        let mut last = -1i64;
        let mut i = 1;
        while i < max_count {
            let e = self.entry(i);
            if e.phy_offset < last || e.phy_offset >= limit || e.phy_offset < 0 {
                break;
            }
            last = e.phy_offset;
            i += 1;
        }
        i
    }

    /// The first entry number whose offset is at or past `offset` (entries are ordered).
    pub fn first_at_or_after(&self, offset: i64) -> usize {
        let (mut lo, mut hi) = (1usize, self.index_count().max(1) as usize);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.entry(mid).phy_offset < offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// A handle that fsyncs what has been written so far without borrowing this file, so the
    /// caller can sync after releasing the index lock; `None` if nothing is unflushed.
    fn take_dirty(&mut self) -> Result<Option<PendingSync>, StoreError> {
        if !self.dirty {
            return Ok(None);
        }
        let file = self
            .file
            .try_clone()
            .map_err(|e| StoreError::io(&self.path, e))?;
        self.dirty = false;
        Ok(Some(PendingSync {
            path: self.path.clone(),
            file,
        }))
    }

    pub fn flush(&mut self) -> Result<(), StoreError> {
        if self.dirty {
            self.map
                .flush()
                .map_err(|e| StoreError::io(&self.path, e))?;
            self.dirty = false;
        }
        Ok(())
    }
}

/// Where the index stood at the last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexCheckpoint {
    /// Not recorded (older checkpoint format or index disabled): rebuild from the CommitLog.
    Unknown,
    /// No index file existed.
    NoFiles,
    /// The newest file and its fsynced `indexCount`; older files were fsynced whole.
    File { name: i64, count: i32 },
}

impl IndexCheckpoint {
    pub fn encode(self) -> (i64, i32) {
        match self {
            Self::Unknown => (-2, 0),
            Self::NoFiles => (-1, 0),
            Self::File { name, count } => (name, count),
        }
    }
    pub fn decode(name: i64, count: i32) -> Self {
        match name {
            -1 => Self::NoFiles,
            n if n >= 0 && count >= 1 => Self::File { name: n, count },
            _ => Self::Unknown,
        }
    }
}

/// All index files of a store, oldest first. Holds nothing per key.
#[derive(Debug)]
pub struct KeyIndex {
    dir: PathBuf,
    limits: IndexLimits,
    files: Vec<IndexFile>,
    /// CommitLog offset of the newest indexed record; records at or below it are not indexed
    /// again (recovery re-dispatches records the index may already hold).
    last_indexed: i64,
    /// Whether every record below the checkpoint's dispatch point is still indexed (false after
    /// files were discarded at load: the store then re-indexes from the CommitLog start).
    complete: bool,
    /// A record whose entries recovery removed although the checkpoint covered it.
    dropped_record: Option<i64>,
}

impl KeyIndex {
    /// Loads `dir`, cutting it back to what `checkpoint` says was fsynced (after a crash or if
    /// the files disagree with it) and to offsets below `max_phy`. With `index_safe`, a crash
    /// also discards the newest file if it is not full (RocketMQ's `messageIndexSafe`).
    pub fn load(
        dir: &Path,
        limits: IndexLimits,
        checkpoint: IndexCheckpoint,
        crashed: bool,
        index_safe: bool,
        max_phy: i64,
    ) -> Result<Self, StoreError> {
        if limits.slot_num == 0 || limits.max_index_num < 2 {
            return Err(StoreError::Config(
                "maxHashSlotNum must be positive and maxIndexNum at least 2".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        // The earlier in-memory index kept its log here.
        for legacy in ["keys", "keys.tmp"] {
            let _ = std::fs::remove_file(dir.join(legacy));
        }
        let mut names = Vec::new();
        for e in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
            let e = e.map_err(|e| StoreError::io(dir, e))?;
            let n = e.file_name();
            match n.to_str().and_then(|s| s.parse::<i64>().ok()) {
                Some(name) if n.len() == 17 => names.push((name, e.path())),
                _ => tracing::warn!(path = %e.path().display(), "ignoring a stray file in index/"),
            }
        }
        names.sort();
        let mut idx = Self {
            dir: dir.to_path_buf(),
            limits,
            files: Vec::new(),
            last_indexed: -1,
            complete: true,
            dropped_record: None,
        };
        let mut rebuild_all = matches!(checkpoint, IndexCheckpoint::Unknown);
        for (name, path) in &names {
            let newer = match checkpoint {
                IndexCheckpoint::File { name: c, .. } => *name > c,
                _ => true,
            };
            if rebuild_all || newer {
                // Created after the checkpoint: its records are dispatched again.
                remove(path)?;
                continue;
            }
            match IndexFile::open(path, *name, limits) {
                Ok(f) => idx.files.push(f),
                Err(e) => {
                    tracing::warn!(error = %e, "index file unusable; rebuilding the index");
                    rebuild_all = true;
                    remove(path)?;
                }
            }
        }
        if rebuild_all {
            idx.delete_all()?;
            idx.complete = false;
            return Ok(idx);
        }
        if let IndexCheckpoint::File { name, count } = checkpoint {
            match idx.files.last_mut() {
                Some(last) if last.name() == name => {
                    let header_count = last.index_count();
                    if crashed || header_count != count || last.end_phy_offset() >= max_phy {
                        let mut keep = last.valid_prefix(count as usize, max_phy);
                        if crashed && index_safe && !last.is_full() {
                            keep = 1;
                            idx.complete = false;
                        }
                        // One record's keys must be all in or all out: drop the last record's
                        // entries, it is indexed again.
                        if keep > 1 && (crashed || keep != count as usize) {
                            let tail = last.entry(keep - 1).phy_offset;
                            while keep > 1 && last.entry(keep - 1).phy_offset == tail {
                                keep -= 1;
                            }
                            idx.dropped_record = Some(tail);
                        }
                        tracing::info!(
                            file = %last.path().display(),
                            kept = keep - 1,
                            found = header_count.max(1) - 1,
                            "index file cut back to its checkpointed prefix"
                        );
                        last.rebuild(keep);
                        last.flush()?;
                    }
                }
                _ => {
                    tracing::warn!("the checkpointed index file is missing; rebuilding the index");
                    idx.delete_all()?;
                    idx.complete = false;
                    return Ok(idx);
                }
            }
        }
        // Older files were complete when the newer one was created; drop any reaching past the
        // CommitLog end (a truncated tail) by rolling them back too.
        idx.truncate(max_phy)?;
        Ok(idx)
    }

    fn delete_all(&mut self) -> Result<(), StoreError> {
        for f in self.files.drain(..) {
            remove(f.path())?;
        }
        self.last_indexed = -1;
        Ok(())
    }

    /// Drops every index file, so the store re-indexes from the CommitLog start.
    pub fn reset(&mut self) -> Result<(), StoreError> {
        self.complete = false;
        self.delete_all()
    }

    /// Where the store must start indexing CommitLog records again after load: `None` for
    /// the CommitLog start; otherwise the offset of the record to re-dispatch from (records at
    /// or before the newest entry are skipped). A point below the CommitLog's minimum means
    /// records below the checkpoint's dispatch point need nothing.
    pub fn resume_point(&self) -> Option<i64> {
        if !self.complete {
            return None;
        }
        Some(match self.dropped_record {
            Some(p) if p > self.last_indexed => p,
            _ => self.last_indexed,
        })
    }

    fn refresh_last(&mut self) {
        self.last_indexed = self
            .files
            .iter()
            .rev()
            .find(|f| f.entries() > 0)
            .map_or(-1, IndexFile::end_phy_offset);
    }

    /// Offset of the newest indexed record, −1 if none.
    pub fn last_indexed(&self) -> i64 {
        self.last_indexed
    }

    /// Heap bytes this index holds: a fixed amount per file, nothing per key or message.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.dir.as_os_str().len()
            + self.files.capacity() * std::mem::size_of::<IndexFile>()
            + self
                .files
                .iter()
                .map(|f| f.path().as_os_str().len())
                .sum::<usize>()
    }

    fn writable(&mut self) -> Result<&mut IndexFile, StoreError> {
        let need_new = self.files.last().is_none_or(IndexFile::is_full);
        if need_new {
            // A full file is fsynced by the next checkpoint, which flushes every dirty file.
            let mut name = time_name(now_ms());
            if let Some(last) = self.files.last() {
                name = name.max(last.name() + 1);
            }
            let f = IndexFile::create(&self.dir, name, self.limits)?;
            tracing::debug!(file = %f.path().display(), "created index file");
            self.files.push(f);
        }
        self.files
            .last_mut()
            .ok_or_else(|| StoreError::Corrupt("no index file after creating one".into()))
    }

    /// Indexes one record's keys (already `topic#key`). Records at or before the newest indexed
    /// one are skipped.
    pub fn put_record<'a>(
        &mut self,
        phy_offset: i64,
        store_ts: i64,
        keys: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        if phy_offset <= self.last_indexed {
            return Ok(());
        }
        let mut any = false;
        for key in keys {
            let hash = key_hash(key);
            if !self.writable()?.put(hash, phy_offset, store_ts)? {
                // `writable` never returns a full file.
                return Err(StoreError::Corrupt("index file full after roll".into()));
            }
            any = true;
        }
        if any {
            self.last_indexed = phy_offset;
        }
        Ok(())
    }

    /// Visits offsets of entries for `key` stored within `[begin, end]`, newest file first,
    /// until `visit` returns false.
    pub fn query(&self, key: &str, begin: i64, end: i64, visit: &mut dyn FnMut(i64) -> bool) {
        let hash = key_hash(key);
        for f in self.files.iter().rev() {
            if f.time_overlaps(begin, end) && !f.walk(hash, begin, end, visit) {
                return;
            }
            if f.entries() > 0 && f.begin_timestamp() < begin {
                return;
            }
        }
    }

    /// Removes entries at or past `offset` (the CommitLog was truncated there).
    pub fn truncate(&mut self, offset: i64) -> Result<(), StoreError> {
        while let Some(f) = self.files.last_mut() {
            if f.entries() == 0 || f.begin_phy_offset() >= offset {
                let f = self.files.pop().ok_or_else(|| {
                    StoreError::Corrupt("index file vanished while truncating".into())
                })?;
                remove(f.path())?;
                continue;
            }
            if f.end_phy_offset() >= offset {
                let k = f.first_at_or_after(offset);
                f.rollback_to(k);
                f.flush()?;
            }
            break;
        }
        self.refresh_last();
        Ok(())
    }

    /// Deletes files (never the newest) whose every entry is below `min_phy`.
    pub fn delete_expired(&mut self, min_phy: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        while self.files.len() > 1 && self.files[0].end_phy_offset() < min_phy {
            let f = self.files.remove(0);
            remove(f.path())?;
            n += 1;
        }
        Ok(n)
    }

    /// Starts a flush without doing I/O: says how far the index will be durable once every
    /// returned [`PendingSync`] has synced. The store syncs them after dropping the index lock,
    /// because the append path takes that lock while holding the CommitLog write lock, and an
    /// fsync (a journal commit) under it stalled every producer for tens of milliseconds.
    /// On failure the caller must [`Self::mark_dirty`] so the next flush retries.
    pub fn begin_flush(&mut self) -> Result<(IndexCheckpoint, Vec<PendingSync>), StoreError> {
        let mut pending = Vec::new();
        for f in &mut self.files {
            if let Some(p) = f.take_dirty()? {
                pending.push(p);
            }
        }
        let checkpoint = match self.files.last() {
            None => IndexCheckpoint::NoFiles,
            Some(f) => IndexCheckpoint::File {
                name: f.name(),
                count: f.index_count(),
            },
        };
        Ok((checkpoint, pending))
    }

    /// Makes the next flush sync every file again (after a [`PendingSync`] failed).
    pub fn mark_dirty(&mut self) {
        for f in &mut self.files {
            f.dirty = true;
        }
    }

    /// Fsyncs every file with unflushed entries and says how far the index is durable (the
    /// store itself uses [`Self::begin_flush`] so it can sync outside its lock).
    #[cfg(test)]
    pub fn flush(&mut self) -> Result<IndexCheckpoint, StoreError> {
        let (checkpoint, pending) = self.begin_flush()?;
        for p in &pending {
            p.sync()?;
        }
        Ok(checkpoint)
    }
}

/// An index file's unflushed writes, synced by [`PendingSync::sync`] outside the index lock.
#[derive(Debug)]
pub struct PendingSync {
    path: PathBuf,
    file: File,
}

impl PendingSync {
    /// On Linux `msync(MS_SYNC)` of a shared mapping is an fdatasync of the file's range: the
    /// mapping's dirty pages are the file's page cache, so syncing the descriptor covers every
    /// write made through the mapping before this call.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.file
            .sync_data()
            .map_err(|e| StoreError::io(&self.path, e))
    }
}

fn fallocate(file: &File, path: &Path, from: usize, len: usize) -> Result<(), StoreError> {
    match rustix::fs::fallocate(
        file,
        rustix::fs::FallocateFlags::empty(),
        from as u64,
        len as u64,
    ) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP => Ok(()),
        Err(e) => Err(StoreError::io(path, e.into())),
    }
}

fn remove(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(slot_num: usize, max_index_num: usize) -> IndexLimits {
        IndexLimits {
            slot_num,
            max_index_num,
        }
    }

    #[test]
    fn hashes_like_java_and_names_files_by_utc_time() {
        // Values of Java's "...".hashCode().
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("abc"), 96354);
        assert_eq!(java_string_hash("TopicTest#KEY1"), -1_656_969_516);
        assert_eq!(key_hash("TopicTest#KEY1"), 1_656_969_516);
        // Characters outside the BMP hash as their UTF-16 surrogate pair.
        assert_eq!(java_string_hash("\u{e9}\u{1f600}"), 1_996_812);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE; RocketMQ maps it to 0.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(key_hash("polygenelubricants"), 0);
        assert_eq!(slot_of(1_656_969_516, 5_000_000), 1_969_516);
        assert_eq!(slot_of(0, 7), 0);
        // 2026-11-24T16:15:50.123Z
        assert_eq!(time_name(1_795_536_950_123), 20261124161550123);
        assert_eq!(time_name(0), 19700101000000000);
        assert_eq!(time_name(951_782_400_000), 20000229000000000);
    }

    #[test]
    fn layout_matches_rocketmq() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = limits(10, 8);
        let mut f = IndexFile::create(dir.path(), 20260101000000000, l).expect("create");
        assert_eq!(
            std::fs::metadata(f.path()).expect("meta").len(),
            (40 + 10 * 4 + 8 * 20) as u64
        );
        assert!(f.put(13, 1000, 5_000).expect("put"));
        assert!(f.put(23, 2000, 7_500).expect("put"));
        f.flush().expect("flush");
        let raw = std::fs::read(f.path()).expect("read");
        assert_eq!(get_i64(&raw, 0), 5_000, "beginTimestamp");
        assert_eq!(get_i64(&raw, 8), 7_500, "endTimestamp");
        assert_eq!(get_i64(&raw, 16), 1000, "beginPhyOffset");
        assert_eq!(get_i64(&raw, 24), 2000, "endPhyOffset");
        assert_eq!(
            get_i32(&raw, 32),
            2,
            "hashSlotCount: RocketMQ counts every put"
        );
        assert_eq!(get_i32(&raw, 36), 3, "indexCount starts at 1");
        assert_eq!(get_i32(&raw, 40 + 3 * 4), 2, "slot 3 names entry 2");
        let e2 = 40 + 10 * 4 + 2 * 20;
        assert_eq!(get_i32(&raw, e2), 23);
        assert_eq!(get_i64(&raw, e2 + 4), 2000);
        assert_eq!(get_i32(&raw, e2 + 12), 2, "timeDiff in seconds");
        assert_eq!(get_i32(&raw, e2 + 16), 1, "prevIndex");
    }

    #[test]
    fn chain_walk_filters_hash_and_time_across_collisions() {
        let dir = tempfile::tempdir().expect("tempdir");
        // One slot: every key collides, chains interleave.
        let mut f = IndexFile::create(dir.path(), 1, limits(1, 64)).expect("create");
        for i in 0..40i64 {
            let hash = if i % 2 == 0 { 7 } else { 8 };
            assert!(f.put(hash, i * 100, 1_000_000 + i * 10_000).expect("put"));
        }
        let collect = |hash, begin, end| {
            let mut got = Vec::new();
            f.walk(hash, begin, end, &mut |p| {
                got.push(p);
                true
            });
            got
        };
        let even: Vec<i64> = (0..40)
            .rev()
            .filter(|i| i % 2 == 0)
            .map(|i| i * 100)
            .collect();
        assert_eq!(collect(7, 0, i64::MAX), even);
        assert!(collect(9, 0, i64::MAX).is_empty());
        // Entries 10..=20 were stored at 1,100,000..=1,200,000 ms.
        let ranged = collect(8, 1_100_000, 1_200_000);
        assert_eq!(ranged, vec![1900, 1700, 1500, 1300, 1100]);
        // The visitor stops the walk.
        let mut n = 0;
        assert!(!f.walk(7, 0, i64::MAX, &mut |_| {
            n += 1;
            n < 3
        }));
        assert_eq!(n, 3);
    }

    #[test]
    fn rolls_when_full_and_queries_newest_file_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = limits(4, 5);
        let mut idx =
            KeyIndex::load(dir.path(), l, IndexCheckpoint::NoFiles, false, false, 0).expect("load");
        for i in 0..10i64 {
            let k = format!("T#k{}", i % 3);
            idx.put_record(i * 50, 1_000 + i, [k.as_str(), "T#all"])
                .expect("put");
        }
        // 20 entries, 4 per file.
        assert_eq!(idx.files.len(), 5);
        let mut names: Vec<i64> = idx.files.iter().map(IndexFile::name).collect();
        names.dedup();
        assert_eq!(names.len(), 5, "every file has its own name");
        let mut all = Vec::new();
        idx.query("T#all", 0, i64::MAX, &mut |p| {
            all.push(p);
            true
        });
        assert_eq!(all, (0..10).rev().map(|i| i * 50).collect::<Vec<_>>());
        let mut k1 = Vec::new();
        idx.query("T#k1", 0, i64::MAX, &mut |p| {
            k1.push(p);
            true
        });
        assert_eq!(k1, vec![350, 200, 50]);
        // A record already indexed is not indexed again.
        idx.put_record(450, 2_000, ["T#late"]).expect("put");
        let mut late = 0;
        idx.query("T#late", 0, i64::MAX, &mut |_| {
            late += 1;
            true
        });
        assert_eq!(late, 0);
        assert_eq!(idx.delete_expired(200).expect("expire"), 2);
        assert_eq!(idx.files.len(), 3);
    }

    #[test]
    fn truncate_rolls_back_slots_and_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut idx = KeyIndex::load(
            dir.path(),
            limits(2, 6),
            IndexCheckpoint::NoFiles,
            false,
            false,
            0,
        )
        .expect("load");
        for i in 0..12i64 {
            idx.put_record(i * 10, 5_000, [format!("T#{}", i % 4).as_str()])
                .expect("put");
        }
        assert_eq!(idx.files.len(), 3);
        idx.truncate(45).expect("truncate");
        assert_eq!(idx.files.len(), 1);
        assert_eq!(idx.last_indexed(), 40);
        let hits = |idx: &KeyIndex, k: &str| {
            let mut v = Vec::new();
            idx.query(k, 0, i64::MAX, &mut |p| {
                v.push(p);
                true
            });
            v
        };
        assert_eq!(hits(&idx, "T#0"), vec![40, 0]);
        assert_eq!(hits(&idx, "T#3"), vec![30]);
        // New records at the truncated offsets chain correctly.
        idx.put_record(50, 6_000, ["T#3"]).expect("put");
        assert_eq!(hits(&idx, "T#3"), vec![50, 30]);
        assert!(hits(&idx, "T#1").iter().all(|p| *p < 45));
    }

    #[test]
    fn rollback_restores_chains_that_run_through_removed_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        // One slot: every entry's predecessor is the entry before it.
        let mut f = IndexFile::create(dir.path(), 1, limits(1, 64)).expect("create");
        for i in 0..30i64 {
            f.put(if i % 3 == 0 { 5 } else { 6 }, i, 1_000)
                .expect("put");
        }
        f.rollback_to(11);
        assert_eq!(f.entries(), 10);
        assert_eq!(f.end_phy_offset(), 9);
        let mut got = Vec::new();
        f.walk(5, 0, i64::MAX, &mut |p| {
            got.push(p);
            true
        });
        assert_eq!(got, vec![9, 6, 3, 0]);
        assert!(f.put(5, 10, 2_000).expect("put"));
        got.clear();
        f.walk(5, 0, i64::MAX, &mut |p| {
            got.push(p);
            true
        });
        assert_eq!(got, vec![10, 9, 6, 3, 0]);
        f.rollback_to(1);
        assert_eq!((f.entries(), f.hash_slot_count()), (0, 0));
        assert!(f.walk(5, 0, i64::MAX, &mut |_| panic!("no entries are left")));
    }

    #[test]
    fn records_are_indexed_while_a_begun_flush_is_still_syncing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = limits(8, 100);
        let mut idx =
            KeyIndex::load(dir.path(), l, IndexCheckpoint::NoFiles, false, false, 0).expect("load");
        for i in 0..5i64 {
            idx.put_record(i * 10, 1_000, [format!("T#{i}").as_str()])
                .expect("put");
        }
        let (ckpt, pending) = idx.begin_flush().expect("begin flush");
        assert_eq!(pending.len(), 1, "the one dirty file is handed out to sync");
        // The pending sync holds no borrow of the index: appends go on before it finishes.
        for i in 5..8i64 {
            idx.put_record(i * 10, 1_000, [format!("T#{i}").as_str()])
                .expect("put during sync");
        }
        for p in &pending {
            p.sync().expect("sync");
        }
        // The checkpoint names only what was written before the flush began (entry 0 is unused).
        assert_eq!(
            ckpt,
            IndexCheckpoint::File {
                name: idx.files[0].name(),
                count: 6
            }
        );
        let (later, again) = idx.begin_flush().expect("second flush");
        assert_eq!(
            again.len(),
            1,
            "writes after the snapshot make the file dirty again"
        );
        assert_eq!(
            later,
            IndexCheckpoint::File {
                name: idx.files[0].name(),
                count: 9
            }
        );
        idx.mark_dirty();
        assert_eq!(
            idx.begin_flush().expect("retry").1.len(),
            1,
            "a failed sync is retried"
        );
        let mut hit = Vec::new();
        idx.query("T#6", 0, i64::MAX, &mut |o| {
            hit.push(o);
            true
        });
        assert_eq!(hit, vec![60]);
    }

    #[test]
    fn recovery_keeps_the_checkpointed_prefix_and_survives_a_torn_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = limits(8, 100);
        let ckpt = {
            let mut idx = KeyIndex::load(dir.path(), l, IndexCheckpoint::NoFiles, false, false, 0)
                .expect("load");
            for i in 0..20i64 {
                idx.put_record(i * 10, 1_000, [format!("T#{i}").as_str()])
                    .expect("put");
            }
            let c = idx.flush().expect("flush");
            for i in 20..30i64 {
                idx.put_record(i * 10, 1_000, [format!("T#{i}").as_str()])
                    .expect("put");
            }
            idx.flush().expect("flush");
            c
        };
        let idx = KeyIndex::load(dir.path(), l, ckpt, true, false, 1_000).expect("reload");
        // The checkpoint covered entries 1..=20; the last record's entries are re-dispatched.
        assert_eq!(idx.last_indexed(), 180);
        assert_eq!(idx.resume_point(), Some(190));
        let mut hit = Vec::new();
        idx.query("T#5", 0, i64::MAX, &mut |p| {
            hit.push(p);
            true
        });
        assert_eq!(hit, vec![50]);
        let mut none = 0;
        idx.query("T#25", 0, i64::MAX, &mut |_| {
            none += 1;
            true
        });
        assert_eq!(none, 0);
        drop(idx);
        // A file cut short (wrong size) is rebuilt from scratch rather than trusted.
        let path = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .next()
            .expect("one file")
            .path();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open")
            .set_len(100)
            .expect("cut");
        let idx = KeyIndex::load(dir.path(), l, ckpt, true, false, 1_000).expect("reload torn");
        assert_eq!(idx.last_indexed(), -1);
        assert_eq!(idx.files.len(), 0);
        assert!(!path.exists());
    }

    #[test]
    fn recovery_resumes_at_a_record_whose_entries_it_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = limits(8, 100);
        let ckpt = {
            let mut idx = KeyIndex::load(dir.path(), l, IndexCheckpoint::NoFiles, false, false, 0)
                .expect("load");
            idx.put_record(4096, 1_000, ["T#a", "T#b", "T#c"])
                .expect("put");
            idx.flush().expect("flush")
        };
        let idx = KeyIndex::load(dir.path(), l, ckpt, true, false, 1 << 20).expect("reload");
        assert_eq!(idx.last_indexed(), -1);
        assert_eq!(idx.resume_point(), Some(4096));
        // With messageIndexSafe the unfinished newest file goes and indexing starts over.
        let idx = KeyIndex::load(dir.path(), l, ckpt, true, true, 1 << 20).expect("reload");
        assert_eq!(idx.resume_point(), None);
        // A clean stop with nothing indexed needs no catching up below the checkpoint.
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = KeyIndex::load(
            dir.path(),
            l,
            IndexCheckpoint::NoFiles,
            false,
            false,
            1 << 20,
        )
        .expect("load");
        assert_eq!(idx.resume_point(), Some(-1));
        let idx = KeyIndex::load(
            dir.path(),
            l,
            IndexCheckpoint::Unknown,
            false,
            false,
            1 << 20,
        )
        .expect("load");
        assert_eq!(idx.resume_point(), None);
    }

    #[test]
    fn garbage_header_and_entries_never_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = limits(4, 16);
        let name = {
            let mut f = IndexFile::create(dir.path(), 1, l).expect("create");
            f.put(3, 10, 1).expect("put");
            f.flush().expect("flush");
            f.name()
        };
        let path = dir.path().join(format!("{name:017}"));
        let mut raw = std::fs::read(&path).expect("read");
        for (i, b) in raw.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        std::fs::write(&path, &raw).expect("write");
        let idx = KeyIndex::load(
            dir.path(),
            l,
            IndexCheckpoint::File { name, count: 9 },
            true,
            false,
            1 << 40,
        )
        .expect("load garbage");
        let mut n = 0;
        idx.query("T#x", i64::MIN / 2, i64::MAX, &mut |_| {
            n += 1;
            true
        });
        assert!(n <= 8);
    }
}
