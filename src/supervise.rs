//! `fulcrum supervise -c FILE`: the process a container runs as PID 1, so that a
//! zero-downtime reload works inside the container.
//!
//! A reload replaces the fulcrum process by a new one (Pingora's socket handoff). If fulcrum
//! itself were PID 1, the container would end with the old process. The supervisor instead
//! starts fulcrum in the background (`-d`), makes itself the *subreaper* of everything it
//! starts (so daemonized processes, and the new process of a reload, stay its children), and
//! lives as long as any of them does:
//!
//! * `SIGHUP` runs `fulcrum --reload -d -c FILE` (so `docker kill -s HUP NAME` reloads);
//!   `docker exec NAME fulcrum --reload -d -c FILE` works too, since the new process ends up
//!   a child of the supervisor either way;
//! * `SIGTERM`, `SIGINT` and `SIGQUIT` are passed on to every fulcrum it supervises, which
//!   drain and exit; the supervisor then exits 0;
//! * it reaps every child, as PID 1 must;
//! * when the last fulcrum exits without being asked to, it exits 1, so the container's
//!   restart policy applies.

use nix::sys::prctl;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// `fulcrum supervise`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SuperviseArgs {
    /// The config to run fulcrum on.
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    pub conf: PathBuf,
}

/// The signals the supervisor waits for.
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    set
}

/// Start `fulcrum ARGS` as a child, with the signal mask children expect.
fn spawn(args: &[&std::ffi::OsStr]) -> std::io::Result<u32> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null());
    // SAFETY: between fork and exec only sigprocmask runs, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn().map(|c| c.id())
}

/// The pids whose parent is this process.
fn children() -> Vec<Pid> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| crate::procfs::parent_of(*pid) == Some(me))
        .map(Pid::from_raw)
        .collect()
}

/// Reap every child that exited; `None` once no child is left, else whether the first
/// launcher (`launcher`) failed, with its exit code.
fn reap(launcher: Pid) -> Option<Option<i32>> {
    let mut failed = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Some(failed),
            Ok(WaitStatus::Exited(pid, code)) if pid == launcher && code != 0 => {
                failed = Some(code)
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Run the supervisor until the last fulcrum exits.
pub fn run(args: &SuperviseArgs) -> ExitCode {
    let conf = args.conf.as_os_str();
    if let Err(e) = crate::config::load_file(Path::new(conf)) {
        eprintln!("fulcrum supervise: {e}");
        return ExitCode::FAILURE;
    }
    if let Err(e) = prctl::set_child_subreaper(true) {
        eprintln!("fulcrum supervise: cannot become a subreaper: {e}");
        return ExitCode::FAILURE;
    }
    let signals = handled();
    if let Err(e) = signals.thread_block() {
        eprintln!("fulcrum supervise: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let launcher = match spawn(&["-d".as_ref(), "-c".as_ref(), conf]) {
        Ok(pid) => Pid::from_raw(pid as i32),
        Err(e) => {
            eprintln!("fulcrum supervise: cannot start fulcrum: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stopping = false;
    let mut launch_failed = None;
    loop {
        let Ok(signal) = signals.wait() else { continue };
        match signal {
            Signal::SIGCHLD => match reap(launcher) {
                Some(failed) => launch_failed = launch_failed.or(failed),
                None if stopping => return ExitCode::SUCCESS,
                None => {
                    let code = launch_failed.unwrap_or(1).clamp(1, 255) as u8;
                    eprintln!("fulcrum supervise: fulcrum exited; exiting {code}");
                    return ExitCode::from(code);
                }
            },
            Signal::SIGHUP => {
                let reload = ["--reload".as_ref(), "-d".as_ref(), "-c".as_ref(), conf];
                if let Err(e) = spawn(&reload) {
                    eprintln!("fulcrum supervise: cannot start the reload: {e}");
                }
            }
            other => {
                stopping = true;
                for pid in children() {
                    let _ = kill(pid, other);
                }
            }
        }
    }
}
