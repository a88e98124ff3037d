//! Disk usage of the filesystem holding the store.

use std::path::Path;

/// Used fraction (0.0–1.0) of the filesystem holding `path` as `df` computes Use%: used blocks
/// over used plus those available to unprivileged users, so blocks reserved for root count
/// neither way; `None` if it cannot be measured.
pub fn used_ratio(path: &Path) -> Option<f64> {
    let st = rustix::fs::statvfs(path).ok()?;
    ratio(st.f_blocks, st.f_bfree, st.f_bavail)
}

/// `df`'s Use% from statvfs block counts.
fn ratio(total: u64, free: u64, avail: u64) -> Option<f64> {
    let used = total.checked_sub(free)? as f64;
    let usable = used + avail as f64;
    if usable <= 0.0 {
        return None;
    }
    Some((used / usable).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::ratio;

    #[test]
    fn reserved_blocks_count_neither_as_used_nor_as_available() {
        // A 252 GiB filesystem, 65 GiB used, 27 GiB available, the rest reserved for root:
        // df says 71 %, not the 89 % that counting the reserve as used would give.
        let gib = 262_144; // 4 KiB blocks
        let r = ratio(252 * gib, 187 * gib, 27 * gib).expect("ratio");
        assert!((r - 65.0 / 92.0).abs() < 1e-9, "{r}");
        assert_eq!(ratio(100, 100, 100), Some(0.0));
        assert_eq!(ratio(100, 0, 0), Some(1.0));
        assert_eq!(ratio(0, 0, 0), None);
        assert_eq!(ratio(10, 20, 5), None, "inconsistent counts");
    }
}
