//! Checks a normal start (not `-u`, not `-t`) makes before serving, and before daemonizing so
//! that the exit status reaches the caller: that the pid file does not name another running
//! fulcrum, and that every address the config listens on can be bound.
//!
//! Without them, Pingora binds the addresses it can, retries a busy one for 30 s, then panics
//! in that service's thread and keeps running without it; and two instances sharing a pid file
//! make `--reload` replace the wrong one.
//!
//! An upgrade (`-u`) skips both: the pid file names the process it replaces, and the addresses
//! come from that process. `-t` checks neither, like `nginx -t`: it must pass while fulcrum
//! runs on those very addresses, since a reload validates first.

use crate::config::Config;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::TcpSocket;

/// Why fulcrum must not start.
#[derive(Debug)]
pub enum PreflightError {
    /// `pid_file` names another live fulcrum.
    AlreadyRunning {
        /// The config's `pingora.pid_file`.
        pid_file: PathBuf,
        /// The process it names.
        pid: i32,
    },
    /// Another socket listens on (or is bound to) an address of the config.
    InUse {
        /// The key path of the address, e.g. `listeners[1].addr`.
        key: String,
        /// The address.
        addr: SocketAddr,
    },
    /// An address cannot be bound for another reason (not a local address, a privileged port).
    CannotBind {
        /// The key path of the address.
        key: String,
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        error: io::Error,
    },
}

impl fmt::Display for PreflightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreflightError::AlreadyRunning { pid_file, pid } => write!(
                f,
                "{} names pid {pid}, a running fulcrum: use `fulcrum --reload -c FILE` to \
                 replace it, or stop it first",
                pid_file.display()
            ),
            PreflightError::InUse { key, addr } => write!(f, "{key}: {addr} is already in use"),
            PreflightError::CannotBind { key, addr, error } => {
                write!(f, "{key}: cannot listen on {addr}: {error}")
            }
        }
    }
}

impl std::error::Error for PreflightError {}

/// Run both checks for `config`: the pid file first (another instance of the same config also
/// holds its addresses, and that is the more useful thing to say), then every address.
pub fn check(config: &Config) -> Result<(), PreflightError> {
    check_pid_file(config)?;
    for (key, addr) in addresses(config) {
        check_addr(&key, addr)?;
    }
    Ok(())
}

/// Fail when `pingora.pid_file` names a live fulcrum other than this process. A stale pid
/// file (no such process, or a process that is not a fulcrum) is fine: it gets rewritten.
pub fn check_pid_file(config: &Config) -> Result<(), PreflightError> {
    let pid_file = PathBuf::from(&config.server.pid_file);
    match crate::procfs::read_pid(&pid_file) {
        Some(pid)
            if pid != std::process::id() as i32
                && crate::procfs::alive(pid)
                && crate::procfs::is_fulcrum(pid) =>
        {
            Err(PreflightError::AlreadyRunning { pid_file, pid })
        }
        _ => Ok(()),
    }
}

/// Every address the config listens on, with its key path: the listeners, the admin
/// listener, the demo backends.
pub fn addresses(config: &Config) -> Vec<(String, SocketAddr)> {
    let listeners = config
        .listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("listeners[{i}].addr"), l.addr));
    let admin = config
        .admin
        .iter()
        .map(|a| ("admin.addr".to_string(), a.addr));
    let demo = config
        .demo_backends
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("demo_backends[{i}].addr"), d.addr));
    listeners.chain(admin).chain(demo).collect()
}

/// Bind `addr` the way Pingora will (a TCP socket with `SO_REUSEADDR`, no `SO_REUSEPORT`),
/// without listening, and close it again. So it fails exactly when Pingora's bind would:
/// when any socket listens on the port at that address or a wildcard (whatever options that
/// socket has, unless both set `SO_REUSEPORT`, which neither does) or is bound to it; and
/// connections in `TIME_WAIT` left by an earlier process do not count. A socket that never
/// listened leaves nothing behind when it closes.
pub fn check_addr(key: &str, addr: SocketAddr) -> Result<(), PreflightError> {
    let error = |error: io::Error| {
        if error.kind() == io::ErrorKind::AddrInUse {
            PreflightError::InUse {
                key: key.to_string(),
                addr,
            }
        } else {
            PreflightError::CannotBind {
                key: key.to_string(),
                addr,
                error,
            }
        }
    };
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(error)?;
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(addr).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::valid as config;

    #[test]
    fn every_address_comes_with_its_key_path() {
        let c = config(
            "listeners: [{addr: 127.0.0.1:8701}, {addr: '[::1]:8702'}]\n\
             admin: {addr: 127.0.0.1:8703}\n\
             demo_backends: [{name: a, addr: 127.0.0.1:8704}, {name: b, addr: 127.0.0.1:8705}]\n\
             upstreams: {u: {backends: [{addr: 127.0.0.1:8704}]}}\n\
             routes: [{upstream: u}]\n",
        );
        let got: Vec<(String, String)> = addresses(&c)
            .into_iter()
            .map(|(k, a)| (k, a.to_string()))
            .collect();
        let want = [
            ("listeners[0].addr", "127.0.0.1:8701"),
            ("listeners[1].addr", "[::1]:8702"),
            ("admin.addr", "127.0.0.1:8703"),
            ("demo_backends[0].addr", "127.0.0.1:8704"),
            ("demo_backends[1].addr", "127.0.0.1:8705"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, a)| (k.to_string(), a.to_string()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn messages_name_the_key_and_the_address() {
        let e = PreflightError::InUse {
            key: "listeners[1].addr".into(),
            addr: "127.0.0.1:8702".parse().unwrap(),
        };
        assert_eq!(
            e.to_string(),
            "listeners[1].addr: 127.0.0.1:8702 is already in use"
        );
        let e = PreflightError::AlreadyRunning {
            pid_file: "/tmp/x.pid".into(),
            pid: 42,
        };
        assert!(e
            .to_string()
            .starts_with("/tmp/x.pid names pid 42, a running fulcrum"));
    }

    #[test]
    fn a_listening_port_is_in_use_and_the_probe_leaves_nothing_bound() {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap();
        match check_addr("listeners[0].addr", addr) {
            Err(PreflightError::InUse { key, addr: a }) => {
                assert_eq!(key, "listeners[0].addr");
                assert_eq!(a, addr);
            }
            other => panic!("busy port: {other:?}"),
        }
        // A wildcard listener on the port takes it on every address.
        drop(busy);
        let wildcard = std::net::TcpListener::bind(("0.0.0.0", addr.port())).unwrap();
        assert!(matches!(
            check_addr("admin.addr", addr),
            Err(PreflightError::InUse { .. })
        ));
        drop(wildcard);
        // Free now; the probe closes its socket, so the port stays free.
        check_addr("listeners[0].addr", addr).expect("free port");
        std::net::TcpListener::bind(addr).expect("the probe left the port bound");
    }
}
