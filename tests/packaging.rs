//! Packaging works as written: the systemd unit agrees with the config it installs and passes
//! `systemd-analyze verify` where the machine has it; the Dockerfile is linted for what makes
//! an image cache well, run unprivileged and report its health; the LICENSE is the one
//! Cargo.toml names; and the two commands the image relies on, `fulcrum health` and
//! `fulcrum supervise`, do what the Dockerfile says, against the real binary.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_fulcrum");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// The `[Service]` and other sections' `Key=Value` lines of a unit, every value of a key.
fn unit_keys(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') || line.is_empty() {
            continue;
        }
        let (k, v) = line.split_once('=').expect("Key=Value");
        keys.entry(k.to_string()).or_default().push(v.to_string());
    }
    keys
}

fn one<'a>(keys: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match keys.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("the unit should set {key} once, it has {other:?}"),
    }
}

/// A string field of the `pingora:` section of a YAML config.
fn pingora_field(config: &str, field: &str) -> String {
    let value: serde_yaml::Value = serde_yaml::from_str(config).expect("YAML");
    value["pingora"][field]
        .as_str()
        .unwrap_or_else(|| panic!("pingora.{field} is not set"))
        .to_string()
}

#[test]
fn the_systemd_unit_agrees_with_the_config_it_installs() {
    let unit = read("conf/fulcrum.service");
    let keys = unit_keys(&unit);
    // The config the unit's install steps put in /etc/fulcrum/fulcrum.yaml.
    let install = unit
        .lines()
        .find(|l| l.contains("/etc/fulcrum/fulcrum.yaml") && l.contains("install -m"))
        .expect("the unit says how to install its config");
    let source = install
        .split_whitespace()
        .find(|w| w.starts_with("conf/") && w.ends_with(".yaml"))
        .expect("the install line names a config under conf/");
    let config = read(source);

    let pid_file = pingora_field(&config, "pid_file");
    assert_eq!(one(&keys, "PIDFile"), pid_file, "PIDFile vs {source}");
    let runtime = format!("/run/{}/", one(&keys, "RuntimeDirectory"));
    assert!(
        pid_file.starts_with(&runtime),
        "{pid_file} not in {runtime}"
    );
    assert!(pingora_field(&config, "upgrade_sock").starts_with(&runtime));
    assert_eq!(one(&keys, "Type"), "forking");
    assert_eq!(
        one(&keys, "ExecStart"),
        "/usr/local/bin/fulcrum -d -c /etc/fulcrum/fulcrum.yaml"
    );
    assert_eq!(
        one(&keys, "ExecReload"),
        "/usr/local/bin/fulcrum --reload -d -c /etc/fulcrum/fulcrum.yaml"
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("LimitNOFILE", "1048576"),
    ] {
        assert_eq!(one(&keys, key), value, "{key}");
    }
    assert!(keys["SystemCallFilter"].contains(&"@system-service".to_string()));
    let families = one(&keys, "RestrictAddressFamilies");
    for family in ["AF_INET", "AF_INET6", "AF_UNIX"] {
        // AF_UNIX: the upgrade socket a reload hands the listeners over.
        assert!(families.split(' ').any(|f| f == family), "{family}");
    }
    // The installed config is valid.
    let out = Command::new(BIN)
        .args(["-t", "-c", source])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn systemd_analyze_verifies_the_unit_where_it_is_installed() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        // Not every machine has systemd; .ci/check-packaging says so in CI's log.
        eprintln!("systemd-analyze is not installed: the unit's structure is checked above");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = read("conf/fulcrum.service").replace("/usr/local/bin/fulcrum", BIN);
    let path = dir.path().join("fulcrum.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}

/// The instructions of a Dockerfile, continuation lines joined, comments dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(t);
                let (op, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((op.to_uppercase(), args.trim().to_string()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn the_dockerfile_caches_dependencies_runs_unprivileged_and_reports_health() {
    let text = read("Dockerfile");
    let steps = instructions(&text);
    let index = |pred: &dyn Fn(&(String, String)) -> bool, what: &str| {
        steps
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("the Dockerfile has no {what}"))
    };
    for (op, args) in &steps {
        if op == "FROM" {
            let image = args.split_whitespace().next().unwrap();
            assert!(
                image.contains(':') && !image.ends_with(":latest"),
                "FROM {image}: pin a tag"
            );
        }
        if op == "RUN" && args.contains("apt-get install") {
            assert!(args.contains("--no-install-recommends"), "RUN {args}");
            assert!(args.contains("rm -rf /var/lib/apt/lists"), "RUN {args}");
        }
        if op == "COPY" && !args.starts_with("--from") {
            let words: Vec<&str> = args.split_whitespace().collect();
            for src in &words[..words.len() - 1] {
                assert!(root().join(src).exists(), "COPY {src}: no such path");
            }
        }
    }
    // Dependencies are built from the manifests alone, before the sources arrive.
    let manifests = index(
        &|(op, a)| op == "COPY" && a.starts_with("Cargo.toml Cargo.lock"),
        "COPY of the manifests",
    );
    let deps = index(
        &|(op, a)| op == "RUN" && a.contains("cargo build"),
        "dependency build",
    );
    let sources = index(&|(op, a)| op == "COPY" && a.starts_with("src "), "COPY src");
    assert!(
        manifests < deps && deps < sources,
        "manifests, dependencies, then src"
    );
    // Every target Cargo.toml names has a stand-in in the dependency layer, or cargo refuses
    // the manifest.
    let manifest: toml_lite::Targets = toml_lite::targets(&read("Cargo.toml"));
    for path in manifest.paths {
        if path.starts_with("src/") {
            continue;
        }
        assert!(
            steps[deps].1.contains(&path),
            "the dependency layer lacks a stand-in {path}"
        );
    }
    let build = &steps[index(
        &|(op, a)| op == "RUN" && a.contains("cargo build") && a.contains("strip"),
        "final build",
    )]
    .1;
    assert!(
        build.contains("--profile dist") && build.contains("--locked"),
        "{build}"
    );
    assert!(read("Cargo.toml").contains("[profile.dist]"));
    // Health, user, entry point.
    let health = &steps[index(&|(op, _)| op == "HEALTHCHECK", "HEALTHCHECK")].1;
    assert!(
        health.contains("\"health\"") && health.contains("fulcrum"),
        "{health}"
    );
    let user = index(&|(op, _)| op == "USER", "USER");
    let entry = index(&|(op, _)| op == "ENTRYPOINT", "ENTRYPOINT");
    assert!(user < entry);
    assert!(
        !matches!(steps[user].1.as_str(), "root" | "0"),
        "runs as root"
    );
    assert!(
        steps[entry].1.contains("\"supervise\""),
        "PID 1 must outlive a reload"
    );
    assert!(read(".dockerignore").lines().any(|l| l.trim() == "target"));
    // The image's default config has the admin listener the health check asks.
    let cmd = &steps[index(&|(op, _)| op == "CMD", "CMD")].1;
    assert!(cmd.contains("/etc/fulcrum/fulcrum.yaml"), "{cmd}");
    assert!(read("conf/docker.yaml").contains("\nadmin:"));
    if Command::new("hadolint").arg("--version").output().is_ok() {
        let out = Command::new("hadolint")
            .arg("Dockerfile")
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Just enough of Cargo.toml: the `path` of every target, and `benches/NAME.rs` for a bench
/// without one.
mod toml_lite {
    /// Target paths.
    pub struct Targets {
        pub paths: Vec<String>,
    }

    pub fn targets(text: &str) -> Targets {
        let mut paths = Vec::new();
        let mut section = String::new();
        let mut name = None;
        let mut path = None;
        let mut flush = |section: &str, name: &mut Option<String>, path: &mut Option<String>| {
            if let Some(p) = path.take() {
                paths.push(p);
            } else if section == "[[bench]]" {
                if let Some(n) = name.as_ref() {
                    paths.push(format!("benches/{n}.rs"));
                }
            }
            *name = None;
        };
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                flush(&section, &mut name, &mut path);
                section = line.to_string();
                continue;
            }
            let value = |l: &str| {
                l.split_once('=')
                    .map(|(_, v)| v.trim().trim_matches('"').to_string())
            };
            if line.starts_with("name") {
                name = value(line);
            } else if line.starts_with("path") && section.starts_with("[[") {
                path = value(line);
            }
        }
        flush(&section, &mut name, &mut path);
        Targets { paths }
    }
}

#[test]
fn the_license_is_the_one_cargo_toml_names() {
    let manifest = read("Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""));
    let license = read("LICENSE");
    assert!(license.trim_start().starts_with("Apache License"));
    assert!(license.contains("Version 2.0, January 2004"));
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
}

/// A config with two demo backends, health-checked every 200 ms, and the admin listener;
/// `pid_file` and `upgrade_sock` in `dir`.
fn config(dir: &Path, listen: u16, admin: u16, backends: [u16; 2]) -> PathBuf {
    let text = format!(
        "pingora:
  threads: 1
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 1
  pid_file: {dir}/fulcrum.pid
  upgrade_sock: {dir}/upgrade.sock
listeners: [{{addr: 127.0.0.1:{listen}}}]
demo_backends:
  - {{name: one, addr: 127.0.0.1:{b0}}}
upstreams:
  app:
    backends: [{{addr: 127.0.0.1:{b0}}}, {{addr: 127.0.0.1:{b1}}}]
    health_check: {{type: http, path: /, interval: 200ms, rise: 1, fall: 1}}
routes: [{{path: /, upstream: app}}]
admin: {{addr: 127.0.0.1:{admin}}}
",
        dir = dir.display(),
        b0 = backends[0],
        b1 = backends[1],
    );
    let path = dir.join("fulcrum.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn fulcrum(args: &[&str], conf: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("-c")
        .arg(conf)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `GET /` on `port`: the body, or `None` when nothing answers.
fn get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

/// Poll `f` every 50 ms for up to `limit`.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn pid_in(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("fulcrum.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !matches!(
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next()),
            Some("Z" | "X")
        )
    })
}

fn parent_pid(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Send `kill -SIGNAL pid`.
fn signal(name: &str, pid: i32) {
    let sent = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name} {pid}");
}

/// The supervisor's exit code, once it exits within `seconds`.
fn exit_code_within(sup: &mut Child, seconds: u64) -> Option<i32> {
    let mut status = None;
    assert!(
        eventually(Duration::from_secs(seconds), || {
            status = sup.try_wait().unwrap();
            status.is_some()
        }),
        "the supervisor still runs after {seconds} s"
    );
    status.and_then(|s| s.code())
}

/// `fulcrum supervise -c conf`, quiet.
fn supervise(conf: &Path) -> Child {
    Command::new(BIN)
        .args(["supervise", "-c"])
        .arg(conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A supervisor stopped (SIGINT) when the test ends.
struct Supervisor(Child);

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

#[test]
fn fulcrum_health_answers_like_the_admin_health_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin, b0, b1) = (free_port(), free_port(), free_port(), free_port());
    let conf = config(dir.path(), listen, admin, [b0, b1]);

    // Nothing runs yet.
    let out = fulcrum(&["health"], &conf);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{admin}/health")),
        "{stderr}"
    );

    let _sup = Supervisor(supervise(&conf));
    // One backend (b1) never answers, one does: the group can take traffic.
    assert!(eventually(Duration::from_secs(15), || fulcrum(
        &["health"],
        &conf
    )
    .status
    .success()));
    let out = fulcrum(&["health"], &conf);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fulcrum health: ok\n");

    // Without an admin listener there is nothing to ask.
    let bare = dir.path().join("bare.yaml");
    let text = std::fs::read_to_string(&conf).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("admin:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&bare, text).unwrap();
    let out = fulcrum(&["health"], &bare);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "fulcrum health: the config has no `admin` listener to ask\n"
    );
}

#[test]
fn fulcrum_health_fails_when_no_backend_can_take_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin) = (free_port(), free_port());
    // Both backends are closed ports: the first health-check round finds none healthy.
    let (b0, b1) = (free_port(), free_port());
    let conf = config(dir.path(), listen, admin, [b0, b1]);
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace(&format!("  - {{name: one, addr: 127.0.0.1:{b0}}}\n"), "")
        .replace("demo_backends:\n", "");
    std::fs::write(&conf, text).unwrap();
    let _sup = Supervisor(supervise(&conf));
    let mut last = None;
    assert!(
        eventually(Duration::from_secs(15), || {
            let out = fulcrum(&["health"], &conf);
            let said = String::from_utf8_lossy(&out.stderr).to_string();
            let done = said.contains("no healthy backend");
            last = Some((out.status.code(), said));
            done
        }),
        "{last:?}"
    );
    assert_eq!(
        last,
        Some((
            Some(1),
            "fulcrum health: 503 no healthy backend in: app\n".to_string()
        ))
    );
}

