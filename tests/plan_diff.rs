//! `fulcrum diff OLD NEW` and `fulcrum --reload --dry-run -c NEW`: the plan's listing and exit
//! status, and the shares of keys it says would move, checked against the real proxy before
//! and after a real `--reload`.
//!
//! How close a measured share must be to the printed one: the plan evaluates 100,000 sample
//! keys (its estimate of the true share p of the key space that moves, for the backends'
//! actual ring, is within ±0.2 points); the test sends [`KEYS`] = 1,000 other keys, whose
//! moved count is binomial with a standard deviation of at most sqrt(0.25 / 1000) = 1.6
//! points. [`TOLERANCE`] = 6 points is over 3.7 standard deviations: a correct plan fails
//! this check less than once in 5,000 runs, while a plan that is wrong by a backend's share
//! (20 points or more here) cannot pass.
//!
//! The process `--reload` starts is not this test's child: a [`PidGuard`] kills the fulcrum its
//! pid file names when the test ends.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use support::*;

/// Keys sent through the proxy before and after a reload.
const KEYS: usize = 1000;
/// Largest gap, in percentage points, between a measured and a printed share (see the module
/// doc).
const TOLERANCE: f64 = 6.0;

/// The pid in a pid file.
fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// True while `pid` exists and is not a zombie.
fn pid_alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// True if `pid` runs the binary under test.
fn is_fulcrum(pid: i32) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let ours = std::fs::canonicalize(FULCRUM_BIN).unwrap_or_else(|_| PathBuf::from(FULCRUM_BIN));
    exe.to_string_lossy()
        .starts_with(ours.to_string_lossy().as_ref())
}

/// SIGKILLs, when dropped, the fulcrum its pid file names (the process `--reload` started).
struct PidGuard(PathBuf);

