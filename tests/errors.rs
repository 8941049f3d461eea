//! Error responses: 404 (no route), 502 (backend refuses connections), 504 (backend too slow),
//! and the proxy keeps serving afterwards.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::time::{Duration, Instant};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_502_and_proxy_keeps_serving() {
    let ok = TestBackend::start("ok").await;
    let dead_port = free_port(); // nothing listens here
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  dead:
    backends:
      - addr: "127.0.0.1:{dead_port}"
    timeouts:
      connect: 1s
  ok:
    backends:
      - addr: "{ok}"
routes:
  - path: /dead
    upstream: dead
  - path: /
    upstream: ok
"#,
        ok = ok.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;

    for i in 0..3 {
        let c = client_no_pool();
        let start = Instant::now();
        let r = get(&c, &f.url("/dead/x")).await;
        assert_eq!(r.status, 502, "attempt {i}: {r:?}");
        assert_short_body(&r, "502");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "502 took {:?}",
            start.elapsed()
        );
        // Still serving the healthy route.
        let r = get(&c, &f.url("/fine")).await;
        assert_eq!(r.status, 200, "healthy route after 502 #{i}: {r:?}");
        assert_eq!(r.body, "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_that_goes_away_gives_502() {
    let gone = TestBackend::start("gone").await;
    let ok = TestBackend::start("ok").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  gone:
    backends:
      - addr: "{gone}"
  ok:
    backends:
      - addr: "{ok}"
routes:
  - path: /gone
    upstream: gone
  - path: /
    upstream: ok
"#,
        gone = gone.addr(),
        ok = ok.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();

    let r = get(&c, &f.url("/gone")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "gone");

    gone.stop().await;
    assert!(
        !port_is_listening(gone.port()),
        "stopped backend still listening"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;

    let r = get(&client_no_pool(), &f.url("/gone")).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert_short_body(&r, "502 after backend stopped");

    let r = get(&client_no_pool(), &f.url("/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_backend_is_504_quickly_and_proxy_keeps_serving() {
    let slow = TestBackend::start("slow").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  slow:
    backends:
      - addr: "{slow}"
    timeouts:
      read: 300ms
routes:
  - upstream: slow
"#,
        slow = slow.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;

    for i in 0..2 {
        // This request makes the backend wait 5 s before answering.
        let c = client_no_pool();
        let start = Instant::now();
        let r = get_with(&c, &f.url("/slow"), None, &[("x-test-delay-ms", "5000")]).await;
        let took = start.elapsed();
        assert_eq!(r.status, 504, "attempt {i}: {r:?}");
        assert_short_body(&r, "504");
        assert!(
            took >= Duration::from_millis(250),
            "504 came before the read timeout could expire: {took:?}"
        );
        assert!(
            took < Duration::from_millis(2500),
            "504 should come soon after the 300ms read timeout, took {took:?}"
        );

        // A fast request to the same backend is served.
        let r = get(&client_no_pool(), &f.url("/fast")).await;
        assert_eq!(r.status, 200, "after 504 #{i}: {r:?}");
        assert_eq!(r.body, "slow");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_slower_than_timeout_on_every_request() {
    let slow = TestBackend::start_delayed("slow", Duration::from_secs(3)).await;
    let fast = TestBackend::start("fast").await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  slow:
    backends:
      - addr: "{slow}"
    timeouts:
      read: 300ms
  fast:
    backends:
      - addr: "{fast}"
routes:
  - path: /slow
    upstream: slow
  - path: /
    upstream: fast
"#,
        slow = slow.addr(),
        fast = fast.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;

    // Several concurrent slow requests all time out; none hangs.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = f.url("/slow");
        tasks.push(tokio::spawn(async move {
            let c = client_no_pool();
            get(&c, &url).await
        }));
    }
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("slow request hung")
            .expect("task panicked");
        assert_eq!(r.status, 504, "{r:?}");
    }
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "4 concurrent timeouts took {:?}",
        start.elapsed()
    );

    let r = get(&client_no_pool(), &f.url("/")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "fast");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_error_statuses_pass_through() {
    let err = TestBackend::start_with(
        "err",
        BackendOptions {
            status: 503,
            body: Some("backend says no".into()),
            ..BackendOptions::default()
        },
    )
    .await;
    let port = free_port();
    let yaml = format!(
        r#"
listeners:
  - addr: "127.0.0.1:{port}"
upstreams:
  err:
    backends:
      - addr: "{err}"
routes:
  - upstream: err
"#,
        err = err.addr()
    );
    let f = Fulcrum::start(&yaml, port).await;
    let c = client();
    let r = get(&c, &f.url("/")).await;
    assert_eq!(
        r.status, 503,
        "a backend's own error status is passed through"
    );
    assert_eq!(r.body, "backend says no");
    let r = get_with(&c, &f.url("/"), None, &[("x-test-status", "404")]).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body, "backend says no");
    assert_eq!(err.count(), 2);
}
