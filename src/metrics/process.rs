//! The standard process metrics (the names every Prometheus client library uses), read from
//! `/proc/self` when Prometheus scrapes: `process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`.

use pingora_prometheus::prometheus::core::{Collector, Desc};
use pingora_prometheus::prometheus::proto::MetricFamily;
use pingora_prometheus::prometheus::{self, Counter, Gauge};

/// Clock ticks per second of `/proc` times: Linux's `USER_HZ`, 100 on every architecture it
/// exports times for (the kernel converts its internal tick to it).
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc/self/stat` says, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStat {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    /// Start time, in seconds after boot.
    pub started_after_boot: f64,
}

/// Read `/proc/[pid]/stat` text: fields 14 and 15 (utime, stime) and 22 (starttime), counted
/// after the command name, which may hold spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // `rest` starts at field 3 (state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(ProcStat {
        cpu_seconds: (field(14)? + field(15)?) / TICKS_PER_SECOND,
        started_after_boot: field(22)? / TICKS_PER_SECOND,
    })
}

/// The boot time (`btime`, unix seconds) in `/proc/stat` text.
pub fn parse_boot_time(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Resident memory in bytes from `/proc/[pid]/status` text (`VmRSS:  1234 kB`).
pub fn parse_rss(text: &str) -> Option<f64> {
    let line = text.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Collects the process metrics at scrape time.
struct ProcessCollector {
    cpu: Counter,
    rss: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start: Gauge,
    descs: Vec<Desc>,
}

impl ProcessCollector {
    fn new() -> Self {
        let gauge = |n: &str, h: &str| Gauge::new(n, h).expect("valid metric");
        let cpu = Counter::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        )
        .expect("valid metric");
        let rss = gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        );
        let open_fds = gauge("process_open_fds", "Number of open file descriptors.");
        let max_fds = gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        );
        let start = gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        );
        let descs = [
            cpu.desc(),
            rss.desc(),
            open_fds.desc(),
            max_fds.desc(),
            start.desc(),
        ]
        .concat()
        .into_iter()
        .cloned()
        .collect();
        ProcessCollector {
            cpu,
            rss,
            open_fds,
            max_fds,
            start,
            descs,
        }
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(stat) = read("/proc/self/stat").and_then(|t| parse_stat(&t)) {
            self.cpu.reset();
            self.cpu.inc_by(stat.cpu_seconds);
            if let Some(boot) = read("/proc/stat").and_then(|t| parse_boot_time(&t)) {
                self.start.set(boot + stat.started_after_boot);
            }
        }
        if let Some(rss) = read("/proc/self/status").and_then(|t| parse_rss(&t)) {
            self.rss.set(rss);
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as f64);
        }
        if let Ok((soft, _)) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        {
            self.max_fds.set(soft as f64);
        }
        [
            self.cpu.collect(),
            self.rss.collect(),
            self.open_fds.collect(),
            self.max_fds.collect(),
            self.start.collect(),
        ]
        .concat()
    }
}

/// Register the process metrics in the default registry (once per process; later calls do
/// nothing).
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = prometheus::register(Box::new(ProcessCollector::new()));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime priority nice threads itrealvalue starttime ...
        let text = "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 12345 \
                    1000 200 18446744073709551615\n";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.started_after_boot, 123.45);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn boot_time_and_rss() {
        let stat = "cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n";
        assert_eq!(parse_boot_time(stat), Some(1_700_000_000.0));
        let status = "Name:\tfulcrum\nVmPeak:\t 9000 kB\nVmRSS:\t    2048 kB\nThreads: 4\n";
        assert_eq!(parse_rss(status), Some(2048.0 * 1024.0));
        assert_eq!(parse_rss("Name: x\n"), None);
    }

    #[test]
    fn this_process_reads_its_own_numbers() {
        let stat = parse_stat(&read("/proc/self/stat").unwrap()).unwrap();
        assert!(stat.started_after_boot > 0.0);
        assert!(parse_rss(&read("/proc/self/status").unwrap()).unwrap() > 0.0);
    }
}
