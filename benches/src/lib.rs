//! Helpers for gridlens's benchmarks: peak memory of the process.

/// The process's peak resident memory so far, in bytes (Linux `VmHWM`), if known.
pub fn peak_rss() -> Option<u64> {
    status_field("VmHWM:")
}

/// The process's current resident memory, in bytes (Linux `VmRSS`), if known.
pub fn rss() -> Option<u64> {
    status_field("VmRSS:")
}

/// Resets the peak so that the next [`peak_rss`] measures from now (Linux `clear_refs`).
pub fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn status_field(name: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The median of some seconds.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
