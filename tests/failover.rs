//! Failover: active health checks, the passive circuit breaker (half-open trials), retries on
//! connect failures, the non-replay of requests that may have reached a backend, and the 503
//! that answers when a whole group is down.
//!
//! Backends that must die like real processes are `fulcrum` processes that run only a demo
//! backend (SIGKILLed through `Child::kill`); the others are in-process servers.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use support::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A `fulcrum` process that runs nothing but one demo backend named `name` on
/// 127.0.0.1:`port` (answering `"<name>\n"`), plus the dummy listener, upstream and route every
/// config needs. Returns once the process listens on `port`.
async fn demo_backend_process(name: &str, port: u16) -> Fulcrum {
    let dummy = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{dummy}"
demo_backends:
  - name: {name}
    addr: "127.0.0.1:{port}"
upstreams:
  own:
    backends:
      - addr: "127.0.0.1:{port}"
routes:
  - upstream: own
"#
    );
    Fulcrum::start(&yaml, port).await
}

/// The admin `/status` document, parsed.
async fn status_json(c: &reqwest::Client, admin_port: u16) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{admin_port}/status");
    let r = get(c, &url).await;
    assert_eq!(r.status, 200, "admin /status: {r:?}");
    serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("admin /status is not JSON ({e}): {}", r.body))
}

/// `upstreams.<group>.backends[index]` of the admin `/status` document.
async fn backend_status(
    c: &reqwest::Client,
    admin_port: u16,
    group: &str,
    index: usize,
) -> serde_json::Value {
    let doc = status_json(c, admin_port).await;
    doc["upstreams"][group]["backends"][index].clone()
}

/// `available` of one backend in `/status`: it may take traffic now (its health check and its
/// circuit breaker both allow it).
async fn backend_ready(c: &reqwest::Client, admin_port: u16, group: &str, index: usize) -> bool {
    backend_flag(c, admin_port, group, index, "available").await
}

/// A boolean field (`healthy`, `ejected`, `available`) of one backend in `/status`.
async fn backend_flag(
    c: &reqwest::Client,
    admin_port: u16,
    group: &str,
    index: usize,
    field: &str,
) -> bool {
    let b = backend_status(c, admin_port, group, index).await;
    b[field]
        .as_bool()
        .unwrap_or_else(|| panic!("no `{field}` in /status backend {group}[{index}]: {b}"))
}

/// Polls `/status` every 20 ms (at most `timeout`) until backend `group[index]` shows
/// `healthy == want`. Returns when it did, `None` on timeout.
async fn wait_ready_is(
    c: &reqwest::Client,
    admin_port: u16,
    group: &str,
    index: usize,
    want: bool,
    timeout: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    for _ in 0..(timeout.as_millis() / 20 + 2) {
        if backend_ready(c, admin_port, group, index).await == want {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// One request of a load run.
#[derive(Debug, Clone)]
struct Sample {
    /// When the response was complete (or the request failed).
    at: Instant,
    /// Status, 0 on a transport error.
    status: u16,
    /// The trimmed body (the backend's name), or the transport error.
    body: String,
}

/// Continuous GET load: `tasks` client tasks, each with its own keep-alive client, sending
/// sequential requests (with a 2 ms pause between them, so fulcrum's single worker and its
/// health checks are not starved) until `stop` is set, at most 20,000 each.
fn spawn_load(url: String, tasks: usize, stop: Arc<AtomicBool>) -> Vec<JoinHandle<Vec<Sample>>> {
    (0..tasks)
        .map(|_| {
            let url = url.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let c = client();
                let mut out = Vec::new();
                for _ in 0..20_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let sample = match try_request(&c, "GET", &url, None, &[], None).await {
                        Ok(r) => Sample {
                            at: Instant::now(),
                            status: r.status,
                            body: r.body.trim().to_string(),
                        },
                        Err(e) => Sample {
                            at: Instant::now(),
                            status: 0,
                            body: format!("transport error: {e:?}"),
                        },
                    };
                    out.push(sample);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                out
            })
        })
        .collect()
}

/// Stops a load run and collects its samples, oldest first.
async fn finish_load(stop: &AtomicBool, tasks: Vec<JoinHandle<Vec<Sample>>>) -> Vec<Sample> {
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task panicked"));
    }
    all.sort_by_key(|s| s.at);
    all
}

/// Panics listing the failed samples, if any.
/// Panics listing the failed samples, if any, with fulcrum's error log lines (`log` is its
/// stderr).
fn assert_all_ok(samples: &[Sample], base: Instant, what: &str, log: &str) {
    let failed: Vec<String> = samples
        .iter()
        .filter(|s| s.status != 200)
        .map(|s| format!("{:?}: {} {:?}", s.at - base, s.status, s.body))
        .collect();
    if failed.is_empty() {
        return;
    }
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") || (l.contains("access]") && !l.contains("\" 200 ")))
        .collect();
    panic!(
        "{what}: {} of {} requests failed:\n{}\nfulcrum's errors and non-200 access lines:\n{}",
        failed.len(),
        samples.len(),
        failed.join("\n"),
        errors.join("\n")
    );
}

/// A request as a [`ScriptedBackend`] received it.
#[derive(Debug, Clone)]
struct Arrival {
    method: String,
    path: String,
    body: Vec<u8>,
    /// 0 for the first request on its connection.
    nth_on_conn: usize,
    /// The status it was answered with; 0 when the connection was dropped instead.
    answered: u16,
}

