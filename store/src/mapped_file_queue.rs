//! An ordered list of equally sized mapped files forming one logical byte stream.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::StoreError;
use crate::mapped_file::MappedFile;

#[derive(Debug)]
pub struct MappedFileQueue {
    dir: PathBuf,
    file_size: usize,
    files: RwLock<Vec<Arc<MappedFile>>>,
}

impl MappedFileQueue {
    /// Opens every file of `dir` whose name is a 20-digit offset; positions are set to full and
    /// must be corrected by the owner's recovery.
    pub fn load(dir: &Path, file_size: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let mut offsets = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
            let entry = entry.map_err(|e| StoreError::io(dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() == 20
                && name.bytes().all(|b| b.is_ascii_digit())
                && let Ok(off) = name.parse::<i64>()
            {
                offsets.push(off);
            }
        }
        offsets.sort_unstable();
        let mut files = Vec::with_capacity(offsets.len());
        for off in offsets {
            if off % file_size as i64 != 0 {
                return Err(StoreError::Corrupt(format!(
                    "file {off:020} in {} is not aligned to the configured file size {file_size}",
                    dir.display()
                )));
            }
            let f = MappedFile::open(dir, off, file_size)?;
            f.set_positions(file_size);
            files.push(Arc::new(f));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            file_size,
            files: RwLock::new(files),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn file_size(&self) -> usize {
        self.file_size
    }

    pub fn files(&self) -> Vec<Arc<MappedFile>> {
        self.read().clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<MappedFile>>> {
        self.files.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<MappedFile>>> {
        self.files.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn first(&self) -> Option<Arc<MappedFile>> {
        self.read().first().cloned()
    }
    pub fn last(&self) -> Option<Arc<MappedFile>> {
        self.read().last().cloned()
    }

    /// The last file if it has room, else a new file after it (or at `start` if empty).
    pub fn last_or_create(&self, start: i64) -> Result<Arc<MappedFile>, StoreError> {
        let mut files = self.write();
        let next = match files.last() {
            Some(f) if !f.is_full() => return Ok(Arc::clone(f)),
            Some(f) => f.file_from_offset() + self.file_size as i64,
            None => start - start % self.file_size as i64,
        };
        let f = Arc::new(MappedFile::open(&self.dir, next, self.file_size)?);
        if files.is_empty() {
            f.set_positions((start - next) as usize);
        }
        files.push(Arc::clone(&f));
        Ok(f)
    }

    pub fn min_offset(&self) -> i64 {
        self.first().map_or(0, |f| f.file_from_offset())
    }

    pub fn max_offset(&self) -> i64 {
        self.last()
            .map_or(0, |f| f.file_from_offset() + f.wrote_position() as i64)
    }

    pub fn find(&self, offset: i64) -> Option<Arc<MappedFile>> {
        let files = self.read();
        let first = files.first()?.file_from_offset();
        if offset < first {
            return None;
        }
        let idx = ((offset - first) / self.file_size as i64) as usize;
        files
            .get(idx)
            .filter(|f| {
                offset >= f.file_from_offset()
                    && offset < f.file_from_offset() + self.file_size as i64
            })
            .cloned()
    }

    /// A zero-copy slice of written bytes inside one file.
    pub fn slice(&self, offset: i64, len: usize) -> Option<Bytes> {
        let f = self.find(offset)?;
        f.slice((offset - f.file_from_offset()) as usize, len)
    }

    /// Drops everything at or after `offset`: later files are deleted, the file holding it is
    /// rewound and its tail zeroed.
    pub fn truncate_to(&self, offset: i64) -> Result<(), StoreError> {
        self.truncate(offset, true)
    }

    /// Like [`Self::truncate_to`] but trusts the tail to be zeroes already (after a clean stop).
    pub fn truncate_to_fast(&self, offset: i64) -> Result<(), StoreError> {
        self.truncate(offset, false)
    }

    fn truncate(&self, offset: i64, zero: bool) -> Result<(), StoreError> {
        let mut files = self.write();
        let mut keep = Vec::with_capacity(files.len());
        for f in files.drain(..) {
            let start = f.file_from_offset();
            if start + self.file_size as i64 <= offset {
                keep.push(f);
            } else if start <= offset {
                if zero {
                    f.truncate_to((offset - start) as usize);
                    f.flush_all()?;
                } else {
                    f.set_positions((offset - start) as usize);
                }
                keep.push(f);
            } else {
                f.destroy()?;
            }
        }
        *files = keep;
        Ok(())
    }

    /// Flushes the file holding the flush point and any full files before it.
    pub fn flush(&self, least_pages: usize) -> Result<i64, StoreError> {
        let files = self.files();
        let mut flushed = files.first().map_or(0, |f| f.file_from_offset());
        for f in &files {
            if f.flushed_position() >= f.file_size() {
                flushed = f.file_from_offset() + f.file_size() as i64;
                continue;
            }
            // Full older files are flushed completely whatever the threshold.
            let least = if f.is_full() { 0 } else { least_pages };
            let pos = f.flush(least)?;
            flushed = f.file_from_offset() + pos as i64;
            if pos < f.file_size() {
                break;
            }
        }
        Ok(flushed)
    }

    /// Deletes leading files chosen by `pred` (never the last one); returns how many.
    pub fn delete_leading(
        &self,
        max: usize,
        mut pred: impl FnMut(&MappedFile) -> bool,
    ) -> Result<usize, StoreError> {
        let mut files = self.write();
        let mut n = 0;
        while n < max && files.len() > 1 && pred(&files[0]) {
            let f = files.remove(0);
            f.destroy()?;
            n += 1;
        }
        Ok(n)
    }

    /// Deletes every file; the next append starts at `start`.
    pub fn reset_to(&self, start: i64) -> Result<(), StoreError> {
        let mut files = self.write();
        for f in files.drain(..) {
            f.destroy()?;
        }
        drop(files);
        self.last_or_create(start).map(|_| ())
    }
}