#[test]
fn the_supervisor_outlives_a_reload_and_stops_with_fulcrum() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin, b0, b1) = (free_port(), free_port(), free_port(), free_port());
    let conf = config(dir.path(), listen, admin, [b0, b1]);
    let mut sup = supervise(&conf);
    let sup_pid = sup.id() as i32;
    assert!(eventually(Duration::from_secs(15), || get(listen)
        .as_deref()
        == Some("one\n")));
    let first = pid_in(dir.path()).expect("pid file");
    assert_eq!(
        parent_pid(first),
        Some(sup.id()),
        "the daemon is the supervisor's child"
    );

    // SIGHUP: a zero-downtime reload; the supervisor stays, a new process serves.
    signal("HUP", sup_pid);
    assert!(
        eventually(Duration::from_secs(20), || pid_in(dir.path())
            .is_some_and(|p| p != first)
            && !alive(first)),
        "the reload did not replace pid {first}"
    );
    let second = pid_in(dir.path()).unwrap();
    assert_eq!(get(listen).as_deref(), Some("one\n"));
    assert!(
        sup.try_wait().unwrap().is_none(),
        "the supervisor exited with the old process"
    );
    assert_eq!(parent_pid(second), Some(sup.id()));

    // SIGTERM: passed on; fulcrum drains and exits, then the supervisor exits 0.
    signal("TERM", sup_pid);
    assert_eq!(exit_code_within(&mut sup, 15), Some(0));
    assert!(!alive(second));
}

#[test]
fn the_supervisor_exits_1_when_fulcrum_dies() {
    let dir = tempfile::tempdir().unwrap();
    let (listen, admin, b0, b1) = (free_port(), free_port(), free_port(), free_port());
    let conf = config(dir.path(), listen, admin, [b0, b1]);
    let mut sup = supervise(&conf);
    assert!(eventually(Duration::from_secs(15), || get(listen).is_some()));
    let pid = pid_in(dir.path()).unwrap();
    signal("KILL", pid);
    assert_eq!(exit_code_within(&mut sup, 10), Some(1));
}
