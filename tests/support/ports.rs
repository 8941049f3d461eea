//! Ports on 127.0.0.1: free ones to hand to fulcrum, listeners for test servers that never take
//! a handed-out port, and readiness checks.

use std::collections::HashSet;
use std::net::{
    SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream, UdpSocket as StdUdpSocket,
};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Ports handed out by [`free_port`] or taken by test servers in this test binary.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A free TCP port on 127.0.0.1: binds port 0, reads the port, drops the socket.
///
/// Never returns the same port twice within one test binary (tests in a binary run in
/// parallel), and test servers ([`TestBackend`], [`WsEchoBackend`]) never bind a port handed
/// out here, which removes the most likely source of collisions.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let port = StdTcpListener::bind("127.0.0.1:0")
            .expect("bind 127.0.0.1:0")
            .local_addr()
            .expect("local_addr")
            .port();
        if handed_out().lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("could not find a free port that was not handed out already");
}

/// Binds a tokio listener on 127.0.0.1 to a port that [`free_port`] has not handed out (the
/// kernel may otherwise give a test server a port a test reserved for fulcrum).
pub(super) fn bind_unreserved() -> TcpListener {
    let mut skipped = Vec::new(); // held until we are done so the kernel does not repeat them
    for _ in 0..100 {
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        if handed_out().lock().unwrap().insert(port) {
            listener.set_nonblocking(true).expect("set_nonblocking");
            return TcpListener::from_std(listener).expect("tokio listener from std");
        }
        skipped.push(listener);
    }
    panic!("could not bind a port that was not handed out already");
}

/// Binds a UDP socket and a TCP listener on the same port of 127.0.0.1 (one [`free_port`] has
/// not handed out), as a DNS server needs. Retries when the TCP side of the port the kernel
/// gave the UDP socket is taken.
pub(super) fn bind_unreserved_udp_and_tcp() -> (UdpSocket, TcpListener) {
    let mut skipped = Vec::new(); // held until we are done so the kernel does not repeat them
    for _ in 0..100 {
        let udp = StdUdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
        let port = udp.local_addr().expect("local_addr").port();
        if handed_out().lock().unwrap().contains(&port) {
            skipped.push(udp);
            continue;
        }
        let Ok(tcp) = StdTcpListener::bind(("127.0.0.1", port)) else {
            skipped.push(udp);
            continue;
        };
        handed_out().lock().unwrap().insert(port);
        udp.set_nonblocking(true).expect("set_nonblocking");
        tcp.set_nonblocking(true).expect("set_nonblocking");
        return (
            UdpSocket::from_std(udp).expect("tokio udp socket from std"),
            TcpListener::from_std(tcp).expect("tokio listener from std"),
        );
    }
    panic!("could not bind UDP and TCP on one port that was not handed out already");
}

/// True when something accepts TCP connections on 127.0.0.1:`port` right now.
pub fn port_is_listening(port: u16) -> bool {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// True when 127.0.0.1:`port` can be bound (nobody is listening on it).
pub fn port_is_free(port: u16) -> bool {
    StdTcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Waits (polling every 20 ms, at most `timeout`) until 127.0.0.1:`port` accepts a TCP
/// connection. Returns whether it did.
pub async fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let max_iterations = (timeout.as_millis() / 20 + 2) as usize;
    for _ in 0..max_iterations {
        let attempt = tokio::time::timeout(
            Duration::from_millis(200),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await;
        if let Ok(Ok(_)) = attempt {
            return true;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Linux: inodes of the sockets listening on TCP `port` (any local address), from
/// /proc/net/tcp and /proc/net/tcp6. `None` when neither can be read.
fn listening_inodes(port: u16) -> Option<HashSet<u64>> {
    let mut found = HashSet::new();
    let mut any_read = false;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        any_read = true;
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... uid timeout inode
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let Some((_, port_hex)) = cols[1].rsplit_once(':') else {
                continue;
            };
            if u16::from_str_radix(port_hex, 16).ok() != Some(port) {
                continue;
            }
            if let Ok(inode) = cols[9].parse::<u64>() {
                found.insert(inode);
            }
        }
    }
    any_read.then_some(found)
}

/// Linux: whether process `pid` holds a socket listening on TCP `port`. `None` when this
/// cannot be determined (no /proc).
pub fn pid_listens_on(pid: u32, port: u16) -> Option<bool> {
    let inodes = listening_inodes(port)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|i| i.parse::<u64>().ok());
        if let Some(inode) = inode {
            if inodes.contains(&inode) {
                return Some(true);
            }
        }
    }
    Some(false)
}
