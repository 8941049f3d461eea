//! Operations: the zero-downtime reload under load (`fulcrum --reload`), signals (SIGTERM
//! drains in-flight requests, SIGINT exits at once), daemon mode, the admin listener
//! (`/status`, `/metrics`, `/health`, bearer token) and request ids.
//!
//! Processes this file did not start itself (the one `--reload` starts, a daemon) are found
//! through their pid file and SIGKILLed by a [`ProcessGuard`] when a test ends, also when it
//! fails. Liveness checks treat zombies as dead: a process whose parent has not reaped it yet
//! has exited.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

// ---------------------------------------------------------------------------------------------
// Processes and signals
// ---------------------------------------------------------------------------------------------

/// Pingora's fixed overlap after SIGQUIT: the old process keeps accepting this long.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The pid in a pid file.
fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits (at most 10 s) for a pid file to hold a pid.
async fn wait_for_pid(path: &Path) -> i32 {
    for _ in 0..500 {
        if let Some(pid) = read_pid(path) {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pid in {} after 10 s", path.display());
}

/// True while `pid` exists and is not a zombie.
fn pid_alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the `(comm)` one.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        // Gone in between, or no /proc at all (then trust kill).
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

/// True if `pid` runs the binary under test, so a guard never signals a stranger that got a
/// recycled pid.
fn is_fulcrum(pid: i32) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let ours = std::fs::canonicalize(FULCRUM_BIN).unwrap_or_else(|_| PathBuf::from(FULCRUM_BIN));
    // A rebuilt binary shows as "<path> (deleted)".
    exe.to_string_lossy()
        .starts_with(ours.to_string_lossy().as_ref())
}

/// Sends `sig` to `pid`, panicking on failure.
fn signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill -{sig:?} {pid}: {e}"));
}

/// Polls (every 10 ms, at most `limit`) until `pid` is gone. Returns how long it took, `None`
/// if it is still alive.
async fn wait_gone(pid: i32, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let max_iterations = (limit.as_millis() / 10 + 2) as usize;
    for _ in 0..max_iterations {
        if !pid_alive(pid) {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (!pid_alive(pid)).then(|| start.elapsed())
}

/// Polls (every 10 ms, at most `limit`) until our child `f` has exited, reaping it. Returns the
/// exit status and how long it took.
async fn wait_exit(f: &mut Fulcrum, limit: Duration) -> Option<(ExitStatus, Duration)> {
    let start = Instant::now();
    let max_iterations = (limit.as_millis() / 10 + 2) as usize;
    for _ in 0..max_iterations {
        if let Some(status) = f.try_wait() {
            return Some((status, start.elapsed()));
        }
        if start.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// SIGKILLs, when dropped, every live fulcrum process named by its pid files, added with
/// [`ProcessGuard::add`], or running with an argument inside the guarded directory (a process
/// `--reload` started but that never wrote the pid file): the processes `--reload` or `-d`
/// started, which are not our children.
struct ProcessGuard {
    pid_files: Vec<PathBuf>,
    dir: Option<PathBuf>,
    pids: Mutex<Vec<i32>>,
}

impl ProcessGuard {
    /// Guards the pids in `pid_files` and fulcrum processes whose arguments name a file in
    /// the directory of the first pid file.
    fn new(pid_files: &[&Path]) -> ProcessGuard {
        ProcessGuard {
            pid_files: pid_files.iter().map(|p| p.to_path_buf()).collect(),
            dir: pid_files
                .first()
                .and_then(|p| p.parent())
                .map(Path::to_path_buf),
            pids: Mutex::new(Vec::new()),
        }
    }

    fn add(&self, pid: i32) {
        self.pids.lock().unwrap().push(pid);
    }

    /// Fulcrum processes with an argument inside `dir`.
    fn processes_using(dir: &Path) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let dir = dir.to_string_lossy().into_owned();
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
                    cmd.split(|b| *b == 0)
                        .any(|arg| String::from_utf8_lossy(arg).starts_with(&dir))
                })
            })
            .filter(|pid| is_fulcrum(*pid))
            .collect()
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let mut pids: Vec<i32> = self.pids.lock().unwrap().clone();
        pids.extend(self.pid_files.iter().filter_map(|p| read_pid(p)));
        if let Some(dir) = &self.dir {
            pids.extend(ProcessGuard::processes_using(dir));
        }
        pids.sort_unstable();
        pids.dedup();
        for pid in pids {
            if pid <= 1 || pid == std::process::id() as i32 {
                continue;
            }
            if pid_alive(pid) && is_fulcrum(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                for _ in 0..250 {
                    if !pid_alive(pid) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// A `pingora:` section with the given grace periods and every file in `$TMPDIR` (replaced by
/// the test's temp dir in [`with_pingora_section`]).
fn pingora(grace: u64, shutdown_timeout: u64, threads: usize) -> String {
    format!(
        r#"pingora:
  threads: {threads}
  grace_period_seconds: {grace}
  graceful_shutdown_timeout_seconds: {shutdown_timeout}
  pid_file: "$TMPDIR/fulcrum.pid"
  upgrade_sock: "$TMPDIR/upgrade.sock"
"#
    )
}

/// What `fulcrum --reload` did.
struct ReloadRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    /// How long the command ran.
    took: Duration,
    /// The old process's exit, seen while the command ran: status, time since the command
    /// started.
    old_exit: Option<(ExitStatus, Duration)>,
    /// When the command's stdout first said that the new process is serving, since the
    /// command started.
    serving_said: Option<Duration>,
}

/// Runs `fulcrum --reload -c config` to completion (at most 40 s) without blocking the runtime,
/// reaping the old process (`old`, our child) as soon as it exits: an unreaped zombie would
/// still count as running.
///
/// The output goes to files: the new process inherits the command's stdout and stderr and
/// outlives it, so pipes would never reach EOF.
async fn run_reload(config: &Path, old: &mut Fulcrum) -> ReloadRun {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, Ordering::SeqCst);
    let out_path = old.dir().join(format!("reload-{n}.stdout"));
    let err_path = old.dir().join(format!("reload-{n}.stderr"));
    let mut cmd = Command::new(FULCRUM_BIN);
    cmd.arg("--reload")
        .arg("-c")
        .arg(config)
        .current_dir(old.dir())
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create reload stdout"))
        .stderr(File::create(&err_path).expect("create reload stderr"));
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn fulcrum --reload");
    let mut old_exit = None;
    let mut serving_said = None;
    let limit = Duration::from_secs(40);
    let mut status = None;
    for _ in 0..(limit.as_millis() / 10 + 2) {
        if old_exit.is_none() {
            if let Some(s) = old.try_wait() {
                old_exit = Some((s, start.elapsed()));
            }
        }
        if serving_said.is_none()
            && std::fs::read_to_string(&out_path).is_ok_and(|o| o.contains(" is serving on "))
        {
            serving_said = Some(start.elapsed());
        }
        if let Some(s) = child.try_wait().expect("try_wait reload") {
            status = Some(s);
            break;
        }
        if start.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = start.elapsed();
    if old_exit.is_none() {
        if let Some(s) = old.try_wait() {
            old_exit = Some((s, took));
        }
    }
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "`fulcrum --reload` did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
            read(&out_path),
            read(&err_path)
        );
    };
    ReloadRun {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
        took,
        old_exit,
        serving_said,
    }
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

/// Counts of one load task.
#[derive(Default)]
struct LoadStats {
    ok: AtomicUsize,
    /// Connected (or reused a connection) but got no 200.
    failed: AtomicUsize,
    /// The TCP connection was refused (or could not be made).
    refused: AtomicUsize,
    /// A new connection closed with no byte of response (a failure; retried once to tell
    /// it from a process that stopped serving, see `fresh_connection_load`).
    closed_unanswered: AtomicUsize,
    gen1: AtomicUsize,
    gen2: AtomicUsize,
    /// Answers from generation 2 to requests sent while the reload ran.
    gen2_during_reload: AtomicUsize,
    /// Answers other than generation 2 to requests sent after the reload returned.
    stale_after_reload: AtomicUsize,
    /// The first few problems, for the failure message.
    problems: Mutex<Vec<String>>,
}

impl LoadStats {
    fn note(&self, what: String) {
        let mut p = self.problems.lock().unwrap();
        if p.len() < 10 {
            p.push(what);
        }
    }

    fn answered(&self, generation: Option<&str>, reload_started: bool, reload_done: bool) {
        self.ok.fetch_add(1, Ordering::SeqCst);
        match generation {
            Some("1") => self.gen1.fetch_add(1, Ordering::SeqCst),
            Some("2") => self.gen2.fetch_add(1, Ordering::SeqCst),
            other => {
                self.note(format!("200 with x-generation {other:?}"));
                self.failed.fetch_add(1, Ordering::SeqCst)
            }
        };
        if reload_done && generation != Some("2") {
            self.stale_after_reload.fetch_add(1, Ordering::SeqCst);
            self.note(format!(
                "request sent after the reload returned was answered by generation {generation:?}"
            ));
        }
        if reload_started && !reload_done && generation == Some("2") {
            self.gen2_during_reload.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} ok (gen1 {}, gen2 {}, of which {} during the reload), {} failed, {} refused, \
             {} closed unanswered and retried",
            self.ok.load(Ordering::SeqCst),
            self.gen1.load(Ordering::SeqCst),
            self.gen2.load(Ordering::SeqCst),
            self.gen2_during_reload.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            self.refused.load(Ordering::SeqCst),
            self.closed_unanswered.load(Ordering::SeqCst)
        )
    }
}

/// The phases of a reload, as the load tasks see them.
struct Phase {
    /// When the load started; problems are noted with their time since then.
    t0: Instant,
    reload_started: AtomicBool,
    reload_done: AtomicBool,
    stop: AtomicBool,
}

impl Phase {
    fn new() -> Phase {
        Phase {
            t0: Instant::now(),
            reload_started: AtomicBool::new(false),
            reload_done: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        }
    }

    fn at(&self) -> String {
        format!("t={:.3}s", self.t0.elapsed().as_secs_f64())
    }
}

/// Back-to-back GETs on one pooled keep-alive client until `phase.stop`.
async fn keepalive_load(url: String, phase: Arc<Phase>, stats: Arc<LoadStats>) {
    let c = client();
    for _ in 0..10_000_000 {
        if phase.stop.load(Ordering::SeqCst) {
            break;
        }
        let started = phase.reload_started.load(Ordering::SeqCst);
        let done = phase.reload_done.load(Ordering::SeqCst);
        match try_request(&c, "GET", &url, None, &[], None).await {
            Ok(r) if r.status == 200 => {
                stats.answered(r.header("x-generation").as_deref(), started, done)
            }
            Ok(r) => {
                stats.failed.fetch_add(1, Ordering::SeqCst);
                stats.note(format!(
                    "{} keep-alive: status {} body {:?}",
                    phase.at(),
                    r.status,
                    r.body
                ));
            }
            Err(e) if e.is_connect() => {
                stats.refused.fetch_add(1, Ordering::SeqCst);
                stats.note(format!("{} keep-alive: connect: {e:?}", phase.at()));
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::SeqCst);
                stats.note(format!("{} keep-alive: {e:?}", phase.at()));
            }
        }
    }
}

