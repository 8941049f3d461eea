//! Other processes as Linux's `/proc` shows them: whether one is alive, whether it is a
//! fulcrum, and which TCP addresses it listens on. Used before replacing or refusing to run
//! next to the process a pid file names.

use nix::sys::signal::kill;
use nix::unistd::Pid;
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// The name fulcrum's binary is installed under.
const PROGRAM: &str = "fulcrum";
/// `st` of a listening socket in /proc/net/tcp (`TCP_LISTEN`).
const TCP_LISTEN: u8 = 0x0A;

/// The pid a pid file holds; `None` when it cannot be read or holds no pid.
pub fn read_pid(path: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    (pid > 0).then_some(pid)
}

/// Whether process `pid` exists and is not a zombie (an exited process its parent has not
/// reaped yet).
pub fn alive(pid: i32) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    // /proc/PID/stat: "pid (comm) S ..."; the state follows the last ')'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => true,
    }
}

/// The parent of process `pid`, from `/proc/PID/stat` (the field after the state).
pub fn parent_of(pid: i32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The names process `pid` runs under: its executable's file name and its `argv[0]`'s, as far
/// as they can be read (another user's executable link cannot).
pub fn program_names(pid: i32) -> Vec<String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    names_from(exe.as_deref(), &cmdline)
}

/// Whether process `pid` is a fulcrum: it runs a program named `fulcrum` or named like this
/// very binary (by its executable or its `argv[0]`).
pub fn is_fulcrum(pid: i32) -> bool {
    let own = std::env::current_exe()
        .ok()
        .and_then(|p| file_name(&p.to_string_lossy()));
    program_names(pid)
        .iter()
        .any(|n| n == PROGRAM || Some(n) == own.as_ref())
}

/// The TCP addresses process `pid` holds listening sockets on (its sockets, matched by inode
/// with the LISTEN entries of its network namespace's /proc/net/tcp and tcp6).
pub fn listening_addrs(pid: i32) -> io::Result<Vec<SocketAddr>> {
    let mut inodes = HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue; // closed in between
        };
        if let Some(inode) = socket_inode(&target.to_string_lossy()) {
            inodes.insert(inode);
        }
    }
    let mut addrs = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = match std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            Ok(text) => text,
            // No IPv6 in this kernel: no tcp6 table.
            Err(e) if table == "tcp6" && e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        addrs.extend(
            text.lines()
                .skip(1)
                .filter_map(parse_tcp_line)
                .filter(|s| s.state == TCP_LISTEN && inodes.contains(&s.inode))
                .map(|s| s.local),
        );
    }
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// One line of /proc/net/tcp or tcp6: the fields fulcrum needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpEntry {
    /// The local address.
    pub local: SocketAddr,
    /// The TCP state (`0A` is LISTEN).
    pub state: u8,
    /// The socket's inode, as in a `/proc/PID/fd/N -> socket:[INODE]` link.
    pub inode: u64,
}

