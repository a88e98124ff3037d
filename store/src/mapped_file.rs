//! One fixed-size, memory-mapped file named by the 20-digit offset of its first byte.
//!
//! Readers get [`Bytes`] that own an `Arc` of the mapping, so removing a file from its queue (or
//! deleting it from disk) only drops one reference: the memory stays mapped until the last slice
//! handed to a reader is dropped.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use memmap2::MmapRaw;

use crate::StoreError;

/// A read-only window into a mapping; keeps the mapping alive while it exists.
#[derive(Debug)]
struct MappedSlice {
    map: Arc<MmapRaw>,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for MappedSlice {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `start + len <= map.len()` is checked when the slice is built, and the mapping
        // cannot be unmapped while this `Arc` is held. The bytes were fully written before the
        // write position that bounds every read was published (Release/Acquire), and the store
        // only rewrites bytes below that position after `truncate_to` rewinds it, which callers
        // perform only on data no longer served (replication divergence or recovery).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(self.start), self.len) }
    }
}

/// A preallocated mapped file of the CommitLog or of a ConsumeQueue.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    file: File,
    map: Arc<MmapRaw>,
    file_from_offset: i64,
    file_size: usize,
    wrote: AtomicUsize,
    flushed: AtomicUsize,
}

/// The RocketMQ file name for a start offset.
pub fn offset_to_file_name(offset: i64) -> String {
    format!("{offset:020}")
}

const PAGE_SIZE: usize = 4096;

/// What to fault in ahead of the write position: `None` while more than half of `window` past
/// `wrote` is already faulted in (`done`), else the page-aligned range from `done` (or `wrote`)
/// up to `wrote + window`, clamped to the file. Refilling at half the window batches the work
/// into a few large calls instead of one per append.
pub(crate) fn prefault_range(
    wrote: usize,
    done: usize,
    file_size: usize,
    window: usize,
) -> Option<(usize, usize)> {
    let low_water = wrote.saturating_add(window / 2).min(file_size);
    if done >= low_water {
        return None;
    }
    let start = done.max(wrote) / PAGE_SIZE * PAGE_SIZE;
    let end = wrote
        .saturating_add(window)
        .div_ceil(PAGE_SIZE)
        .saturating_mul(PAGE_SIZE)
        .min(file_size);
    (end > start).then(|| (start, end - start))
}