/// How one fresh-connection request went.
enum RawOutcome {
    /// Status and `x-generation` value.
    Answered(u16, Option<String>),
    /// connect() failed.
    Refused(String),
    /// Connected and sent the request, but the connection closed without a byte of answer.
    ClosedUnanswered,
    /// Connected, but no complete response.
    Failed(String),
}

/// GET / on a new TCP connection with `Connection: close`; reads to EOF (at most 5 s).
async fn raw_get(port: u16) -> RawOutcome {
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await;
    let mut stream = match stream {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return RawOutcome::Refused(e.to_string()),
        Err(_) => return RawOutcome::Refused("connect timed out".into()),
    };
    let exchange = async {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: reload.test\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let bytes = match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return RawOutcome::Failed(format!("io: {e}")),
        Err(_) => return RawOutcome::Failed("no response within 5 s".into()),
    };
    if bytes.is_empty() {
        return RawOutcome::ClosedUnanswered;
    }
    let text = String::from_utf8_lossy(&bytes);
    let Some((head, _body)) = text.split_once("\r\n\r\n") else {
        return RawOutcome::Failed(format!("incomplete response: {text:?}"));
    };
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else {
        return RawOutcome::Failed(format!("no status line: {head:?}"));
    };
    let generation = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("x-generation")
            .then(|| v.trim().to_string())
    });
    RawOutcome::Answered(status, generation)
}