/// What a [`ScriptedBackend`] does with a request.
enum Action {
    /// Answer with this status and body (keep-alive), after waiting for a permit of `gate`
    /// (at most 10 s) when given.
    Respond {
        status: u16,
        body: String,
        gate: Option<Arc<Semaphore>>,
    },
    /// Close the connection without answering.
    Drop,
    /// Reset the connection (RST) without answering, like a backend process that died.
    Reset,
}

impl Action {
    fn ok(body: &str) -> Action {
        Action::Respond {
            status: 200,
            body: body.to_string(),
            gate: None,
        }
    }
}

type Handler = Arc<dyn Fn(&Arrival) -> Action + Send + Sync>;

/// A minimal HTTP/1.1 server on a chosen 127.0.0.1 port whose answers a closure decides;
/// it records every request that arrived completely (head and `content-length` body) before
/// acting on it. Stopped (listener and connections closed) on drop.
struct ScriptedBackend {
    port: u16,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    accept_task: JoinHandle<()>,
    conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl ScriptedBackend {
    /// Binds 127.0.0.1:`port` (retrying up to 1 s while the port is still taken).
    async fn start_on(port: u16, handler: Handler) -> ScriptedBackend {
        let mut listener = None;
        for _ in 0..50 {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let listener = listener.unwrap_or_else(|| panic!("scripted backend: cannot bind {port}"));
        let arrivals: Arc<Mutex<Vec<Arrival>>> = Arc::new(Mutex::new(Vec::new()));
        let conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let accept_task = {
            let arrivals = arrivals.clone();
            let conn_tasks = conn_tasks.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let task =
                        tokio::spawn(serve_scripted(stream, handler.clone(), arrivals.clone()));
                    let mut tasks = conn_tasks.lock().unwrap();
                    tasks.retain(|t| !t.is_finished());
                    tasks.push(task);
                }
            })
        };
        ScriptedBackend {
            port,
            arrivals,
            accept_task,
            conn_tasks,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().unwrap().clone()
    }

