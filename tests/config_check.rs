//! `fulcrum -t` (config check), config error messages with key paths, `--print-config` in quick
//! mode, and quick mode proxying.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Writes `yaml` to a fresh temp dir and returns (dir guard, path).
fn config_file(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "fulcrum.yaml", yaml);
    (dir, path)
}

fn check(path: &Path) -> std::process::Output {
    fulcrum_cmd(&["-t", "-c", path.to_str().unwrap()])
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A config using every section of the schema.
fn full_valid_config(dir: &Path, listen: u16) -> String {
    let (d1, d2, b1, b2) = (free_port(), free_port(), free_port(), free_port());
    format!(
        r#"{pingora}
listeners:
  - addr: "127.0.0.1:{listen}"
  - addr: "127.0.0.1:{listen2}"
    h2c: true
demo_backends:
  - name: alpha
    addr: "127.0.0.1:{d1}"
  - name: beta
    addr: "127.0.0.1:{d2}"
    body: "custom body\n"
    status: 201
    delay: 250ms
    headers:
      x-demo: "yes"
upstreams:
  web:
    algorithm: round_robin
    backends:
      - addr: "127.0.0.1:{d1}"
      - addr: "127.0.0.1:{d2}"
        weight: 3
    timeouts:
      connect: 1s
      read: 500ms
      write: 2s
      idle: 1m
    max_tries: 2
  wrr:
    algorithm: weighted_round_robin
    backends:
      - addr: "127.0.0.1:{b1}"
        weight: 5
      - addr: "127.0.0.1:{b2}"
        weight: 1000
  rnd:
    algorithm: random
    backends:
      - addr: "127.0.0.1:{b1}"
  sticky:
    algorithm: consistent
    hash_key: "header:X-User"
    fallback: random
    backends:
      - addr: "127.0.0.1:{b1}"
      - addr: "127.0.0.1:{b2}"
  sticky_cookie:
    algorithm: consistent
    hash_key: "cookie:session"
    backends:
      - addr: "127.0.0.1:{b1}"
  sticky_ip:
    algorithm: consistent
    backends:
      - addr: "localhost:{b2}"
  secure:
    backends:
      - addr: "127.0.0.1:{b1}"
    tls:
      sni: backend.internal
      insecure_skip_verify: true
routes:
  - host: app.test
    path: /api
    upstream: web
    strip_prefix: true
    headers:
      request:
        add: {{x-a: "1"}}
        set: {{x-b: "2"}}
        remove: [x-c]
      response:
        set: {{x-frame-options: DENY}}
        remove: [server]
  - host: "*.example.com"
    upstream: sticky
  - path: /wrr
    upstream: wrr
  - path: /rnd
    upstream: rnd
  - path: /cookie
    upstream: sticky_cookie
  - path: /ip
    upstream: sticky_ip
  - path: /secure
    upstream: secure
  - upstream: web
forwarding:
  trusted_proxies: ["10.0.0.0/8", "192.168.0.1", "::1/128"]
  x_forwarded_for: true
  x_forwarded_proto: true
  x_forwarded_host: true
  forwarded: true
  via: true
  served_by_header: X-Served-By
"#,
        pingora = pingora_section(dir),
        listen2 = free_port(),
    )
}

/// The smallest useful config.
fn minimal_config(listen: u16, backend_port: u16) -> String {
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{listen}"
upstreams:
  web:
    backends:
      - addr: "127.0.0.1:{backend_port}"
routes:
  - upstream: web
"#
    )
}

#[test]
fn valid_configs_pass_check() {
    let dir = tempfile::tempdir().unwrap();
    let full = write_file(
        dir.path(),
        "full.yaml",
        &full_valid_config(dir.path(), free_port()),
    );
    let out = check(&full);
    assert!(
        out.status.success(),
        "full config should be valid: {}\nstderr:\n{}",
        out.status,
        stderr_of(&out)
    );

    let minimal = write_file(
        dir.path(),
        "minimal.yaml",
        &minimal_config(free_port(), free_port()),
    );
    let out = check(&minimal);
    assert!(
        out.status.success(),
        "minimal config should be valid: {}\nstderr:\n{}",
        out.status,
        stderr_of(&out)
    );
}