/// Back-to-back GETs, each on a new TCP connection, until `phase.stop`.
async fn fresh_connection_load(port: u16, phase: Arc<Phase>, stats: Arc<LoadStats>) {
    for _ in 0..10_000_000 {
        if phase.stop.load(Ordering::SeqCst) {
            break;
        }
        let started = phase.reload_started.load(Ordering::SeqCst);
        let done = phase.reload_done.load(Ordering::SeqCst);
        let mut outcome = raw_get(port).await;
        if matches!(outcome, RawOutcome::ClosedUnanswered) {
            // A connection accepted and closed unread: counted as a failure of the reload
            // (the accept race, now closed). Retried once, as an HTTP client may for an
            // idempotent request (RFC 9110, 9.2.2), to see whether anything still serves.
            stats.closed_unanswered.fetch_add(1, Ordering::SeqCst);
            stats.note(format!(
                "{} fresh connection: closed unanswered, retried",
                phase.at()
            ));
            outcome = raw_get(port).await;
        }
        match outcome {
            RawOutcome::Answered(200, generation) => {
                stats.answered(generation.as_deref(), started, done)
            }
            RawOutcome::Answered(status, _) => {
                stats.failed.fetch_add(1, Ordering::SeqCst);
                stats.note(format!("{} fresh connection: status {status}", phase.at()));
            }
            RawOutcome::Refused(e) => {
                stats.refused.fetch_add(1, Ordering::SeqCst);
                stats.note(format!("{} fresh connection: connect: {e}", phase.at()));
            }
            RawOutcome::ClosedUnanswered => {
                stats.failed.fetch_add(1, Ordering::SeqCst);
                stats.note(format!(
                    "{} fresh connection: closed unanswered twice",
                    phase.at()
                ));
            }
            RawOutcome::Failed(e) => {
                stats.failed.fetch_add(1, Ordering::SeqCst);
                stats.note(format!("{} fresh connection: {e}", phase.at()));
            }
        }
        // A short pause keeps the rate of new connections (and TIME_WAIT sockets) modest.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The "N.N" in the reload report's "old pid P exited N.N s after SIGQUIT".
fn reported_old_exit(stdout: &str) -> Option<f64> {
    let rest = stdout.split(" exited ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------------------------

/// Config for the reload tests: two backends, one route marking responses with its generation.
fn generation_config(port: u16, b1: &TestBackend, b2: &TestBackend, generation: &str) -> String {
    format!(
        r#"{pingora}
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{b1}"
      - addr: "{b2}"
routes:
  - upstream: app
    headers:
      response:
        set:
          x-generation: "{generation}"
"#,
        pingora = pingora(1, 1, 2),
        b1 = b1.addr(),
        b2 = b2.addr()
    )
}

/// Keep-alive clients sending back to back during the reload, each on its own connection.
const KEEPALIVE_CLIENTS: usize = 8;
/// Clients sending back to back during the reload, each request on a new connection.
const FRESH_CLIENTS: usize = 4;

/// `fulcrum --reload` while keep-alive and fresh-connection clients send back to back: the
/// command succeeds, nothing fails or is refused, the new config answers once it returns, and
/// the old process exits within Pingora's 5 s overlap + grace + shutdown timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_load_drops_nothing() {
    let (grace, shutdown_timeout) = (1u64, 1u64);
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let port = free_port();
    let mut f = Fulcrum::start(&generation_config(port, &b1, &b2, "1"), port).await;
    let pid_file = f.dir().join("fulcrum.pid");
    let guard = ProcessGuard::new(&[&pid_file]);
    let old_pid = wait_for_pid(&pid_file).await;
    assert!(is_fulcrum(old_pid), "pid file names {old_pid}, not fulcrum");
    assert_eq!(pid_listens_on(old_pid as u32, port), Some(true));

    let r = get(&client(), &f.url("/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-generation").as_deref(), Some("1"));

    let new_config = write_file(
        f.dir(),
        "fulcrum-gen2.yaml",
        &with_pingora_section(&generation_config(port, &b1, &b2, "2"), f.dir()),
    );

    // Load for the whole reload: keep-alive clients, and one new connection per request.
    let phase = Arc::new(Phase::new());
    let keepalive = Arc::new(LoadStats::default());
    let fresh = Arc::new(LoadStats::default());
    let mut tasks = Vec::new();
    for _ in 0..FRESH_CLIENTS {
        tasks.push(tokio::spawn(fresh_connection_load(
            port,
            phase.clone(),
            fresh.clone(),
        )));
    }
    for _ in 0..KEEPALIVE_CLIENTS {
        tasks.push(tokio::spawn(keepalive_load(
            f.url("/"),
            phase.clone(),
            keepalive.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = (
        keepalive.ok.load(Ordering::SeqCst),
        fresh.ok.load(Ordering::SeqCst),
    );

    phase.reload_started.store(true, Ordering::SeqCst);
    let reload_at = phase.at();
    let reload = run_reload(&new_config, &mut f).await;
    phase.reload_done.store(true, Ordering::SeqCst);
    let during = (
        keepalive.ok.load(Ordering::SeqCst) - before.0,
        fresh.ok.load(Ordering::SeqCst) - before.1,
    );
    // Keep the load on a little after the reload returned.
    tokio::time::sleep(Duration::from_millis(500)).await;
    phase.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(15), t)
            .await
            .expect("load task did not stop")
            .expect("load task panicked");
    }

    let new_pid = read_pid(&pid_file).unwrap_or(0);
    guard.add(new_pid);
    let old_exit = reload
        .old_exit
        .or_else(|| f.try_wait().map(|s| (s, reload.took)));
    let reported = reported_old_exit(&reload.stdout);
    eprintln!(
        "reload under load: keep-alive client: {}; fresh connections: {}",
        keepalive.summary(),
        fresh.summary()
    );
    eprintln!(
        "reload under load: reload started at {reload_at}; answered while it ran: {} keep-alive \
         ({KEEPALIVE_CLIENTS} clients) + {} fresh ({FRESH_CLIENTS} clients); reload took {:.2} s; old pid {old_pid} exited {} \
         (reported: {} s after SIGQUIT); new pid {new_pid}",
        during.0,
        during.1,
        reload.took.as_secs_f64(),
        old_exit.map_or("never".to_string(), |(s, t)| format!(
            "with {s} {:.2} s after the reload command started",
            t.as_secs_f64()
        )),
        reported.map_or("?".to_string(), |r| r.to_string()),
    );

    assert!(
        reload.status.success(),
        "fulcrum --reload failed: {}\nstdout:\n{}\nstderr:\n{}",
        reload.status,
        reload.stdout,
        reload.stderr
    );
    assert!(
        reload
            .stdout
            .contains(&format!("pid {new_pid} now serving"))
            && reload.stdout.contains(&format!("old pid {old_pid} exited")),
        "unexpected reload report: {:?}",
        reload.stdout
    );
    assert!(
        reload.stdout.contains(&format!(
            "fulcrum: reload: pid {new_pid} is serving on 127.0.0.1:{port}\n"
        )),
        "no line saying that the new process serves: {:?}",
        reload.stdout
    );

    // The load really spanned the reload.
    for (name, stats) in [("keep-alive", &keepalive), ("fresh-connection", &fresh)] {
        assert!(stats.gen1.load(Ordering::SeqCst) > 0, "{name}: no gen 1");
        assert!(stats.gen2.load(Ordering::SeqCst) > 0, "{name}: no gen 2");
    }
    assert!(
        during.0 >= 100 && during.1 >= 100,
        "too little load while the reload ran: {during:?}"
    );
    // During Pingora's overlap both processes accept from the same socket.
    assert!(
        fresh.gen2_during_reload.load(Ordering::SeqCst) > 0,
        "the new process answered no new connection before the reload returned"
    );

    // The old process is gone, and went in time: 5 s overlap + grace + shutdown timeout.
    let (old_status, old_after) = old_exit.expect("the old process did not exit");
    assert!(old_status.success(), "old process exited with {old_status}");
    assert!(!pid_alive(old_pid));
    let bound = CLOSE_TIMEOUT.as_secs_f64() + (grace + shutdown_timeout) as f64 + 2.0;
    let reported = reported.expect("no exit time in the reload report");
    assert!(
        (CLOSE_TIMEOUT.as_secs_f64()..=bound).contains(&reported),
        "old process exited {reported} s after SIGQUIT; expected between 5 and {bound} s"
    );
    // From the command's start that also includes starting the new process.
    assert!(
        old_after.as_secs_f64() <= bound + 3.0,
        "old process exited {old_after:?} after the reload started"
    );

    // The new process holds the socket and serves generation 2, on new and on fresh clients.
    assert_ne!(new_pid, old_pid);
    assert!(pid_alive(new_pid) && is_fulcrum(new_pid));
    assert_eq!(pid_listens_on(new_pid as u32, port), Some(true));
    for _ in 0..5 {
        match raw_get(port).await {
            RawOutcome::Answered(200, generation) => assert_eq!(generation.as_deref(), Some("2")),
            RawOutcome::Answered(s, _) => panic!("after the reload: status {s}"),
            RawOutcome::Refused(e) | RawOutcome::Failed(e) => panic!("after the reload: {e}"),
            RawOutcome::ClosedUnanswered => panic!("after the reload: closed unanswered"),
        }
        let r = get(&client(), &f.url("/")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-generation").as_deref(), Some("2"));
    }
    // Nothing was lost (checked last: the counts say the most when something was).
    let lost: Vec<String> = [("keep-alive", &keepalive), ("fresh-connection", &fresh)]
        .iter()
        .filter(|(_, stats)| {
            stats.failed.load(Ordering::SeqCst)
                + stats.refused.load(Ordering::SeqCst)
                + stats.stale_after_reload.load(Ordering::SeqCst)
                > 0
                // Every connection either process accepts is answered, the last ones the
                // old process accepted included (tests/reload_stress.rs measures it).
                || stats.closed_unanswered.load(Ordering::SeqCst) > 0
        })
        .map(|(name, stats)| {
            format!(
                "{name} load: {}; stale after reload: {}; problems: {:#?}",
                stats.summary(),
                stats.stale_after_reload.load(Ordering::SeqCst),
                stats.problems.lock().unwrap()
            )
        })
        .collect();
    assert!(
        lost.is_empty(),
        "requests failed during the reload (started at {reload_at}):\n{}",
        lost.join("\n")
    );
    drop(guard);
    assert!(
        wait_gone(new_pid, Duration::from_secs(5)).await.is_some(),
        "the new process survived the guard"
    );
}

/// A reload with an invalid config fails naming the key, and the old process keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_with_bad_config_keeps_old_serving() {
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let port = free_port();
    let mut f = Fulcrum::start(&generation_config(port, &b1, &b2, "1"), port).await;
    let pid_file = f.dir().join("fulcrum.pid");
    let guard = ProcessGuard::new(&[&pid_file]);
    let old_pid = wait_for_pid(&pid_file).await;
    let c = client();
    assert_eq!(get(&c, &f.url("/")).await.status, 200);

    let bad = generation_config(port, &b1, &b2, "2").replace(
        &format!("      - addr: \"{}\"\n", b2.addr()),
        &format!("      - addr: \"{}\"\n        weight: 0\n", b2.addr()),
    );
    assert!(bad.contains("weight: 0"));
    let bad_path = write_file(f.dir(), "bad.yaml", &with_pingora_section(&bad, f.dir()));
    let reload = run_reload(&bad_path, &mut f).await;
    assert!(
        !reload.status.success(),
        "reload of a bad config succeeded:\n{}",
        reload.stdout
    );
    assert!(
        reload.stderr.contains("upstreams.app.backends[1].weight"),
        "the error does not name the key: {:?}",
        reload.stderr
    );
    assert!(
        reload.stderr.contains("left alone"),
        "the error does not say the running fulcrum was left alone: {:?}",
        reload.stderr
    );
    assert!(
        reload.took < Duration::from_secs(5),
        "a bad config took {:?} to reject",
        reload.took
    );
    assert!(reload.old_exit.is_none(), "the old process exited");

    // Same process, same socket, still serving, nothing started in its place.
    assert!(f.is_running());
    assert_eq!(read_pid(&pid_file), Some(old_pid));
    assert_eq!(pid_listens_on(old_pid as u32, port), Some(true));
    assert!(!f.dir().join("upgrade.sock").exists());
    for i in 0..10 {
        let r = get(&c, &f.url("/")).await;
        assert_eq!(r.status, 200, "keep-alive request {i}");
        assert_eq!(r.header("x-generation").as_deref(), Some("1"));
        match raw_get(port).await {
            RawOutcome::Answered(200, generation) => assert_eq!(generation.as_deref(), Some("1")),
            RawOutcome::Answered(s, _) => panic!("fresh request {i}: status {s}"),
            RawOutcome::Refused(e) | RawOutcome::Failed(e) => panic!("fresh request {i}: {e}"),
            RawOutcome::ClosedUnanswered => panic!("fresh request {i}: closed unanswered"),
        }
    }
    drop(guard);
}

// ---------------------------------------------------------------------------------------------
// Refusals: busy addresses, pid files naming another process
// ---------------------------------------------------------------------------------------------

/// How `fulcrum ARGS` ended when run to completion from `dir`.
struct Ended {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `fulcrum ARGS` from `dir` (output in files there) until it exits; panics if it still
/// runs after `limit` (after killing it). Does not block the runtime.
async fn run_to_exit(args: &[&str], dir: &Path, limit: Duration) -> Ended {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, Ordering::SeqCst);
    let out_path = dir.join(format!("run-{n}.stdout"));
    let err_path = dir.join(format!("run-{n}.stderr"));
    let mut child = Command::new(FULCRUM_BIN)
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn fulcrum");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`fulcrum {}` still ran after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    Ended {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// Far below Pingora's 30 s of bind retries: a refusal that takes longer did not come from
/// fulcrum's check.
const REFUSAL_LIMIT: Duration = Duration::from_secs(10);

/// A port on 127.0.0.1 held by a plain listening socket for as long as it lives.
fn occupied_port() -> StdListener {
    StdListener::bind(("127.0.0.1", free_port())).expect("occupy a port")
}

use std::net::TcpListener as StdListener;

/// A listener, admin or demo backend address in use by another program: without `-u`, fulcrum
/// exits 1 at once naming the key and the address, in the foreground and with `-d`, leaves
/// none of its other addresses bound and no process behind; `-t` still says the config is
/// valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_address_stops_the_start_and_binds_nothing() {
    let backend = TestBackend::start("b1").await;
    let busy = occupied_port();
    let busy_port = busy.local_addr().unwrap().port();
    let (p1, p2, admin, demo) = (free_port(), free_port(), free_port(), free_port());
    let route = format!(
        "upstreams:\n  app:\n    backends: [{{addr: \"{}\"}}]\nroutes:\n  - upstream: app\n",
        backend.addr()
    );
    // (config without the pingora section, fulcrum's arguments, expected key, addresses that
    // must stay free)
    let cases = [
        (
            format!(
                "listeners:\n  - addr: 127.0.0.1:{p1}\n  - addr: 127.0.0.1:{busy_port}\n\
                 admin:\n  addr: 127.0.0.1:{admin}\n{route}"
            ),
            vec![],
            "listeners[1].addr",
            vec![p1, admin],
        ),
        (
            format!(
                "listeners:\n  - addr: 127.0.0.1:{p1}\n  - addr: 127.0.0.1:{busy_port}\n{route}"
            ),
            vec!["-d"],
            "listeners[1].addr",
            vec![p1],
        ),
        (
            format!(
                "listeners:\n  - addr: 127.0.0.1:{p1}\nadmin:\n  addr: 127.0.0.1:{busy_port}\n\
                 demo_backends:\n  - {{name: d, addr: 127.0.0.1:{demo}}}\n{route}"
            ),
            vec![],
            "admin.addr",
            vec![p1, demo],
        ),
        (
            format!(
                "listeners:\n  - addr: 127.0.0.1:{p1}\n  - addr: 127.0.0.1:{p2}\n\
                 demo_backends:\n  - {{name: d, addr: 127.0.0.1:{demo}}}\n\
                 \x20 - {{name: e, addr: 127.0.0.1:{busy_port}}}\n{route}"
            ),
            vec!["-d"],
            "demo_backends[1].addr",
            vec![p1, p2, demo],
        ),
    ];
    for (yaml, extra, key, free) in cases {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("fulcrum.pid");
        let guard = ProcessGuard::new(&[&pid_file]);
        let config = write_file(
            dir.path(),
            "fulcrum.yaml",
            &with_pingora_section(&yaml, dir.path()),
        );
        let config = config.to_str().unwrap();
        let what = format!("{key} busy, extra arguments {extra:?}");

        let check = run_to_exit(&["-t", "-c", config], dir.path(), REFUSAL_LIMIT).await;
        assert!(
            check.status.success() && check.stdout.contains("is valid"),
            "{what}: -t must not look at ports: {}\n{}",
            check.status,
            check.stderr
        );

        let mut args = extra.clone();
        args.extend(["-c", config]);
        let run = run_to_exit(&args, dir.path(), REFUSAL_LIMIT).await;
        eprintln!("{what}: {} {:?}", run.status, run.stderr.trim());
        assert_eq!(run.status.code(), Some(1), "{what}: {}", run.stderr);
        let want = format!("fulcrum: {key}: 127.0.0.1:{busy_port} is already in use");
        assert!(
            run.stderr.lines().any(|l| l == want),
            "{what}: stderr lacks {want:?}:\n{}",
            run.stderr
        );
        for port in free {
            assert!(port_is_free(port), "{what}: port {port} was left bound");
        }
        assert!(
            ProcessGuard::processes_using(dir.path()).is_empty(),
            "{what}: a fulcrum process was left running"
        );
        assert_eq!(read_pid(&pid_file), None, "{what}: a pid file was written");
        drop(guard);
    }
    // The port's owner was not disturbed.
    let (_conn, peer) = {
        let c = std::net::TcpStream::connect(("127.0.0.1", busy_port)).unwrap();
        let local = c.local_addr().unwrap();
        (c, local)
    };
    let (_, from) = busy.accept().unwrap();
    assert_eq!(from, peer);
}

/// A listener address held by another fulcrum (which binds with SO_REUSEADDR) is in use too:
/// the second one exits 1, binds nothing, and the first keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_of_another_fulcrum_is_in_use() {
    let backend = TestBackend::start("b1").await;
    let taken = free_port();
    let mut first = Fulcrum::start(&single_backend_config("", taken, &backend), taken).await;
    let first_pid = wait_for_pid(&first.dir().join("fulcrum.pid")).await;

    let dir = tempfile::tempdir().unwrap();
    let own = free_port();
    let yaml = format!(
        "listeners:\n  - addr: 127.0.0.1:{own}\n  - addr: 127.0.0.1:{taken}\n\
         upstreams:\n  app:\n    backends: [{{addr: \"{}\"}}]\nroutes:\n  - upstream: app\n",
        backend.addr()
    );
    let config = write_file(
        dir.path(),
        "second.yaml",
        &with_pingora_section(&yaml, dir.path()),
    );
    let run = run_to_exit(&["-c", config.to_str().unwrap()], dir.path(), REFUSAL_LIMIT).await;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let want = format!("fulcrum: listeners[1].addr: 127.0.0.1:{taken} is already in use");
    assert!(
        run.stderr.lines().any(|l| l == want),
        "stderr lacks {want:?}:\n{}",
        run.stderr
    );
    assert!(
        port_is_free(own),
        "the second fulcrum left 127.0.0.1:{own} bound"
    );
    assert!(ProcessGuard::processes_using(dir.path()).is_empty());
    assert!(first.is_running());
    assert_eq!(pid_listens_on(first_pid as u32, taken), Some(true));
    assert_eq!(get(&client(), &first.url("/")).await.status, 200);
}

/// Removes files when dropped (pid files and sockets fulcrum made in /tmp by default).
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A config without a `pingora:` section whose answers carry `x-instance: NAME`.
fn instance_config(port: u16, backend: &TestBackend, name: &str) -> String {
    format!(
        r#"listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{addr}"
routes:
  - upstream: app
    headers:
      response:
        set:
          x-instance: "{name}"
"#,
        addr = backend.addr()
    )
}

/// Two configs without a `pingora:` section run side by side (each config file gets its own
/// default pid file and upgrade socket); starting one of them again is refused while it runs;
/// `--reload -c a.yaml` says when the new process serves, replaces a, and leaves b alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_replaces_only_the_instance_of_its_config() {
    use fulcrum::config::runtime_files::RuntimeFiles;

    let backend = TestBackend::start("b1").await;
    let configs = tempfile::tempdir().unwrap();
    let (pa, pb) = (free_port(), free_port());
    let a_path = write_file(
        configs.path(),
        "a.yaml",
        &instance_config(pa, &backend, "a1"),
    );
    let b_path = write_file(
        configs.path(),
        "b.yaml",
        &instance_config(pb, &backend, "b"),
    );
    let (a_files, b_files) = (
        RuntimeFiles::for_config_file(&a_path),
        RuntimeFiles::for_config_file(&b_path),
    );
    assert_ne!(a_files.pid_file, b_files.pid_file);
    assert_ne!(a_files.upgrade_sock, b_files.upgrade_sock);
    let (a_pid_file, b_pid_file) = (
        PathBuf::from(&a_files.pid_file),
        PathBuf::from(&b_files.pid_file),
    );
    let _cleanup = RemoveOnDrop(
        [&a_files, &b_files]
            .iter()
            .flat_map(|f| [f.pid_file.clone(), f.upgrade_sock.clone()])
            .map(PathBuf::from)
            .collect(),
    );
    // The guard's first path only says where the configs are (fulcrum processes naming a file
    // there are ours); the others are the default pid files.
    let anchor = configs.path().join("none.pid");
    let guard = ProcessGuard::new(&[&anchor, &a_pid_file, &b_pid_file]);

    let mut a = Fulcrum::start_args(&["-c", a_path.to_str().unwrap()], pa).await;
    let b = Fulcrum::start_args(&["-c", b_path.to_str().unwrap()], pb).await;
    let a_pid = wait_for_pid(&a_pid_file).await;
    let b_pid = wait_for_pid(&b_pid_file).await;
    assert_ne!(a_pid, b_pid);
    assert_eq!(pid_listens_on(a_pid as u32, pa), Some(true));
    assert_eq!(pid_listens_on(b_pid as u32, pb), Some(true));
    let c = client();
    let r = get(&c, &a.url("/")).await;
    assert_eq!(r.header("x-instance").as_deref(), Some("a1"));
    let r = get(&c, &b.url("/")).await;
    assert_eq!(r.header("x-instance").as_deref(), Some("b"));

    // a again, while a runs: its pid file names a live fulcrum.
    let again = run_to_exit(
        &["-c", a_path.to_str().unwrap()],
        configs.path(),
        REFUSAL_LIMIT,
    )
    .await;
    assert_eq!(again.status.code(), Some(1), "{}", again.stderr);
    let want = format!(
        "fulcrum: {} names pid {a_pid}, a running fulcrum",
        a_files.pid_file
    );
    assert!(
        again.stderr.contains(&want),
        "stderr lacks {want:?}:\n{}",
        again.stderr
    );
    assert_eq!(read_pid(&a_pid_file), Some(a_pid));

    write_file(
        configs.path(),
        "a.yaml",
        &instance_config(pa, &backend, "a2"),
    );
    let reload = run_reload(&a_path, &mut a).await;
    assert!(
        reload.status.success(),
        "fulcrum --reload failed: {}\nstdout:\n{}\nstderr:\n{}",
        reload.status,
        reload.stdout,
        reload.stderr
    );
    let new_pid = read_pid(&a_pid_file).unwrap_or(0);
    guard.add(new_pid);
    assert_ne!(new_pid, a_pid);
    let serving = format!("fulcrum: reload: pid {new_pid} is serving on 127.0.0.1:{pa}\n");
    let done = format!("pid {new_pid} now serving; old pid {a_pid} exited");
    let (at_serving, at_done) = (reload.stdout.find(&serving), reload.stdout.find(&done));
    assert!(
        matches!((at_serving, at_done), (Some(s), Some(d)) if s < d),
        "expected {serving:?} and then {done:?}, got {:?}",
        reload.stdout
    );
    // Said while the old process still ran, not once it had exited.
    let (_, old_exited) = reload.old_exit.expect("the old a did not exit");
    let said = reload
        .serving_said
        .expect("the serving line never appeared");
    eprintln!("reload of a: serving said after {said:?}, old a exited after {old_exited:?}");
    assert!(
        said < old_exited,
        "serving said at {said:?}, old a exited at {old_exited:?}"
    );

    assert_eq!(pid_listens_on(new_pid as u32, pa), Some(true));
    assert_eq!(
        get(&c, &a.url("/")).await.header("x-instance").as_deref(),
        Some("a2")
    );
    // b: same process, same pid file, still serving.
    assert!(pid_alive(b_pid));
    assert_eq!(read_pid(&b_pid_file), Some(b_pid));
    assert_eq!(pid_listens_on(b_pid as u32, pb), Some(true));
    for _ in 0..3 {
        let r = get(&client_no_pool(), &b.url("/")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-instance").as_deref(), Some("b"));
    }
    drop(b);
    drop(guard);
}

/// `--reload` whose pid file names a process that is not the fulcrum to replace (a `sleep`, or
/// a fulcrum listening elsewhere) exits 1 saying so, starts nothing, and leaves it running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_a_pid_file_naming_another_process() {
    let backend = TestBackend::start("b1").await;

    // A live process that is not fulcrum.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_file(
        dir.path(),
        "fulcrum.yaml",
        &with_pingora_section(&single_backend_config("", port, &backend), dir.path()),
    );
    let mut sleeper = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let sleep_pid = sleeper.id() as i32;
    let pid_file = dir.path().join("fulcrum.pid");
    std::fs::write(&pid_file, format!("{sleep_pid}\n")).unwrap();
    let run = run_to_exit(
        &["--reload", "-c", config.to_str().unwrap()],
        dir.path(),
        REFUSAL_LIMIT,
    )
    .await;
    let still_sleeping = sleeper.try_wait().unwrap().is_none();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(run.status.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    let want = format!(
        "fulcrum: reload: pid {sleep_pid} (named by {}) runs sleep, not fulcrum; it was left \
         alone and nothing was started",
        pid_file.display()
    );
    assert!(
        run.stderr.contains(&want),
        "stderr lacks {want:?}:\n{}",
        run.stderr
    );
    assert!(
        still_sleeping,
        "the sleep process did not survive the reload"
    );
    assert!(
        port_is_free(port),
        "something was started on 127.0.0.1:{port}"
    );
    assert!(ProcessGuard::processes_using(dir.path()).is_empty());

    // A fulcrum on other listeners, named by the pid file of a config for another address.
    let theirs = free_port();
    let mut other = Fulcrum::start(&single_backend_config("", theirs, &backend), theirs).await;
    let other_pid_file = other.dir().join("fulcrum.pid");
    let other_pid = wait_for_pid(&other_pid_file).await;
    let dir = tempfile::tempdir().unwrap();
    let ours = free_port();
    let yaml = format!(
        "pingora:\n  threads: 1\n  pid_file: \"{}\"\n  upgrade_sock: \"{}\"\n{}",
        other_pid_file.display(),
        dir.path().join("upgrade.sock").display(),
        single_backend_config("", ours, &backend)
    );
    let config = write_file(dir.path(), "fulcrum.yaml", &yaml);
    let run = run_to_exit(
        &["--reload", "-c", config.to_str().unwrap()],
        dir.path(),
        REFUSAL_LIMIT,
    )
    .await;
    assert_eq!(run.status.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    let want = format!(
        "fulcrum: reload: pid {other_pid} (named by {}) is a fulcrum listening on \
         127.0.0.1:{theirs}, not on any listener of this config (127.0.0.1:{ours}); it was left \
         alone and nothing was started",
        other_pid_file.display()
    );
    assert!(
        run.stderr.contains(&want),
        "stderr lacks {want:?}:\n{}",
        run.stderr
    );
    assert!(other.is_running());
    assert_eq!(read_pid(&other_pid_file), Some(other_pid));
    assert_eq!(pid_listens_on(other_pid as u32, theirs), Some(true));
    assert_eq!(get(&client(), &other.url("/")).await.status, 200);
    assert!(
        port_is_free(ours),
        "something was started on 127.0.0.1:{ours}"
    );
    assert!(!dir.path().join("upgrade.sock").exists());
    assert!(ProcessGuard::processes_using(dir.path()).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

fn single_backend_config(pingora: &str, port: u16, backend: &TestBackend) -> String {
    format!(
        r#"{pingora}
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{addr}"
routes:
  - upstream: app
"#,
        addr = backend.addr()
    )
}

/// Waits (at most 5 s) until `backend` has received `n` requests.
async fn wait_backend_count(backend: &TestBackend, n: usize) {
    for _ in 0..500 {
        if backend.count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "backend {} got {} requests, expected {n}",
        backend.name(),
        backend.count()
    );
}

/// What a new connection gets from a process that is shutting down.
#[derive(Debug, PartialEq)]
enum Probe {
    Refused,
    /// Accepted by the kernel, then closed or reset without a response.
    ClosedWithoutResponse,
    /// Accepted by the kernel, no response within the probe's 1 s.
    NoResponse,
    Served(u16),
}

async fn probe(port: u16) -> Probe {
    let stream = tokio::time::timeout(
        Duration::from_secs(1),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await;
    let mut stream = match stream {
        Ok(Ok(s)) => s,
        _ => return Probe::Refused,
    };
    let exchange = async {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: probe.test\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(Duration::from_secs(1), exchange).await {
        Err(_) => Probe::NoResponse,
        Ok(Err(_)) => Probe::ClosedWithoutResponse,
        Ok(Ok(bytes)) if bytes.is_empty() => Probe::ClosedWithoutResponse,
        Ok(Ok(bytes)) => Probe::Served(raw_status(&String::from_utf8_lossy(&bytes))),
    }
}

/// SIGTERM: the in-flight request completes, new connections are refused at once, and the
/// process exits 0 after the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_request() {
    let (grace, shutdown_timeout) = (3u64, 1u64);
    let slow = TestBackend::start_delayed("slow", Duration::from_millis(1500)).await;
    let port = free_port();
    let mut f = Fulcrum::start(
        &single_backend_config(&pingora(grace, shutdown_timeout, 1), port, &slow),
        port,
    )
    .await;
    let pid = wait_for_pid(&f.dir().join("fulcrum.pid")).await;

    let url = f.url("/");
    let in_flight = tokio::spawn(async move {
        let started = Instant::now();
        let r = try_request(&client_no_pool(), "GET", &url, None, &[], None).await;
        (r, started.elapsed())
    });
    wait_backend_count(&slow, 1).await;
    let term_at = Instant::now();
    signal(pid, Signal::SIGTERM);

    // The listener stops accepting: Pingora closes the listening socket.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = probe(port).await;
    eprintln!("sigterm: a new connection 0.5 s after SIGTERM: {after:?}");
    assert_eq!(after, Probe::Refused, "new connection after SIGTERM");
    assert!(f.is_running(), "fulcrum exited before its grace period");

    let (r, took) = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight request hung")
        .expect("request task panicked");
    let r = r.unwrap_or_else(|e| panic!("the in-flight request failed: {e:?}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "slow");
    assert!(took >= Duration::from_millis(1500));
    assert_eq!(slow.count(), 1);

    let bound = Duration::from_secs(grace + shutdown_timeout + 2);
    let (status, _) = wait_exit(&mut f, bound)
        .await
        .unwrap_or_else(|| panic!("fulcrum still runs {bound:?} after SIGTERM"));
    let exited_after = term_at.elapsed();
    eprintln!(
        "sigterm: in-flight request answered 200 after {:.2} s; exited with {status} {:.2} s \
         after SIGTERM",
        took.as_secs_f64(),
        exited_after.as_secs_f64()
    );
    assert!(status.success(), "exit status after SIGTERM: {status}");
    // Pingora waits out the whole grace period before stopping its runtimes.
    assert!(
        exited_after >= Duration::from_secs(grace) && exited_after <= bound,
        "exited {exited_after:?} after SIGTERM"
    );
    assert!(port_is_free(port));
}

/// SIGINT: the process exits at once, cutting an in-flight request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_at_once() {
    let slow = TestBackend::start_delayed("slow", Duration::from_secs(5)).await;
    let port = free_port();
    let mut f = Fulcrum::start(&single_backend_config(&pingora(5, 5, 1), port, &slow), port).await;
    let pid = wait_for_pid(&f.dir().join("fulcrum.pid")).await;

    let url = f.url("/");
    let in_flight = tokio::spawn(async move {
        let started = Instant::now();
        let r = try_request(&client_no_pool(), "GET", &url, None, &[], None).await;
        (r, started.elapsed())
    });
    wait_backend_count(&slow, 1).await;
    let int_at = Instant::now();
    signal(pid, Signal::SIGINT);
    let (status, took) = wait_exit(&mut f, Duration::from_secs(3))
        .await
        .expect("fulcrum still runs 3 s after SIGINT");
    eprintln!(
        "sigint: exited with {status} {:.3} s after SIGINT",
        took.as_secs_f64()
    );
    assert!(
        took <= Duration::from_millis(1000),
        "SIGINT took {took:?} to stop fulcrum"
    );

    // The in-flight request is cut, not answered and not left hanging.
    let (r, req_took) = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the in-flight request hung after SIGINT")
        .expect("request task panicked");
    assert!(r.is_err(), "in-flight request after SIGINT: {r:?}");
    assert!(
        int_at.elapsed() < Duration::from_secs(4) && req_took < Duration::from_secs(5),
        "the cut request took {req_took:?}"
    );
    assert!(port_is_free(port));
}

// ---------------------------------------------------------------------------------------------
// Daemon mode
// ---------------------------------------------------------------------------------------------

/// `fulcrum -d`: returns 0 once the daemon is up; the daemon writes pid_file and error_log,
/// serves, and exits on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_mode_writes_pid_file_and_error_log() {
    let backend = TestBackend::start("b1").await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("fulcrum.pid");
    let error_log = dir.path().join("error.log");
    let guard = ProcessGuard::new(&[&pid_file]);
    let yaml = format!(
        "{}  error_log: \"$TMPDIR/error.log\"\n{}",
        pingora(0, 1, 1),
        single_backend_config("", port, &backend)
    );
    let config = write_file(
        dir.path(),
        "fulcrum.yaml",
        &with_pingora_section(&yaml, dir.path()),
    );

    let out_path = dir.path().join("cmd.stdout");
    let err_path = dir.path().join("cmd.stderr");
    let mut child = Command::new(FULCRUM_BIN)
        .arg("-d")
        .arg("-c")
        .arg(&config)
        .current_dir(dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn fulcrum -d");
    // The launching process returns once the daemon is forked: give it 10 s. If it hangs, kill it and check the rest
    // anyway, failing at the end.
    let limit = Duration::from_secs(10);
    let start = Instant::now();
    let mut status = None;
    for _ in 0..(limit.as_millis() / 10 + 2) {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        if start.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let launch_problem = match status {
        Some(s) if s.success() => None,
        Some(s) => Some(format!("`fulcrum -d` exited with {s}")),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Some(format!("`fulcrum -d` did not return within {limit:?}"))
        }
    };
    eprintln!(
        "daemon: `fulcrum -d` {} after {:.2} s",
        status.map_or("still ran (killed)".to_string(), |s| format!(
            "returned {s}"
        )),
        start.elapsed().as_secs_f64()
    );

    let pid = wait_for_pid(&pid_file).await;
    guard.add(pid);
    assert_ne!(
        pid,
        child.id() as i32,
        "the pid file names the foreground process"
    );
    assert!(
        pid_alive(pid) && is_fulcrum(pid),
        "pid {pid} is not a live fulcrum"
    );
    assert!(wait_for_port(port, Duration::from_secs(10)).await);
    assert_eq!(pid_listens_on(pid as u32, port), Some(true));
    let r = get(&client(), &format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "b1");

    let log = read(&error_log);
    assert!(
        !log.trim().is_empty(),
        "error_log {} is empty",
        error_log.display()
    );

    signal(pid, Signal::SIGTERM);
    let gone = wait_gone(pid, Duration::from_secs(5)).await;
    eprintln!("daemon: exited {gone:?} after SIGTERM");
    assert!(gone.is_some(), "daemon {pid} still runs 5 s after SIGTERM");
    drop(guard);
    if let Some(problem) = launch_problem {
        panic!(
            "{problem} (the daemon itself came up and served)\nits stdout:\n{}\nits stderr:\n{}\n\
             error log:\n{}",
            read(&out_path),
            read(&err_path),
            log
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Admin listener
// ---------------------------------------------------------------------------------------------

/// A config with an admin listener, a round-robin group `app` of the backends and a catch-all
/// route to it; `admin_extra` is appended to the `admin:` section.
fn admin_config(
    port: u16,
    admin_port: u16,
    backends: &[&TestBackend],
    admin_extra: &str,
) -> String {
    let list: String = backends
        .iter()
        .map(|b| format!("      - addr: \"{}\"\n", b.addr()))
        .collect();
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin_port}"
{admin_extra}
upstreams:
  app:
    algorithm: round_robin
    backends:
{list}
routes:
  - upstream: app
"#
    )
}

async fn start_with_admin(yaml: &str, port: u16, admin_port: u16) -> Fulcrum {
    let mut f = Fulcrum::start(yaml, port).await;
    f.wait_listening(admin_port).await;
    f
}

async fn admin_get(admin_port: u16, path: &str, headers: &[(&str, &str)]) -> Resp {
    let url = format!("http://127.0.0.1:{admin_port}{path}");
    get_with(&client(), &url, None, headers).await
}

async fn status_doc(admin_port: u16) -> serde_json::Value {
    let r = admin_get(admin_port, "/status", &[]).await;
    assert_eq!(r.status, 200, "/status: {r:?}");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("/status is not JSON ({e}): {}", r.body))
}

/// Sends `n` GETs through fulcrum, all answered 200.
async fn send_requests(f: &Fulcrum, n: usize) {
    let c = client();
    let got = bodies(&c, &f.url("/"), None, n).await;
    assert_eq!(got.len(), n);
}

/// `/status` after exactly N requests to a round-robin group of two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_after_known_requests() {
    const N: u64 = 10;
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let (port, admin_port) = (free_port(), free_port());
    let f = start_with_admin(
        &admin_config(port, admin_port, &[&b1, &b2], ""),
        port,
        admin_port,
    )
    .await;

    // Before any request.
    let doc = status_doc(admin_port).await;
    let backends = doc["upstreams"]["app"]["backends"]
        .as_array()
        .unwrap()
        .clone();
    assert!(backends
        .iter()
        .all(|b| b["requests"] == 0 && b["in_flight"] == 0));

    send_requests(&f, N as usize).await;
    // The counters are updated when a request is logged, just after its response went out:
    // wait (bounded) until they have settled.
    let mut doc = serde_json::Value::Null;
    for _ in 0..100 {
        doc = status_doc(admin_port).await;
        let bs = doc["upstreams"]["app"]["backends"].as_array().unwrap();
        let sum: u64 = bs.iter().map(|b| b["requests"].as_u64().unwrap()).sum();
        let in_flight: u64 = bs.iter().map(|b| b["in_flight"].as_u64().unwrap()).sum();
        if sum == N && in_flight == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("status after {N} requests: {doc}");

    assert_eq!(doc["version"], env!("CARGO_PKG_VERSION"));
    let uptime = doc["uptime_seconds"]
        .as_f64()
        .expect("uptime_seconds is a number");
    assert!(uptime > 0.0 && uptime < 60.0, "uptime {uptime}");
    let ups = doc["upstreams"].as_object().unwrap();
    assert_eq!(ups.keys().collect::<Vec<_>>(), ["app"]);
    let app = &doc["upstreams"]["app"];
    assert_eq!(app["algorithm"], "round_robin");
    let bs = app["backends"].as_array().unwrap();
    assert_eq!(bs.len(), 2);
    let total: u64 = bs.iter().map(|b| b["requests"].as_u64().unwrap()).sum();
    assert_eq!(total, N, "requests in /status: {bs:?}");
    for (b, backend) in bs.iter().zip([&b1, &b2]) {
        assert_eq!(b["addr"], backend.addr());
        assert_eq!(b["weight"], 1);
        assert_eq!(b["healthy"], true);
        assert_eq!(b["in_flight"], 0);
        assert_eq!(b["failures"], 0);
        // Round robin over two equal backends: exactly half each, as the backends saw it.
        assert_eq!(b["requests"], N / 2);
        assert_eq!(b["requests"], backend.count() as u64);
    }
}

/// Parses every non-comment, non-empty line as `name{label="value",...} value [timestamp]`;
/// panics naming the first line that does not parse.
fn parse_metrics(text: &str) -> Vec<Sample> {
    fn parse_line(line: &str) -> Option<Sample> {
        let name_end = line.find(['{', ' '])?;
        let name = &line[..name_end];
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !name_ok {
            return None;
        }
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(after) = rest.strip_prefix('{') {
            let mut chars = after.char_indices().peekable();
            let consumed;
            loop {
                // label name
                let (start, c) = *chars.peek()?;
                if c == '}' {
                    consumed = start + 1;
                    break;
                }
                let mut key_end = start;
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        key_end = i;
                        break;
                    }
                    if !(c.is_ascii_alphanumeric() || c == '_') {
                        return None;
                    }
                }
                let key = &after[start..key_end];
                if key.is_empty() || chars.next()?.1 != '"' {
                    return None;
                }
                let mut value = String::new();
                loop {
                    let (_, c) = chars.next()?;
                    match c {
                        '"' => break,
                        '\\' => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            _ => return None,
                        },
                        c => value.push(c),
                    }
                }
                labels.insert(key.to_string(), value);
                match chars.next()? {
                    (_, ',') => continue,
                    (i, '}') => {
                        consumed = i + 1;
                        break;
                    }
                    _ => return None,
                }
            }
            rest = &after[consumed..];
        }
        let mut fields = rest.split_whitespace();
        let value: f64 = fields.next()?.parse().ok()?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().ok()?;
        }
        if fields.next().is_some() || !rest.starts_with(' ') {
            return None;
        }
        Some(Sample {
            name: name.to_string(),
            labels,
            value,
        })
    }
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("unparsable metrics line: {l:?}")))
        .collect()
}

/// `/metrics` parses line by line and its counters match exactly N requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_match_requests() {
    const N: usize = 12;
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let (port, admin_port) = (free_port(), free_port());
    let f = start_with_admin(
        &admin_config(port, admin_port, &[&b1, &b2], ""),
        port,
        admin_port,
    )
    .await;
    send_requests(&f, N).await;

    // Requests are counted when logged, just after the response: wait (bounded) for all N.
    let mut text = String::new();
    let mut samples = Vec::new();
    for _ in 0..100 {
        let r = admin_get(admin_port, "/metrics", &[]).await;
        assert_eq!(r.status, 200);
        assert!(
            r.header("content-type")
                .unwrap_or_default()
                .starts_with("text/plain"),
            "{:?}",
            r.header("content-type")
        );
        text = r.body;
        samples = parse_metrics(&text);
        let count = sum_of(
            &samples,
            "fulcrum_request_duration_seconds_count",
            &[("route", "/")],
        );
        if count as usize >= N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!samples.is_empty(), "no samples in /metrics");

    // Every family the docs name is there, with the right type.
    for (family, kind) in [
        ("fulcrum_requests_total", "counter"),
        ("fulcrum_upstream_requests_total", "counter"),
        ("fulcrum_request_duration_seconds", "histogram"),
        ("fulcrum_backend_in_flight", "gauge"),
        ("fulcrum_backend_healthy", "gauge"),
        ("fulcrum_backend_ejected", "gauge"),
        ("fulcrum_backend_attempts_total", "counter"),
        ("fulcrum_backend_failures_total", "counter"),
        ("fulcrum_backend_ejections_total", "counter"),
        ("fulcrum_backend_connections_total", "counter"),
        ("fulcrum_upstream_retries_total", "counter"),
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} {kind}\n")),
            "no `# TYPE {family} {kind}` in /metrics:\n{text}"
        );
    }

    let route = [("route", "/")];
    let ok = [("route", "/"), ("code", "200")];
    assert_eq!(
        sum_of(&samples, "fulcrum_requests_total", &ok),
        N as f64,
        "{text}"
    );
    assert_eq!(sum_of(&samples, "fulcrum_requests_total", &route), N as f64);
    for b in [&b1, &b2] {
        let l = [
            ("upstream", "app"),
            ("backend", &b.addr()[..]),
            ("code", "200"),
        ];
        assert_eq!(
            sum_of(&samples, "fulcrum_upstream_requests_total", &l),
            (N / 2) as f64,
            "{} in\n{text}",
            b.addr()
        );
        let ub = [("upstream", "app"), ("backend", &b.addr()[..])];
        assert_eq!(
            sum_of(&samples, "fulcrum_backend_attempts_total", &ub),
            (N / 2) as f64
        );
        assert_eq!(sum_of(&samples, "fulcrum_backend_failures_total", &ub), 0.0);
        assert_eq!(sum_of(&samples, "fulcrum_backend_in_flight", &ub), 0.0);
        assert_eq!(sum_of(&samples, "fulcrum_backend_healthy", &ub), 1.0);
        assert_eq!(sum_of(&samples, "fulcrum_backend_ejected", &ub), 0.0);
        assert_eq!(
            sum_of(&samples, "fulcrum_backend_connections_total", &ub),
            (N / 2) as f64,
            "every attempt used a new or a reused connection"
        );
    }
    assert_eq!(
        sum_of(
            &samples,
            "fulcrum_upstream_retries_total",
            &[("upstream", "app")]
        ),
        0.0
    );

    // The histogram: count N, a positive sum, cumulative buckets ending at +Inf = N.
    assert_eq!(
        sum_of(&samples, "fulcrum_request_duration_seconds_count", &route),
        N as f64
    );
    assert!(sum_of(&samples, "fulcrum_request_duration_seconds_sum", &route) > 0.0);
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.name == "fulcrum_request_duration_seconds_bucket")
        .filter(|s| s.labels.get("route").map(String::as_str) == Some("/"))
        .map(|s| {
            (
                s.labels["le"].parse::<f64>().expect("le is a number"),
                s.value,
            )
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() >= 2, "{buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "not cumulative: {buckets:?}"
    );
    assert_eq!(*buckets.last().unwrap(), (f64::INFINITY, N as f64));
}

