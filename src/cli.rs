//! Command-line flags: Pingora's daemon flags plus quick mode.

use crate::config::schema::{BackendSpec, FileConfig, ListenerSpec, RouteSpec, UpstreamSpec};
use crate::config::{self, Config, ConfigError};
use clap::Parser;
use pingora_core::server::configuration::Opt;
use std::path::PathBuf;

/// Default listening address in quick mode.
pub const QUICK_LISTEN: &str = "127.0.0.1:8080";
/// Name of the single upstream group quick mode creates.
pub const QUICK_UPSTREAM: &str = "default";

/// fulcrum: a load-balancing reverse proxy built on Pingora.
#[derive(Parser, Debug, Default)]
#[command(name = "fulcrum", version, about)]
pub struct Cli {
    /// The YAML config file.
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    pub conf: Option<PathBuf>,
    /// Check the config and exit: 0 when valid, 1 with the error otherwise.
    #[arg(short = 't', long = "test")]
    pub test: bool,
    /// Run in the background (Pingora daemon mode; see pid_file and error_log).
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    /// Take over the listening sockets of a running fulcrum (zero-downtime upgrade).
    #[arg(short = 'u', long = "upgrade")]
    pub upgrade: bool,
    /// Quick mode: the address to listen on.
    #[arg(long, value_name = "IP:PORT", conflicts_with = "conf")]
    pub listen: Option<String>,
    /// Quick mode: comma-separated backends (`host:port` or `host:port=weight`).
    #[arg(
        long,
        value_name = "ADDRS",
        value_delimiter = ',',
        conflicts_with = "conf"
    )]
    pub backends: Vec<String>,
    /// Quick mode: the selection algorithm.
    #[arg(long, value_name = "NAME", conflicts_with = "conf")]
    pub algorithm: Option<String>,
    /// Print the config as YAML and exit (quick mode: the file it stands for).
    #[arg(long)]
    pub print_config: bool,
    /// Replace the running fulcrum (the one `pid_file` names, if it listens on at least one of
    /// FILE's listeners) by a new process on `-c FILE`, without dropping a connection; with
    /// `-d`, the new process runs in the background.
    #[arg(long, requires = "conf", conflicts_with_all = ["test", "upgrade", "print_config"])]
    pub reload: bool,
    /// Accepted and ignored, like Pingora does, for `cargo test` runs.
    #[arg(long, hide = true)]
    pub nocapture: bool,
}

/// Why the command line cannot give a config.
#[derive(Debug)]
pub enum CliError {
    /// Neither `-c` nor `--backends` was given.
    NoConfig,
    /// The config is invalid.
    Config(ConfigError),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::NoConfig => write!(
                f,
                "give a config file (-c conf/demo.yaml) or backends for quick mode \
                 (--backends 127.0.0.1:3001,127.0.0.1:3002)"
            ),
            CliError::Config(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CliError {}

impl Cli {
    /// The Pingora options these flags stand for (the config file is handled by fulcrum).
    pub fn pingora_opt(&self) -> Opt {
        Opt {
            upgrade: self.upgrade,
            daemon: self.daemon,
            nocapture: self.nocapture,
            test: self.test,
            conf: None,
        }
    }

    /// The schema quick mode stands for.
    pub fn quick_spec(&self) -> FileConfig {
        let backends = self
            .backends
            .iter()
            .map(|b| match b.rsplit_once('=') {
                Some((addr, w)) => BackendSpec {
                    addr: addr.trim().to_string(),
                    weight: Some(w.trim().parse().unwrap_or(0)),
                },
                None => BackendSpec {
                    addr: b.trim().to_string(),
                    weight: None,
                },
            })
            .collect();
        let mut spec = FileConfig::default();
        spec.listeners.push(ListenerSpec {
            addr: self.listen.clone().unwrap_or_else(|| QUICK_LISTEN.into()),
            ..Default::default()
        });
        spec.upstreams.insert(
            QUICK_UPSTREAM.into(),
            UpstreamSpec {
                algorithm: self.algorithm.clone(),
                backends,
                ..Default::default()
            },
        );
        spec.routes.push(RouteSpec {
            path: Some("/".into()),
            upstream: QUICK_UPSTREAM.into(),
            ..Default::default()
        });
        spec
    }

    /// Load the config from the file or the quick-mode flags.
    pub fn load(&self) -> Result<(FileConfig, Config), CliError> {
        if let Some(path) = &self.conf {
            return config::load_file(path).map_err(CliError::Config);
        }
        if self.backends.is_empty() {
            return Err(CliError::NoConfig);
        }
        let spec = self.quick_spec();
        match config::validate::validate(&spec) {
            Ok(c) => Ok((spec, c)),
            Err(mut e) => {
                e.path = quick_flag_path(&e.path);
                Err(CliError::Config(e))
            }
        }
    }
}

/// Name the flag a quick-mode key path came from.
fn quick_flag_path(path: &str) -> String {
    let group = format!("upstreams.{QUICK_UPSTREAM}.");
    if path.starts_with("listeners[0]") {
        "--listen".into()
    } else if let Some(rest) = path.strip_prefix(&group) {
        if rest.starts_with("algorithm") {
            "--algorithm".into()
        } else if let Some(item) = rest
            .strip_prefix("backends[")
            .and_then(|r| r.split(']').next())
            .and_then(|n| n.parse::<usize>().ok())
        {
            format!("--backends (item {})", item + 1)
        } else {
            "--backends".into()
        }
    } else {
        path.into()
    }
}