#[test]
fn check_does_not_bind_ports() {
    // The listener port is taken by this test: `-t` must still succeed because it binds nothing.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let (_d, path) = config_file(&minimal_config(port, free_port()));
    let out = check(&path);
    assert!(
        out.status.success(),
        "-t must not bind the listener: {}\n{}",
        out.status,
        stderr_of(&out)
    );
}

/// Runs `-t` on `yaml` and asserts it fails with `FILE: key_path` in stderr.
fn assert_rejected_at(yaml: &str, key_path: &str) -> String {
    let (_d, path) = config_file(yaml);
    let out = check(&path);
    let stderr = stderr_of(&out);
    assert!(
        !out.status.success(),
        "config should be rejected (expected error at {key_path}), but -t succeeded.\nconfig:\n{yaml}\nstderr:\n{stderr}"
    );
    let want = format!("{}: {}", path.display(), key_path);
    assert!(
        stderr.contains(&want),
        "stderr should contain `{want}: <message>`\nconfig:\n{yaml}\nstderr:\n{stderr}"
    );
    stderr
}

#[test]
fn unknown_key_is_reported_with_path() {
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{}"
upstreams:
  web:
    bakends:
      - addr: "127.0.0.1:{}"
routes:
  - upstream: web
"#,
        free_port(),
        free_port()
    );
    assert_rejected_at(&yaml, "upstreams.web.bakends");
}

#[test]
fn unknown_top_level_key_is_reported() {
    let yaml = format!("{}\nroutez: []\n", minimal_config(free_port(), free_port()));
    let (_d, path) = config_file(&yaml);
    let out = check(&path);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("routez"),
        "stderr should name the unknown key: {}",
        stderr_of(&out)
    );
}

#[test]
fn route_to_missing_upstream_is_reported() {
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{}"
upstreams:
  web:
    backends:
      - addr: "127.0.0.1:{}"
routes:
  - upstream: nope
  - upstream: web
"#,
        free_port(),
        free_port()
    );
    let stderr = assert_rejected_at(&yaml, "routes[0].upstream");
    assert!(
        stderr.contains("nope"),
        "message should name the missing upstream: {stderr}"
    );
}

#[test]
fn zero_weight_is_reported() {
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{}"
upstreams:
  web:
    backends:
      - addr: "127.0.0.1:{}"
      - addr: "127.0.0.1:{}"
        weight: 0
routes:
  - upstream: web
"#,
        free_port(),
        free_port(),
        free_port()
    );
    assert_rejected_at(&yaml, "upstreams.web.backends[1].weight");
}

#[test]
fn duplicate_upstream_name_is_rejected() {
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{}"
upstreams:
  web:
    backends:
      - addr: "127.0.0.1:{}"
  web:
    backends:
      - addr: "127.0.0.1:{}"
routes:
  - upstream: web
"#,
        free_port(),
        free_port(),
        free_port()
    );
    let (_d, path) = config_file(&yaml);
    let out = check(&path);
    let stderr = stderr_of(&out);
    assert!(!out.status.success(), "duplicate upstream must be rejected");
    assert!(
        stderr.contains(&path.display().to_string()),
        "stderr should name the file: {stderr}"
    );
    assert!(
        stderr
            .contains(": upstreams.web: duplicate name `web` on line 8 (first defined on line 5)"),
        "stderr should point at the duplicate itself: {stderr}"
    );
}

/// `hash_key` means something only to `algorithm: consistent`: anywhere else it is refused,
/// with its key path, like `sticky` outside `algorithm: cookie`.
#[test]
fn hash_key_without_a_hashing_algorithm_is_refused() {
    for algorithm in [
        "round_robin",
        "least_connections",
        "ip_hash",
        "random",
        "cookie",
    ] {
        let yaml = format!(
            r#"
listeners:
  - addr: "127.0.0.1:{}"
upstreams:
  web:
    algorithm: {algorithm}
    hash_key: path
    backends:
      - addr: "127.0.0.1:{}"
routes:
  - upstream: web
"#,
            free_port(),
            free_port()
        );
        let (_d, path) = config_file(&yaml);
        let out = check(&path);
        let stderr = stderr_of(&out);
        assert_eq!(out.status.code(), Some(1), "{algorithm}: {stderr}");
        assert!(
            stderr.contains("upstreams.web.hash_key: only used with `algorithm: consistent`"),
            "{algorithm}: {stderr}"
        );
    }
}

