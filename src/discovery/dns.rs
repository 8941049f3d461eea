//! A small stub DNS resolver (RFC 1035, AAAA per RFC 3596, SRV per RFC 2782): it asks the
//! configured name servers (or those of `/etc/resolv.conf`) for A, AAAA and SRV records over
//! UDP, and again over TCP when a reply is truncated.
//!
//! Every query has a random ID and goes out from a fresh socket on a random port; a reply
//! counts only when it comes from the server asked, carries the same ID, is a response, and
//! echoes the question. Anything else is ignored until the timeout. Each server gets
//! `timeout` (and the TCP retry of a truncated reply `timeout` again); a timeout, SERVFAIL,
//! REFUSED or a broken reply moves on to the next server, NXDOMAIN and NOERROR are final.
//! Names are absolute: no search domains, no `/etc/hosts`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use super::wire::{self, Message, RData, Record};
use crate::config::model;

/// Where name servers come from when none are configured.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Most name servers read from `resolv.conf` (glibc's MAXNS).
pub const MAX_RESOLV_CONF_SERVERS: usize = 3;
/// Most CNAMEs followed from the name asked to its records.
pub const MAX_CNAME_CHAIN: usize = 8;
/// Largest UDP reply read (replies without EDNS0 are at most 512 bytes).
const UDP_BUF: usize = 4096;
/// Most datagrams looked at while waiting for one reply (a bound besides the timeout).
const MAX_DATAGRAMS: usize = 1024;

/// Why a lookup gave no records. Discovery keeps its last good set on every one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// No server answered within the timeout.
    Timeout,
    /// The last server asked answered SERVFAIL.
    ServFail,
    /// The name does not exist (NXDOMAIN).
    NxDomain,
    /// The last server asked refused the query (REFUSED).
    Refused,
    /// The name exists but has no records of the type asked (NOERROR, empty answer: NODATA).
    NoRecords,
    /// A name that cannot be asked, or a reply that cannot be read.
    Malformed(String),
    /// A socket error.
    Io(String),
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::Timeout => f.write_str("no name server answered in time"),
            DnsError::ServFail => f.write_str("name server failure (SERVFAIL)"),
            DnsError::NxDomain => f.write_str("no such name (NXDOMAIN)"),
            DnsError::Refused => f.write_str("query refused (REFUSED)"),
            DnsError::NoRecords => f.write_str("no records of that type (NODATA)"),
            DnsError::Malformed(what) => write!(f, "malformed DNS message: {what}"),
            DnsError::Io(what) => write!(f, "DNS socket error: {what}"),
        }
    }
}

impl std::error::Error for DnsError {}

/// The records of one lookup and how long they may be kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// The records, in the order of the reply (A before AAAA for [`Resolver::lookup_ip`]).
    pub records: Vec<T>,
    /// The smallest TTL among the records used (CNAMEs followed included).
    pub ttl: Duration,
}

/// One SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Lower is preferred.
    pub priority: u16,
    /// Relative share among records of the same priority (0: only when no other).
    pub weight: u16,
    /// The service's port on the target.
    pub port: u16,
    /// The target host, no trailing dot; "." means the service is not available.
    pub target: String,
    /// The target's A and AAAA addresses from the reply's additional section (empty when
    /// the server sent none: resolve `target` with [`Resolver::lookup_ip`]).
    pub addrs: Vec<IpAddr>,
    /// The smallest TTL of [`Srv::addrs`] (`None` when there are none).
    pub addrs_ttl: Option<Duration>,
}

/// A stub resolver: name servers to ask in order, and how long to wait for each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    nameservers: Vec<SocketAddr>,
    timeout: Duration,
}

/// The `nameserver` lines of a `resolv.conf` (port 53; IPv4 or IPv6; at most
/// [`MAX_RESOLV_CONF_SERVERS`], as glibc). Comments (`#`, `;`) and other options are
/// skipped, and so are IPv6 addresses with a zone (`fe80::1%eth0`).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else { continue };
        let Ok(ip) = addr.parse::<IpAddr>() else {
            continue;
        };
        out.push(SocketAddr::new(ip, 53));
        if out.len() == MAX_RESOLV_CONF_SERVERS {
            break;
        }
    }
    out
}

/// The name servers of [`RESOLV_CONF`]; 127.0.0.1:53 when it lists none or cannot be read
/// (as glibc does).
pub fn system_nameservers() -> Vec<SocketAddr> {
    let found = std::fs::read_to_string(RESOLV_CONF)
        .map(|text| parse_resolv_conf(&text))
        .unwrap_or_default();
    if found.is_empty() {
        vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)]
    } else {
        found
    }
}

