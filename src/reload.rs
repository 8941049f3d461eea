//! `fulcrum --reload -c FILE`: a zero-downtime upgrade or config reload, done safely.
//!
//! Pingora's mechanism: a new process started with `-u` receives the listening sockets of the
//! running one over `upgrade_sock` when the old one gets `SIGQUIT`; the old one keeps
//! accepting for a few seconds, then stops accepting, lets in-flight requests finish within
//! `grace_period_seconds`, and exits. No connection is refused at any point.
//!
//! This command wraps it: (1) validate FILE, and stop if it is bad, leaving the old process
//! serving; (2) find the old process from `pid_file` and make sure it is the one to replace
//! (see below); (3) start the new process with `-u` (and `-d` when asked); (4) wait until it
//! listens on `upgrade_sock`; (5) `SIGQUIT` the old process; (6) wait until the new one
//! serves: `pid_file` names it and it listens on every listener address of FILE; say so;
//! (7) wait until the old one has exited; (8) report.
//!
//! The process to replace, the one `pid_file` names, must be alive, must be a fulcrum (by
//! its executable or command line), and must serve the same listeners: it listens on at least
//! one of FILE's `listeners[].addr` (exactly that address, as Pingora hands sockets over by
//! address). A reload may add or remove listeners, but one that shares none with the running
//! process is not a reload of it. Otherwise nothing is started or signalled.