#[test]
fn unparseable_backend_address_is_reported() {
    for bad in ["127.0.0.1:notaport", "127.0.0.1:99999", "not an address"] {
        let yaml = format!(
            r#"
listeners:
  - addr: "127.0.0.1:{}"
upstreams:
  web:
    backends:
      - addr: "{bad}"
routes:
  - upstream: web
"#,
            free_port()
        );
        assert_rejected_at(&yaml, "upstreams.web.backends[0].addr");
    }
}

#[test]
fn empty_upstream_is_reported() {
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{}"
upstreams:
  web:
    backends: []
routes:
  - upstream: web
"#,
        free_port()
    );
    assert_rejected_at(&yaml, "upstreams.web.backends");
}

#[test]
fn yaml_syntax_error_mentions_line() {
    let yaml = format!(
        "listeners:\n  - addr: \"127.0.0.1:{}\"\nupstreams:\n  web: [unclosed\nroutes:\n  - upstream: web\n",
        free_port()
    );
    let (_d, path) = config_file(&yaml);
    let out = check(&path);
    let stderr = stderr_of(&out);
    assert!(!out.status.success(), "syntax error must be rejected");
    assert!(
        stderr.contains(&path.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(stderr.contains("line"), "mentions the line: {stderr}");
}

#[test]
fn missing_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("does-not-exist.yaml");
    let out = check(&path);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("does-not-exist.yaml"),
        "names the file: {}",
        stderr_of(&out)
    );
}

/// A bad config must fail before anything is bound: while the process runs, neither the
/// listener nor a demo backend port ever accepts a connection.
#[test]
fn bad_config_exits_before_binding() {
    let listen = free_port();
    let demo = free_port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"{pingora}
listeners:
  - addr: "127.0.0.1:{listen}"
demo_backends:
  - name: alpha
    addr: "127.0.0.1:{demo}"
upstreams:
  web:
    backends:
      - addr: "127.0.0.1:{demo}"
routes:
  - upstream: missing
"#,
        pingora = pingora_section(dir.path())
    );
    let path = write_file(dir.path(), "bad.yaml", &yaml);
    let stderr_path = dir.path().join("stderr.log");
    let mut child = Command::new(FULCRUM_BIN)
        .args(["-c", path.to_str().unwrap()])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn fulcrum");

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut bound = Vec::new();
    let mut status = None;
    for _ in 0..3000 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        // Only fulcrum's own sockets count: on a busy machine another process may hold the
        // port by the time it is probed.
        for p in [listen, demo] {
            if pid_listens_on(child.id(), p) == Some(true) {
                bound.push(p);
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let status =
        status.unwrap_or_else(|| panic!("fulcrum with a bad config kept running\n{stderr}"));
    assert!(!status.success(), "bad config must exit non-zero\n{stderr}");
    assert!(
        bound.is_empty(),
        "ports {bound:?} accepted connections although the config is invalid\n{stderr}"
    );
    assert!(
        stderr.contains("routes[0].upstream"),
        "stderr should name the bad key\n{stderr}"
    );
    assert!(port_is_free(listen) && port_is_free(demo));
}

#[test]
fn shipped_configs_pass_check() {
    // Any example config in conf/ must be valid. Skips when there is none yet.
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let Ok(entries) = std::fs::read_dir(&conf) else {
        eprintln!("no conf/ directory, nothing to check");
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml") | Some("yml")
        );
        if !is_yaml {
            continue;
        }
        let out = check(&path);
        assert!(
            out.status.success(),
            "{} should pass -t: {}\n{}",
            path.display(),
            out.status,
            stderr_of(&out)
        );
    }
}

