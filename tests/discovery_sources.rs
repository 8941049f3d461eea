//! Discovery sources against real name servers on 127.0.0.1: the stub resolver
//! (`fulcrum::discovery::dns`) and one look at a `dns`, `dns_srv` or `file` source
//! (`fulcrum::discovery::source`), with [`TestDns`] as the authoritative server and, for the
//! replies it cannot give (REFUSED, stray datagrams), a small scripted UDP server.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use fulcrum::config::model::{self, DiscoverySource};
use fulcrum::discovery::{discover, DnsError, Found, Resolver, SourceError};
use support::*;
use tokio::net::UdpSocket;

/// The per-server timeout of every resolver here.
const TIMEOUT: Duration = Duration::from_millis(300);

fn resolver(servers: &[SocketAddr]) -> Resolver {
    Resolver::new(&model::Resolver {
        nameservers: servers.to_vec(),
        timeout: TIMEOUT,
    })
}

fn addr(dns: &TestDns) -> SocketAddr {
    dns.addr().parse().unwrap()
}

fn v4(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn found(addr: &str, host: Option<&str>, weight: u32) -> Found {
    Found {
        addr: addr.parse().unwrap(),
        host: host.map(str::to_string),
        weight,
    }
}

#[tokio::test]
async fn lookup_ip_asks_a_and_aaaa_and_joins_them() {
    let dns = TestDns::start().await;
    dns.set_a("api.svc", &[v4(2), v4(1)]);
    dns.set_aaaa("api.svc", &[Ipv6Addr::LOCALHOST]);
    let answer = resolver(&[addr(&dns)]).lookup_ip("api.svc").await.unwrap();
    let want: Vec<IpAddr> = vec![v4(2).into(), v4(1).into(), Ipv6Addr::LOCALHOST.into()];
    assert_eq!(answer.records, want);
    assert_eq!(answer.ttl, Duration::from_secs(30));
    assert_eq!(dns.queries_for("api.svc", DNS_A), 1);
    assert_eq!(dns.queries_for("api.svc", DNS_AAAA), 1);
    assert_eq!(dns.tcp_queries(), 0);
}

#[tokio::test]
async fn lookup_ip_with_one_family_only() {
    let dns = TestDns::start().await;
    dns.set_aaaa("v6.svc", &[Ipv6Addr::LOCALHOST]);
    let answer = resolver(&[addr(&dns)]).lookup_ip("v6.svc").await.unwrap();
    assert_eq!(answer.records, vec![IpAddr::from(Ipv6Addr::LOCALHOST)]);
}

#[tokio::test]
async fn ttl_is_the_records_ttl() {
    let dns = TestDns::start().await;
    dns.set_a("api.svc", &[v4(1)]);
    dns.set_ttl(7);
    let r = resolver(&[addr(&dns)]);
    assert_eq!(
        r.lookup_ip("api.svc").await.unwrap().ttl,
        Duration::from_secs(7)
    );
    dns.set_ttl(0);
    assert_eq!(r.lookup_ip("api.svc").await.unwrap().ttl, Duration::ZERO);
}

#[tokio::test]
async fn dns_source_gives_every_address_on_the_port_sorted() {
    let dns = TestDns::start().await;
    dns.set_a("api.svc", &[v4(3), v4(1), v4(2)]);
    dns.set_aaaa("api.svc", &[Ipv6Addr::LOCALHOST]);
    dns.set_ttl(12);
    let source = DiscoverySource::Dns {
        name: "api.svc".into(),
        port: 8080,
    };
    let got = discover(&source, &resolver(&[addr(&dns)]), 100)
        .await
        .unwrap();
    let host = Some("api.svc");
    assert_eq!(
        got.backends,
        vec![
            found("10.0.0.1:8080", host, 1),
            found("10.0.0.2:8080", host, 1),
            found("10.0.0.3:8080", host, 1),
            found("[::1]:8080", host, 1),
        ]
    );
    assert_eq!(got.ttl, Some(Duration::from_secs(12)));
    assert_eq!(got.truncated, 0);
}

#[tokio::test]
async fn dns_source_keeps_the_first_max_backends() {
    let dns = TestDns::start().await;
    dns.set_a("api.svc", &[v4(5), v4(4), v4(3), v4(2), v4(1)]);
    let source = DiscoverySource::Dns {
        name: "api.svc".into(),
        port: 80,
    };
    let got = discover(&source, &resolver(&[addr(&dns)]), 3)
        .await
        .unwrap();
    let addrs: Vec<String> = got.backends.iter().map(|f| f.addr.to_string()).collect();
    assert_eq!(addrs, ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
    assert_eq!(got.truncated, 2);
}

#[tokio::test]
async fn truncated_udp_answer_is_asked_again_over_tcp() {
    let dns = TestDns::start().await;
    // 60 A records (16 bytes each) do not fit in 512 bytes.
    let many: Vec<Ipv4Addr> = (1..=60).map(v4).collect();
    dns.set_a("big.svc", &many);
    let answer = resolver(&[addr(&dns)]).lookup_ip("big.svc").await.unwrap();
    let want: Vec<IpAddr> = many.iter().map(|&ip| ip.into()).collect();
    assert_eq!(answer.records, want);
    assert_eq!(dns.tcp_queries(), 1);
    let log = dns.query_log();
    let a: Vec<bool> = log
        .iter()
        .filter(|q| q.qtype == DNS_A)
        .map(|q| q.tcp)
        .collect();
    assert_eq!(a, [false, true]);
}

#[tokio::test]
async fn srv_uses_the_lowest_priority_and_additional_addresses() {
    let dns = TestDns::start().await;
    dns.set_srv(
        "_http._tcp.svc",
        &[
            (20, 1, 9000, "c.svc"),
            (10, 0, 8080, "a.svc"),
            (10, 5000, 8081, "b.svc"),
            (10, 7, 8082, "."),
        ],
    );
    dns.set_a("a.svc", &[v4(1)]);
    dns.set_a("b.svc", &[v4(2)]);
    dns.set_aaaa("b.svc", &[Ipv6Addr::LOCALHOST]);
    dns.set_a("c.svc", &[v4(3)]);
    let r = resolver(&[addr(&dns)]);

    let answer = r.lookup_srv("_http._tcp.svc").await.unwrap();
    assert_eq!(answer.records.len(), 4);
    let b = answer.records.iter().find(|s| s.target == "b.svc").unwrap();
    assert_eq!((b.priority, b.weight, b.port), (10, 5000, 8081));
    let b_addrs: Vec<IpAddr> = vec![v4(2).into(), Ipv6Addr::LOCALHOST.into()];
    assert_eq!(b.addrs, b_addrs);

    let source = DiscoverySource::DnsSrv {
        name: "_http._tcp.svc".into(),
    };
    let got = discover(&source, &r, 100).await.unwrap();
    assert_eq!(
        got.backends,
        vec![
            found("10.0.0.1:8080", Some("a.svc"), 1),
            found("10.0.0.2:8081", Some("b.svc"), 1000),
            found("[::1]:8081", Some("b.svc"), 1000),
        ]
    );
    assert_eq!(got.ttl, Some(Duration::from_secs(30)));
    // The addresses came with the SRV answer: no lookups of the targets.
    assert_eq!(dns.queries_for("a.svc", DNS_A), 0);
    assert_eq!(dns.queries_for("b.svc", DNS_AAAA), 0);
}

#[tokio::test]
async fn srv_target_that_fails_is_left_out_unless_all_fail() {
    let dns = TestDns::start().await;
    dns.set_srv(
        "_http._tcp.svc",
        &[(0, 1, 8080, "a.svc"), (0, 1, 8081, "b.svc")],
    );
    dns.set_a("a.svc", &[v4(1)]);
    dns.set_a("b.svc", &[v4(2)]);
    dns.set_failure("b.svc", Some(Failure::ServFail));
    let r = resolver(&[addr(&dns)]);
    let source = DiscoverySource::DnsSrv {
        name: "_http._tcp.svc".into(),
    };
    let got = discover(&source, &r, 100).await.unwrap();
    assert_eq!(got.backends, vec![found("10.0.0.1:8080", Some("a.svc"), 1)]);
    // b.svc was not in the additional section, so it was looked up, and failed.
    assert_eq!(dns.queries_for("b.svc", DNS_A), 1);

    dns.set_failure("a.svc", Some(Failure::NxDomain));
    let err = discover(&source, &r, 100).await.unwrap_err();
    assert!(matches!(err, SourceError::Dns(_)), "{err}");
}

#[tokio::test]
async fn srv_with_only_dot_targets_is_empty() {
    let dns = TestDns::start().await;
    dns.set_srv("_http._tcp.svc", &[(0, 0, 0, ".")]);
    let source = DiscoverySource::DnsSrv {
        name: "_http._tcp.svc".into(),
    };
    let got = discover(&source, &resolver(&[addr(&dns)]), 100)
        .await
        .unwrap();
    assert!(got.backends.is_empty());
}

#[tokio::test]
async fn failures_map_to_their_errors() {
    let dns = TestDns::start().await;
    let r = resolver(&[addr(&dns)]);
    for name in [
        "servfail.svc",
        "nx.svc",
        "quiet.svc",
        "nodata.svc",
        "gone.svc",
    ] {
        dns.set_a(name, &[v4(1)]);
    }
    dns.set_failure("servfail.svc", Some(Failure::ServFail));
    dns.set_failure("nx.svc", Some(Failure::NxDomain));
    dns.set_failure("quiet.svc", Some(Failure::Timeout));
    dns.clear("nodata.svc");
    dns.remove("gone.svc");
    let cases = [
        ("servfail.svc", DnsError::ServFail),
        ("nx.svc", DnsError::NxDomain),
        ("quiet.svc", DnsError::Timeout),
        ("nodata.svc", DnsError::NoRecords),
        ("gone.svc", DnsError::NxDomain),
    ];
    for (name, want) in cases {
        assert_eq!(r.lookup_ip(name).await.unwrap_err(), want, "{name}");
    }
    dns.set_failure("servfail.svc", Some(Failure::ServFail));
    assert_eq!(
        r.lookup_srv("servfail.svc").await.unwrap_err(),
        DnsError::ServFail
    );
    assert_eq!(
        r.lookup_srv("nodata.svc").await.unwrap_err(),
        DnsError::NoRecords
    );
    let bad = r.lookup_ip("a..b").await.unwrap_err();
    assert!(matches!(bad, DnsError::Malformed(_)), "{bad}");
}

#[tokio::test]
async fn silent_server_then_next_server_answers() {
    // A bound socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dns = TestDns::start().await;
    dns.set_a("api.svc", &[v4(1)]);
    let r = resolver(&[silent.local_addr().unwrap(), addr(&dns)]);
    let answer = r.lookup_ip("api.svc").await.unwrap();
    assert_eq!(answer.records, vec![IpAddr::from(v4(1))]);
}

#[tokio::test]
async fn servfail_then_next_server_answers_and_last_error_is_reported() {
    let first = TestDns::start().await;
    let second = TestDns::start().await;
    for dns in [&first, &second] {
        dns.set_a("api.svc", &[v4(1)]);
    }
    first.set_failure("api.svc", Some(Failure::ServFail));
    let r = resolver(&[addr(&first), addr(&second)]);
    let answer = r.lookup_ip("api.svc").await.unwrap();
    assert_eq!(answer.records, vec![IpAddr::from(v4(1))]);
    assert_eq!(first.queries_for("api.svc", DNS_A), 1);
    assert_eq!(second.queries_for("api.svc", DNS_A), 1);

    second.set_failure("api.svc", Some(Failure::Timeout));
    assert_eq!(r.lookup_ip("api.svc").await.unwrap_err(), DnsError::Timeout);

    // NXDOMAIN is final: the second server is not asked.
    first.set_failure("api.svc", Some(Failure::NxDomain));
    second.set_failure("api.svc", None);
    let before = second.queries();
    assert_eq!(
        r.lookup_ip("api.svc").await.unwrap_err(),
        DnsError::NxDomain
    );
    assert_eq!(second.queries(), before);
}

/// A reply to `query` (id, question echoed) with `rcode` and, if given, one A record.
fn reply(query: &[u8], id: u16, rcode: u8, a: Option<Ipv4Addr>) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&(0x8180u16 | rcode as u16).to_be_bytes());
    let answers = u16::from(a.is_some());
    for count in [1, answers, 0, 0] {
        m.extend_from_slice(&count.to_be_bytes());
    }
    m.extend_from_slice(&query[12..]);
    if let Some(ip) = a {
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        m.extend_from_slice(&ip.octets());
    }
    m
}