impl Resolver {
    /// A resolver for `config`: its name servers, or [`system_nameservers`] (read now) when
    /// it lists none.
    pub fn new(config: &model::Resolver) -> Resolver {
        let nameservers = if config.nameservers.is_empty() {
            system_nameservers()
        } else {
            config.nameservers.clone()
        };
        Resolver {
            nameservers,
            timeout: config.timeout,
        }
    }

    /// The name servers asked, in order.
    pub fn nameservers(&self) -> &[SocketAddr] {
        &self.nameservers
    }

    /// The time one query may take on one name server.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The A and AAAA addresses of `name` (both asked at once), following CNAMEs in the
    /// answers. When one family has records and the other has none (NODATA or NXDOMAIN),
    /// the answer is the family with records; when either query fails otherwise (timeout,
    /// SERVFAIL, ...), the lookup fails, so that a passing failure never shrinks the set.
    pub async fn lookup_ip(&self, name: &str) -> Result<Answer<IpAddr>, DnsError> {
        let (v4, v6) = tokio::join!(
            self.lookup(name, wire::TYPE_A, |d| match d {
                RData::A(ip) => Some(IpAddr::V4(*ip)),
                _ => None,
            }),
            self.lookup(name, wire::TYPE_AAAA, |d| match d {
                RData::Aaaa(ip) => Some(IpAddr::V6(*ip)),
                _ => None,
            }),
        );
        let soft = |e: &DnsError| matches!(e, DnsError::NoRecords | DnsError::NxDomain);
        for result in [&v4, &v6] {
            if let Err(e) = result {
                if !soft(e) {
                    return Err(e.clone());
                }
            }
        }
        let mut records = Vec::new();
        let mut ttl: Option<Duration> = None;
        for answer in [&v4, &v6].into_iter().flatten() {
            records.extend_from_slice(&answer.records);
            ttl = Some(ttl.map_or(answer.ttl, |t| t.min(answer.ttl)));
        }
        match ttl {
            Some(ttl) => Ok(Answer { records, ttl }),
            None if v4 == Err(DnsError::NxDomain) || v6 == Err(DnsError::NxDomain) => {
                Err(DnsError::NxDomain)
            }
            None => Err(DnsError::NoRecords),
        }
    }

    /// The SRV records of `name`, following CNAMEs, each with its target's addresses from
    /// the additional section when the server sent them.
    pub async fn lookup_srv(&self, name: &str) -> Result<Answer<Srv>, DnsError> {
        let msg = self.query(name, wire::TYPE_SRV).await?;
        let mut answer = chase(&msg, name, wire::TYPE_SRV, |d| match d {
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => Some(Srv {
                priority: *priority,
                weight: *weight,
                port: *port,
                target: target.clone(),
                addrs: Vec::new(),
                addrs_ttl: None,
            }),
            _ => None,
        })?;
        for srv in &mut answer.records {
            for record in msg
                .additional
                .iter()
                .filter(|r| r.class == wire::CLASS_IN && wire::same_name(&r.name, &srv.target))
            {
                let ip = match record.data {
                    RData::A(ip) => IpAddr::V4(ip),
                    RData::Aaaa(ip) => IpAddr::V6(ip),
                    _ => continue,
                };
                srv.addrs.push(ip);
                let ttl = Duration::from_secs(record.ttl.into());
                srv.addrs_ttl = Some(srv.addrs_ttl.map_or(ttl, |t| t.min(ttl)));
            }
        }
        Ok(answer)
    }