// ----- quick mode -----

#[test]
fn print_config_round_trips_through_check() {
    let listen = free_port();
    let (a, b) = (free_port(), free_port());
    let listen_arg = format!("127.0.0.1:{listen}");
    let backends_arg = format!("127.0.0.1:{a},127.0.0.1:{b}");
    let dir = tempfile::tempdir().unwrap();
    for algorithm in [
        "round_robin",
        "weighted_round_robin",
        "random",
        "consistent",
    ] {
        let out = fulcrum_cmd(&[
            "--listen",
            &listen_arg,
            "--backends",
            &backends_arg,
            "--algorithm",
            algorithm,
            "--print-config",
        ]);
        let printed = stdout_of(&out);
        assert!(
            out.status.success(),
            "--print-config ({algorithm}) failed: {}\n{}",
            out.status,
            stderr_of(&out)
        );
        for needle in [
            listen_arg.as_str(),
            &format!("127.0.0.1:{a}"),
            &format!("127.0.0.1:{b}"),
        ] {
            assert!(
                printed.contains(needle),
                "printed config ({algorithm}) should contain {needle}:\n{printed}"
            );
        }
        if algorithm != "round_robin" {
            assert!(
                printed.contains(algorithm),
                "printed config should name the algorithm {algorithm}:\n{printed}"
            );
        }
        let path = write_file(dir.path(), &format!("{algorithm}.yaml"), &printed);
        let out = check(&path);
        assert!(
            out.status.success(),
            "printed config ({algorithm}) should pass -t: {}\n{}\nconfig:\n{printed}",
            out.status,
            stderr_of(&out)
        );
    }
    assert!(port_is_free(listen), "--print-config must not bind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_mode_proxies() {
    let a = TestBackend::start("qa").await;
    let b = TestBackend::start("qb").await;
    let listen = free_port();
    let listen_arg = format!("127.0.0.1:{listen}");
    let backends_arg = format!("{},{}", a.addr(), b.addr());
    let f = Fulcrum::start_args(
        &[
            "--listen",
            &listen_arg,
            "--backends",
            &backends_arg,
            "--algorithm",
            "round_robin",
        ],
        listen,
    )
    .await;
    let c = client();
    let seq = bodies(&c, &f.url("/anything?x=1"), None, 6).await;
    for i in 2..seq.len() {
        assert_eq!(seq[i], seq[i - 2], "round robin over two backends: {seq:?}");
    }
    assert_ne!(seq[0], seq[1], "both backends should answer: {seq:?}");
    assert_eq!((a.count(), b.count()), (3, 3));
    assert_eq!(a.last_request().unwrap().path, "/anything?x=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printed_config_runs() {
    // The YAML printed by quick mode, run as a config file, proxies like quick mode.
    let a = TestBackend::start("pa").await;
    let b = TestBackend::start("pb").await;
    let listen = free_port();
    let listen_arg = format!("127.0.0.1:{listen}");
    let backends_arg = format!("{},{}", a.addr(), b.addr());
    let out = fulcrum_cmd(&[
        "--listen",
        &listen_arg,
        "--backends",
        &backends_arg,
        "--algorithm",
        "round_robin",
        "--print-config",
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let printed = stdout_of(&out);
    // Fulcrum::start adds the test pingora: section when the printed YAML has none.
    let f = Fulcrum::start(&printed, listen).await;
    let c = client();
    let seq = bodies(&c, &f.url("/"), None, 4).await;
    assert_eq!(a.count() + b.count(), 4);
    assert_eq!((a.count(), b.count()), (2, 2), "{seq:?}");
}

/// `fulcrum -t` writing into a pipe nobody reads any more (`| head -1` after its line) ends
/// quietly, killed by `SIGPIPE` as Unix tools are, instead of panicking on the broken pipe.
#[test]
fn check_output_into_a_closed_pipe_is_quiet() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_fulcrum"))
        .args(["-t", "-c", "conf/example.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run fulcrum");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr, "", "nothing on stderr");
    assert_eq!(out.status.signal(), Some(13), "{:?}", out.status);
}