/// A UDP server that answers each query as `answer` says (with the socket, the query and
/// the client's address), until dropped.
async fn scripted<F>(answer: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
where
    F: Fn(Vec<u8>) -> Vec<(bool, Vec<u8>)> + Send + 'static,
{
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        for _ in 0..1000 {
            let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            // Each datagram: (from the server's own socket?, bytes).
            for (own, bytes) in answer(buf[..len].to_vec()) {
                let from = if own { &socket } else { &stranger };
                let _ = from.send_to(&bytes, peer).await;
            }
        }
    });
    (addr, task)
}

#[tokio::test]
async fn refused_then_next_server_and_last_error() {
    let (refusing, task) = scripted(|q| {
        let id = u16::from_be_bytes([q[0], q[1]]);
        vec![(true, reply(&q, id, 5, None))]
    })
    .await;
    assert_eq!(
        resolver(&[refusing])
            .lookup_ip("api.svc")
            .await
            .unwrap_err(),
        DnsError::Refused
    );
    let dns = TestDns::start().await;
    dns.set_a("api.svc", &[v4(9)]);
    let answer = resolver(&[refusing, addr(&dns)])
        .lookup_ip("api.svc")
        .await
        .unwrap();
    assert_eq!(answer.records, vec![IpAddr::from(v4(9))]);
    task.abort();
}