impl Drop for PidGuard {
    fn drop(&mut self) {
        if let Some(pid) = read_pid(&self.0) {
            if pid > 1 && pid_alive(pid) && is_fulcrum(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Runs `fulcrum ARGS` in `dir` to completion (at most 40 s), reaping `old` (our child) as
/// soon as it exits, since an unreaped zombie would still look alive. Output goes to files:
/// a process `--reload` starts inherits them and outlives the command.
async fn run_in(dir: &Path, args: &[&str], old: Option<&mut Fulcrum>) -> Output {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let out_path = dir.join(format!("cmd-{n}.stdout"));
    let err_path = dir.join(format!("cmd-{n}.stderr"));
    let mut child = Command::new(FULCRUM_BIN)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create stdout"))
        .stderr(File::create(&err_path).expect("create stderr"))
        .spawn()
        .expect("spawn fulcrum");
    let mut old = old;
    let limit = Duration::from_secs(40);
    let start = Instant::now();
    let mut status = None;
    for _ in 0..(limit.as_millis() / 10 + 2) {
        if let Some(old) = old.as_deref_mut() {
            old.try_wait();
        }
        if let Some(s) = child.try_wait().expect("try_wait") {
            status = Some(s);
            break;
        }
        if start.elapsed() >= limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let read = |p: &Path| std::fs::read(p).unwrap_or_default();
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "`fulcrum {}` did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&read(&out_path)),
            String::from_utf8_lossy(&read(&err_path))
        );
    };
    Output {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shares on the plan's `moved: X%` lines, in order.
fn moved_shares(plan: &str) -> Vec<f64> {
    plan.lines()
        .filter_map(|l| l.trim().strip_prefix("moved: "))
        .filter_map(|l| l.split('%').next()?.parse().ok())
        .collect()
}

/// `fulcrum diff old new` in `dir`: exit status and stdout; the status must be 2 (changes).
async fn diff_share(dir: &Path, old: &Path, new: &Path) -> f64 {
    let out = run_in(
        dir,
        &["diff", old.to_str().unwrap(), new.to_str().unwrap()],
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    let shares = moved_shares(&stdout);
    assert_eq!(shares.len(), 1, "one moved share expected:\n{stdout}");
    shares[0]
}

/// The backend (by name) that answers each key, sent in header `x-user`.
async fn answers(f: &Fulcrum, path: &str) -> Vec<String> {
    let c = client();
    let mut out = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let key = format!("user-{i}");
        let r = get_with(&c, &f.url(path), None, &[("x-user", key.as_str())]).await;
        assert_eq!(r.status, 200, "key {key}: {}", r.body);
        out.push(r.body);
    }
    out
}

/// The same through the process now serving on `port` (after a reload).
async fn answers_at(port: u16, path: &str) -> Vec<String> {
    let c = client_no_pool();
    let mut out = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let key = format!("user-{i}");
        let url = format!("http://127.0.0.1:{port}{path}");
        let r = get_with(&c, &url, None, &[("x-user", key.as_str())]).await;
        assert_eq!(r.status, 200, "key {key}: {}", r.body);
        out.push(r.body);
    }
    out
}

/// The share of keys, in percent, answered by another backend.
fn moved_percent(before: &[String], after: &[String]) -> f64 {
    let moved = before.iter().zip(after).filter(|(a, b)| a != b).count();
    moved as f64 * 100.0 / before.len() as f64
}

/// `fulcrum --reload -c config` must succeed and leave a new process serving.
async fn reload(dir: &Path, config: &Path, old: &mut Fulcrum) -> i32 {
    let old_pid = old.pid().expect("running") as i32;
    let out = run_in(
        dir,
        &["--reload", "-c", config.to_str().unwrap()],
        Some(old),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "reload failed:\n{stdout}\n{stderr}");
    let pid = read_pid(&dir.join("fulcrum.pid")).expect("pid file");
    assert_ne!(pid, old_pid, "{stdout}");
    pid
}

fn config(port: u16, upstreams: &str, routes: &str) -> String {
    format!("listeners:\n  - addr: 127.0.0.1:{port}\nupstreams:\n{upstreams}routes:\n{routes}")
}

fn consistent_group(backends: &[&TestBackend]) -> String {
    let mut s = String::from(
        "  users:\n    algorithm: consistent\n    hash_key: header:x-user\n    backends:\n",
    );
    for b in backends {
        s.push_str(&format!("      - addr: {}\n", b.addr()));
    }
    s
}

#[tokio::test]
async fn diff_lists_changes_and_exits_0_without_2_with_1_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = config(
        18081,
        "  web:\n    backends:\n      - {addr: 127.0.0.1:4001, weight: 1}\n      - {addr: 127.0.0.1:4002}\n      - {addr: 127.0.0.1:4003}\n",
        "  - {path: /, upstream: web}\n",
    );
    let new = config(
        18081,
        "  web:\n    backends:\n      - {addr: 127.0.0.1:4001, weight: 4}\n      - {addr: 127.0.0.1:4002}\n  beta:\n    backends: [{addr: 127.0.0.1:4009}]\n",
        "  - {path: /, upstream: web}\n  - {name: beta, path: /beta, upstream: beta}\n",
    );
    let old_path = write_file(d, "old.yaml", &old);
    let new_path = write_file(d, "new.yaml", &new);
    let bad_path = write_file(d, "bad.yaml", &old.replace("weight: 1}", "weight: lots}"));
    let (o, n, b) = (
        old_path.to_str().unwrap(),
        new_path.to_str().unwrap(),
        bad_path.to_str().unwrap(),
    );

    let out = run_in(d, &["diff", o, n], None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    for line in [
        "  + route \"beta\" -> upstream beta\n",
        "  + upstream beta (round_robin, 1 backend)\n",
        "  ~ upstream web\n",
        "      - backend 127.0.0.1:4003 (weight 1)\n",
        "      ~ backend 127.0.0.1:4001: weight 1 -> 4\n",
        "plan: routes: 1 added; upstreams: 1 added, 1 changed\n",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }

    let out = run_in(d, &["diff", o, o], None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.ends_with("plan: no changes\n"), "{stdout}");

    let out = run_in(d, &["diff", o, b], None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("upstreams.web.backends[0].weight"),
        "the error names the key: {stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");

    // A usage error is an error (1), never "changes" (2).
    let out = run_in(d, &["diff", o], None).await;
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let out = run_in(d, &["--dry-run", "-c", n], None).await;
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_group_keys_move_as_diff_says_when_a_backend_goes_and_one_comes() {
    let b: Vec<TestBackend> = futures_util::future::join_all(
        (1..=5).map(|i| async move { TestBackend::start(&format!("b{i}")).await }),
    )
    .await;
    let port = free_port();
    let route = "  - {path: /, upstream: users}\n";
    let old = config(
        port,
        &consistent_group(&[&b[0], &b[1], &b[2], &b[3]]),
        route,
    );
    let mid = config(port, &consistent_group(&[&b[0], &b[1], &b[2]]), route);
    let new = config(
        port,
        &consistent_group(&[&b[0], &b[1], &b[2], &b[4]]),
        route,
    );

    let mut f = Fulcrum::start(&old, port).await;
    let dir = f.dir().to_path_buf();
    let _guard = PidGuard(dir.join("fulcrum.pid"));
    let old_path = f.config_path().unwrap().to_path_buf();
    let mid_path = write_file(&dir, "mid.yaml", &with_pingora_section(&mid, &dir));
    let new_path = write_file(&dir, "new.yaml", &with_pingora_section(&new, &dir));

    let removed_share = diff_share(&dir, &old_path, &mid_path).await;
    let added_share = diff_share(&dir, &mid_path, &new_path).await;

    let before = answers(&f, "/").await;
    reload(&dir, &mid_path, &mut f).await;
    let middle = answers_at(port, "/").await;
    // Removing a backend moves exactly its keys.
    for (a, m) in before.iter().zip(&middle) {
        if a != "b4" {
            assert_eq!(a, m, "a key not on the removed backend moved");
        }
    }
    let measured = moved_percent(&before, &middle);
    eprintln!("removing b4: measured {measured:.2}%, diff said {removed_share:.2}%");
    assert!(
        (measured - removed_share).abs() <= TOLERANCE,
        "removing b4: measured {measured:.2}%, diff said {removed_share:.2}%"
    );

    // Reload again, from the process --reload started (not our child).
    let out = run_in(&dir, &["--reload", "-c", new_path.to_str().unwrap()], None).await;
    assert!(out.status.success(), "{:?}", text(&out));
    let after = answers_at(port, "/").await;
    // Adding a backend only takes keys to it.
    for (m, a) in middle.iter().zip(&after) {
        if m != a {
            assert_eq!(a, "b5", "a key moved to an old backend");
        }
    }
    let measured = moved_percent(&middle, &after);
    eprintln!("adding b5: measured {measured:.2}%, diff said {added_share:.2}%");
    assert!(
        (measured - added_share).abs() <= TOLERANCE,
        "adding b5: measured {measured:.2}%, diff said {added_share:.2}%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_key_sides_move_as_diff_says_when_weights_change() {
    let v1 = TestBackend::start("v1").await;
    let v2 = TestBackend::start("v2").await;
    let port = free_port();
    let upstreams = format!(
        "  v1: {{backends: [{{addr: {}}}]}}\n  v2: {{backends: [{{addr: {}}}]}}\n",
        v1.addr(),
        v2.addr()
    );
    let route = |a: u32, b: u32| {
        format!(
            "  - name: shop\n    path: /\n    split: [{{upstream: v1, weight: {a}}}, {{upstream: v2, weight: {b}}}]\n    split_key: header:x-user\n"
        )
    };
    let old = config(port, &upstreams, &route(90, 10));
    let new = config(port, &upstreams, &route(70, 30));
    let mut f = Fulcrum::start(&old, port).await;
    let dir = f.dir().to_path_buf();
    let _guard = PidGuard(dir.join("fulcrum.pid"));
    let old_path = f.config_path().unwrap().to_path_buf();
    let new_path = write_file(&dir, "new.yaml", &with_pingora_section(&new, &dir));

    let share = diff_share(&dir, &old_path, &new_path).await;
    assert!(
        (share - 20.0).abs() < 1.0,
        "90/10 -> 70/30 moves a fifth: {share}"
    );

    let before = answers(&f, "/").await;
    reload(&dir, &new_path, &mut f).await;
    let after = answers_at(port, "/").await;
    // Only v2's share grows: every key that moves goes from v1 to v2.
    for (b, a) in before.iter().zip(&after) {
        if b != a {
            assert_eq!((b.as_str(), a.as_str()), ("v1", "v2"));
        }
    }
    let measured = moved_percent(&before, &after);
    eprintln!("split 90/10 -> 70/30: measured {measured:.2}%, diff said {share:.2}%");
    assert!(
        (measured - share).abs() <= TOLERANCE,
        "measured {measured:.2}%, diff said {share:.2}%"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_dry_run_plans_against_the_running_config_and_changes_nothing() {
    let b1 = TestBackend::start("b1").await;
    let b2 = TestBackend::start("b2").await;
    let port = free_port();
    let upstreams = |w: u32| {
        format!(
            "  web:\n    backends:\n      - {{addr: {}, weight: {w}}}\n      - {{addr: {}}}\n",
            b1.addr(),
            b2.addr()
        )
    };
    // A comment, to check that the copy holds the file's bytes, not a re-serialization.
    let old = format!(
        "# as written\n{}",
        config(port, &upstreams(1), "  - {path: /, upstream: web}\n")
    );
    let mut f = Fulcrum::start(&old, port).await;
    let dir = f.dir().to_path_buf();
    let pid = f.pid().unwrap() as i32;
    let old_path = f.config_path().unwrap().to_path_buf();

    // The running process keeps a private copy of what it loaded next to its pid file,
    // written before the pid file.
    let copy = dir.join("fulcrum.config.yaml");
    for _ in 0..500 {
        if read_pid(&dir.join("fulcrum.pid")) == Some(pid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        read_pid(&dir.join("fulcrum.pid")),
        Some(pid),
        "no pid file after 10 s"
    );
    assert_eq!(
        std::fs::read(&copy).expect("config copy"),
        std::fs::read(&old_path).unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let new = config(port, &upstreams(3), "  - {path: /, upstream: web}\n");
    let new_path = write_file(&dir, "new.yaml", &with_pingora_section(&new, &dir));
    let n = new_path.to_str().unwrap();
    let out = run_in(&dir, &["--reload", "--dry-run", "-c", n], None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("pid {pid} (config {})", copy.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("      ~ backend {}: weight 1 -> 3\n", b1.addr())),
        "{stdout}"
    );
    assert!(stdout.contains("nothing was changed"), "{stdout}");

    // Against the same text: no changes.
    let same_path = write_file(
        &dir,
        "same.yaml",
        &std::fs::read_to_string(&old_path).unwrap(),
    );
    let out = run_in(
        &dir,
        &["--reload", "--dry-run", "-c", same_path.to_str().unwrap()],
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.ends_with("plan: no changes\n"), "{stdout}");

    // The same process serves, with the old weights, and still owns the pid file.
    assert!(f.is_running());
    assert_eq!(read_pid(&dir.join("fulcrum.pid")), Some(pid));
    let c = client();
    let bodies: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(get(&c, &f.url("/")).await.body);
        }
        v
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for b in &bodies {
        *counts.entry(b.as_str()).or_default() += 1;
    }
    assert_eq!(counts, BTreeMap::from([("b1", 2), ("b2", 2)]), "{bodies:?}");
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&old_path).unwrap(),
        "the copy is unchanged"
    );

    // No running fulcrum for a config: an error (1), not a plan.
    let elsewhere = tempfile::tempdir().unwrap();
    let lone = write_file(
        elsewhere.path(),
        "lone.yaml",
        &with_pingora_section(&new, elsewhere.path()),
    );
    let out = run_in(
        elsewhere.path(),
        &["--reload", "--dry-run", "-c", lone.to_str().unwrap()],
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("no running fulcrum"), "{stderr}");
}
