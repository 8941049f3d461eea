//! `fulcrum --reload -c FILE`: a zero-downtime upgrade or config reload, done safely.
//!
//! Pingora's mechanism: a new process started with `-u` receives the listening sockets of the
//! running one over `upgrade_sock` when the old one gets `SIGQUIT`; the old one keeps
//! accepting for a few seconds, then stops accepting, lets in-flight requests finish within
//! `grace_period_seconds`, and exits. No connection is refused at any point.
//!
//! This command wraps it: (1) validate FILE, and stop if it is bad, leaving the old process
//! serving; (2) find the old process from `pid_file`; (3) start the new process with `-u`
//! (and `-d` when asked); (4) wait until it listens on `upgrade_sock`; (5) `SIGQUIT` the old
//! process; (6) wait until the new one has the sockets (it rewrites `pid_file`) and the old
//! one has exited; (7) report.

use crate::config;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
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
    /// The new process could not start or exited early; the old one keeps serving.
    NewProcess(String),
    /// The old process did not exit in time (it still serves its in-flight requests).
    OldProcess(String),
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadError::Config(e) => write!(f, "{e}; the running fulcrum was left alone"),
            ReloadError::NotRunning(m) => write!(f, "no running fulcrum to reload: {m}"),
            ReloadError::NewProcess(m) => {
                write!(
                    f,
                    "the new process failed ({m}); the running fulcrum keeps serving"
                )
            }
            ReloadError::OldProcess(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ReloadError {}

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

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether a process exists and is not a zombie (an exited process its parent has not reaped).
fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    // /proc/PID/stat: "pid (comm) S ..."; the state follows the last ')'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
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

/// Run the reload for config `file`; `daemon` starts the new process with `-d`.
pub fn run(file: &Path, daemon: bool) -> Result<ReloadReport, ReloadError> {
    let (_, cfg) = config::load_file(file).map_err(ReloadError::Config)?;
    let pid_file = PathBuf::from(&cfg.server.pid_file);
    let upgrade_sock = PathBuf::from(&cfg.server.upgrade_sock);
    let grace = cfg.server.grace_period_seconds.unwrap_or(0)
        + cfg.server.graceful_shutdown_timeout_seconds.unwrap_or(0);

    let old_pid = read_pid(&pid_file)
        .ok_or_else(|| ReloadError::NotRunning(format!("cannot read {}", pid_file.display())))?;
    if !alive(old_pid) {
        return Err(ReloadError::NotRunning(format!(
            "pid {old_pid} from {} is not running",
            pid_file.display()
        )));
    }

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

    // (6) In the foreground the new process writes pid_file once it has the sockets; with -d
    // its launcher exits once it has forked the daemon (with daemon_wait_for_ready: once the
    // daemon has the sockets), and the old process's exit below says the hand-over is done.
    let took_over = wait_until(Duration::from_secs(15), || {
        if daemon {
            matches!(child.try_wait(), Ok(Some(_)))
        } else {
            read_pid(&pid_file).is_some_and(|p| p != old_pid) || early_exit(&mut child).is_some()
        }
    });
    if let Some(why) = early_exit(&mut child) {
        return Err(ReloadError::NewProcess(why));
    }
    if !took_over {
        return Err(ReloadError::NewProcess(format!(
            "it did not write {} within 15 s",
            pid_file.display()
        )));
    }
    let new_pid = read_pid(&pid_file).unwrap_or(child.id() as i32);

    // Pingora's old process: ~5 s of overlap, then the grace period, then shutdown.
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
