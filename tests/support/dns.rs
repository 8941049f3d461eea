//! [`TestDns`]: a small authoritative DNS server on 127.0.0.1 (UDP and TCP, one port) whose
//! records the test changes while it runs: add a backend, remove one, fail with SERVFAIL or
//! NXDOMAIN, stay silent, or answer with no records.
//!
//! It answers A, AAAA and SRV queries of class IN per RFC 1035 (SRV per RFC 2782, with the
//! targets' addresses in the additional section). It does not speak EDNS0 (RFC 6891 section
//! 7: a query's OPT record is ignored and none is sent), so a UDP answer over 512 bytes goes
//! out with TC=1 and no records, and the client must ask again over TCP.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::dns_wire::{self, Parsed, CLASS_IN, TCP_LIMIT, UDP_LIMIT};
use super::dns_zone::{normalize, Outcome, Zone};
use super::ports::bind_unreserved_udp_and_tcp;
use super::server::Server;

/// QTYPE A (an IPv4 address).
pub const DNS_A: u16 = 1;
/// QTYPE AAAA (an IPv6 address, RFC 3596).
pub const DNS_AAAA: u16 = 28;
/// QTYPE SRV (RFC 2782).
pub const DNS_SRV: u16 = 33;

/// TTL of every record until [`TestDns::set_ttl`] changes it.
const DEFAULT_TTL: u32 = 30;
/// How long a TCP connection may stay idle between queries.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// How [`TestDns`] fails a name, whatever the query type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// RCODE 2, SERVFAIL.
    ServFail,
    /// RCODE 3, NXDOMAIN, although the name has records.
    NxDomain,
    /// No reply at all, over UDP or TCP (the query is still counted).
    Timeout,
}

/// One query [`TestDns`] received (well-formed ones only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    /// The name asked for: lowercase, without a trailing dot.
    pub name: String,
    /// QTYPE ([`DNS_A`], [`DNS_AAAA`], [`DNS_SRV`], or any other).
    pub qtype: u16,
    /// Whether it came over TCP.
    pub tcp: bool,
}

/// State shared by the test and the server tasks.
struct Shared {
    zone: Mutex<Zone>,
    log: Mutex<Vec<DnsQuery>>,
}

/// An authoritative DNS server on 127.0.0.1:<random port>, UDP and TCP. Starts with no names
/// (every query gets NXDOMAIN); the setters change the answers of the next query. Names are
/// case-insensitive, with or without a trailing dot. Stops when dropped.
pub struct TestDns {
    port: u16,
    shared: Arc<Shared>,
    udp_task: JoinHandle<()>,
    _tcp: Server,
}

impl TestDns {
    /// Binds UDP and TCP on one port and starts answering.
    pub async fn start() -> TestDns {
        let (udp, tcp) = bind_unreserved_udp_and_tcp();
        let port = udp.local_addr().expect("TestDns: local_addr").port();
        let shared = Arc::new(Shared {
            zone: Mutex::new(Zone::new(DEFAULT_TTL)),
            log: Mutex::new(Vec::new()),
        });
        let udp_task = tokio::spawn(serve_udp(udp, shared.clone()));
        let tcp = {
            let shared = shared.clone();
            Server::start_on(tcp, move |stream| serve_tcp(stream, shared.clone()))
        };
        TestDns {
            port,
            shared,
            udp_task,
            _tcp: tcp,
        }
    }

    /// Its port on 127.0.0.1 (UDP and TCP).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, as written in configs.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces the A records of `name`; `&[]` leaves the name with no A records (NODATA).
    pub fn set_a(&self, name: &str, ips: &[Ipv4Addr]) {
        self.zone().set_a(name, ips);
    }

    /// Replaces the AAAA records of `name`; `&[]` leaves it with none (NODATA).
    pub fn set_aaaa(&self, name: &str, ips: &[Ipv6Addr]) {
        self.zone().set_aaaa(name, ips);
    }

    /// Replaces the SRV records of `name`, each `(priority, weight, port, target)`. Answers
    /// carry the A and AAAA records of known targets in the additional section.
    pub fn set_srv(&self, name: &str, records: &[(u16, u16, u16, &str)]) {
        self.zone().set_srv(name, records);
    }

    /// Sets the TTL (seconds) of every record in later answers (30 until changed).
    pub fn set_ttl(&self, secs: u32) {
        self.zone().set_ttl(secs);
    }

    /// The TTL of every record in answers.
    pub fn ttl(&self) -> u32 {
        self.zone().ttl()
    }

    /// Makes every query for `name` fail as `failure`; `None` answers normally again.
    pub fn set_failure(&self, name: &str, failure: Option<Failure>) {
        self.zone().set_failure(name, failure);
    }

    /// Drops every record and failure of `name` but keeps the name: NOERROR with an empty
    /// answer (NODATA).
    pub fn clear(&self, name: &str) {
        self.zone().clear(name);
    }

    /// Forgets `name`: NXDOMAIN.
    pub fn remove(&self, name: &str) {
        self.zone().remove(name);
    }

    /// Number of well-formed queries received, over UDP and TCP.
    pub fn queries(&self) -> usize {
        self.shared.log.lock().unwrap().len()
    }

    /// Number of queries received for `name` (any case, trailing dot or not) of `qtype`.
    pub fn queries_for(&self, name: &str, qtype: u16) -> usize {
        let name = normalize(name);
        let log = self.shared.log.lock().unwrap();
        log.iter()
            .filter(|q| q.name == name && q.qtype == qtype)
            .count()
    }

    /// Number of queries received over TCP.
    pub fn tcp_queries(&self) -> usize {
        self.shared
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|q| q.tcp)
            .count()
    }

    /// Every query received so far, in order.
    pub fn query_log(&self) -> Vec<DnsQuery> {
        self.shared.log.lock().unwrap().clone()
    }

    fn zone(&self) -> std::sync::MutexGuard<'_, Zone> {
        self.shared.zone.lock().unwrap()
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.udp_task.abort();
    }
}

/// The reply to one message, if any; `tcp` says whether it came over TCP (where answers are
/// not limited to 512 bytes).
fn respond(shared: &Shared, msg: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let query = match dns_wire::parse_query(msg) {
        Parsed::Query(q) => q,
        Parsed::Error(reply) => return Some(reply),
        Parsed::Ignore => return None,
    };
    shared.log.lock().unwrap().push(DnsQuery {
        name: query.name.clone(),
        qtype: query.qtype,
        tcp,
    });
    if query.qclass != CLASS_IN {
        return Some(dns_wire::refused(&query));
    }
    let zone = shared.zone.lock().unwrap();
    match zone.answer(&query.name, query.qtype) {
        Outcome::NoReply => None,
        Outcome::Reply(answer) => {
            let limit = if tcp { TCP_LIMIT } else { UDP_LIMIT };
            Some(dns_wire::encode(&query, &answer, zone.ttl(), limit))
        }
    }
}

/// Answers datagrams one at a time until the task is aborted.
async fn serve_udp(socket: UdpSocket, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65_535];
    for _ in 0..10_000_000 {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if let Some(reply) = respond(&shared, &buf[..len], false) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

/// Answers length-prefixed queries on one connection (RFC 1035 4.2.2) until the client
/// closes it or stays idle for [`TCP_IDLE`].
async fn serve_tcp(mut stream: TcpStream, shared: Arc<Shared>) {
    for _ in 0..10_000 {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut msg)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(reply) = respond(&shared, &msg, true) else {
            continue;
        };
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