#[tokio::test]
async fn stray_datagrams_are_ignored_until_the_real_reply() {
    let (server, task) = scripted(|q| {
        let id = u16::from_be_bytes([q[0], q[1]]);
        let qtype = u16::from_be_bytes([q[q.len() - 4], q[q.len() - 3]]);
        let a = (qtype == 1).then(|| Ipv4Addr::new(10, 1, 1, 1));
        let mut other_name = q.clone();
        other_name[13] ^= 0x01; // another first letter in the question
        vec![
            (
                true,
                reply(&q, id ^ 0x5555, 0, Some(Ipv4Addr::new(6, 6, 6, 1))),
            ),
            (false, reply(&q, id, 0, Some(Ipv4Addr::new(6, 6, 6, 2)))),
            (
                true,
                reply(&other_name, id, 0, Some(Ipv4Addr::new(6, 6, 6, 3))),
            ),
            (true, q.clone()),
            (true, vec![q[0], q[1], 0x81]),
            (true, reply(&q, id, 0, a)),
        ]
    })
    .await;
    let answer = resolver(&[server]).lookup_ip("api.svc").await.unwrap();
    assert_eq!(
        answer.records,
        vec![IpAddr::from(Ipv4Addr::new(10, 1, 1, 1))]
    );
    task.abort();
}