    /// Asks for `qtype` records of `name` and picks them out of the answer.
    async fn lookup<T>(
        &self,
        name: &str,
        qtype: u16,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Answer<T>, DnsError> {
        let msg = self.query(name, qtype).await?;
        chase(&msg, name, qtype, pick)
    }

    /// The reply (NOERROR) to one question, from the first server that gives a final one.
    async fn query(&self, name: &str, qtype: u16) -> Result<Message, DnsError> {
        let query = wire::encode_query(0, name, qtype)
            .map_err(|e| DnsError::Malformed(format!("cannot ask for {name:?}: {e}")))?;
        let mut last = DnsError::Io("no name servers".into());
        for &server in &self.nameservers {
            let outcome = exchange(server, &query, name, qtype, self.timeout).await;
            last = match outcome {
                Ok(msg) => match msg.rcode {
                    wire::RCODE_NOERROR => return Ok(msg),
                    wire::RCODE_NXDOMAIN => return Err(DnsError::NxDomain),
                    wire::RCODE_SERVFAIL => DnsError::ServFail,
                    wire::RCODE_REFUSED => DnsError::Refused,
                    rcode => DnsError::Malformed(format!("{server} answered RCODE {rcode}")),
                },
                Err(e) => e,
            };
            log::debug!("DNS {name} type {qtype} at {server}: {last}");
        }
        Err(last)
    }
}

/// The `qtype` records of `name` in `msg`'s answers, following a CNAME chain from `name`
/// (at most [`MAX_CNAME_CHAIN`] links), with the smallest TTL of the records used.
fn chase<T>(
    msg: &Message,
    name: &str,
    qtype: u16,
    pick: impl Fn(&RData) -> Option<T>,
) -> Result<Answer<T>, DnsError> {
    let in_class = |r: &&Record| r.class == wire::CLASS_IN;
    let mut owner = name.to_string();
    let mut ttl = u32::MAX;
    for _ in 0..=MAX_CNAME_CHAIN {
        let records: Vec<&Record> = msg
            .answers
            .iter()
            .filter(in_class)
            .filter(|r| r.rtype == qtype && wire::same_name(&r.name, &owner))
            .collect();
        if !records.is_empty() {
            let ttl = records.iter().map(|r| r.ttl).fold(ttl, u32::min);
            return Ok(Answer {
                records: records.iter().filter_map(|r| pick(&r.data)).collect(),
                ttl: Duration::from_secs(ttl.into()),
            });
        }
        let alias = msg
            .answers
            .iter()
            .filter(in_class)
            .find_map(|r| match &r.data {
                RData::Cname(target) if wire::same_name(&r.name, &owner) => Some((target, r.ttl)),
                _ => None,
            });
        match alias {
            Some((target, t)) => {
                owner = target.clone();
                ttl = ttl.min(t);
            }
            None => return Err(DnsError::NoRecords),
        }
    }
    Err(DnsError::Malformed(format!(
        "CNAME chain of {name} is longer than {MAX_CNAME_CHAIN}"
    )))
}

/// Whether `msg` is the reply to the query `id` for `name`/`qtype`.
fn is_reply(msg: &Message, id: u16, name: &str, qtype: u16) -> bool {
    msg.id == id
        && msg.response
        && msg.questions.len() == 1
        && wire::same_name(&msg.questions[0].name, name)
        && msg.questions[0].qtype == qtype
        && msg.questions[0].qclass == wire::CLASS_IN
}

/// One question to one server: over UDP, then over TCP when the reply is truncated.
async fn exchange(
    server: SocketAddr,
    template: &[u8],
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let id = fastrand::u16(..);
    let mut query = template.to_vec();
    query[..2].copy_from_slice(&id.to_be_bytes());
    let reply = udp_exchange(server, &query, id, name, qtype, timeout).await?;
    if !reply.truncated {
        return Ok(reply);
    }
    log::debug!("DNS {name} type {qtype} at {server}: truncated, asking over TCP");
    let id = fastrand::u16(..);
    query[..2].copy_from_slice(&id.to_be_bytes());
    tcp_exchange(server, &query, id, name, qtype, timeout).await
}

fn io(e: std::io::Error) -> DnsError {
    DnsError::Io(e.to_string())
}

/// Sends `query` from a fresh socket (random port) and waits for its reply until `timeout`.
async fn udp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let deadline = Instant::now() + timeout;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.send_to(query, server).await.map_err(io)?;
    let mut buf = vec![0u8; UDP_BUF];
    // A reply that had our ID but could not be read: reported instead of a timeout.
    let mut broken: Option<DnsError> = None;
    for _ in 0..MAX_DATAGRAMS {
        let (len, from) = match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
        {
            Err(_) => break,
            Ok(Err(e)) => return Err(io(e)),
            Ok(Ok(got)) => got,
        };
        if from != server {
            continue;
        }
        let datagram = &buf[..len];
        match wire::decode(datagram) {
            Ok(msg) if is_reply(&msg, id, name, qtype) => return Ok(msg),
            Ok(_) => {}
            Err(e) if datagram.starts_with(&id.to_be_bytes()) => {
                broken = Some(DnsError::Malformed(e.0));
            }
            Err(_) => {}
        }
    }
    Err(broken.unwrap_or(DnsError::Timeout))
}