    /// Requests that arrived, excluding health checks (`/health`).
    fn traffic(&self) -> usize {
        self.arrivals()
            .iter()
            .filter(|a| a.path != "/health")
            .count()
    }
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.accept_task.abort();
        for t in self.conn_tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

async fn serve_scripted(
    mut stream: TcpStream,
    handler: Handler,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    for nth in 0..100_000 {
        // Head.
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            if buf.len() > 64 * 1024 {
                return;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let path = first.next().unwrap_or_default().to_string();
        let len = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        // Body (content-length only; fulcrum sends bodies of known length as such).
        while buf.len() < len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[..len].to_vec();
        buf.drain(..len);
        let mut arrival = Arrival {
            method,
            path,
            body,
            nth_on_conn: nth,
            answered: 0,
        };
        // Decide and record under one lock, so the log's order is the order of decisions.
        let action = {
            let mut log = arrivals.lock().unwrap();
            let action = handler(&arrival);
            if let Action::Respond { status, .. } = &action {
                arrival.answered = *status;
            }
            log.push(arrival);
            action
        };
        match action {
            Action::Drop => return,
            Action::Reset => {
                #[allow(deprecated)] // blocking close is what a reset needs: linger 0
                let _ = stream.set_linger(Some(Duration::ZERO));
                return;
            }
            Action::Respond { status, body, gate } => {
                if let Some(gate) = gate {
                    if let Ok(Ok(permit)) =
                        tokio::time::timeout(Duration::from_secs(10), gate.acquire()).await
                    {
                        permit.forget();
                    }
                }
                let resp = format!(
                    "HTTP/1.1 {status} Scripted\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if stream.write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
                let _ = stream.flush().await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Active health checks under load
// ---------------------------------------------------------------------------------------------

/// Three demo-backend processes b1, b2, b3 and their ports.
async fn three_backend_processes() -> (Vec<u16>, Vec<Fulcrum>) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut procs = Vec::new();
    for (i, &p) in ports.iter().enumerate() {
        procs.push(demo_backend_process(&format!("b{}", i + 1), p).await);
    }
    (ports, procs)
}

fn proxy_yaml(port: u16, admin: u16, backends: &[u16], circuit_breaker: &str) -> String {
    let list: String = backends
        .iter()
        .map(|p| format!("      - addr: \"127.0.0.1:{p}\"\n"))
        .collect();
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
upstreams:
  app:
    backends:
{list}    timeouts:
      connect: 1s
    health_check: {{type: http, interval: 200ms, timeout: 150ms, rise: 2, fall: 1}}
{circuit_breaker}
routes:
  - upstream: app
"#
    )
}

/// Known to fail now and then (about 1 run in 20 here): a GET that fulcrum sent to b2 on a
/// fresh connection in the few ms while the killed process was being torn down gets a reset
/// with no response byte and is answered 502 rather than retried elsewhere. The deterministic
/// reproduction is `idempotent_request_reset_on_a_fresh_connection_is_retried_elsewhere`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_one_backend_loses_no_requests() {
    let (ports, mut procs) = three_backend_processes().await;
    let port = free_port();
    let admin = free_port();
    // Default circuit breaker (max_fails 3, cooldown 10s).
    let f = Fulcrum::start(&proxy_yaml(port, admin, &ports, ""), port).await;
    assert!(
        wait_for_port(admin, Duration::from_secs(5)).await,
        "admin listener"
    );
    let ac = client();
    assert!(
        backend_ready(&ac, admin, "app", 1).await,
        "b2 starts healthy"
    );

    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(f.url("/"), 3, stop.clone());

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let killed_at = Instant::now();
    // SIGKILL b2, then poll /status every 20 ms: when does b2 stop being `available` (breaker
    // or check), and when does its health check say `healthy: false`?
    procs[1].kill();
    let mut unavailable_at = None;
    let mut unhealthy_at = None;
    for _ in 0..150 {
        let b2 = backend_status(&ac, admin, "app", 1).await;
        let now = Instant::now();
        if b2["available"] == false && unavailable_at.is_none() {
            unavailable_at = Some(now);
        }
        if b2["healthy"] == false && unhealthy_at.is_none() {
            unhealthy_at = Some(now);
        }
        if (unavailable_at.is_some() && unhealthy_at.is_some())
            || killed_at.elapsed() > Duration::from_secs(3)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let remaining = Duration::from_millis(3000).saturating_sub(base.elapsed());
    tokio::time::sleep(remaining).await;
    let samples = finish_load(&stop, load).await;

    let (Some(unavailable_at), Some(unhealthy_at)) = (unavailable_at, unhealthy_at) else {
        panic!(
            "b2 not shown unavailable and unhealthy in /status 3 s after SIGKILL\n{}",
            f.describe()
        )
    };
    let to_unhealthy = unhealthy_at - killed_at;
    let to_unavailable = unavailable_at - killed_at;
    let by_breaker = f.stderr().contains("ejected for");
    eprintln!(
        "sigkill: SIGKILL of b2 -> `healthy: false` (health check) in {to_unhealthy:?}, \
         -> `available: false` in {to_unavailable:?} (circuit breaker ejected it: {by_breaker}); \
         {} requests",
        samples.len()
    );

    assert_all_ok(&samples, base, "load across SIGKILL of b2", &f.stderr());
    let before = samples.iter().filter(|s| s.at < killed_at).count();
    assert!(
        before > 50,
        "too little load before the kill: {before} requests"
    );
    let from_b2_before = samples
        .iter()
        .filter(|s| s.at < killed_at && s.body == "b2")
        .count();
    assert!(from_b2_before > 0, "b2 took no traffic before the kill");
    // interval x fall + check timeout + slack.
    let settled = killed_at + Duration::from_millis(200 + 150 + 150);
    let late: Vec<Duration> = samples
        .iter()
        .filter(|s| s.at > settled && s.body == "b2")
        .map(|s| s.at - killed_at)
        .collect();
    assert!(
        late.is_empty(),
        "responses from b2 after its death at {late:?} after the kill"
    );
    let after = samples.iter().filter(|s| s.at > settled).count();
    assert!(
        after > 50,
        "too little load after the kill: {after} requests"
    );
    let time_to_ejection = to_unhealthy;
    assert!(
        time_to_ejection <= Duration::from_millis(200 + 150 + 200),
        "b2 shown healthy for {time_to_ejection:?} after SIGKILL (interval 200ms, fall 1)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_backend_returns_within_interval_times_rise() {
    let (ports, mut procs) = three_backend_processes().await;
    let port = free_port();
    let admin = free_port();
    // Default circuit breaker, as in `sigkill_one_backend_loses_no_requests`. b2 is killed
    // while no traffic flows, so the health check alone takes it out: requests failing on b2
    // would open its breaker, and then b2 would stay out for the breaker's cooldown (10 s)
    // whatever its health checks say (passing checks do not close a breaker).
    let f = Fulcrum::start(&proxy_yaml(port, admin, &ports, ""), port).await;
    assert!(
        wait_for_port(admin, Duration::from_secs(5)).await,
        "admin listener"
    );
    let ac = client();

    // b2 served before.
    let served = bodies(&ac, &f.url("/"), None, 6).await;
    assert!(served.iter().any(|b| b.trim() == "b2"), "{served:?}");

    let killed_at = Instant::now();
    procs[1].kill();
    let ejected_at = wait_ready_is(&ac, admin, "app", 1, false, Duration::from_secs(3))
        .await
        .unwrap_or_else(|| panic!("b2 still healthy 3 s after SIGKILL\n{}", f.describe()));
    eprintln!(
        "restart: time from SIGKILL of b2 (no traffic) to `healthy: false`: {:?}",
        ejected_at - killed_at
    );
    let b2 = backend_status(&ac, admin, "app", 1).await;
    assert_eq!(
        (&b2["healthy"], &b2["ejected"]),
        (&false.into(), &false.into()),
        "b2 should be out by its health check only: {b2}"
    );

    // Load from now on; b2 stays down for a few more rounds, then comes back.
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(f.url("/"), 3, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let spawned_at = Instant::now();
    // When the new b2 first accepts a connection, seen by a 5 ms poll (the start-up helper
    // below also checks that the listener belongs to the new process, which can lag).
    let first_accept = {
        let b2_port = ports[1];
        tokio::spawn(async move {
            for _ in 0..2000 {
                if TcpStream::connect(("127.0.0.1", b2_port)).await.is_ok() {
                    return Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            None
        })
    };
    procs[1] = demo_backend_process("b2", ports[1]).await;
    let up_at = tokio::time::timeout(Duration::from_secs(5), first_accept)
        .await
        .ok()
        .and_then(|r| r.ok().flatten())
        .unwrap_or_else(Instant::now);
    let mut back_at = None;
    for _ in 0..300 {
        let seen = {
            // Peek at the load's progress through the proxy itself: one extra request.
            let r = get(&ac, &f.url("/")).await;
            assert_eq!(r.status, 200, "probe after the restart: {r:?}");
            r.body.trim() == "b2"
        };
        if seen {
            back_at = Some(Instant::now());
            break;
        }
        if up_at.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let samples = finish_load(&stop, load).await;

    let back_at = back_at.unwrap_or_else(|| {
        panic!(
            "no response from b2 within 5 s of its restart\n{}",
            f.describe()
        )
    });
    // The load's own first b2 response may have come before the probe's.
    let first_b2 = samples
        .iter()
        .filter(|s| s.at > up_at && s.body == "b2")
        .map(|s| s.at)
        .min()
        .map_or(back_at, |t| t.min(back_at));
    let returned = first_b2 - up_at;
    eprintln!(
        "restart: time from b2 listening again to its first response: {returned:?} \
         (it listened {:?} after the spawn)",
        up_at - spawned_at
    );
    assert_all_ok(&samples, base, "load across the restart of b2", &f.stderr());
    // interval x rise + one interval of phase + slack.
    assert!(
        returned <= Duration::from_millis(200 * 2 + 200 + 300),
        "b2 came back {returned:?} after listening again (interval 200ms, rise 2)"
    );
    // That it waits for `rise` passes (and not fewer) is checked exactly, from the backend's
    // own log, in `rise_and_fall_count_consecutive_checks`.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rise_and_fall_count_consecutive_checks() {
    // S's health endpoint passes while `passing` is set; `/` always answers. Its request log
    // shows exactly which check verdicts fulcrum had seen when traffic stopped and resumed.
    let passing = Arc::new(AtomicBool::new(false));
    let s = {
        let passing = passing.clone();
        ScriptedBackend::start_on(
            free_port(),
            Arc::new(move |req: &Arrival| {
                if req.path == "/health" {
                    Action::Respond {
                        status: if passing.load(Ordering::SeqCst) {
                            200
                        } else {
                            503
                        },
                        body: "health".to_string(),
                        gate: None,
                    }
                } else {
                    Action::ok("s")
                }
            }),
        )
        .await
    };
    let other = TestBackend::start("other").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{s}"
      - addr: "{other}"
    health_check: {{type: http, path: /health, interval: 100ms, timeout: 500ms, rise: 3, fall: 2}}
routes:
  - upstream: app
"#,
        s = s.addr(),
        other = other.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(f.url("/"), 2, stop.clone());

    // Down from the first check on (its verdict applies at once), for a while; then up; then
    // down again. Each phase lasts several intervals.
    tokio::time::sleep(Duration::from_millis(400)).await;
    passing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    passing.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let samples = finish_load(&stop, load).await;
    assert_all_ok(&samples, base, "load while S goes down and up", &f.stderr());

    // The log as a sequence of checks (pass/fail) and traffic.
    let log = s.arrivals();
    let describe = || {
        log.iter()
            .map(|a| match (a.path.as_str(), a.answered) {
                ("/health", 200) => "P".to_string(),
                ("/health", _) => "F".to_string(),
                _ => ".".to_string(),
            })
            .collect::<String>()
    };
    let checks: Vec<(usize, bool)> = log
        .iter()
        .enumerate()
        .filter(|(_, a)| a.path == "/health")
        .map(|(i, a)| (i, a.answered == 200))
        .collect();
    let traffic_between =
        |from: usize, to: usize| log[from..to].iter().filter(|a| a.path != "/health").count();
    assert!(checks.len() >= 12, "too few checks: {}", describe());
    assert!(!checks[0].1, "the first check should fail: {}", describe());

    // Phase 1: no traffic before the third passing check arrives (the first check's failure
    // applied at once; two passes are not enough for rise 3).
    let passes: Vec<usize> = checks.iter().filter(|c| c.1).map(|c| c.0).collect();
    assert!(
        passes.len() >= 3,
        "fewer than 3 passing checks: {}",
        describe()
    );
    let third_pass = passes[2];
    assert_eq!(
        traffic_between(0, third_pass),
        0,
        "S got traffic before its third passing check: {}",
        describe()
    );
    // Phase 2: traffic after it.
    let first_fail_after = checks
        .iter()
        .find(|c| c.0 > third_pass && !c.1)
        .map(|c| c.0)
        .unwrap_or_else(|| panic!("S never failed again: {}", describe()));
    assert!(
        traffic_between(third_pass, first_fail_after) > 0,
        "S got no traffic while up: {}",
        describe()
    );
    // Phase 3: one failure is not enough for fall 2: traffic continues until the second
    // consecutive failure, and stops after its verdict (checked from the third on, one
    // interval later, so a request already on its way does not count).
    let fails_after: Vec<usize> = checks
        .iter()
        .filter(|c| c.0 >= first_fail_after)
        .map(|c| c.0)
        .collect();
    assert!(
        fails_after.len() >= 3,
        "too few failures at the end: {}",
        describe()
    );
    assert!(
        checks
            .iter()
            .filter(|c| c.0 >= first_fail_after)
            .all(|c| !c.1),
        "a check passed in the last phase: {}",
        describe()
    );
    assert!(
        traffic_between(first_fail_after, fails_after[1]) > 0,
        "S dropped out after one failed check (fall 2): {}",
        describe()
    );
    assert_eq!(
        traffic_between(fails_after[2], log.len()),
        0,
        "S got traffic after two failed checks: {}",
        describe()
    );
    eprintln!(
        "rise/fall: S's log (P/F = passing/failing check, . = request): {}",
        describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_health_check_loses_no_requests() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let health_checks = Arc::new(AtomicUsize::new(0));
    let flap = {
        let health_checks = health_checks.clone();
        ScriptedBackend::start_on(
            free_port(),
            Arc::new(move |req: &Arrival| {
                if req.path == "/health" {
                    let n = health_checks.fetch_add(1, Ordering::SeqCst);
                    Action::Respond {
                        status: if n.is_multiple_of(2) { 200 } else { 500 },
                        body: "health".to_string(),
                        gate: None,
                    }
                } else {
                    Action::ok("flap")
                }
            }),
        )
        .await
    };
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{a}"
      - addr: "{flap}"
      - addr: "{b}"
    health_check: {{type: http, path: /health, interval: 100ms, timeout: 500ms, rise: 1, fall: 1}}
routes:
  - upstream: app
"#,
        a = a.addr(),
        b = b.addr(),
        flap = flap.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(f.url("/"), 3, stop.clone());
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let samples = finish_load(&stop, load).await;

    assert_all_ok(&samples, base, "load while one backend flaps", &f.stderr());
    let checks = health_checks.load(Ordering::SeqCst);
    let log = f.stderr();
    let flap_addr = flap.addr();
    let downs = log
        .lines()
        .filter(|l| l.contains(&flap_addr) && l.contains("is unhealthy"))
        .count();
    let ups = log
        .lines()
        .filter(|l| l.contains(&flap_addr) && l.contains("is healthy"))
        .count();
    let served = samples.iter().filter(|s| s.body == "flap").count();
    eprintln!(
        "flapping: {} requests, {served} served by the flapping backend, {checks} health checks, \
         {downs} down and {ups} up transitions",
        samples.len()
    );
    assert!(
        checks >= 10,
        "only {checks} health checks of the flapping backend in 2 s"
    );
    assert!(
        downs >= 5 && ups >= 4,
        "expected many transitions, got {downs} down, {ups} up\n{log}"
    );
    assert!(
        served > 0,
        "the flapping backend never served while healthy"
    );
    assert!(samples.len() > 200, "too little load: {}", samples.len());
}

// ---------------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_lets_exactly_one_trial_through() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let x_port = free_port(); // refuses connections until X starts
    let port = free_port();
    let admin = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
upstreams:
  app:
    backends:
      - addr: "{a}"
      - addr: "127.0.0.1:{x_port}"
      - addr: "{b}"
    timeouts:
      connect: 1s
    circuit_breaker: {{max_fails: 2, cooldown: 500ms}}
routes:
  - upstream: app
"#,
        a = a.addr(),
        b = b.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    assert!(
        wait_for_port(admin, Duration::from_secs(5)).await,
        "admin listener"
    );
    let c = client();
    let url = f.url("/");

    // 1. Refused connections eject X after two of them; every request is still answered.
    let mut ejecting_request_started = None;
    for i in 0..20 {
        let started = Instant::now();
        let r = get(&c, &url).await;
        assert_eq!(r.status, 200, "request #{i} while X refuses: {r:?}");
        let x = backend_status(&c, admin, "app", 1).await;
        if x["failures"].as_u64() == Some(2) {
            assert_eq!(
                (&x["ejected"], &x["available"], &x["ejections"]),
                (&true.into(), &false.into(), &1.into()),
                "X after 2 failures: {x}"
            );
            ejecting_request_started = Some(started);
            break;
        }
    }
    let ejected = ejecting_request_started
        .unwrap_or_else(|| panic!("X never reached 2 failures\n{}", f.describe()));

    // 2. X comes back before the cooldown ends: it still gets nothing.
    let trial_gate = Arc::new(Semaphore::new(0));
    let x = {
        let gate = trial_gate.clone();
        let first = Arc::new(AtomicBool::new(true));
        ScriptedBackend::start_on(
            x_port,
            Arc::new(move |_req: &Arrival| Action::Respond {
                status: 200,
                body: "x".to_string(),
                // The first request (the trial) waits until the test lets it go.
                gate: first.swap(false, Ordering::SeqCst).then(|| gate.clone()),
            }),
        )
        .await
    };
    for i in 0..6 {
        let r = get(&c, &url).await;
        assert_eq!(r.status, 200, "request #{i} during the cooldown: {r:?}");
        assert_ne!(r.body, "x", "request #{i} reached X during its cooldown");
    }
    let in_cooldown = ejected.elapsed();
    assert!(
        in_cooldown < Duration::from_millis(450),
        "test too slow: the cooldown-phase requests ended {in_cooldown:?} after the ejection"
    );
    assert_eq!(x.traffic(), 0, "X got traffic during its cooldown");
    assert!(!backend_ready(&c, admin, "app", 1).await);

    // 3. After the cooldown X is offered again (half-open).
    let ready_at = wait_ready_is(&c, admin, "app", 1, true, Duration::from_secs(3))
        .await
        .unwrap_or_else(|| panic!("X not half-open 3 s after ejection\n{}", f.describe()));
    assert!(
        ready_at - ejected >= Duration::from_millis(480),
        "X offered again {:?} after the ejection, cooldown is 500ms",
        ready_at - ejected
    );
    assert_eq!(x.traffic(), 0);

    // 4. A burst of concurrent requests: exactly one (the trial) reaches X, and while it is in
    //    flight the others go elsewhere.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let burst = 12;
    for _ in 0..burst {
        let c = c.clone();
        let url = url.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(try_request(&c, "GET", &url, None, &[], None).await);
        });
    }
    drop(tx);
    let mut done = Vec::new();
    for _ in 0..burst - 1 {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(r)) => done.push(r.expect("burst request transport error")),
            other => panic!(
                "burst: only {} of {} answered ({other:?})",
                done.len(),
                burst - 1
            ),
        }
    }
    for r in &done {
        assert_eq!(r.status, 200, "burst: {r:?}");
        assert_ne!(
            r.body, "x",
            "a second request reached X while its trial was in flight"
        );
    }
    assert_eq!(x.traffic(), 1, "X must get exactly one trial request");
    let xs = backend_status(&c, admin, "app", 1).await;
    assert_eq!(xs["in_flight"], 1, "{xs}");
    assert_eq!(
        (&xs["ejected"], &xs["available"]),
        (&true.into(), &false.into()),
        "X with its trial in flight: {xs}"
    );
    // More traffic while the trial is still in flight: still nothing for X.
    for i in 0..6 {
        let r = get(&c, &url).await;
        assert_eq!(r.status, 200);
        assert_ne!(
            r.body, "x",
            "request #{i} reached X while its trial was in flight"
        );
    }
    assert_eq!(x.traffic(), 1);

    // 5. The trial succeeds: the breaker closes and X takes its normal share.
    trial_gate.add_permits(1);
    let last = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("the trial request never completed")
        .expect("burst channel closed")
        .expect("trial request transport error");
    assert_eq!((last.status, last.body.as_str()), (200, "x"), "{last:?}");
    assert!(
        wait_ready_is(&c, admin, "app", 1, true, Duration::from_secs(1))
            .await
            .is_some(),
        "X not ready after a successful trial"
    );
    let served: Vec<String> = bodies(&c, &url, None, 9).await;
    let to_x = served.iter().filter(|s| *s == "x").count();
    assert_eq!(
        to_x, 3,
        "X after its breaker closed, 9 round-robin requests: {served:?}"
    );
    assert_eq!(x.traffic(), 4);
}

// ---------------------------------------------------------------------------------------------
// No replay of requests that may have reached a backend
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_to_backend_dying_mid_request_is_not_replayed() {
    // `once`: answers the first request of every connection, then takes the next request on
    // that connection and closes it without answering (a backend dying mid-request on a
    // reused keep-alive connection). `good` always answers.
    let once = ScriptedBackend::start_on(
        free_port(),
        Arc::new(|req: &Arrival| {
            if req.nth_on_conn == 0 {
                Action::ok("once")
            } else {
                Action::Drop
            }
        }),
    )
    .await;
    let good =
        ScriptedBackend::start_on(free_port(), Arc::new(|_: &Arrival| Action::ok("good"))).await;
    // `dead`: reads every request and closes without answering (fresh connections only).
    let dead = ScriptedBackend::start_on(free_port(), Arc::new(|_: &Arrival| Action::Drop)).await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  pair:
    backends:
      - addr: "{once}"
      - addr: "{good}"
  dead:
    backends:
      - addr: "{dead}"
routes:
  - path: /dead
    upstream: dead
  - upstream: pair
"#,
        once = once.addr(),
        good = good.addr(),
        dead = dead.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    // Fresh client connections (fulcrum closes them after an error answer); fulcrum's own
    // pool of connections to the backends is what this test is about.
    let c = client_no_pool();
    let total = || once.arrivals().len() + good.arrivals().len();

    // Warm up: one GET to each backend leaves a pooled connection to `once`.
    for _ in 0..2 {
        assert_eq!(get(&c, &f.url("/warm")).await.status, 200);
    }
    assert_eq!(once.arrivals().len(), 1);
    assert_eq!(good.arrivals().len(), 1);

    // POSTs until one lands on a pooled connection to `once` (round robin: within two, unless
    // fulcrum happened to open a new connection, which `once` answers).
    let mut saw_failure = false;
    for i in 0..6 {
        let before = total();
        let once_before = once.arrivals().len();
        let r = request(
            &c,
            "POST",
            &f.url("/post"),
            None,
            &[],
            Some(b"payload".to_vec()),
        )
        .await;
        let arrived = total() - before;
        assert_eq!(
            arrived, 1,
            "POST #{i} arrived {arrived} times (answer {r:?})"
        );
        let last = once.arrivals().last().cloned().unwrap();
        if once.arrivals().len() > once_before && last.nth_on_conn > 0 {
            assert_eq!(r.status, 502, "POST #{i} dropped by the backend: {r:?}");
            assert_short_body(&r, "502 for a dropped POST");
            assert_eq!(
                (last.method.as_str(), last.body.as_slice()),
                ("POST", &b"payload"[..])
            );
            saw_failure = true;
            break;
        }
        assert_eq!(r.status, 200, "POST #{i} answered by a backend: {r:?}");
    }
    assert!(saw_failure, "no POST reached the dying backend");

    // Contrast: a GET dropped on a reused connection is idempotent and is retried (Pingora
    // retries errors on reused connections), so the client sees 200 and the backends two
    // arrivals for it.
    for _ in 0..2 {
        assert_eq!(get(&c, &f.url("/warm")).await.status, 200);
    }
    let mut replayed = false;
    for i in 0..4 {
        let before = total();
        let once_before = once.arrivals().iter().filter(|a| a.nth_on_conn > 0).count();
        let r = get(&c, &f.url("/get")).await;
        assert_eq!(r.status, 200, "GET #{i}: {r:?}");
        if once.arrivals().iter().filter(|a| a.nth_on_conn > 0).count() > once_before {
            assert_eq!(total() - before, 2, "a dropped GET is retried exactly once");
            replayed = true;
            break;
        }
        assert_eq!(total() - before, 1);
    }
    assert!(
        replayed,
        "no GET reached the dying backend on a reused connection"
    );

    // And a GET dropped on a fresh connection is not replayed either: 502, one arrival.
    let r = get(&c, &f.url("/dead")).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(
        dead.arrivals().len(),
        1,
        "GET to a backend dying on a fresh connection replayed"
    );
}

// ---------------------------------------------------------------------------------------------
// Whole group down, retries
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_answers_503_with_retry_after_at_once() {
    let up = TestBackend::start("up").await;
    let d1 = free_port();
    let d2 = free_port();
    let port = free_port();
    let admin = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
upstreams:
  down:
    backends:
      - addr: "127.0.0.1:{d1}"
      - addr: "127.0.0.1:{d2}"
    timeouts:
      connect: 5s
    health_check: {{type: tcp, interval: 100ms, timeout: 100ms}}
  up:
    backends:
      - addr: "{up}"
routes:
  - path: /down
    upstream: down
  - upstream: up
"#,
        up = up.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    assert!(
        wait_for_port(admin, Duration::from_secs(5)).await,
        "admin listener"
    );
    let c = client();
    // fulcrum closes the connection after an error answer, so those go on fresh connections.
    let fresh = client_no_pool();
    // The first health-check round (before the proxy serves) took both out.
    for i in 0..2 {
        assert!(
            !backend_ready(&c, admin, "down", i).await,
            "down[{i}] shown healthy"
        );
    }
    for i in 0..3 {
        let started = Instant::now();
        let r = get(&fresh, &f.url("/down/x")).await;
        let took = started.elapsed();
        assert_eq!(r.status, 503, "request #{i}: {r:?}");
        assert_eq!(r.header("retry-after").as_deref(), Some("1"), "{r:?}");
        assert_short_body(&r, "503");
        assert!(took < Duration::from_secs(1), "503 took {took:?}");
        let r = get(&c, &f.url("/fine")).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "up"),
            "other group meanwhile"
        );
    }
    // No attempt was made on the down backends.
    let doc = status_json(&c, admin).await;
    for i in 0..2 {
        let b = &doc["upstreams"]["down"]["backends"][i];
        assert_eq!(b["requests"], 0, "down[{i}]: {b}");
    }
    let h = get(&c, &format!("http://127.0.0.1:{admin}/health")).await;
    assert_eq!(h.status, 503, "{h:?}");
    let named: Vec<&str> = h
        .body
        .trim()
        .rsplit_once(':')
        .map_or(vec![], |(_, list)| list.split(',').map(str::trim).collect());
    assert_eq!(
        named,
        vec!["down"],
        "admin /health should name the down group only: {h:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tries_and_connect_failures() {
    let live = TestBackend::start("live").await;
    let dead1 = free_port();
    let dead2 = free_port();
    let port = free_port();
    let admin = free_port();
    let group = |name: &str, max_tries: &str| {
        format!(
            r#"  {name}:
    algorithm: round_robin
    backends:
      - addr: "127.0.0.1:{dead1}"
      - addr: "127.0.0.1:{dead2}"
      - addr: "{live}"
    timeouts:
      connect: 1s
    circuit_breaker: {{max_fails: 0}}
{max_tries}"#,
            live = live.addr()
        )
    };
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
upstreams:
{retrying}
{single}
routes:
  - path: /single
    upstream: single
  - upstream: retrying
"#,
        retrying = group("retrying", ""),
        single = group("single", "    max_tries: 1\n")
    );
    let f = Fulcrum::start(&yaml, port).await;
    assert!(
        wait_for_port(admin, Duration::from_secs(5)).await,
        "admin listener"
    );
    let c = client();

    // Default max_tries (3): every request ends at the live backend.
    let served = bodies(&c, &f.url("/r"), None, 12).await;
    assert!(served.iter().all(|b| b == "live"), "{served:?}");
    let doc = status_json(&c, admin).await;
    let failures: Vec<u64> = (0..3)
        .map(|i| {
            doc["upstreams"]["retrying"]["backends"][i]["failures"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        failures[0] > 0 && failures[1] > 0 && failures[2] == 0,
        "{failures:?}"
    );
    for i in 0..3 {
        assert_eq!(
            doc["upstreams"]["retrying"]["backends"][i]["available"], true,
            "max_fails 0 must never eject: {}",
            doc["upstreams"]["retrying"]
        );
    }
    assert_eq!(live.count(), 12);

    // max_tries 1: no retry, so the requests whose turn is a dead backend get 502. Round robin
    // starts at the first backend in Pingora's order, which is by address: here by port, which
    // the kernel picks, so the turns are computed from the ports.
    let fresh = client_no_pool(); // fulcrum closes the connection after an error answer
    let mut order = [(dead1, 502), (dead2, 502), (live.port(), 200)];
    order.sort();
    let turns: Vec<u16> = order.iter().map(|&(_, s)| s).cycle().take(12).collect();
    let mut statuses = Vec::new();
    for _ in 0..turns.len() {
        let r = get(&fresh, &f.url("/single")).await;
        if r.status == 200 {
            assert_eq!(r.body, "live");
        } else {
            assert_short_body(&r, "502");
        }
        statuses.push(r.status);
    }
    assert_eq!(
        statuses, turns,
        "round robin over dead1, dead2, live with max_tries 1"
    );
    assert_eq!(live.count(), 16);
}

// ---------------------------------------------------------------------------------------------
// Known problems (ignored until fixed; see each test's notes)
// ---------------------------------------------------------------------------------------------

/// Reads one response (head, then a `content-length` body) from a raw connection, at most
/// 5 s. `None` when the connection closes before a complete response.
async fn read_raw_response(stream: &mut TcpStream) -> Option<(String, String)> {
    let fut = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + 4 + len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end + 4..head_end + 4 + len]).into_owned();
        Some((head, body))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
}

/// An error answer (502 from a refused connection, 503 from a group that is all down) on a
/// keep-alive connection either says `Connection: close` or leaves the connection usable.
///
/// Fails today: fulcrum answers `Connection: keep-alive` and then closes the connection
/// (`fail_to_proxy` returns `can_reuse_downstream: false`, while `respond::send` never turns
/// keep-alive off the way Pingora's own `write_error_response` does with
/// `set_keepalive(None)`), so a pooling client's next request on that connection fails with a
/// reset or an incomplete message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_keep_their_keep_alive_promise() {
    let refused = free_port();
    let all_down = free_port();
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  refused:
    backends:
      - addr: "127.0.0.1:{refused}"
    circuit_breaker: {{max_fails: 0}}
  down:
    backends:
      - addr: "127.0.0.1:{all_down}"
    health_check: {{type: tcp, interval: 100ms, timeout: 100ms}}
routes:
  - path: /down
    upstream: down
  - upstream: refused
"#
    );
    let f = Fulcrum::start(&yaml, port).await;
    for (path, code) in [("/refused", 502), ("/down", 503)] {
        let mut s = TcpStream::connect(("127.0.0.1", f.port()))
            .await
            .expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write request 1");
        let (head, _) = read_raw_response(&mut s).await.expect("first response");
        assert!(
            head.starts_with(&format!("HTTP/1.1 {code}")),
            "{path}: {head}"
        );
        let says_close = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("connection")
                    && v.to_ascii_lowercase().contains("close")
            })
        });
        if says_close {
            continue;
        }
        // Keep-alive was promised (explicitly or by HTTP/1.1 default): the connection must
        // take a second request.
        let second = match s.write_all(req.as_bytes()).await {
            Ok(()) => read_raw_response(&mut s).await,
            Err(_) => None,
        };
        assert!(
            second.is_some(),
            "{path}: the {code} answer promised keep-alive, but the connection was closed \
             before a second request was answered\nfirst response head:\n{head}"
        );
    }
}

