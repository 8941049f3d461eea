//! Zero-downtime reload under a storm of short-lived connections: every connection that a
//! client opens across repeated `fulcrum --reload`s is answered, none is reset or closed
//! unanswered (the accept race: a connection the old process takes in its last moment of
//! accepting must still be read and answered).
//!
//! It runs at least 3 reloads and until 200,000 fresh connections have been made
//! (`FULCRUM_RELOAD_STRESS_CONNECTIONS` sets another count), within a bounded time:
//!
//! ```sh
//! FULCRUM_RELOAD_STRESS_CONNECTIONS=1000000 cargo test --release --test reload_stress -- --nocapture
//! ```
//!
//! Clients connect from 127.0.0.1 to 127.0.0.8 in turn, so the TIME_WAIT sockets that
//! hundreds of thousands of closed connections leave behind spread over eight address pairs.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What happened to the fresh connections.
#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    /// connect() failed (nobody accepting).
    refused: AtomicUsize,
    /// Connected and sent a request; the connection closed without a byte of answer.
    unanswered: AtomicUsize,
    /// Reset, timed out, or answered with something other than a 200.
    failed: AtomicUsize,
    /// The first few failures, for the report.
    notes: Mutex<Vec<String>>,
}

impl Counts {
    fn total(&self) -> usize {
        self.ok.load(Ordering::Relaxed) + self.lost()
    }

    fn lost(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
            + self.unanswered.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
    }

    fn note(&self, what: String) {
        let mut notes = self.notes.lock().unwrap();
        if notes.len() < 20 {
            notes.push(what);
        }
    }
}

/// One GET on a new connection from `source`, sent `pause` after connecting (a client that
/// is slow to speak: a TLS handshake, a busy machine), read to the end (bounded).
async fn one(
    port: u16,
    source: std::net::IpAddr,
    pause: Duration,
    counts: &Counts,
    started: Instant,
) {
    let at = || format!("{:.3}s", started.elapsed().as_secs_f64());
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    let _ = socket.bind(std::net::SocketAddr::new(source, 0));
    let connect = socket.connect(([127, 0, 0, 1], port).into());
    let mut stream = match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(s)) => s,
        other => {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            counts.note(format!("{} connect from {source}: {other:?}", at()));
            return;
        }
    };
    let exchange = async {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: stress.test\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(Ok(bytes)) if bytes.is_empty() => {
            counts.unanswered.fetch_add(1, Ordering::Relaxed);
            counts.note(format!("{} closed unanswered", at()));
        }
        Ok(Ok(bytes)) if bytes.starts_with(b"HTTP/1.1 200 ") && bytes.ends_with(b"app") => {
            counts.ok.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Ok(bytes)) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned();
            counts.note(format!("{} answered {text:?}", at()));
        }
        Ok(Err(e)) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            counts.note(format!("{} {e}", at()));
        }
        Err(_) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            counts.note(format!("{} no answer within 10 s", at()));
        }
    }
}

/// Kills whichever fulcrum the pid file names when the test ends, passed or not: the
/// processes that reloads start are not the test's children.
struct KillOnDrop(std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_connections_across_reloads_lose_nothing() {
    let want: usize = std::env::var("FULCRUM_RELOAD_STRESS_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    const MIN_RELOADS: usize = 3;
    // Bounded: about 2,500 connections a second at the least, plus the reloads.
    let deadline = Duration::from_secs(60 + (want / 2_500) as u64);

    let backend = TestBackend::start("app").await;
    let port = free_port();
    // Pingora's defaults but shorter: the old process serves what it accepted for the grace
    // period after it stops accepting (the tests' usual section has none).
    let yaml = format!(
        r#"
pingora:
  threads: 1
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 1
  pid_file: "$TMPDIR/fulcrum.pid"
  upgrade_sock: "$TMPDIR/upgrade.sock"
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
    );
    let f = Fulcrum::start(&yaml, port).await;
    let config = f.config_path().expect("config file").to_path_buf();
    let _cleanup = KillOnDrop(f.dir().join("fulcrum.pid"));

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut clients = Vec::new();
    for task in 0..8u8 {
        let (counts, stop) = (Arc::clone(&counts), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            let source = std::net::IpAddr::from([127, 0, 0, 1 + task]);
            // Half the clients wait 20 ms between connecting and sending: a connection the
            // old process accepts is then often still silent when it stops accepting.
            let pause = Duration::from_millis(if task % 2 == 1 { 20 } else { 0 });
            while !stop.load(Ordering::Relaxed) {
                one(port, source, pause, &counts, started).await;
            }
        }));
    }

    let mut reloads = 0;
    while (reloads < MIN_RELOADS || counts.total() < want) && started.elapsed() < deadline {
        // Output to files: the new process inherits them and outlives the command.
        let out_path = f.dir().join(format!("reload-{reloads}.out"));
        let (dir, config) = (f.dir().to_path_buf(), config.clone());
        let out = std::fs::File::create(&out_path).unwrap();
        let status = tokio::task::spawn_blocking(move || {
            Command::new(FULCRUM_BIN)
                .arg("--reload")
                .arg("-c")
                .arg(&config)
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .status()
                .expect("run fulcrum --reload")
        })
        .await
        .unwrap();
        assert!(
            status.success(),
            "reload {reloads} failed: {}",
            std::fs::read_to_string(&out_path).unwrap_or_default()
        );
        reloads += 1;
        // The backend records every request; keep its memory flat.
        backend.clear();
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(Duration::from_secs(20), c)
            .await
            .expect("client task hung")
            .unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let total = counts.total();
    eprintln!(
        "{total} fresh connections in {secs:.1} s ({:.0}/s) across {reloads} reloads: {} ok, \
         {} refused, {} closed unanswered, {} failed",
        total as f64 / secs,
        counts.ok.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.unanswered.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    assert_eq!(
        counts.lost(),
        0,
        "connections lost across reloads: {:#?}",
        counts.notes.lock().unwrap()
    );
    assert!(
        reloads >= MIN_RELOADS,
        "only {reloads} reloads in {secs:.0} s"
    );
    assert!(
        total >= want,
        "only {total} of {want} connections within {deadline:?}: the machine is too slow for \
         this run; set FULCRUM_RELOAD_STRESS_CONNECTIONS lower"
    );
}