#[tokio::test]
async fn unreadable_reply_with_our_id_is_malformed_not_a_timeout() {
    let (server, task) = scripted(|q| vec![(true, vec![q[0], q[1], 0x81, 0x80, 0, 1])]).await;
    let err = resolver(&[server]).lookup_ip("api.svc").await.unwrap_err();
    assert!(matches!(err, DnsError::Malformed(_)), "{err}");
    task.abort();
}

fn file_source(path: &std::path::Path) -> DiscoverySource {
    DiscoverySource::File {
        path: path.to_path_buf(),
    }
}

#[tokio::test]
async fn file_source_lists_addresses_and_resolves_names() {
    let dns = TestDns::start().await;
    dns.set_a("web.svc", &[v4(7), v4(6)]);
    let r = resolver(&[addr(&dns)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backends.yaml");
    std::fs::write(
        &path,
        "- addr: 10.0.0.9:80\n  weight: 3\n- addr: web.svc:8080\n- addr: \"[::1]:81\"\n",
    )
    .unwrap();
    let got = discover(&file_source(&path), &r, 100).await.unwrap();
    assert_eq!(
        got.backends,
        vec![
            found("10.0.0.6:8080", Some("web.svc"), 1),
            found("10.0.0.7:8080", Some("web.svc"), 1),
            found("10.0.0.9:80", None, 3),
            found("[::1]:81", None, 1),
        ]
    );
    assert_eq!(got.ttl, None);

    let got = discover(&file_source(&path), &r, 2).await.unwrap();
    assert_eq!(got.backends.len(), 2);
    assert_eq!(got.truncated, 2);

    std::fs::write(&path, "[]\n").unwrap();
    let got = discover(&file_source(&path), &r, 100).await.unwrap();
    assert!(got.backends.is_empty());
}

#[tokio::test]
async fn file_source_errors_name_the_file_and_entry() {
    let dns = TestDns::start().await;
    let r = resolver(&[addr(&dns)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.yaml");
    let shown = path.display().to_string();
    let cases = [
        ("", format!("{shown}: the file is empty")),
        (" \n", format!("{shown}: the file is empty")),
        (
            "- addr: 10.0.0.1:80\n- addr: 10.0.0.2:80\n- addr: 10.0.0.3:80\n  weight: 0\n",
            format!("{shown}: [2].weight: must be between 1 and 1000, got 0"),
        ),
        (
            "- addr: nowhere.svc:80\n",
            format!("{shown}: [0].addr: resolving nowhere.svc: no such name"),
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&path, text).unwrap();
        let err = discover(&file_source(&path), &r, 100)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&want), "{text:?}: {err}");
    }
    let missing = dir.path().join("missing.yaml");
    let err = discover(&file_source(&missing), &r, 100).await.unwrap_err();
    assert!(
        err.to_string().starts_with(&missing.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn large_srv_answer_comes_over_tcp_with_its_additional_addresses() {
    let dns = TestDns::start().await;
    let targets: Vec<String> = (1..=30).map(|i| format!("node{i}.svc")).collect();
    let records: Vec<(u16, u16, u16, &str)> =
        targets.iter().map(|t| (1, 2, 7000, t.as_str())).collect();
    dns.set_srv("_api._tcp.svc", &records);
    for (i, t) in targets.iter().enumerate() {
        dns.set_a(t, &[v4(i as u8 + 1)]);
    }
    let source = DiscoverySource::DnsSrv {
        name: "_api._tcp.svc".into(),
    };
    let got = discover(&source, &resolver(&[addr(&dns)]), 100)
        .await
        .unwrap();
    assert_eq!(got.backends.len(), 30);
    assert_eq!(
        got.backends[0],
        found("10.0.0.1:7000", Some("node1.svc"), 2)
    );
    assert_eq!(dns.tcp_queries(), 1);
    assert_eq!(dns.queries_for("node1.svc", DNS_A), 0);
}
