//! Crash-safe JSON files for the broker's metadata (topics.json, subscriptionGroup.json,
//! consumerOffset.json).
//!
//! A file is replaced by writing a temporary sibling, fsyncing it, renaming it over the old one
//! and fsyncing the directory, so after a crash the file is either the old or the new version,
//! never a torn mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a metadata file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON for this file: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Writes `value` as JSON to `path` atomically and durably.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), PersistError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| PersistError::Write {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    write_atomic(path, &bytes)
}

/// Replaces `path` with `bytes`: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PersistError> {
    let err = |source| PersistError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(err)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut file = File::create(&tmp).map_err(err)?;
        file.write_all(bytes).map_err(err)?;
        file.sync_all().map_err(err)?;
    }
    fs::rename(&tmp, path).map_err(err)?;
    // The rename is durable only once the directory entry is.
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    Ok(())
}

/// Reads `path` as JSON; `Ok(None)` when the file does not exist yet.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, PersistError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PersistError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // RocketMQ writes these files with fastjson, which leaves numeric map keys bare.
    ferrum_protocol::route::from_json(&bytes, "metadata")
        .map(Some)
        .map_err(|e| PersistError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn round_trip_replace_and_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config").join("x.json");
        assert_eq!(read_json::<BTreeMap<String, i64>>(&path).expect("ok"), None);
        let mut map = BTreeMap::new();
        map.insert("a".to_owned(), 1_i64);
        write_json(&path, &map).expect("write");
        map.insert("b".to_owned(), 2);
        write_json(&path, &map).expect("write");
        assert_eq!(read_json(&path).expect("ok"), Some(map));
        assert!(!dir.path().join("config").join("x.json.tmp").exists());
        fs::write(&path, b"{nope").expect("write");
        assert!(matches!(
            read_json::<BTreeMap<String, i64>>(&path),
            Err(PersistError::Corrupt { .. })
        ));
    }

    #[test]
    fn reads_fastjson_bare_numeric_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("o.json");
        fs::write(&path, br#"{"t@g":{0:5,1:7}}"#).expect("write");
        let read: BTreeMap<String, BTreeMap<i32, i64>> =
            read_json(&path).expect("ok").expect("some");
        assert_eq!(read["t@g"][&1], 7);
    }
}
