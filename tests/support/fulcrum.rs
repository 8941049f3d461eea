//! The `fulcrum` process under test: config files with a per-test `pingora:` section,
//! [`Fulcrum`] (a running server, killed on drop) and [`fulcrum_cmd`] (one-shot runs).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use super::ports::pid_listens_on;

/// Path of the binary under test.
pub const FULCRUM_BIN: &str = env!("CARGO_BIN_EXE_fulcrum");

/// How long [`Fulcrum::start`] waits for the listener to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// How long [`fulcrum_cmd`] lets a one-shot invocation run before killing it.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(30);

/// The `pingora:` section every test config gets: one worker thread, no grace periods, and a
/// pid file and upgrade socket inside `dir` so tests running in parallel do not collide.
pub fn pingora_section(dir: &Path) -> String {
    format!(
        "pingora:\n  threads: 1\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n  pid_file: \"{}\"\n  upgrade_sock: \"{}\"\n",
        dir.join("fulcrum.pid").display(),
        dir.join("upgrade.sock").display()
    )
}

/// Prepends [`pingora_section`] unless the YAML already has a top-level `pingora:` key, and
/// replaces every `$TMPDIR` with `dir`.
pub fn with_pingora_section(yaml: &str, dir: &Path) -> String {
    let yaml = yaml.replace("$TMPDIR", &dir.display().to_string());
    let has_pingora = yaml.lines().any(|l| l.starts_with("pingora:"));
    if has_pingora {
        yaml
    } else {
        format!("{}{}", pingora_section(dir), yaml)
    }
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// A running `fulcrum` process. Killed (SIGKILL) and reaped on drop. When the test is
/// panicking, its output is printed to the test's stderr on drop.
pub struct Fulcrum {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    config: Option<PathBuf>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Fulcrum {
    /// Writes `yaml` (plus the test `pingora:` section, see [`with_pingora_section`]) to a temp
    /// file, runs `fulcrum -c FILE`, and waits until 127.0.0.1:`listen_port` accepts TCP
    /// connections (bounded by [`START_TIMEOUT`]). Panics with fulcrum's output if it exits or
    /// never listens.
    ///
    /// Readiness is a bare TCP connect (no HTTP request), so no request is routed and
    /// balancer state (round-robin counters) is untouched when the test starts.
    pub async fn start(yaml: &str, listen_port: u16) -> Fulcrum {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_file(
            dir.path(),
            "fulcrum.yaml",
            &with_pingora_section(yaml, dir.path()),
        );
        let args = vec!["-c".to_string(), config.display().to_string()];
        Fulcrum::spawn(dir, Some(config), &args, listen_port).await
    }

    /// Runs `fulcrum ARGS...` (e.g. quick mode flags) and waits for `listen_port` like
    /// [`Fulcrum::start`].
    pub async fn start_args(args: &[&str], listen_port: u16) -> Fulcrum {
        let dir = tempfile::tempdir().expect("tempdir");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Fulcrum::spawn(dir, None, &args, listen_port).await
    }

    async fn spawn(
        dir: tempfile::TempDir,
        config: Option<PathBuf>,
        args: &[String],
        port: u16,
    ) -> Fulcrum {
        let stdout_path = dir.path().join("stdout.log");
        let stderr_path = dir.path().join("stderr.log");
        let stdout = File::create(&stdout_path).expect("create stdout log");
        let stderr = File::create(&stderr_path).expect("create stderr log");
        let mut cmd = Command::new(FULCRUM_BIN);
        cmd.args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {FULCRUM_BIN}: {e}"));
        let mut f = Fulcrum {
            child: Some(child),
            dir,
            port,
            config,
            stdout_path,
            stderr_path,
        };
        f.wait_ready().await;
        f
    }

    async fn wait_ready(&mut self) {
        let port = self.port;
        self.wait_listening(port).await;
    }

    /// Waits (polling every 20 ms, at most [`START_TIMEOUT`]) until this fulcrum process
    /// listens on 127.0.0.1:`port` (the main listener, or a demo backend). Panics with
    /// fulcrum's output if the process exits or the port never comes up.
    ///
    /// On Linux the listening socket must belong to the child process (checked through
    /// /proc), so a port that some other process grabbed in the meantime is not mistaken for
    /// fulcrum; where that cannot be checked, a TCP connect that keeps succeeding for 3 s
    /// while fulcrum stays up also counts.
    pub async fn wait_listening(&mut self, port: u16) {
        let deadline = Instant::now() + START_TIMEOUT;
        let max_iterations = (START_TIMEOUT.as_millis() / 20 + 2) as usize;
        let mut connect_ok_since: Option<Instant> = None;
        for _ in 0..max_iterations {
            if let Some(status) = self.try_wait() {
                panic!(
                    "fulcrum exited while waiting for port {port}: {status}\n{}",
                    self.describe()
                );
            }
            let attempt = tokio::time::timeout(
                Duration::from_millis(200),
                TcpStream::connect(("127.0.0.1", port)),
            )
            .await;
            if let Ok(Ok(_)) = attempt {
                let pid = self.child.as_ref().map(|c| c.id()).unwrap_or(0);
                match pid_listens_on(pid, port) {
                    Some(true) | None => return,
                    Some(false) => {
                        let since = *connect_ok_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= Duration::from_secs(3) {
                            return;
                        }
                    }
                }
            } else {
                connect_ok_since = None;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        panic!(
            "fulcrum did not listen on 127.0.0.1:{port} within {:?}\n{}",
            START_TIMEOUT,
            self.describe()
        );
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The listener port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    /// The temp dir holding the config, logs, pid file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file path (None in quick mode).
    pub fn config_path(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// Everything fulcrum wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Everything fulcrum wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Config, stdout and stderr, for failure messages.
    pub fn describe(&self) -> String {
        let config = self
            .config
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_else(|| "(quick mode, no config file)".to_string());
        format!(
            "--- fulcrum config ---\n{}\n--- fulcrum stdout ---\n{}\n--- fulcrum stderr ---\n{}\n---",
            config,
            tail(&self.stdout(), 8000),
            tail(&self.stderr(), 16000)
        )
    }

    /// `Some(status)` if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Fulcrum {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{}", self.describe());
        }
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &s[start..])
}

/// Runs `fulcrum ARGS...` to completion (at most [`CMD_TIMEOUT`], then it is killed and the
/// test panics) and returns its exit status and output. For `-t` and `--print-config`.
pub fn fulcrum_cmd(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let stdout_path = dir.path().join("stdout");
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(FULCRUM_BIN)
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("create stdout file"))
        .stderr(File::create(&stderr_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {FULCRUM_BIN}: {e}"));
    let deadline = Instant::now() + CMD_TIMEOUT;
    let max_iterations = (CMD_TIMEOUT.as_millis() / 10 + 2) as usize;
    let mut status = None;
    for _ in 0..max_iterations {
        if let Some(s) = child.try_wait().expect("try_wait") {
            status = Some(s);
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`fulcrum {}` did not exit within {:?}\nstdout:\n{}\nstderr:\n{}",
                args.join(" "),
                CMD_TIMEOUT,
                std::fs::read_to_string(&stdout_path).unwrap_or_default(),
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
    };
    Output {
        status,
        stdout: std::fs::read(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read(&stderr_path).unwrap_or_default(),
    }
}
