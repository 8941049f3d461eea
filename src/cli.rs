//! Command-line flags: Pingora's daemon flags plus quick mode.

use crate::config::schema::{BackendSpec, FileConfig, ListenerSpec, RouteSpec, UpstreamSpec};
use crate::config::validate::MAX_WEIGHT;
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
#[command(name = "fulcrum", version, about, after_help = algorithms_help())]
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
    /// With `--reload`: print what the reload would change (the plan of `fulcrum diff`, from
    /// the config the running fulcrum loaded to FILE) and change nothing; exits like `diff`.
    #[arg(long, requires = "reload")]
    pub dry_run: bool,
    /// Accepted and ignored, like Pingora does, for `cargo test` runs.
    #[arg(long, hide = true)]
    pub nocapture: bool,
    /// A subcommand instead of running the proxy.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The `--help` footer: the algorithm names (from [`crate::config::algorithm::Algorithm::ALL`]).
fn algorithms_help() -> String {
    format!(
        "Algorithms (--algorithm, upstreams.NAME.algorithm): {}",
        crate::config::algorithm::Algorithm::names()
    )
}

impl Cli {
    /// Whether this invocation prints something and exits (`-t`, `--print-config`, `route`,
    /// `diff`, `health`, `--reload --dry-run`) rather than serving.
    pub fn prints_and_exits(&self) -> bool {
        self.test
            || self.print_config
            || (self.reload && self.dry_run)
            || matches!(
                self.command,
                Some(Command::Route(_) | Command::Diff(_) | Command::Health(_))
            )
    }
}

/// Let a command that prints and exits die quietly of `SIGPIPE` when its reader goes away
/// (`fulcrum -t -c FILE | head -1`), as Unix tools do, instead of panicking on the failed
/// write. Rust ignores `SIGPIPE` by default; a serving process keeps it ignored.
pub fn default_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: restoring the default disposition installs no handler; nothing else runs yet.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// fulcrum's subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Explain how fulcrum handles one request: the routes tried and why each did or did not
    /// match, the matched route's destination, split side, upstream path, headers and policies.
    /// Exit code 0: proxied; 1: invalid config or command line; 3: fulcrum answers itself.
    Route(crate::explain::RouteArgs),
    /// Compare two config files: what changing from OLD to NEW does (routes, upstream groups,
    /// and the share of keys that move). Exit status: 0 no changes, 2 changes, 1 error.
    Diff(crate::plan::DiffArgs),
    /// Ask the fulcrum running on `-c FILE` whether it serves (its admin listener's `/health`),
    /// for container health checks. Exit status: 0 serving, 1 not.
    Health(crate::probe::HealthArgs),
    /// Run fulcrum on `-c FILE` as a container's PID 1: it outlives reloads (SIGHUP reloads),
    /// passes SIGTERM on, reaps children, and exits when the last fulcrum does.
    Supervise(crate::supervise::SuperviseArgs),
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

    /// The schema quick mode stands for; fails on a weight that is not a number, which the
    /// schema could not hold to report as typed.
    pub fn quick_spec(&self) -> Result<FileConfig, ConfigError> {
        let backends = self
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| match b.rsplit_once('=') {
                Some((addr, w)) => Ok(BackendSpec {
                    addr: addr.trim().to_string(),
                    weight: Some(w.trim().parse().map_err(|_| {
                        ConfigError::invalid(
                            format!("--backends (item {})", i + 1),
                            format!(
                                "expected an integer from 1 to {MAX_WEIGHT}, found {:?}",
                                w.trim()
                            ),
                        )
                    })?),
                }),
                None => Ok(BackendSpec {
                    addr: b.trim().to_string(),
                    weight: None,
                }),
            })
            .collect::<Result<_, _>>()?;
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
            upstream: Some(QUICK_UPSTREAM.into()),
            ..Default::default()
        });
        Ok(spec)
    }

    /// Load the config from the file or the quick-mode flags.
    pub fn load(&self) -> Result<(FileConfig, Config), CliError> {
        self.load_keeping_text()
            .map(|(spec, config, _)| (spec, config))
    }

    /// [`load`](Self::load), also giving the file's text as read (`None` in quick mode).
    pub fn load_keeping_text(&self) -> Result<(FileConfig, Config, Option<String>), CliError> {
        if let Some(path) = &self.conf {
            let text = config::read_file(path).map_err(CliError::Config)?;
            let (spec, config) = config::load_text(path, &text).map_err(CliError::Config)?;
            return Ok((spec, config, Some(text)));
        }
        if self.backends.is_empty() {
            return Err(CliError::NoConfig);
        }
        let spec = self.quick_spec().map_err(CliError::Config)?;
        match config::validate::validate(&spec) {
            Ok(c) => Ok((spec, c, None)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(backends: &[&str]) -> Cli {
        Cli {
            backends: backends.iter().map(|b| b.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn weights_are_read_from_the_backend_list() {
        let spec = quick(&["127.0.0.1:1", " 127.0.0.1:2 = 3 "])
            .quick_spec()
            .unwrap();
        let backends = &spec.upstreams[QUICK_UPSTREAM].backends;
        assert_eq!(backends[0].addr, "127.0.0.1:1");
        assert_eq!(backends[0].weight, None);
        assert_eq!(backends[1].addr, "127.0.0.1:2");
        assert_eq!(backends[1].weight, Some(3));
    }

    #[test]
    fn an_unparsable_weight_is_reported_as_typed() {
        let e = quick(&["127.0.0.1:1", "127.0.0.1:2=x"])
            .quick_spec()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line: --backends (item 2): expected an integer from 1 to 1000, found \"x\""
        );
        let Err(CliError::Config(e)) = quick(&["127.0.0.1:1=0"]).load() else {
            panic!("a zero weight is accepted");
        };
        assert_eq!(
            e.to_string(),
            "command line: --backends (item 1): expected an integer from 1 to 1000, found 0"
        );
    }
}
