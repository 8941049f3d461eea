//! `demo_backends:`: fixed-response servers inside fulcrum, used by the demo config.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::time::{Duration, Instant};

use support::*;

/// A demo-like config: three demo backends behind a round-robin upstream.
fn demo_config(listen: u16, ports: [u16; 3]) -> String {
    let [a, b, c] = ports;
    format!(
        r#"
listeners:
  - addr: "127.0.0.1:{listen}"
demo_backends:
  - name: alpha
    addr: "127.0.0.1:{a}"
  - name: beta
    addr: "127.0.0.1:{b}"
  - name: gamma
    addr: "127.0.0.1:{c}"
upstreams:
  demo:
    algorithm: round_robin
    backends:
      - addr: "127.0.0.1:{a}"
      - addr: "127.0.0.1:{b}"
      - addr: "127.0.0.1:{c}"
routes:
  - path: /
    upstream: demo
"#
    )
}

async fn wait_demo_ports(f: &mut Fulcrum, ports: &[u16]) {
    for &p in ports {
        f.wait_listening(p).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_backends_rotate() {
    let listen = free_port();
    let ports = [free_port(), free_port(), free_port()];
    let mut f = Fulcrum::start(&demo_config(listen, ports), listen).await;
    wait_demo_ports(&mut f, &ports).await;

    let c = client();
    let seq = bodies(&c, &f.url("/"), None, 6).await;

    // Names in address (port) order: the rotation order.
    let mut by_port: Vec<(u16, &str)> = ports
        .iter()
        .copied()
        .zip(["alpha\n", "beta\n", "gamma\n"])
        .collect();
    by_port.sort();
    let order: Vec<&str> = by_port.iter().map(|(_, n)| *n).collect();

    let mut first3: Vec<&str> = seq[..3].iter().map(|s| s.as_str()).collect();
    first3.sort();
    assert_eq!(
        first3,
        vec!["alpha\n", "beta\n", "gamma\n"],
        "6 requests: {seq:?}"
    );
    for i in 3..6 {
        assert_eq!(
            seq[i],
            seq[i - 3],
            "rotation repeats every 3 requests: {seq:?}"
        );
    }
    let start = order.iter().position(|n| *n == seq[0]).unwrap();
    for (i, s) in seq.iter().enumerate() {
        assert_eq!(
            s,
            order[(start + i) % 3],
            "rotation follows address order: {seq:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_backend_answers_directly() {
    let listen = free_port();
    let ports = [free_port(), free_port(), free_port()];
    let mut f = Fulcrum::start(&demo_config(listen, ports), listen).await;
    wait_demo_ports(&mut f, &ports).await;
    let c = client();
    let r = get(&c, &format!("http://127.0.0.1:{}/any/path", ports[1])).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "beta\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_backend_options() {
    let listen = free_port();
    let p = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{listen}"
demo_backends:
  - name: custom
    addr: "127.0.0.1:{p}"
    body: "hello from custom\n"
    status: 201
    delay: 300ms
    headers:
      x-demo: "yes"
upstreams:
  custom:
    backends:
      - addr: "127.0.0.1:{p}"
routes:
  - upstream: custom
"#
    );
    let mut f = Fulcrum::start(&yaml, listen).await;
    wait_demo_ports(&mut f, &[p]).await;
    let c = client();
    let start = Instant::now();
    let r = get(&c, &f.url("/")).await;
    let took = start.elapsed();
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body, "hello from custom\n");
    assert_eq!(r.header("x-demo").as_deref(), Some("yes"));
    assert!(
        took >= Duration::from_millis(280),
        "demo delay 300ms not applied: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}
