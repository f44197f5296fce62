//! The process metrics every Prometheus exporter has (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_start_time_seconds`, `process_threads`), read from `/proc` at
//! each scrape.
//!
//! The files are opened once, when the metrics are first installed: before the sandbox, which
//! allows no new open under `/proc` afterwards, and reads through them stay allowed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// What is kept open, and what does not change while the process runs.
struct Proc {
    /// `/proc/self/stat`.
    stat: File,
    /// `/proc/self/fd`.
    fds: nix::dir::Dir,
    /// Clock ticks per second.
    ticks: f64,
    /// Bytes per page.
    page: f64,
    /// The process's start, Unix seconds.
    start: f64,
    /// The soft limit on open files.
    max_fds: Option<f64>,
}

static PROC: Mutex<Option<Proc>> = Mutex::new(None);

/// Opens what the process metrics are read from (once; later calls do nothing).
pub(super) fn open() {
    if let Ok(mut slot) = PROC.lock()
        && slot.is_none()
    {
        *slot = open_proc();
    }
}

fn open_proc() -> Option<Proc> {
    use nix::unistd::{SysconfVar, sysconf};
    let ticks = sysconf(SysconfVar::CLK_TCK).ok()?? as f64;
    let page = sysconf(SysconfVar::PAGE_SIZE).ok()?? as f64;
    let stat = File::open("/proc/self/stat").ok()?;
    let fds = nix::dir::Dir::open(
        "/proc/self/fd",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse()
                .ok()
        });
    let fields = stat_fields(&stat)?;
    let started: f64 = fields.get(19)?.parse().ok()?;
    Some(Proc {
        stat,
        fds,
        ticks,
        page,
        start: boot + started / ticks,
        max_fds,
    })
}

/// The fields of `/proc/self/stat` from the state on (field 3 is index 0): what follows the
/// command name, which may hold spaces and parentheses.
fn stat_fields(stat: &File) -> Option<Vec<String>> {
    let mut buf = [0u8; 1024];
    let n = stat.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The process metrics now, in the Prometheus text format (empty where `/proc` cannot be
/// read). Rendered here rather than through the recorder: `process_cpu_seconds_total` is a
/// counter of fractional seconds.
pub(super) fn render() -> String {
    let Ok(mut slot) = PROC.lock() else {
        return String::new();
    };
    let Some(p) = slot.as_mut() else {
        return String::new();
    };
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, value: f64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    if let Some(f) = stat_fields(&p.stat) {
        let number = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
        // Fields 14 and 15 (utime, stime), 20 (num_threads), 23 (vsize), 24 (rss).
        if let (Some(user), Some(system)) = (number(11), number(12)) {
            family(
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                (user + system) / p.ticks,
            );
        }
        if let Some(rss) = number(21) {
            family(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                rss * p.page,
            );
        }
        if let Some(vsize) = number(20) {
            family(
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                vsize,
            );
        }
        if let Some(threads) = number(17) {
            family("process_threads", "gauge", "Number of OS threads.", threads);
        }
    }
    // The directory's own descriptor is one of the entries, and so are "." and "..".
    let entries = p.fds.iter().filter_map(Result::ok).count();
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        entries.saturating_sub(3) as f64,
    );
    if let Some(max) = p.max_fds {
        family(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        p.start,
    );
    out
}