/// The root cause of the rare failure of `sigkill_one_backend_loses_no_requests`, made
/// deterministic: a GET on a *fresh* upstream connection that the backend resets before
/// sending a single response byte (what a SIGKILLed backend does to connections that were
/// still in its accept queue while the process was being torn down) is answered 502 instead
/// of being tried on another backend, although the request is idempotent and nothing of a
/// response was received.
///
/// fulcrum follows Pingora's rule here (retry after a connection was established only when a
/// *reused* connection broke; docs/configuration.md, "Retries"), so this is a policy question rather than a
/// slip; nginx (`proxy_next_upstream error`, idempotent methods) and Envoy (`retry_on: reset`)
/// retry such a request on the next backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_request_reset_on_a_fresh_connection_is_retried_elsewhere() {
    let resets =
        ScriptedBackend::start_on(free_port(), Arc::new(|_: &Arrival| Action::Reset)).await;
    let good = TestBackend::start("good").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{resets}"
      - addr: "{good}"
    circuit_breaker: {{max_fails: 0}}
routes:
  - upstream: app
"#,
        resets = resets.addr(),
        good = good.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client_no_pool();
    for i in 0..4 {
        let r = get(&c, &f.url("/")).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, "good"),
            "GET #{i} (the resetting backend has seen {} requests)",
            resets.arrivals().len()
        );
    }
    assert!(
        !resets.arrivals().is_empty(),
        "no GET reached the resetting backend"
    );
}