impl MappedFile {
    /// Opens or creates the file `dir/{offset:020}` with exactly `file_size` bytes.
    pub fn open(dir: &Path, file_from_offset: i64, file_size: usize) -> Result<Self, StoreError> {
        let path = dir.join(offset_to_file_name(file_from_offset));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io(&path, e))?;
        let len = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        if len != file_size as u64 {
            file.set_len(file_size as u64)
                .map_err(|e| StoreError::io(&path, e))?;
            // Reserve the blocks now: a write through the mapping into a hole on a full disk
            // would kill the process with SIGBUS instead of returning an error.
            match rustix::fs::fallocate(
                &file,
                rustix::fs::FallocateFlags::empty(),
                0,
                file_size as u64,
            ) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::OPNOTSUPP => {}
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(StoreError::io(&path, e.into()));
                }
            }
        }
        let map = MmapRaw::map_raw(&file).map_err(|e| StoreError::io(&path, e))?;
        Ok(Self {
            path,
            file,
            map: Arc::new(map),
            file_from_offset,
            file_size,
            wrote: AtomicUsize::new(0),
            flushed: AtomicUsize::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn file_from_offset(&self) -> i64 {
        self.file_from_offset
    }
    pub fn file_size(&self) -> usize {
        self.file_size
    }
    pub fn wrote_position(&self) -> usize {
        self.wrote.load(Ordering::Acquire)
    }
    pub fn flushed_position(&self) -> usize {
        self.flushed.load(Ordering::Acquire)
    }
    pub fn is_full(&self) -> bool {
        self.wrote_position() >= self.file_size
    }
    pub fn remaining(&self) -> usize {
        self.file_size - self.wrote_position()
    }

    /// Sets the write (and flush) position, as recovery does after scanning.
    pub fn set_positions(&self, pos: usize) {
        let pos = pos.min(self.file_size);
        self.wrote.store(pos, Ordering::Release);
        self.flushed.store(pos, Ordering::Release);
    }

    /// Appends at the write position. The caller serializes writers.
    pub fn append(&self, data: &[u8]) -> bool {
        let pos = self.wrote.load(Ordering::Acquire);
        if pos + data.len() > self.file_size {
            return false;
        }
        self.write_at(pos, data);
        self.wrote.store(pos + data.len(), Ordering::Release);
        true
    }

    /// Ends the file with a BLANK record covering the rest and marks it full.
    pub fn pad_to_end(&self) {
        let pos = self.wrote.load(Ordering::Acquire);
        let rest = self.file_size - pos;
        if rest >= 8 {
            let mut h = [0u8; 8];
            h[..4].copy_from_slice(&(rest as i32).to_be_bytes());
            h[4..].copy_from_slice(&ferrum_protocol::message::BLANK_MAGIC_CODE.to_be_bytes());
            self.write_at(pos, &h);
        }
        self.wrote.store(self.file_size, Ordering::Release);
    }

    /// Writes bytes at `pos` without moving the write position. The caller serializes writers
    /// and only writes at or past the write position, or into data being discarded.
    pub fn write_at(&self, pos: usize, data: &[u8]) {
        assert!(
            pos + data.len() <= self.file_size,
            "write past the mapped file"
        );
        // SAFETY: the range is inside the mapping (checked above) and the mapping lives as long
        // as `self`. Writers are serialized by the store's write lock, and readers only read below
        // the published write position, so no reader observes these bytes while they change.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                self.map.as_mut_ptr().add(pos),
                data.len(),
            );
        }
    }

    /// Zeroes `[pos, end)` so a later scan cannot mistake stale records for new ones.
    pub fn zero_from(&self, pos: usize) {
        const ZEROS: [u8; 4096] = [0; 4096];
        let mut at = pos;
        while at < self.file_size {
            let n = (self.file_size - at).min(ZEROS.len());
            self.write_at(at, &ZEROS[..n]);
            at += n;
        }
    }

    /// Rewinds the write position to `pos` and zeroes the rest of the file.
    pub fn truncate_to(&self, pos: usize) {
        let pos = pos.min(self.file_size);
        self.wrote.store(pos, Ordering::Release);
        self.zero_from(pos);
        if self.flushed_position() > pos {
            self.flushed.store(pos, Ordering::Release);
        }
    }

    /// A zero-copy slice of written data, or `None` if the range is not fully written.
    pub fn slice(&self, pos: usize, len: usize) -> Option<Bytes> {
        let end = pos.checked_add(len)?;
        if end > self.wrote_position() {
            return None;
        }
        Some(Bytes::from_owner(MappedSlice {
            map: Arc::clone(&self.map),
            start: pos,
            len,
        }))
    }

    /// Copies bytes from the mapping regardless of the write position (recovery scans).
    pub fn read_raw(&self, pos: usize, len: usize) -> Option<Bytes> {
        let end = pos.checked_add(len)?;
        if end > self.file_size {
            return None;
        }
        Some(Bytes::from_owner(MappedSlice {
            map: Arc::clone(&self.map),
            start: pos,
            len,
        }))
    }

    /// Faults `[pos, pos + len)` in writable without touching its bytes (MADV_POPULATE_WRITE),
    /// so the append that later writes there takes no page fault: the fault (a fresh page-cache
    /// page, zeroed, then made writable by the filesystem) would otherwise run on the append path
    /// under the store's write lock, where a preemption at the fault's exit stalls every sender.
    /// Safe beside concurrent appends: the kernel only maps the pages, it never writes them.
    pub fn prefault(&self, pos: usize, len: usize) -> std::io::Result<()> {
        let end = pos.saturating_add(len).min(self.file_size);
        if pos >= end {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        return self
            .map
            .advise_range(memmap2::Advice::PopulateWrite, pos, end - pos);
        #[cfg(not(target_os = "linux"))]
        Ok(())
    }

    /// Flushes dirty pages if at least `least_pages` are dirty (0 = always); returns the new
    /// flushed position.
    pub fn flush(&self, least_pages: usize) -> Result<usize, StoreError> {
        const PAGE: usize = 4096;
        let wrote = self.wrote_position();
        let flushed = self.flushed_position();
        if wrote <= flushed {
            return Ok(flushed);
        }
        if least_pages > 0 && (wrote / PAGE).saturating_sub(flushed / PAGE) < least_pages {
            return Ok(flushed);
        }
        let start = flushed / PAGE * PAGE;
        self.map
            .flush_range(start, wrote - start)
            .map_err(|e| StoreError::io(&self.path, e))?;
        self.flushed.store(wrote, Ordering::Release);
        Ok(wrote)
    }

    /// Flushes the whole mapping, e.g. after zeroing a truncated tail.
    pub fn flush_all(&self) -> Result<(), StoreError> {
        self.map
            .flush()
            .map_err(|e| StoreError::io(&self.path, e))?;
        self.file
            .sync_all()
            .map_err(|e| StoreError::io(&self.path, e))
    }

    /// Modification time, used by retention.
    pub fn modified(&self) -> Option<std::time::SystemTime> {
        self.file.metadata().ok()?.modified().ok()
    }

    /// Removes the file from disk; readers keep their mapping alive until they drop it.
    pub fn destroy(&self) -> Result<(), StoreError> {
        std::fs::remove_file(&self.path).map_err(|e| StoreError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_outlive_file_deletion_and_queue_removal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = MappedFile::open(dir.path(), 8192, 4096).expect("open");
        assert_eq!(
            f.path().file_name().and_then(|n| n.to_str()),
            Some("00000000000000008192")
        );
        assert!(f.append(b"hello"));
        let s = f.slice(0, 5).expect("written range");
        assert!(f.slice(0, 6).is_none(), "unwritten bytes are never served");
        f.destroy().expect("destroy");
        drop(f);
        assert_eq!(&s[..], b"hello");
    }

    #[test]
    fn append_refuses_overflow_and_pads_with_blank() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = MappedFile::open(dir.path(), 0, 4096).expect("open");
        assert!(f.append(&[7; 4000]));
        assert!(!f.append(&[7; 97]));
        f.pad_to_end();
        assert!(f.is_full());
        let blank = f.slice(4000, 8).expect("blank header");
        assert_eq!(&blank[..4], &96i32.to_be_bytes());
        assert_eq!(
            &blank[4..],
            &ferrum_protocol::message::BLANK_MAGIC_CODE.to_be_bytes()
        );
        f.truncate_to(10);
        assert_eq!(f.wrote_position(), 10);
        assert_eq!(&f.read_raw(10, 4).expect("raw")[..], &[0; 4]);
    }

    #[test]
    fn prefault_range_refills_at_half_the_window_and_stops_at_the_end() {
        const W: usize = 16 * PAGE_SIZE;
        // Nothing faulted yet: from the write position's page to a window past it.
        assert_eq!(
            prefault_range(100, 0, 1 << 20, W),
            Some((0, 17 * PAGE_SIZE))
        );
        assert_eq!(prefault_range(0, 0, 1 << 20, W), Some((0, W)));
        // More than half the window still ahead: nothing to do.
        assert_eq!(prefault_range(4 * PAGE_SIZE, W, 1 << 20, W), None);
        // Half or less ahead: from where it stopped to a full window past the write position.
        let wrote = 8 * PAGE_SIZE + 10;
        assert_eq!(
            prefault_range(wrote, W, 1 << 20, W),
            Some((W, 9 * PAGE_SIZE))
        );
        // Clamped to the file, and done once the file's end is faulted in.
        assert_eq!(
            prefault_range(60 * PAGE_SIZE, 0, 64 * PAGE_SIZE, W),
            Some((60 * PAGE_SIZE, 4 * PAGE_SIZE))
        );
        assert_eq!(
            prefault_range(60 * PAGE_SIZE, 64 * PAGE_SIZE, 64 * PAGE_SIZE, W),
            None
        );
        // A write position past what was faulted (a rewind or a new file) starts at its page.
        assert_eq!(
            prefault_range(40 * PAGE_SIZE + 1, PAGE_SIZE, 1 << 20, W),
            Some((40 * PAGE_SIZE, 17 * PAGE_SIZE))
        );
    }

    #[test]
    fn prefault_keeps_the_bytes_and_appends_still_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = MappedFile::open(dir.path(), 0, 64 * 1024).expect("open");
        assert!(f.append(b"before"));
        f.prefault(0, 64 * 1024).expect("populate");
        // Past the end is clamped, an empty range is a no-op.
        f.prefault(60 * 1024, 1 << 20).expect("clamped");
        f.prefault(64 * 1024, 10).expect("empty");
        assert!(f.append(b"after"));
        assert_eq!(&f.slice(0, 11).expect("written")[..], b"beforeafter");
        assert_eq!(&f.read_raw(11, 8).expect("raw")[..], &[0; 8]);
    }

    #[test]
    fn flush_honours_least_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = MappedFile::open(dir.path(), 0, 64 * 1024).expect("open");
        assert!(f.append(&[1; 5000]));
        assert_eq!(f.flush(4).expect("flush"), 0);
        assert_eq!(f.flush(0).expect("flush"), 5000);
        assert!(f.append(&[1; 20_000]));
        assert_eq!(f.flush(4).expect("flush"), 25_000);
    }
}
