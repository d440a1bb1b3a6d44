//! What the benchmarks (`benches/queue.rs`, `benches/rest.rs`) share: the SQLite
//! baseline run, the server's memory from `/proc`, the machine's load.

use std::path::Path;

use tokio::process::Command;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs the built `sqlite-baseline` briefly (`--ids v7 --secs 2 --rounds 1`) on `cases`
/// (comma-separated) in a dir under `scratch`: (case, ops/s) per result row.
pub async fn run_baseline(bin: &Path, scratch: &Path, cases: &str) -> Result<Vec<(String, f64)>> {
    let dir = scratch.join("sqlite-baseline");
    std::fs::create_dir_all(&dir)?;
    let out = Command::new(bin)
        .arg("--dir")
        .arg(&dir)
        .args(["--ids", "v7", "--cases", cases])
        .args(["--secs", "2", "--rounds", "1"])
        .output()
        .await?;
    if !out.status.success() {
        return Err(format!(
            "sqlite-baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<(String, f64)> = text
        .lines()
        .filter(|line| line.starts_with("| 1 |"))
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('|').map(str::trim).collect();
            Some((cols.get(2)?.to_string(), cols.get(3)?.parse().ok()?))
        })
        .collect();
    if rows.is_empty() {
        return Err(format!("no result rows in sqlite-baseline's output:\n{text}").into());
    }
    Ok(rows)
}

/// A `/proc/<pid>/status` figure in KiB (`VmHWM`, `VmRSS`).
pub fn proc_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}