/// A read timeout on a reused (pooled) upstream connection is the backend being stuck, not a
/// keep-alive connection it had closed: the request is not replayed on it, the attempt counts
/// as the backend's failure, and with no other backend the client gets a 504 after one
/// timeout. (Replayed, as before, the request reached the backend twice and the backend was
/// never charged.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_timeout_on_a_reused_connection_is_not_retried_as_stale() {
    // Answers the first request of each connection, then hangs on the next one.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&requests);
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                for n in 0.. {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    buf.clear();
                    seen.fetch_add(1, Ordering::SeqCst);
                    if n > 0 {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if s.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let (port, admin) = (free_port(), free_port());
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
admin:
  addr: "127.0.0.1:{admin}"
upstreams:
  app:
    backends:
      - addr: "{backend}"
    timeouts: {{read: 500ms}}
    circuit_breaker: {{max_fails: 100}}
routes:
  - path: /
    upstream: app
"#
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();
    assert_eq!(get(&c, &f.url("/first")).await.status, 200);
    let r = get(&c, &f.url("/second")).await;
    assert_eq!(
        r.status, 504,
        "one read timeout, then the answer: {}",
        r.body
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "the timed-out request must not be replayed"
    );
    let metrics = get(&c, &format!("http://127.0.0.1:{admin}/metrics"))
        .await
        .body;
    let failures: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("fulcrum_backend_failures_total"))
        .collect();
    assert_eq!(failures.len(), 1, "{metrics}");
    assert!(failures[0].ends_with(" 1"), "charged once: {failures:?}");
    server.abort();
}

/// A backend going down is logged at WARN, so `RUST_LOG=warn` shows it, with a reason a
/// person can read (the status and what was expected, not Pingora's error chain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_going_down_is_logged_at_warn_with_a_clean_reason() {
    let sick = TestBackend::start_with(
        "sick",
        BackendOptions {
            status: 503,
            ..Default::default()
        },
    )
    .await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  app:
    backends:
      - addr: "{addr}"
    health_check: {{type: http, path: /health, interval: 100ms}}
routes:
  - upstream: app
"#,
        addr = sick.addr()
    );
    let config = write_file(
        dir.path(),
        "f.yaml",
        &with_pingora_section(&yaml, dir.path()),
    );
    let log_path = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(FULCRUM_BIN)
        .args(["-c", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let want = format!(
        "WARN  fulcrum::health] upstream app: backend {} is unhealthy (status 503, expected 200-399)",
        sick.addr()
    );
    let mut log = String::new();
    for _ in 0..100 {
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains(&want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains(&want), "want {want:?} in:\n{log}");
}
