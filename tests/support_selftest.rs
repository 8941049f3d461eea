//! Checks the test support library itself (no fulcrum involved): the test backend's HTTP
//! handling, recording, stopping, the WebSocket echo server, and the DNS server (through a
//! small DNS client written here, and `dig`).

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_answers_records_and_keeps_alive() {
    let b = TestBackend::start("one").await;
    let c = client();
    let url = format!("http://{}/p?q=1", b.addr());
    for _ in 0..3 {
        let r = get_with(
            &c,
            &url,
            Some("h.test"),
            &[("x-multi", "a"), ("x-multi", "b")],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "one");
        assert_eq!(r.header("x-backend").as_deref(), Some("one"));
    }
    assert_eq!(b.count(), 3);
    // (Keep-alive is checked with a raw socket below; reqwest may open a second
    // connection when the first is not back in its pool yet.)
    assert!(b.connections() >= 1);
    let req = b.last_request().unwrap();
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/p?q=1");
    assert_eq!(req.header("host").as_deref(), Some("h.test"));
    assert_eq!(req.header_all("x-multi"), vec!["a", "b"]);
    assert_eq!(req.header("x-multi").as_deref(), Some("a, b"));

    let r = request(&c, "POST", &url, None, &[], Some(b"body!".to_vec())).await;
    assert_eq!(r.status, 200);
    assert_eq!(b.last_request().unwrap().body, b"body!");

    b.clear();
    assert_eq!(b.count(), 0);
    assert!(b.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_chunked_body_and_raw_keepalive() {
    let b = TestBackend::start("raw").await;
    let raw = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
               5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n\
               GET /second HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    let resp = raw_http(b.port(), raw.as_bytes()).await;
    assert_eq!(resp.matches("HTTP/1.1 200 OK").count(), 2, "{resp}");
    let reqs = b.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].body_string(), "hello world");
    assert_eq!(reqs[1].path, "/second");
    assert_eq!(reqs[1].body_string(), "abc");
    assert_eq!(raw_status(&resp), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_options_and_overrides() {
    let b = TestBackend::start_with(
        "opt",
        BackendOptions {
            delay: Some(Duration::from_millis(200)),
            status: 201,
            body: Some("custom".into()),
            headers: vec![("x-extra".into(), "1".into())],
        },
    )
    .await;
    let c = client();
    let url = format!("http://{}/", b.addr());
    let start = Instant::now();
    let r = get(&c, &url).await;
    assert!(start.elapsed() >= Duration::from_millis(190));
    assert_eq!(r.status, 201);
    assert_eq!(r.body, "custom");
    assert_eq!(r.header("x-extra").as_deref(), Some("1"));

    let start = Instant::now();
    let r = get_with(
        &c,
        &url,
        None,
        &[("x-test-delay-ms", "0"), ("x-test-status", "418")],
    )
    .await;
    assert!(start.elapsed() < Duration::from_millis(150));
    assert_eq!(r.status, 418);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_sends_100_continue_before_the_body() {
    let b = TestBackend::start("cont").await;
    let head = b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", b.port()))
        .await
        .unwrap();
    s.write_all(head).await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut interim))
        .await
        .expect("100 Continue before the body")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"abc").await.unwrap();
    let mut answer = [0u8; 15];
    s.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200 OK");
    assert_eq!(b.last_request().unwrap().body, b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_backend_records_bytes_and_refuses_unframeable_requests() {
    let b = RecordingBackend::start("rec").await;
    // Pipelined: a clean request, then one with two different Content-Length values.
    let sent = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
                 POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab";
    let ex = raw_exchange(b.port(), sent, Duration::from_millis(300)).await;
    assert_eq!(ex.statuses(), vec![200, 400], "{}", ex.summary());
    assert!(ex.closed, "{}", ex.summary());
    assert_eq!(b.raw(), sent.to_vec());
    assert_eq!(b.connections(), 1);
    let reqs = b.requests();
    assert_eq!(
        b.request_lines(),
        vec!["GET /a HTTP/1.1", "POST /b HTTP/1.1"]
    );
    assert!(reqs[0].error.is_none() && reqs[0].ambiguities().is_empty());
    assert!(reqs[1].error.is_some(), "{:?}", reqs[1]);
    assert!(!reqs[1].ambiguities().is_empty());

    // A bare LF head is framed and answered, and reported as ambiguous.
    b.clear();
    let ex = raw_exchange(
        b.port(),
        b"GET /lf HTTP/1.1\nHost: x\n\n",
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(ex.statuses(), vec![200], "{}", ex.summary());
    let r = b.last_request().unwrap();
    assert!(r.error.is_none());
    assert!(
        r.ambiguities().iter().any(|a| a.contains("bare LF")),
        "{:?}",
        r.ambiguities()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_backend_refuses_connections() {
    let b = TestBackend::start("stop").await;
    let c = client();
    let url = format!("http://{}/", b.addr());
    assert_eq!(get(&c, &url).await.status, 200);
    b.stop().await;
    assert!(!port_is_listening(b.port()));
    assert!(try_request(&client_no_pool(), "GET", &url, None, &[], None)
        .await
        .is_err());

    let port = {
        let d = TestBackend::start("drop").await;
        d.port()
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!port_is_listening(port), "dropped backend still listening");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_echo_backend_echoes() {
    let ws = WsEchoBackend::start().await;
    let (stream, _) = tokio_tungstenite::connect_async(format!("ws://{}/e?x=1", ws.addr()))
        .await
        .unwrap();
    let (mut tx, mut rx) = stream.split();
    tx.send(Message::Text("hi".into())).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got, Message::Text("hi".into()));
    assert_eq!(ws.accepted(), 1);
    assert_eq!(ws.paths(), vec!["/e?x=1".to_string()]);
}

#[test]
fn free_ports_are_distinct_and_free() {
    let ports: Vec<u16> = (0..20).map(|_| free_port()).collect();
    let set: std::collections::HashSet<_> = ports.iter().collect();
    assert_eq!(set.len(), ports.len());
    assert!(ports.iter().all(|&p| port_is_free(p)));
}

#[test]
fn pingora_section_is_added_once() {
    let dir = std::path::Path::new("/tmp/x");
    let y = with_pingora_section("listeners: []\n", dir);
    assert!(y.starts_with("pingora:\n  threads: 1\n"));
    assert!(y.contains("/tmp/x/fulcrum.pid"));
    let y2 = with_pingora_section("pingora:\n  threads: 2\nfile: $TMPDIR/a\n", dir);
    assert_eq!(y2, "pingora:\n  threads: 2\nfile: /tmp/x/a\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listening_socket_ownership() {
    let b = TestBackend::start("own").await;
    let me = std::process::id();
    if let Some(owned) = pid_listens_on(me, b.port()) {
        assert!(owned, "this process listens on the backend port");
        assert_eq!(pid_listens_on(me, free_port()), Some(false));
    }
}

// ---- TestDns, checked with a small DNS client written here, apart from the server's code ----

/// One resource record as the self-test client reads it.
#[derive(Debug, Clone, PartialEq)]
struct Rr {
    name: String,
    rtype: u16,
    class: u16,
    ttl: u32,
    data: RrData,
}

/// Record data the self-test client understands.
#[derive(Debug, Clone, PartialEq)]
enum RrData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Srv(u16, u16, u16, String),
    Other(Vec<u8>),
}

/// A DNS response as the self-test client reads it.
#[derive(Debug)]
struct Reply {
    id: u16,
    flags: u16,
    qname: String,
    qtype: u16,
    answers: Vec<Rr>,
    authority: usize,
    additional: Vec<Rr>,
}

impl Reply {
    fn rcode(&self) -> u16 {
        self.flags & 0xF
    }
    fn flag(&self, bit: u16) -> bool {
        self.flags & bit != 0
    }
    fn a(&self) -> Vec<Ipv4Addr> {
        self.answers
            .iter()
            .filter_map(|r| match r.data {
                RrData::A(ip) => Some(ip),
                _ => None,
            })
            .collect()
    }
}

const F_QR: u16 = 0x8000;
const F_AA: u16 = 0x0400;
const F_TC: u16 = 0x0200;
const F_RD: u16 = 0x0100;
const F_RA: u16 = 0x0080;

/// A standard query for `name` (as written, case kept) of `qtype`, class IN.
fn dns_query(id: u16, name: &str, qtype: u16, rd: bool) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&(if rd { F_RD } else { 0 }).to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// Reads a (possibly compressed) name at `pos`; returns it and the offset after it.
fn read_dns_name(msg: &[u8], mut pos: usize) -> (String, usize) {
    let mut labels = Vec::new();
    let mut end = None;
    for _ in 0..64 {
        let len = msg[pos] as usize;
        if len & 0xC0 == 0xC0 {
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3F) << 8) | msg[pos + 1] as usize;
            continue;
        }
        if len == 0 {
            return (labels.join("."), end.unwrap_or(pos + 1));
        }
        labels.push(String::from_utf8(msg[pos + 1..pos + 1 + len].to_vec()).unwrap());
        pos += 1 + len;
    }
    panic!("name loop in {msg:?}");
}

fn be16(msg: &[u8], pos: usize) -> u16 {
    u16::from_be_bytes([msg[pos], msg[pos + 1]])
}

fn read_rr(msg: &[u8], pos: usize) -> (Rr, usize) {
    let (name, pos) = read_dns_name(msg, pos);
    let rtype = be16(msg, pos);
    let class = be16(msg, pos + 2);
    let ttl = u32::from_be_bytes(msg[pos + 4..pos + 8].try_into().unwrap());
    let len = be16(msg, pos + 8) as usize;
    let start = pos + 10;
    let rdata = &msg[start..start + len];
    let data = match rtype {
        1 => RrData::A(Ipv4Addr::from(<[u8; 4]>::try_from(rdata).unwrap())),
        28 => RrData::Aaaa(Ipv6Addr::from(<[u8; 16]>::try_from(rdata).unwrap())),
        33 => {
            let (target, after) = read_dns_name(msg, start + 6);
            assert_eq!(after, start + len, "SRV target fills the rdata");
            RrData::Srv(
                be16(msg, start),
                be16(msg, start + 2),
                be16(msg, start + 4),
                target,
            )
        }
        _ => RrData::Other(rdata.to_vec()),
    };
    let rr = Rr {
        name,
        rtype,
        class,
        ttl,
        data,
    };
    (rr, start + len)
}

/// Parses a response; panics on anything malformed, and checks that nothing trails it.
fn parse_reply(msg: &[u8]) -> Reply {
    assert!(msg.len() >= 12, "short reply {msg:?}");
    let counts: Vec<usize> = (0..4).map(|i| be16(msg, 4 + 2 * i) as usize).collect();
    assert_eq!(counts[0], 1, "one question");
    let (qname, pos) = read_dns_name(msg, 12);
    let qtype = be16(msg, pos);
    assert_eq!(be16(msg, pos + 2), 1, "QCLASS IN");
    let mut pos = pos + 4;
    let mut sections = [Vec::new(), Vec::new(), Vec::new()];
    for (section, &count) in sections.iter_mut().zip(&counts[1..]) {
        for _ in 0..count {
            let (rr, next) = read_rr(msg, pos);
            section.push(rr);
            pos = next;
        }
    }
    assert_eq!(pos, msg.len(), "nothing after the last record");
    let [answers, authority, additional] = sections;
    Reply {
        id: be16(msg, 0),
        flags: be16(msg, 2),
        qname,
        qtype,
        answers,
        authority: authority.len(),
        additional,
    }
}

/// How long the client waits for a reply it expects (generous: the machine may be busy).
const REPLY_WAIT: Duration = Duration::from_secs(2);
/// How long the client waits to conclude that no reply comes.
const SILENCE_WAIT: Duration = Duration::from_millis(300);

/// Sends `msg` over UDP and waits at most `wait` for a datagram back. `None` when none came
/// (or the port is closed: the socket is connected, so an ICMP refusal shows as an error).
async fn udp_exchange_within(addr: &str, msg: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(addr).await.unwrap();
    sock.send(msg).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let len = tokio::time::timeout(wait, sock.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf[..len].to_vec())
}

/// [`udp_exchange_within`] [`REPLY_WAIT`].
async fn udp_exchange(addr: &str, msg: &[u8]) -> Option<Vec<u8>> {
    udp_exchange_within(addr, msg, REPLY_WAIT).await
}

/// Whether no UDP reply to `msg` comes within [`SILENCE_WAIT`].
async fn udp_silent(addr: &str, msg: &[u8]) -> bool {
    udp_exchange_within(addr, msg, SILENCE_WAIT).await.is_none()
}

/// A query over UDP, parsed; panics when no reply comes within [`REPLY_WAIT`].
async fn udp_ask(dns: &TestDns, id: u16, name: &str, qtype: u16) -> Reply {
    let reply = udp_exchange(&dns.addr(), &dns_query(id, name, qtype, true))
        .await
        .unwrap_or_else(|| panic!("no UDP reply for {name} {qtype}"));
    parse_reply(&reply)
}

/// Sends length-prefixed `msg` on a TCP stream and reads one length-prefixed reply (at most
/// `wait`).
async fn tcp_exchange_within(
    stream: &mut tokio::net::TcpStream,
    msg: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    stream.write_all(&framed).await.unwrap();
    let read = async {
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    };
    tokio::time::timeout(wait, read).await.ok()
}

/// [`tcp_exchange_within`] [`REPLY_WAIT`].
async fn tcp_exchange(stream: &mut tokio::net::TcpStream, msg: &[u8]) -> Option<Vec<u8>> {
    tcp_exchange_within(stream, msg, REPLY_WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_a_aaaa_and_srv_with_additional() {
    let dns = TestDns::start().await;
    assert_eq!(dns.addr(), format!("127.0.0.1:{}", dns.port()));
    let v4 = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
    dns.set_a("api.test", &v4);
    dns.set_aaaa("API.test.", &[Ipv6Addr::LOCALHOST]);

    // A, asked in another case and with a trailing dot; the question comes back as sent.
    let r = udp_ask(&dns, 0x1234, "Api.TEST.", DNS_A).await;
    assert_eq!(r.id, 0x1234);
    assert!(r.flag(F_QR) && r.flag(F_AA) && r.flag(F_RD));
    assert!(!r.flag(F_TC) && !r.flag(F_RA));
    assert_eq!(r.rcode(), 0);
    assert_eq!((r.qname.as_str(), r.qtype), ("Api.TEST", DNS_A));
    assert_eq!(r.a(), v4.to_vec());
    for rr in &r.answers {
        assert_eq!(
            (rr.name.as_str(), rr.rtype, rr.class, rr.ttl),
            ("Api.TEST", 1, 1, 30)
        );
    }
    assert_eq!((r.authority, r.additional.len()), (0, 0));

    // RD is copied: a query without it gets a reply without it.
    let raw = udp_exchange(&dns.addr(), &dns_query(7, "api.test", DNS_A, false)).await;
    let r = parse_reply(&raw.unwrap());
    assert!(!r.flag(F_RD) && r.flag(F_QR));

    // AAAA, with a changed TTL.
    dns.set_ttl(2);
    assert_eq!(dns.ttl(), 2);
    let r = udp_ask(&dns, 2, "api.test", DNS_AAAA).await;
    assert_eq!(r.rcode(), 0);
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].data, RrData::Aaaa(Ipv6Addr::LOCALHOST));
    assert_eq!((r.answers[0].rtype, r.answers[0].ttl), (28, 2));

    // SRV: records as set, addresses of the known targets in the additional section (each
    // target once), nothing for a target the zone does not know.
    dns.set_a("b1.svc.test", &[Ipv4Addr::new(127, 0, 0, 11)]);
    dns.set_aaaa("b2.svc.test", &[Ipv6Addr::LOCALHOST]);
    dns.set_srv(
        "_http._tcp.svc.test",
        &[
            (10, 60, 8081, "b1.svc.test"),
            (10, 40, 8082, "B2.svc.test."),
            (20, 0, 8083, "elsewhere.test"),
            (30, 5, 8084, "b1.svc.test"),
        ],
    );
    let r = udp_ask(&dns, 3, "_http._tcp.svc.test", DNS_SRV).await;
    assert_eq!(r.rcode(), 0);
    let srv: Vec<RrData> = r.answers.iter().map(|rr| rr.data.clone()).collect();
    assert_eq!(
        srv,
        vec![
            RrData::Srv(10, 60, 8081, "b1.svc.test".into()),
            RrData::Srv(10, 40, 8082, "b2.svc.test".into()),
            RrData::Srv(20, 0, 8083, "elsewhere.test".into()),
            RrData::Srv(30, 5, 8084, "b1.svc.test".into()),
        ]
    );
    assert!(r.answers.iter().all(|rr| rr.rtype == 33 && rr.ttl == 2));
    let additional: Vec<(String, RrData)> = r
        .additional
        .iter()
        .map(|rr| (rr.name.clone(), rr.data.clone()))
        .collect();
    assert_eq!(
        additional,
        vec![
            (
                "b1.svc.test".into(),
                RrData::A(Ipv4Addr::new(127, 0, 0, 11))
            ),
            ("b2.svc.test".into(), RrData::Aaaa(Ipv6Addr::LOCALHOST)),
        ]
    );

    assert_eq!(dns.queries(), 4);
    assert_eq!(dns.queries_for("API.test.", DNS_A), 2);
    assert_eq!(dns.queries_for("api.test", DNS_AAAA), 1);
    assert_eq!(dns.queries_for("_http._tcp.svc.test", DNS_SRV), 1);
    assert_eq!(dns.tcp_queries(), 0);
    let log = dns.query_log();
    assert_eq!(
        log[0],
        DnsQuery {
            name: "api.test".into(),
            qtype: DNS_A,
            tcp: false
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_failures_nxdomain_nodata_and_silence() {
    let dns = TestDns::start().await;
    // A name nobody set.
    let r = udp_ask(&dns, 1, "nobody.test", DNS_A).await;
    assert_eq!((r.rcode(), r.answers.len()), (3, 0));
    assert!(r.flag(F_AA));

    dns.set_a("api.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
    // A type the server has no records of, for a name it knows: NOERROR, empty (NODATA).
    let r = udp_ask(&dns, 2, "api.test", 16).await;
    assert_eq!((r.rcode(), r.answers.len(), r.qtype), (0, 0, 16));
    let r = udp_ask(&dns, 3, "api.test", DNS_AAAA).await;
    assert_eq!((r.rcode(), r.answers.len()), (0, 0));

    dns.set_failure("api.test", Some(Failure::ServFail));
    let r = udp_ask(&dns, 4, "api.test", DNS_A).await;
    assert_eq!((r.rcode(), r.answers.len()), (2, 0));

    dns.set_failure("api.test", Some(Failure::NxDomain));
    let r = udp_ask(&dns, 5, "api.test", DNS_A).await;
    assert_eq!((r.rcode(), r.answers.len()), (3, 0));

    // Timeout: no reply at all, over UDP or over TCP; the queries are still counted.
    dns.set_failure("api.test", Some(Failure::Timeout));
    let before = dns.queries();
    let query = dns_query(6, "api.test", DNS_A, true);
    assert!(
        udp_silent(&dns.addr(), &query).await,
        "no UDP reply while failing with Timeout"
    );
    let mut tcp = tokio::net::TcpStream::connect(dns.addr()).await.unwrap();
    let query = dns_query(7, "api.test", DNS_A, true);
    let silent = tcp_exchange_within(&mut tcp, &query, SILENCE_WAIT).await;
    assert!(silent.is_none(), "no TCP reply while failing with Timeout");
    assert_eq!(dns.queries(), before + 2);

    // Lifted: the records answer again.
    dns.set_failure("api.test", None);
    let r = udp_ask(&dns, 8, "api.test", DNS_A).await;
    assert_eq!((r.rcode(), r.a()), (0, vec![Ipv4Addr::new(127, 0, 0, 2)]));

    // clear: the name stays, without records (NODATA); remove: NXDOMAIN.
    dns.clear("api.test");
    let r = udp_ask(&dns, 9, "api.test", DNS_A).await;
    assert_eq!((r.rcode(), r.answers.len()), (0, 0));
    dns.remove("api.test");
    let r = udp_ask(&dns, 10, "api.test", DNS_A).await;
    assert_eq!(r.rcode(), 3);

    // A failing SRV target's addresses are left out of the additional section.
    dns.set_a("b1.test", &[Ipv4Addr::new(127, 0, 0, 5)]);
    dns.set_failure("b1.test", Some(Failure::ServFail));
    dns.set_srv("srv.test", &[(1, 1, 80, "b1.test")]);
    let r = udp_ask(&dns, 11, "srv.test", DNS_SRV).await;
    assert_eq!((r.rcode(), r.answers.len(), r.additional.len()), (0, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_change_between_queries() {
    let dns = TestDns::start().await;
    let ip = |n| Ipv4Addr::new(127, 0, 0, n);
    dns.set_a("pool.test", &[ip(1), ip(2)]);
    assert_eq!(
        udp_ask(&dns, 1, "pool.test", DNS_A).await.a(),
        [ip(1), ip(2)]
    );
    // A backend joins.
    dns.set_a("pool.test", &[ip(1), ip(2), ip(3)]);
    assert_eq!(
        udp_ask(&dns, 2, "pool.test", DNS_A).await.a(),
        [ip(1), ip(2), ip(3)]
    );
    // One leaves.
    dns.set_a("pool.test", &[ip(2), ip(3)]);
    assert_eq!(
        udp_ask(&dns, 3, "pool.test", DNS_A).await.a(),
        [ip(2), ip(3)]
    );
    // SRV records change the same way.
    dns.set_srv("_h._tcp.pool.test", &[(0, 1, 80, "pool.test")]);
    let r = udp_ask(&dns, 4, "_h._tcp.pool.test", DNS_SRV).await;
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.additional.len(), 2);
    dns.set_srv(
        "_h._tcp.pool.test",
        &[(0, 1, 80, "a.test"), (0, 1, 81, "b.test")],
    );
    let r = udp_ask(&dns, 5, "_h._tcp.pool.test", DNS_SRV).await;
    assert_eq!(r.answers.len(), 2);
    assert_eq!(r.additional.len(), 0);
    assert_eq!(dns.queries_for("pool.test", DNS_A), 3);
    assert_eq!(dns.queries_for("_h._tcp.pool.test", DNS_SRV), 2);
    assert_eq!(dns.queries(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_truncates_over_udp_and_answers_in_full_over_tcp() {
    let dns = TestDns::start().await;
    let many: Vec<Ipv4Addr> = (1..=40).map(|n| Ipv4Addr::new(10, 0, 0, n)).collect();
    dns.set_a("big.test", &many);
    dns.set_a("small.test", &[Ipv4Addr::new(10, 1, 1, 1)]);

    // UDP: 12 + 14 + 40 * 16 bytes do not fit 512: TC=1, the question, no records.
    let raw = udp_exchange(&dns.addr(), &dns_query(9, "big.test", DNS_A, true))
        .await
        .unwrap();
    assert!(raw.len() <= 512);
    let r = parse_reply(&raw);
    assert_eq!(r.id, 9);
    assert!(r.flag(F_TC) && r.flag(F_QR));
    assert_eq!(
        (r.rcode(), r.qname.as_str(), r.answers.len()),
        (0, "big.test", 0)
    );

    // TCP: the whole answer, and several queries on one connection.
    let mut tcp = tokio::net::TcpStream::connect(dns.addr()).await.unwrap();
    let raw = tcp_exchange(&mut tcp, &dns_query(9, "big.test", DNS_A, true))
        .await
        .unwrap();
    assert!(raw.len() > 512);
    let r = parse_reply(&raw);
    assert!(!r.flag(F_TC));
    assert_eq!(r.a(), many);
    let raw = tcp_exchange(&mut tcp, &dns_query(10, "small.test", DNS_A, true))
        .await
        .unwrap();
    let r = parse_reply(&raw);
    assert_eq!((r.id, r.a()), (10, vec![Ipv4Addr::new(10, 1, 1, 1)]));
    assert_eq!(dns.tcp_queries(), 2);
    assert_eq!(dns.queries_for("big.test", DNS_A), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_survives_malformed_queries() {
    let dns = TestDns::start().await;
    dns.set_a("ok.test", &[Ipv4Addr::new(127, 0, 0, 9)]);
    let addr = dns.addr();
    let header = |flags: u16, qd: u16| {
        let mut h = vec![0xAB, 0xCD];
        h.extend_from_slice(&flags.to_be_bytes());
        h.extend_from_slice(&qd.to_be_bytes());
        h.extend_from_slice(&[0; 6]);
        h
    };
    let rcode_of = |raw: Vec<u8>| {
        assert_eq!(&raw[..2], &[0xAB, 0xCD], "ID echoed");
        assert!(be16(&raw, 2) & F_QR != 0);
        be16(&raw, 2) & 0xF
    };
    // Too short to have a header, or a response: ignored.
    assert!(udp_silent(&addr, &[]).await);
    assert!(udp_silent(&addr, &[1, 2, 3, 4, 5]).await);
    let mut response = dns_query(1, "ok.test", DNS_A, true);
    response[2] |= 0x80;
    assert!(udp_silent(&addr, &response).await);
    // No question, a compression pointer in the question, a cut question: FORMERR.
    let raw = udp_exchange(&addr, &header(0, 0)).await.unwrap();
    assert_eq!(rcode_of(raw), 1);
    let mut pointer = header(0, 1);
    pointer.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
    assert_eq!(rcode_of(udp_exchange(&addr, &pointer).await.unwrap()), 1);
    let mut cut = header(0, 1);
    cut.extend_from_slice(&[2, b'o', b'k', 0, 0]);
    assert_eq!(rcode_of(udp_exchange(&addr, &cut).await.unwrap()), 1);
    // Another opcode (STATUS): NOTIMP.
    assert_eq!(
        rcode_of(udp_exchange(&addr, &header(2 << 11, 1)).await.unwrap()),
        4
    );
    // Class CH: REFUSED, with the question.
    let mut chaos = dns_query(0xABCD, "ok.test", DNS_A, true);
    let len = chaos.len();
    chaos[len - 1] = 3;
    assert_eq!(rcode_of(udp_exchange(&addr, &chaos).await.unwrap()), 5);

    // Pseudo-random bytes (a fixed LCG), over UDP and TCP: the server neither panics nor
    // stops answering.
    let mut seed: u32 = 12345;
    let mut next = move || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (seed >> 16) as u8
    };
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..300 {
        let len = (next() as usize) % 80;
        let mut msg: Vec<u8> = (0..len).map(|_| next()).collect();
        if i % 2 == 0 && msg.len() > 5 {
            msg[2] &= 0x07; // a query with opcode 0, so parsing goes past the header
            msg[4] = 0;
            msg[5] = 1;
        }
        sock.send_to(&msg, &addr).await.unwrap();
        if i % 20 == 19 {
            // A real query now and then: it keeps answering, and the garbage never piles up
            // beyond the socket buffer (which would drop datagrams, ours included).
            let r = udp_ask(&dns, i as u16, "ok.test", DNS_A).await;
            assert_eq!(r.a(), vec![Ipv4Addr::new(127, 0, 0, 9)]);
        }
    }
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    for _ in 0..50 {
        let len = (next() as usize) % 40;
        let mut msg: Vec<u8> = (len as u16).to_be_bytes().to_vec();
        msg.extend((0..len).map(|_| next()));
        tcp.write_all(&msg).await.unwrap();
    }
    drop(tcp);
    let r = udp_ask(&dns, 77, "ok.test", DNS_A).await;
    assert_eq!(r.a(), vec![Ipv4Addr::new(127, 0, 0, 9)]);
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let raw = tcp_exchange(&mut tcp, &dns_query(78, "ok.test", DNS_A, true))
        .await
        .unwrap();
    assert_eq!(parse_reply(&raw).a(), vec![Ipv4Addr::new(127, 0, 0, 9)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_stops_when_dropped() {
    let dns = TestDns::start().await;
    dns.set_a("x.test", &[Ipv4Addr::new(127, 0, 0, 1)]);
    let addr = dns.addr();
    let port = dns.port();
    assert_eq!(udp_ask(&dns, 1, "x.test", DNS_A).await.rcode(), 0);
    drop(dns);
    // The tasks are aborted; the sockets close once the runtime has dropped them.
    let deadline = Instant::now() + Duration::from_secs(2);
    while port_is_listening(port) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!port_is_listening(port), "TCP closed after drop");
    assert!(udp_silent(&addr, &dns_query(2, "x.test", DNS_A, true)).await);
}

/// `dig` as a client independent of this file's: A over UDP, and the truncated answer
/// retried over TCP (`.ci/install-deps` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_dig() {
    let installed = std::process::Command::new("dig").arg("-v").output().is_ok();
    assert!(
        installed,
        "dig is missing: run .ci/install-deps (bind9-dnsutils)"
    );
    let dns = TestDns::start().await;
    dns.set_a("api.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
    let many: Vec<Ipv4Addr> = (1..=40).map(|n| Ipv4Addr::new(10, 0, 0, n)).collect();
    dns.set_a("big.test", &many);
    dns.set_srv("_h._tcp.api.test", &[(1, 2, 8080, "api.test")]);
    dns.set_a("bad.test", &[Ipv4Addr::new(127, 0, 0, 3)]);
    dns.set_failure("bad.test", Some(Failure::ServFail));
    let port = dns.port().to_string();
    let dig = |args: &[&str]| {
        let out = std::process::Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+time=1", "+tries=1"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let dig = |args: &[&str]| tokio::task::block_in_place(|| dig(args));
    assert_eq!(dig(&["+short", "api.test", "A"]).trim(), "127.0.0.2");
    let srv = dig(&["+short", "_h._tcp.api.test", "SRV"]);
    assert_eq!(srv.trim(), "1 2 8080 api.test.");
    // The full SRV answer: flags, and the target's address as additional data.
    let full = dig(&["+noedns", "_h._tcp.api.test", "SRV"]);
    assert!(full.contains("status: NOERROR"), "{full}");
    assert!(full.contains("flags: qr aa rd;"), "{full}");
    assert!(
        full.contains("ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 1"),
        "{full}"
    );
    assert!(full.contains("api.test.\t\t30\tIN\tA\t127.0.0.2"), "{full}");
    let bad = dig(&["bad.test", "A"]);
    assert!(bad.contains("status: SERVFAIL"), "{bad}");
    let none = dig(&["none.test", "A"]);
    assert!(none.contains("status: NXDOMAIN"), "{none}");
    // Truncated over UDP (with and without EDNS0, which the server ignores): dig retries
    // over TCP and gets all 40 records.
    assert_eq!(
        dig(&["+short", "+noedns", "big.test", "A"]).lines().count(),
        40
    );
    assert_eq!(dig(&["+short", "big.test", "A"]).lines().count(), 40);
    assert_eq!(
        dns.tcp_queries(),
        2,
        "dig retried the truncated answers over TCP"
    );
}