use crate::config;
use crate::procfs::{alive, is_fulcrum, listening_addrs, program_names, read_pid};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a reload did not happen or did not finish.
#[derive(Debug)]
pub enum ReloadError {
    /// The new config is invalid; nothing was changed.
    Config(config::ConfigError),
    /// No running fulcrum was found through the pid file.
    NotRunning(String),
    /// The process the pid file names is not the fulcrum to replace; it was left alone.
    NotOurs(String),
    /// The new process could not start or exited early; the old one keeps serving.
    NewProcess(String),
    /// The old process was signalled but the new one did not take over in time.
    HandOver(String),
    /// The old process did not exit in time (it still serves its in-flight requests).
    OldProcess(String),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Config(e) => write!(f, "{e}; the running fulcrum was left alone"),
            ReloadError::NotRunning(m) => write!(f, "no running fulcrum to reload: {m}"),
            ReloadError::NotOurs(m) => write!(f, "{m}; it was left alone and nothing was started"),
            ReloadError::NewProcess(m) => {
                write!(
                    f,
                    "the new process failed ({m}); the running fulcrum keeps serving"
                )
            }
            ReloadError::HandOver(m) | ReloadError::OldProcess(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ReloadError {}

/// The new process, once it serves.
#[derive(Debug)]
pub struct Serving {
    /// Its pid.
    pub pid: i32,
    /// The listener addresses it holds.
    pub addrs: Vec<SocketAddr>,
}

/// What a finished reload did.
#[derive(Debug)]
pub struct ReloadReport {
    /// The process that was replaced.
    pub old_pid: i32,
    /// The process now serving.
    pub new_pid: i32,
    /// From `SIGQUIT` to the old process's exit.
    pub old_exit_after: Duration,
}

/// Poll `done` every 20 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

fn early_exit(child: &mut Child) -> Option<String> {
    match child.try_wait() {
        Ok(Some(status)) if !status.success() => Some(format!("it exited with {status}")),
        _ => None,
    }
}

/// Check that `pid`, named by `pid_file`, is the fulcrum to replace by a process listening on
/// `listeners` (see the module doc).
fn check_old_process(
    pid_file: &Path,
    pid: i32,
    listeners: &[SocketAddr],
) -> Result<(), ReloadError> {
    let named = format!("pid {pid} (named by {})", pid_file.display());
    if !is_fulcrum(pid) {
        let names = program_names(pid);
        let runs = names.first().map_or("an unknown program", String::as_str);
        let why = format!("{named} runs {runs}, not fulcrum");
        return Err(ReloadError::NotOurs(why));
    }
    let held = listening_addrs(pid)
        .map_err(|e| ReloadError::NotOurs(format!("cannot read the sockets of {named}: {e}")))?;
    if shares_a_listener(&held, listeners) {
        return Ok(());
    }
    Err(ReloadError::NotOurs(format!(
        "{named} is a fulcrum listening on {}, not on any listener of this config ({})",
        list(&held),
        list(listeners)
    )))
}

/// Whether a process holding `held` serves the same listeners as a config listening on
/// `listeners`: at least one address in common.
fn shares_a_listener(held: &[SocketAddr], listeners: &[SocketAddr]) -> bool {
    listeners.iter().any(|a| held.contains(a))
}

/// `a, b, c`, or `nothing`.
fn list(addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        return "nothing".into();
    }
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The new process, if it serves: `pid_file` names a live process other than `old_pid`, and
/// it listens on every one of `listeners`.
fn serving(pid_file: &Path, old_pid: i32, listeners: &[SocketAddr]) -> Option<Serving> {
    let pid = read_pid(pid_file).filter(|p| *p != old_pid && alive(*p))?;
    let held = listening_addrs(pid).ok()?;
    listeners.iter().all(|a| held.contains(a)).then(|| Serving {
        pid,
        addrs: listeners.to_vec(),
    })
}

/// The running fulcrum a reload to `cfg` would replace: the live process `cfg`'s `pid_file`
/// names, a fulcrum listening on at least one of `cfg`'s listeners (see the module doc).
/// `fulcrum --reload --dry-run` finds it the same way.
pub fn find_running(cfg: &config::Config) -> Result<i32, ReloadError> {
    let pid_file = PathBuf::from(&cfg.server.pid_file);
    let listeners: Vec<SocketAddr> = cfg.listeners.iter().map(|l| l.addr).collect();
    let pid = read_pid(&pid_file)
        .ok_or_else(|| ReloadError::NotRunning(format!("cannot read {}", pid_file.display())))?;
    if !alive(pid) {
        return Err(ReloadError::NotRunning(format!(
            "pid {pid} from {} is not running",
            pid_file.display()
        )));
    }
    check_old_process(&pid_file, pid, &listeners)?;
    Ok(pid)
}

/// Run the reload for config `file`; `daemon` starts the new process with `-d`. `on_serving`
/// is called as soon as the new process serves, before the old one has exited.
pub fn run(
    file: &Path,
    daemon: bool,
    on_serving: impl FnOnce(&Serving),
) -> Result<ReloadReport, ReloadError> {
    let (_, cfg) = config::load_file(file).map_err(ReloadError::Config)?;
    let pid_file = PathBuf::from(&cfg.server.pid_file);
    let upgrade_sock = PathBuf::from(&cfg.server.upgrade_sock);
    let listeners: Vec<SocketAddr> = cfg.listeners.iter().map(|l| l.addr).collect();
    let grace = cfg.server.grace_period_seconds.unwrap_or(0)
        + cfg.server.graceful_shutdown_timeout_seconds.unwrap_or(0);

    // (2) The process to replace.
    let old_pid = find_running(&cfg)?;

    // (3) The new process.
    let exe = std::env::current_exe()
        .map_err(|e| ReloadError::NewProcess(format!("cannot find my own binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("-u").arg("-c").arg(file).stdin(Stdio::null());
    if daemon {
        cmd.arg("-d");
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ReloadError::NewProcess(format!("cannot start it: {e}")))?;

    // (4) The new process binds upgrade_sock and waits for the sockets.
    let listening = wait_until(Duration::from_secs(10), || {
        upgrade_sock.exists() || early_exit(&mut child).is_some()
    });
    if let Some(why) = early_exit(&mut child) {
        return Err(ReloadError::NewProcess(why));
    }
    if !listening {
        let _ = child.kill();
        return Err(ReloadError::NewProcess(format!(
            "it did not open {} within 10 s",
            upgrade_sock.display()
        )));
    }

    // (5) Hand the sockets over.
    let quit_at = Instant::now();
    kill(Pid::from_raw(old_pid), Signal::SIGQUIT)
        .map_err(|e| ReloadError::NotRunning(format!("cannot signal pid {old_pid}: {e}")))?;

    // (6) In the foreground the new process writes pid_file once it has the sockets; with -d,
    // the daemon writes it when it forks, and holds the sockets a little later. Either way it
    // serves once pid_file names it and it holds a socket on every listener address (those
    // handed over at once, new ones when its proxy services start).
    let mut now_serving = None;
    wait_until(Duration::from_secs(15), || {
        now_serving = serving(&pid_file, old_pid, &listeners);
        now_serving.is_some() || early_exit(&mut child).is_some()
    });
    if let Some(why) = early_exit(&mut child) {
        return Err(ReloadError::NewProcess(why));
    }
    let Some(now_serving) = now_serving else {
        return Err(ReloadError::HandOver(format!(
            "pid {old_pid} was sent SIGQUIT, but within 15 s {} named no new process \
             listening on {}",
            pid_file.display(),
            list(&listeners)
        )));
    };
    let new_pid = now_serving.pid;
    on_serving(&now_serving);

    // (7) Pingora's old process: ~5 s of overlap, then the grace period, then shutdown.
    let limit = Duration::from_secs(5 + grace + 5);
    if !wait_until(limit, || !alive(old_pid)) {
        return Err(ReloadError::OldProcess(format!(
            "new pid {new_pid} is serving, but old pid {old_pid} has not exited after {limit:?}"
        )));
    }
    Ok(ReloadReport {
        old_pid,
        new_pid,
        old_exit_after: quit_at.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn same_listeners_means_one_address_in_common() {
        let held = addrs(&["127.0.0.1:8080", "127.0.0.1:9000"]);
        // The same, one added, one removed: still the same instance.
        assert!(shares_a_listener(&held, &addrs(&["127.0.0.1:8080"])));
        assert!(shares_a_listener(
            &held,
            &addrs(&["127.0.0.1:8443", "127.0.0.1:8080"])
        ));
        // Nothing in common, or the same port on another address: another instance.
        assert!(!shares_a_listener(&held, &addrs(&["127.0.0.1:8081"])));
        assert!(!shares_a_listener(&held, &addrs(&["0.0.0.0:8080"])));
        assert!(!shares_a_listener(&held, &addrs(&["[::1]:8080"])));
        assert!(!shares_a_listener(&[], &addrs(&["127.0.0.1:8080"])));
    }

    #[test]
    fn lists_addresses_for_messages() {
        assert_eq!(list(&[]), "nothing");
        assert_eq!(
            list(&addrs(&["127.0.0.1:1", "[::1]:2"])),
            "127.0.0.1:1, [::1]:2"
        );
    }
}