/// Sends `query` over TCP with its 2-byte length (RFC 1035 4.2.2) and reads the reply.
async fn tcp_exchange(
    server: SocketAddr,
    query: &[u8],
    id: u16,
    name: &str,
    qtype: u16,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let exchange = async {
        let mut stream = TcpStream::connect(server).await.map_err(io)?;
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        stream.write_all(&framed).await.map_err(io)?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.map_err(io)?;
        let mut reply = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut reply).await.map_err(io)?;
        let msg = wire::decode(&reply).map_err(|e| DnsError::Malformed(e.0))?;
        if !is_reply(&msg, id, name, qtype) {
            return Err(DnsError::Malformed(format!(
                "TCP reply from {server} does not match the query"
            )));
        }
        if msg.truncated {
            return Err(DnsError::Malformed(format!(
                "TCP reply from {server} is truncated"
            )));
        }
        Ok(msg)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(DnsError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_nameservers_are_read() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\n\
                    ; comment\n  nameserver   2001:db8::53  # v6\nnameserver fe80::1%eth0\n\
                    nameserver not-an-ip\noptions ndots:5\nnameserver 10.0.0.3\n\
                    nameserver 10.0.0.4\n#nameserver 10.9.9.9\n";
        let got = parse_resolv_conf(text);
        let want: Vec<SocketAddr> = vec![
            "10.0.0.2:53".parse().unwrap(),
            "[2001:db8::53]:53".parse().unwrap(),
            "10.0.0.3:53".parse().unwrap(),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn resolv_conf_without_nameservers_is_empty() {
        assert!(parse_resolv_conf("search local\noptions edns0\n").is_empty());
        assert!(parse_resolv_conf("").is_empty());
    }

    #[test]
    fn configured_nameservers_win_over_resolv_conf() {
        let config = model::Resolver {
            nameservers: vec!["127.0.0.1:5353".parse().unwrap()],
            timeout: Duration::from_millis(300),
        };
        let resolver = Resolver::new(&config);
        assert_eq!(resolver.nameservers(), &config.nameservers[..]);
        assert_eq!(resolver.timeout(), Duration::from_millis(300));
        assert!(!Resolver::new(&model::Resolver::default())
            .nameservers()
            .is_empty());
    }

    fn record(name: &str, ttl: u32, data: RData) -> Record {
        let rtype = match data {
            RData::A(_) => wire::TYPE_A,
            RData::Aaaa(_) => wire::TYPE_AAAA,
            RData::Cname(_) => wire::TYPE_CNAME,
            RData::Srv { .. } => wire::TYPE_SRV,
            RData::Other => 99,
        };
        Record {
            name: name.into(),
            rtype,
            class: wire::CLASS_IN,
            ttl,
            data,
        }
    }

    fn message(answers: Vec<Record>) -> Message {
        Message {
            id: 1,
            response: true,
            truncated: false,
            rcode: 0,
            questions: Vec::new(),
            answers,
            additional: Vec::new(),
        }
    }

    fn pick_a(d: &RData) -> Option<Ipv4Addr> {
        match d {
            RData::A(ip) => Some(*ip),
            _ => None,
        }
    }

    #[test]
    fn cname_chains_are_followed_with_their_ttl() {
        let msg = message(vec![
            record("www.x", 100, RData::Cname("web.x".into())),
            record("web.x", 20, RData::Cname("lb.x".into())),
            record("lb.x", 50, RData::A(Ipv4Addr::new(10, 0, 0, 1))),
            record("other.x", 1, RData::A(Ipv4Addr::new(10, 9, 9, 9))),
            record("LB.x", 60, RData::A(Ipv4Addr::new(10, 0, 0, 2))),
        ]);
        let answer = chase(&msg, "WWW.x.", wire::TYPE_A, pick_a).unwrap();
        assert_eq!(
            answer.records,
            vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]
        );
        assert_eq!(answer.ttl, Duration::from_secs(20));
    }

    #[test]
    fn cname_loops_are_bounded() {
        let msg = message(vec![
            record("a.x", 1, RData::Cname("b.x".into())),
            record("b.x", 1, RData::Cname("a.x".into())),
        ]);
        let err = chase(&msg, "a.x", wire::TYPE_A, pick_a).unwrap_err();
        assert!(matches!(err, DnsError::Malformed(m) if m.contains("CNAME chain")));
    }

    #[test]
    fn cname_to_nothing_is_nodata() {
        let msg = message(vec![record("a.x", 1, RData::Cname("b.x".into()))]);
        assert_eq!(
            chase(&msg, "a.x", wire::TYPE_A, pick_a).unwrap_err(),
            DnsError::NoRecords
        );
    }
}