/// `/health`: 503 naming a group whose backends all fail their checks; 200 when all are up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_503_when_group_down() {
    let web = TestBackend::start("web").await;
    let (dead1, dead2) = (free_port(), free_port());
    let (port, admin_port) = (free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin_port}"
upstreams:
  web:
    backends:
      - addr: "{web}"
    health_check: {{type: tcp, interval: 100ms, timeout: 100ms}}
  dead:
    backends:
      - addr: "127.0.0.1:{dead1}"
      - addr: "127.0.0.1:{dead2}"
    health_check: {{type: tcp, interval: 100ms, timeout: 100ms}}
routes:
  - path: /dead
    upstream: dead
  - upstream: web
"#,
        web = web.addr()
    );
    let f = start_with_admin(&yaml, port, admin_port).await;
    let mut r = admin_get(admin_port, "/health", &[]).await;
    for _ in 0..100 {
        if r.status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        r = admin_get(admin_port, "/health", &[]).await;
    }
    assert_eq!(r.status, 503, "/health with a dead group: {r:?}");
    assert!(
        r.body.contains("dead"),
        "body does not name the group: {:?}",
        r.body
    );
    assert!(
        !r.body.contains("web"),
        "body names the healthy group: {:?}",
        r.body
    );
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(admin_get(admin_port, "/health", &[]).await.status, 503);
    }
    let doc = status_doc(admin_port).await;
    for b in doc["upstreams"]["dead"]["backends"].as_array().unwrap() {
        assert_eq!(b["healthy"], false, "{doc}");
    }
    // The proxy still serves the healthy group.
    assert_eq!(get(&client(), &f.url("/")).await.body, "web");
    drop(f);

    // All groups healthy: 200.
    let (port, admin_port) = (free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin_port}"
