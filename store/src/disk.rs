//! Disk usage of the filesystem holding the store.

use std::path::Path;

/// Used fraction (0.0–1.0) of the filesystem holding `path`, counting blocks reserved for root
/// as used like `df` does; `None` if it cannot be measured.
pub fn used_ratio(path: &Path) -> Option<f64> {
    let st = rustix::fs::statvfs(path).ok()?;
    let total = st.f_blocks as f64;
    if total <= 0.0 {
        return None;
    }
    let avail = st.f_bavail as f64;
    Some(((total - avail) / total).clamp(0.0, 1.0))
}
