//! The key index: `topic#key` → CommitLog offsets for `KEYS` and `UNIQ_KEY`.
//!
//! Held in a hash map and persisted as an append-only log of entries
//! `keyLen u16 | key | phyOffset i64 | crc32(key, phyOffset) u32`, fsynced before each checkpoint.
//! At start the log is read back (stopping at the first torn or damaged entry), entries outside
//! the retained CommitLog are dropped, and records past the checkpoint are indexed again. Memory is
//! proportional to the number of keyed messages retained; RocketMQ's IndexFile keeps the hash
//! table on disk instead, at 420 MB per 20 M keys.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::StoreError;

#[derive(Debug)]
pub struct KeyIndex {
    path: PathBuf,
    map: HashMap<String, Vec<i64>>,
    log: BufWriter<File>,
}

fn entry(key: &str, phy: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(key.len() + 14);
    b.extend_from_slice(&(key.len() as u16).to_be_bytes());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(&phy.to_be_bytes());
    let crc = crc32fast::hash(&b[2..]);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

/// Parses entries until the first incomplete or damaged one.
fn parse(data: &[u8]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 2 <= data.len() {
        let len = usize::from(u16::from_be_bytes([data[pos], data[pos + 1]]));
        let end = pos + 2 + len + 12;
        if end > data.len() {
            break;
        }
        let body = &data[pos + 2..pos + 2 + len + 8];
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&data[end - 4..end]);
        if crc32fast::hash(body) != u32::from_be_bytes(crc) {
            break;
        }
        let Ok(key) = std::str::from_utf8(&body[..len]) else {
            break;
        };
        let mut phy = [0u8; 8];
        phy.copy_from_slice(&body[len..]);
        out.push((key.to_owned(), i64::from_be_bytes(phy)));
        pos = end;
    }
    out
}

/// Writes `map` to a temporary file, syncs it, renames it over `path` and opens it for appends.
fn write_log(path: &Path, map: &HashMap<String, Vec<i64>>) -> Result<BufWriter<File>, StoreError> {
    let tmp = path.with_extension("tmp");
    let f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StoreError::io(&tmp, e))?;
    let mut w = BufWriter::new(f);
    for (key, offs) in map {
        for phy in offs {
            w.write_all(&entry(key, *phy))
                .map_err(|e| StoreError::io(&tmp, e))?;
        }
    }
    let f = w
        .into_inner()
        .map_err(|e| StoreError::io(&tmp, e.into_error()))?;
    f.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
    let f = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    Ok(BufWriter::new(f))
}

impl KeyIndex {
    /// Loads the index keeping entries in `[min_phy, max_phy)`, and rewrites its log.
    pub fn load(dir: &Path, min_phy: i64, max_phy: i64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let path = dir.join("keys");
        let mut data = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut data)
                    .map_err(|e| StoreError::io(&path, e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&path, e)),
        }
        let mut map: HashMap<String, Vec<i64>> = HashMap::new();
        for (key, phy) in parse(&data) {
            if (min_phy..max_phy).contains(&phy) {
                let list = map.entry(key).or_default();
                if list.binary_search(&phy).is_err() {
                    list.push(phy);
                    list.sort_unstable();
                }
            }
        }
        // The old log stays in place until the new one is renamed over it: a crash while
        // loading must not lose entries.
        let log = write_log(&path, &map)?;
        Ok(Self { path, map, log })
    }

    /// Rewrites the log from the map (after truncation or retention).
    fn rewrite(&mut self) -> Result<(), StoreError> {
        self.log = write_log(&self.path, &self.map)?;
        Ok(())
    }

    pub fn put(&mut self, key: String, phy: i64) -> Result<(), StoreError> {
        let list = self.map.entry(key.clone()).or_default();
        if list.last().is_some_and(|l| *l >= phy) && list.binary_search(&phy).is_ok() {
            return Ok(());
        }
        list.push(phy);
        if list.len() > 1 && list[list.len() - 2] > phy {
            list.sort_unstable();
        }
        self.log
            .write_all(&entry(&key, phy))
            .map_err(|e| StoreError::io(&self.path, e))
    }

    pub fn get(&self, key: &str) -> Vec<i64> {
        self.map.get(key).cloned().unwrap_or_default()
    }

    /// Keeps only offsets in `[min_phy, max_phy)`.
    pub fn retain_range(&mut self, min_phy: i64, max_phy: i64) -> Result<(), StoreError> {
        let before: usize = self.map.values().map(Vec::len).sum();
        self.map.retain(|_, offs| {
            offs.retain(|o| (min_phy..max_phy).contains(o));
            !offs.is_empty()
        });
        let after: usize = self.map.values().map(Vec::len).sum();
        if after != before {
            self.rewrite()?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.log
            .flush()
            .map_err(|e| StoreError::io(&self.path, e))?;
        self.log
            .get_ref()
            .sync_data()
            .map_err(|e| StoreError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reload_and_stops_at_a_torn_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut idx = KeyIndex::load(dir.path(), 0, i64::MAX).expect("load");
            idx.put("T#a".into(), 10).expect("put");
            idx.put("T#a".into(), 20).expect("put");
            idx.put("T#a".into(), 20).expect("duplicate is ignored");
            idx.put("T#b".into(), 30).expect("put");
            idx.sync().expect("sync");
        }
        let path = dir.path().join("keys");
        let mut data = std::fs::read(&path).expect("read");
        data.extend_from_slice(&[0, 3, b'x']);
        std::fs::write(&path, &data).expect("write");
        let idx = KeyIndex::load(dir.path(), 15, 100).expect("reload");
        assert_eq!(idx.get("T#a"), vec![20]);
        assert_eq!(idx.get("T#b"), vec![30]);
        assert!(idx.get("T#c").is_empty());
        assert_eq!(parse(&std::fs::read(&path).expect("read")).len(), 2);
    }
}