/// Parse a /proc/net/tcp or tcp6 line:
/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...`;
/// `None` for the header line or anything else that does not fit.
pub fn parse_tcp_line(line: &str) -> Option<TcpEntry> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    if cols.len() < 10 || !cols[0].ends_with(':') {
        return None;
    }
    Some(TcpEntry {
        local: parse_hex_addr(cols[1])?,
        state: u8::from_str_radix(cols[3], 16).ok()?,
        inode: cols[9].parse().ok()?,
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints the address
/// as 32-bit words in the machine's byte order, and the port as a number.
fn parse_hex_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let mut bytes = Vec::with_capacity(16);
    if !(ip.len() == 8 || ip.len() == 32) || !ip.is_ascii() {
        return None;
    }
    for i in (0..ip.len()).step_by(8) {
        let word = u32::from_str_radix(&ip[i..i + 8], 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    let ip = match <[u8; 4]>::try_from(bytes.as_slice()) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).ok()?)),
    };
    Some(SocketAddr::new(ip, port))
}

/// The inode in a `socket:[12345]` fd link.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The program names in an executable link and a NUL-separated command line.
fn names_from(exe: Option<&Path>, cmdline: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(name) = exe.and_then(|p| file_name(&p.to_string_lossy())) {
        names.push(name);
    }
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    if let Some(name) = file_name(&String::from_utf8_lossy(argv0)) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The last component of a path, without the ` (deleted)` the kernel appends to the link of
/// an executable replaced since it started (a new build or package of the same program).
fn file_name(path: &str) -> Option<String> {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let name = path.rsplit('/').next()?;
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when \
                          retrnsmt   uid  timeout inode";

    #[test]
    #[cfg(target_endian = "little")]
    fn reads_ipv4_lines() {
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 \
                    00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_tcp_line(line),
            Some(TcpEntry {
                local: "127.0.0.1:8080".parse().unwrap(),
                state: TCP_LISTEN,
                inode: 123456,
            })
        );
        let established = "  12: 0100007F:D431 0100007F:1F90 01 00000000:00000000 02:000A \
                           00000000  1000        0 777 2 0000000000000000 20 4 30 10 -1";
        let e = parse_tcp_line(established).unwrap();
        assert_eq!(e.local, "127.0.0.1:54321".parse().unwrap());
        assert_eq!(e.state, 1);
        let any = "   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 \
                   00000000     0        0 42 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_tcp_line(any).unwrap().local,
            "0.0.0.0:80".parse().unwrap()
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn reads_ipv6_lines() {
        let loopback = "   0: 00000000000000000000000001000000:1F91 \
                        00000000000000000000000000000000:0000 0A 00000000:00000000 \
                        00:00000000 00000000  1000        0 99 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_tcp_line(loopback).unwrap().local,
            "[::1]:8081".parse().unwrap()
        );
        let any = "   1: 00000000000000000000000000000000:01BB \
                   00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 \
                   00000000     0        0 100 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_tcp_line(any).unwrap().local,
            "[::]:443".parse().unwrap()
        );
        // fe80::1: the first word is fe80:0000 in network order.
        let link = "   2: 000080FE000000000000000001000000:0016 \
                    00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 \
                    00000000     0        0 101 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_tcp_line(link).unwrap().local,
            "[fe80::1]:22".parse().unwrap()
        );
    }

    #[test]
    fn skips_what_is_not_a_socket_line() {
        assert_eq!(parse_tcp_line(HEADER), None);
        assert_eq!(parse_tcp_line(""), None);
        assert_eq!(parse_tcp_line("   0: 0100007F:1F90 00000000:0000 0A"), None);
        for bad_addr in [
            "0100007F",
            "0100007:1F90",
            "0100007G:1F90",
            "0100007F:1F90F",
        ] {
            let line = format!(
                "   0: {bad_addr} 00000000:0000 0A 00000000:00000000 00:00000000 00000000 \
                 0 0 5 1"
            );
            assert_eq!(parse_tcp_line(&line), None, "{bad_addr}");
        }
    }

    #[test]
    fn reads_socket_links() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }

    #[test]
    fn names_come_from_the_executable_and_argv0() {
        assert_eq!(
            names_from(
                Some(Path::new("/usr/local/bin/fulcrum (deleted)")),
                b"fulcrum\0-c\0/etc/f.yaml\0"
            ),
            vec!["fulcrum"]
        );
        assert_eq!(
            names_from(Some(Path::new("/usr/bin/sleep")), b"sleep\x0060\0"),
            vec!["sleep"]
        );
        assert_eq!(
            names_from(None, b"/opt/x/bin/fulcrum\0-u\0"),
            vec!["fulcrum"]
        );
        assert_eq!(
            names_from(Some(Path::new("/usr/bin/python3.12")), b"fulcrum\0"),
            vec!["python3.12", "fulcrum"]
        );
        assert!(names_from(None, b"").is_empty());
    }

    #[test]
    fn this_process_is_alive_and_listens_where_it_bound() {
        let me = std::process::id() as i32;
        assert!(alive(me));
        assert!(!alive(0) && !alive(-1));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // A connected socket of this process is not a listening one.
        let client = std::net::TcpStream::connect(addr).unwrap();
        let held = listening_addrs(me).unwrap();
        assert!(held.contains(&addr), "{held:?}");
        assert!(!held.contains(&client.local_addr().unwrap()), "{held:?}");
    }
}