upstreams:
  web:
    backends:
      - addr: "{web}"
    health_check: {{type: tcp, interval: 100ms, timeout: 100ms}}
routes:
  - upstream: web
"#,
        web = web.addr()
    );
    let _f = start_with_admin(&yaml, port, admin_port).await;
    for _ in 0..10 {
        let r = admin_get(admin_port, "/health", &[]).await;
        assert_eq!(r.status, 200, "/health with every group up: {r:?}");
        assert_eq!(r.body.trim(), "ok");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With `admin.token`, every admin path needs exactly `Authorization: Bearer TOKEN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_required() {
    const TOKEN: &str = "s3cret-admin-token-0123456789";
    let b1 = TestBackend::start("b1").await;
    let (port, admin_port) = (free_port(), free_port());
    let yaml = admin_config(port, admin_port, &[&b1], &format!("  token: \"{TOKEN}\""));
    let f = start_with_admin(&yaml, port, admin_port).await;
    let good = format!("Bearer {TOKEN}");
    let longer = format!("Bearer {TOKEN}x");
    let shorter = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let bare = TOKEN.to_string();
    for path in ["/status", "/health", "/metrics"] {
        let denied: [&[(&str, &str)]; 6] = [
            &[],
            &[("authorization", "Bearer wrong-token-wrong-token")],
            &[("authorization", &longer)],
            &[("authorization", &shorter)],
            &[("authorization", &bare)],
            &[("authorization", "Basic YWRtaW46YWRtaW4=")],
        ];
        for headers in denied {
            let r = admin_get(admin_port, path, headers).await;
            assert_eq!(r.status, 401, "{path} with {headers:?}: {r:?}");
            assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
            assert!(!r.body.contains("upstreams") && !r.body.contains("fulcrum_"));
        }
        let r = admin_get(admin_port, path, &[("authorization", &good)]).await;
        assert_eq!(r.status, 200, "{path} with the token: {r:?}");
    }
    let r = admin_get(admin_port, "/status", &[("authorization", &good)]).await;
    let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(doc["upstreams"]["app"]["backends"][0]["addr"], b1.addr());
    // The token guards the admin listener only.
    assert_eq!(get(&client(), &f.url("/")).await.status, 200);
}

/// `-t` rejects a non-loopback admin address without a token, naming `admin.addr`.
#[test]
fn public_admin_without_token_is_rejected_by_t() {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let base = |admin: &str| {
        format!(
            r#"listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "0.0.0.0:{admin_port}"
{admin}
upstreams:
  app:
    backends:
      - addr: "127.0.0.1:{port}"
routes:
  - upstream: app
"#
        )
    };
    let check = |name: &str, yaml: &str| {
        let path = write_file(dir.path(), name, yaml);
        fulcrum_cmd(&["-t", "-c", path.to_str().unwrap()])
    };

    let out = check("public.yaml", &base(""));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "-t accepted a public admin without token"
    );
    assert!(
        stderr.contains("admin.addr"),
        "error does not name admin.addr: {stderr}"
    );
    assert!(
        stderr.contains("token"),
        "error does not mention the token: {stderr}"
    );

    let out = check(
        "with-token.yaml",
        &base("  token: \"0123456789abcdef-token\""),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check("allowed.yaml", &base("  allow_public_without_token: true"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Request ids
// ---------------------------------------------------------------------------------------------

fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// X-Request-Id: a sane client id is kept, otherwise a 32-hex id is generated; either way the
/// backend and the client see the same single value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_forwarded_and_returned() {
    let backend = TestBackend::start("b1").await;
    let port = free_port();
    let f = Fulcrum::start(&single_backend_config("", port, &backend), port).await;
    let c = client();

    // The client's id goes upstream and comes back, once.
    let r = get_with(
        &c,
        &f.url("/"),
        None,
        &[("x-request-id", "client-id-42.abc")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header_all("x-request-id"), ["client-id-42.abc"]);
    let got = backend.last_request().unwrap();
    assert_eq!(got.header_all("x-request-id"), ["client-id-42.abc"]);

    // Without one: a 32-hex id, the same upstream and back, new for every request.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = get(&c, &f.url("/")).await;
        assert_eq!(r.status, 200);
        let ids = r.header_all("x-request-id");
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert!(is_hex32(&ids[0]), "generated id {:?}", ids[0]);
        let up = backend.last_request().unwrap().header_all("x-request-id");
        assert_eq!(up, ids, "the backend got another id");
        seen.push(ids[0].clone());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 3, "generated ids repeat: {seen:?}");

    // An insane one (too long) is replaced by a generated one, upstream and back.
    let long = "x".repeat(200);
    let r = get_with(&c, &f.url("/"), None, &[("x-request-id", &long)]).await;
    let ids = r.header_all("x-request-id");
    assert_eq!(ids.len(), 1);
    assert!(is_hex32(&ids[0]), "{ids:?}");
    assert_eq!(
        backend.last_request().unwrap().header_all("x-request-id"),
        ids
    );
}
