//! `limits.h2`: the HTTP/2 settings a client sees, read off the wire with a tiny raw frame
//! reader (the connection preface, an empty SETTINGS, then the server's frames), and a
//! measurement (ignored by default) of fulcrum's memory per stream whose response the client
//! never reads.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::h2_frames::*;
use support::*;

const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// What the server announced at the start of an h2c connection: its SETTINGS entries and the
/// connection window increment it sent (if any).
struct Announced {
    settings: Vec<(u16, u32)>,
    connection_window_increment: Option<u32>,
}

impl Announced {
    fn setting(&self, id: u16) -> Option<u32> {
        self.settings
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, v)| *v)
    }
}

async fn announced(port: u16) -> Announced {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame_bytes(SETTINGS, 0, 0, &[]))
        .await
        .unwrap();
    let mut out = Announced {
        settings: Vec::new(),
        connection_window_increment: None,
    };
    let mut got_settings = false;
    // Bounded: a handful of frames open a connection.
    for _ in 0..16 {
        let Some(f) = read_frame(&mut s, Duration::from_secs(3)).await else {
            break;
        };
        match f.kind {
            SETTINGS if f.flags & 1 == 0 => {
                got_settings = true;
                out.settings = f
                    .payload
                    .chunks_exact(6)
                    .map(|c| {
                        (
                            u16::from_be_bytes([c[0], c[1]]),
                            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                        )
                    })
                    .collect();
                // Acknowledge, so the server goes on.
                s.write_all(&frame_bytes(SETTINGS, 1, 0, &[]))
                    .await
                    .unwrap();
            }
            WINDOW_UPDATE if f.stream == 0 => {
                let b = &f.payload;
                out.connection_window_increment =
                    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
            }
            _ => {}
        }
        if got_settings && out.connection_window_increment.is_some() {
            break;
        }
    }
    assert!(got_settings, "no SETTINGS from the server");
    out
}

/// An h2c listener in front of `backend`, with `limits` (YAML lines under `limits:`).
async fn start(backend: &TestBackend, limits: &str) -> Fulcrum {
    let port = free_port();
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{port}\"\n    h2c: true\n\
         limits:\n  max_body_bytes: 10MiB\n{limits}\
         upstreams:\n  app:\n    backends: [{{addr: \"{}\"}}]\n\
         routes:\n  - upstream: app\n",
        backend.addr()
    );
    Fulcrum::start(&yaml, port).await
}

/// Without `limits.h2`, a client is offered 128 streams, a 64 KiB stream window and a 1 MiB
/// connection window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_h2_settings_are_announced() {
    let backend = TestBackend::start("b1").await;
    let f = start(&backend, "").await;
    let a = announced(f.port()).await;
    assert_eq!(a.setting(SETTINGS_MAX_CONCURRENT_STREAMS), Some(128));
    assert_eq!(a.setting(SETTINGS_INITIAL_WINDOW_SIZE), Some(64 * 1024));
    assert_eq!(a.connection_window_increment, Some(1024 * 1024 - 65_535));
}

/// Configured values are what a client is offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_h2_settings_are_announced() {
    let backend = TestBackend::start("b1").await;
    let f = start(
        &backend,
        "  h2:\n    max_concurrent_streams: 7\n    stream_window: 16KiB\n    connection_window: 2MiB\n",
    )
    .await;
    let a = announced(f.port()).await;
    assert_eq!(a.setting(SETTINGS_MAX_CONCURRENT_STREAMS), Some(7));
    assert_eq!(a.setting(SETTINGS_INITIAL_WINDOW_SIZE), Some(16 * 1024));
    assert_eq!(
        a.connection_window_increment,
        Some(2 * 1024 * 1024 - 65_535)
    );
}

/// Bad values are refused by `fulcrum -t`, naming the key.
#[test]
fn bad_h2_limits_are_refused_by_the_config_check() {
    let dir = tempfile::tempdir().unwrap();
    for (h2, key) in [
        (
            "max_concurrent_streams: 0",
            "limits.h2.max_concurrent_streams",
        ),
        ("stream_window: 2GiB", "limits.h2.stream_window"),
        ("connection_window: 1KiB", "limits.h2.connection_window"),
        ("max_send_buffer: 0", "limits.h2.max_send_buffer"),
    ] {
        let yaml = format!(
            "listeners:\n  - addr: \"127.0.0.1:1\"\nlimits:\n  h2: {{{h2}}}\n\
             upstreams:\n  app:\n    backends: [{{addr: \"127.0.0.1:3\"}}]\nroutes:\n  - upstream: app\n"
        );
        let path = write_file(dir.path(), "c.yaml", &yaml);
        let out = fulcrum_cmd(&["-t", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{h2}: accepted");
        assert!(stderr.contains(key), "{h2}: {stderr}");
    }
}

/// Resident memory of a process, from /proc, in KiB.
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Measurement, run by hand: `cargo test --release --test h2_settings -- --ignored
/// --nocapture`. RSS growth of fulcrum per HTTP/2 stream whose 1 MiB response the client never
/// reads: it offers large windows (16 MiB per stream, 1 GiB for the connection, as browsers
/// offer several MiB) and then never reads its socket, with the h2 crate's send buffer
/// (400 KiB, the setting before `limits.h2`) and fulcrum's default (64 KiB). A client that
/// keeps the default 64 KiB windows is bounded by them whatever the send buffer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, prints numbers"]
async fn measure_rss_per_unread_stream() {
    let opts = BackendOptions {
        body: Some("x".repeat(1024 * 1024)),
        ..BackendOptions::default()
    };
    let backend = TestBackend::start_with("big", opts).await;
    const CONNS: usize = 4;
    const STREAMS: u32 = 100;
    for buffer in ["400KiB", "64KiB"] {
        let f = start(&backend, &format!("  h2:\n    max_send_buffer: {buffer}\n")).await;
        let pid = std::fs::read_to_string(f.dir().join("fulcrum.pid")).unwrap();
        let pid = pid.trim().to_string();
        // Warm up: one request read fully over HTTP/1.
        let _ = get(&client_no_pool(), &f.url("/warm")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(&pid);
        let mut conns = Vec::new();
        for _ in 0..CONNS {
            let mut s = TcpStream::connect(("127.0.0.1", f.port())).await.unwrap();
            s.write_all(PREFACE).await.unwrap();
            let mut settings = SETTINGS_INITIAL_WINDOW_SIZE.to_be_bytes().to_vec();
            settings.extend_from_slice(&(16u32 << 20).to_be_bytes());
            s.write_all(&frame_bytes(SETTINGS, 0, 0, &settings))
                .await
                .unwrap();
            s.write_all(&frame_bytes(
                WINDOW_UPDATE,
                0,
                0,
                &(1u32 << 30).to_be_bytes(),
            ))
            .await
            .unwrap();
            for i in 0..STREAMS {
                let block = get_block(&format!("/big{i}"));
                s.write_all(&frame_bytes(HEADERS, 0x5, 2 * i + 1, &block))
                    .await
                    .unwrap();
            }
            conns.push(s);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = rss_kib(&pid);
        let streams = CONNS as u64 * u64::from(STREAMS);
        println!(
            "max_send_buffer {buffer}: RSS {before} KiB -> {after} KiB over {streams} unread streams: {} KiB per stream",
            (after.saturating_sub(before)) / streams
        );
        drop(conns);
    }
}
