//! The response cache, through the real binary in front of a [`CountingOrigin`]: what is
//! stored and for how long (RFC 9111 freshness, `default_ttl`, no-store, private, Set-Cookie,
//! Vary, Authorization), revalidation, stale copies on errors and during a background refresh,
//! the cache lock, HEAD and Range from a stored GET, the cache key, purging through the admin
//! listener, the memory bound, and the metrics and access-log field that report it all.
//!
//! Every test runs its own fulcrum and origin; expiry is awaited by polling (never a fixed
//! sleep), and every assertion is about what the client and the origin saw.

// Each test binary uses only part of the shared support module (items and re-exports).
#[allow(dead_code, unused_imports)]
mod support;

use std::time::Duration;

use support::*;

/// The admin listener's bearer token.
const TOKEN: &str = "cache-admin-token-0123456789";

/// How long polling for a change (expiry, a background refresh) may take before a test fails.
const POLL_LIMIT: Duration = Duration::from_secs(8);

/// Time between two polls.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// One `routes:` entry to `origin`: `name` (empty for none), path prefix and its `cache:`
/// (flow-style YAML, empty for none).
fn route(name: &str, path: &str, cache: &str) -> String {
    let mut s = String::from("  - ");
    if !name.is_empty() {
        s.push_str(&format!("name: {name}\n    "));
    }
    s.push_str(&format!("path: {path}\n    upstream: origin\n"));
    if !cache.is_empty() {
        s.push_str(&format!("    cache: {cache}\n"));
    }
    s
}

/// A fulcrum in front of one origin, with a token-protected admin listener.
struct Proxy {
    fulcrum: Fulcrum,
    admin: u16,
    http: reqwest::Client,
}

impl Proxy {
    /// Starts fulcrum with the top-level `cache:` section `store` (flow-style YAML, empty for
    /// none) and the given `routes:` entries (see [`route`]), all to `origin`.
    async fn start(origin: &CountingOrigin, store: &str, routes: &[String]) -> Proxy {
        Proxy::start_with(origin, store, "", routes).await
    }

    /// Like [`Proxy::start`], with `upstream` (flow-style YAML keys, e.g.
    /// `timeouts: {read: 1s}`) added to the origin's upstream group.
    async fn start_with(
        origin: &CountingOrigin,
        store: &str,
        upstream: &str,
        routes: &[String],
    ) -> Proxy {
        let (port, admin) = (free_port(), free_port());
        let upstream = if upstream.is_empty() {
            String::new()
        } else {
            format!("    {upstream}\n")
        };
        let store = if store.is_empty() {
            String::new()
        } else {
            format!("cache: {store}\n")
        };
        let yaml = format!(
            "listeners:\n  - addr: \"127.0.0.1:{port}\"\n\
             admin:\n  addr: \"127.0.0.1:{admin}\"\n  token: \"{TOKEN}\"\n\
             upstreams:\n  origin:\n    backends: [{{addr: \"{}\"}}]\n{upstream}\
             {store}routes:\n{}",
            origin.addr(),
            routes.concat()
        );
        let mut fulcrum = Fulcrum::start(&yaml, port).await;
        fulcrum.wait_listening(admin).await;
        Proxy {
            fulcrum,
            admin,
            http: client(),
        }
    }

    /// `method path` with extra headers and an optional Host.
    async fn send(
        &self,
        method: &str,
        path: &str,
        host: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        request(
            &self.http,
            method,
            &self.fulcrum.url(path),
            host,
            headers,
            None,
        )
        .await
    }

    /// GET `path`.
    async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None, &[]).await
    }

    /// GET `path` with extra headers.
    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send("GET", path, None, headers).await
    }

    /// GET `path`, expecting status 200, the given `X-Cache-Status` and body.
    async fn expect(&self, path: &str, headers: &[(&str, &str)], cache: &str, body: &str) -> Resp {
        let r = self.get_with(path, headers).await;
        let shown = |b: &str| {
            if b.len() > 80 {
                format!("<{} bytes>", b.len())
            } else {
                b.to_string()
            }
        };
        assert_eq!(
            (r.status, cache_status(&r), shown(&r.body)),
            (200, cache.to_string(), shown(body)),
            "GET {path} {headers:?}"
        );
        assert!(r.body == body, "GET {path} {headers:?}: the body differs");
        r
    }

    /// GETs `path` every [`POLL_EVERY`] until its `X-Cache-Status` is not `while_status`, and
    /// returns that response; panics after [`POLL_LIMIT`].
    async fn poll_until_not(&self, path: &str, while_status: &str) -> Resp {
        let tries = (POLL_LIMIT.as_millis() / POLL_EVERY.as_millis()) as usize;
        for _ in 0..tries {
            let r = self.get(path).await;
            if cache_status(&r) != while_status {
                return r;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        panic!("GET {path} stayed {while_status} for {POLL_LIMIT:?}");
    }

    /// `method /cache{query}` on the admin listener with `auth` as the Authorization header
    /// (none when empty).
    async fn admin_call(&self, method: &str, path: &str, auth: &str) -> Resp {
        let headers: Vec<(&str, &str)> = if auth.is_empty() {
            Vec::new()
        } else {
            vec![("authorization", auth)]
        };
        request(
            &self.http,
            method,
            &format!("http://127.0.0.1:{}{path}", self.admin),
            None,
            &headers,
            None,
        )
        .await
    }

    /// `DELETE /cache{query}` with the token, expecting 200 and `{"purged": N}`; returns N.
    async fn purge(&self, query: &str) -> u64 {
        let r = self
            .admin_call(
                "DELETE",
                &format!("/cache{query}"),
                &format!("Bearer {TOKEN}"),
            )
            .await;
        assert_eq!(r.status, 200, "DELETE /cache{query}: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("DELETE /cache{query}: {e}: {}", r.body));
        v["purged"]
            .as_u64()
            .unwrap_or_else(|| panic!("DELETE /cache{query}: no purged count in {v}"))
    }

    /// The admin listener's `/metrics` text.
    async fn metrics(&self) -> String {
        let r = self
            .admin_call("GET", "/metrics", &format!("Bearer {TOKEN}"))
            .await;
        assert_eq!(r.status, 200, "/metrics: {}", r.body);
        r.body
    }

    /// Polls `/metrics` (at most [`POLL_LIMIT`]) until `done` holds for its text, and returns
    /// that text; the last text when it never does (the caller's asserts then say why). A
    /// response is stored as its last byte goes out, so the gauges may lag the client by a
    /// moment.
    async fn metrics_when(&self, done: impl Fn(&str) -> bool) -> String {
        let tries = (POLL_LIMIT.as_millis() / POLL_EVERY.as_millis()) as usize;
        let mut text = self.metrics().await;
        for _ in 0..tries {
            if done(&text) {
                break;
            }
            tokio::time::sleep(POLL_EVERY).await;
            text = self.metrics().await;
        }
        text
    }

    /// Waits (polling, at most 10 s) until fulcrum's log has a line containing every one of
    /// `parts`; panics with the log otherwise.
    async fn wait_for_log_line(&self, parts: &[&str]) {
        for _ in 0..500 {
            if self
                .fulcrum
                .stderr()
                .lines()
                .any(|l| parts.iter().all(|p| l.contains(p)))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no log line with {parts:?} in:\n{}", self.fulcrum.stderr());
    }
}

/// A response's `X-Cache-Status`, `-` when absent.
fn cache_status(r: &Resp) -> String {
    r.header("x-cache-status").unwrap_or_else(|| "-".into())
}

/// The value of metric `name` on the one series whose labels include all of `labels`
/// (`("route", "static")`, ...); `None` when there is no such series.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(rest) = rest.strip_prefix('{') {
            let Some((labels, value)) = rest.split_once('}') else {
                continue;
            };
            (labels, value)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue;
        };
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        if all {
            let v: f64 = value
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            assert!(
                found.is_none(),
                "several {name} series match {labels:?}:\n{text}"
            );
            found = Some(v);
        }
    }
    found
}

/// `text` as a body, a [`pattern_body`] of `len` bytes.
fn pattern(len: usize) -> String {
    String::from_utf8(pattern_body(len)).expect("ASCII")
}

// ---------------------------------------------------------------------------------------------
// Freshness: hit, miss, expiry, revalidation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_fresh_copy_is_a_hit_and_an_expired_one_is_fetched_again() {
    let origin = CountingOrigin::start().await;
    origin.set("/static/page", Reply::cc("v1", "max-age=1"));
    let p = Proxy::start(&origin, "", &[route("static", "/static/", "{}")]).await;

    p.expect("/static/page", &[], "MISS", "v1").await;
    p.expect("/static/page", &[], "HIT", "v1").await;
    // The client's own Cache-Control and Pragma are ignored.
    for h in [
        ("cache-control", "no-cache"),
        ("cache-control", "max-age=0"),
        ("pragma", "no-cache"),
    ] {
        p.expect("/static/page", &[h], "HIT", "v1").await;
    }
    assert_eq!(origin.count("/static/page"), 1);

    // The origin's answer changes; the stored copy is served until it expires, then refetched.
    origin.set("/static/page", Reply::cc("v2", "max-age=60"));
    let r = p.poll_until_not("/static/page", "HIT").await;
    assert_eq!(
        (r.status, cache_status(&r).as_str(), r.body.as_str()),
        (200, "EXPIRED", "v2")
    );
    assert_eq!(origin.count("/static/page"), 2);
    p.expect("/static/page", &[], "HIT", "v2").await;
    assert_eq!(origin.count("/static/page"), 2);
}

#[tokio::test]
async fn s_maxage_wins_over_max_age_and_expires_is_honoured() {
    let origin = CountingOrigin::start().await;
    // max-age=0 alone would make the copy stale at once; s-maxage (for shared caches) wins.
    origin.set("/static/s", Reply::cc("s", "max-age=0, s-maxage=60"));
    // Expires in the future and no Cache-Control: fresh.
    origin.set(
        "/static/e",
        Reply::ok("e").header("expires", "Fri, 01 Jan 2100 00:00:00 GMT"),
    );
    // Expires in the past: stale at once, and there is no default_ttl on this route.
    origin.set(
        "/static/old",
        Reply::ok("old").header("expires", "Thu, 01 Jan 1998 00:00:00 GMT"),
    );
    let p = Proxy::start(&origin, "", &[route("static", "/static/", "{}")]).await;
    p.expect("/static/s", &[], "MISS", "s").await;
    p.expect("/static/s", &[], "HIT", "s").await;
    p.expect("/static/e", &[], "MISS", "e").await;
    p.expect("/static/e", &[], "HIT", "e").await;
    p.expect("/static/old", &[], "MISS", "old").await;
    let r = p.get("/static/old").await;
    assert_ne!(cache_status(&r), "HIT", "an expired Expires is never a hit");
    assert_eq!(
        (
            origin.count("/static/s"),
            origin.count("/static/e"),
            origin.count("/static/old")
        ),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn an_expired_copy_is_revalidated_with_its_etag_or_last_modified() {
    let origin = CountingOrigin::start().await;
    origin.set(
        "/static/etag",
        Reply::cc("tagged", "max-age=1").header("etag", "\"v1\""),
    );
    let lm = "Wed, 21 Oct 2015 07:28:00 GMT";
    origin.set(
        "/static/lm",
        Reply::cc("dated", "max-age=1").header("last-modified", lm),
    );
    let p = Proxy::start(&origin, "", &[route("static", "/static/", "{}")]).await;

    p.expect("/static/etag", &[], "MISS", "tagged").await;
    p.expect("/static/lm", &[], "MISS", "dated").await;

    let r = p.poll_until_not("/static/etag", "HIT").await;
    assert_eq!(
        (r.status, cache_status(&r).as_str(), r.body.as_str()),
        (200, "REVALIDATED", "tagged")
    );
    let reqs = origin.requests("/static/etag");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("if-none-match"), None);
    assert_eq!(reqs[1].header("if-none-match").as_deref(), Some("\"v1\""));

    let r = p.poll_until_not("/static/lm", "HIT").await;
    assert_eq!(
        (r.status, cache_status(&r).as_str(), r.body.as_str()),
        (200, "REVALIDATED", "dated")
    );
    let reqs = origin.requests("/static/lm");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].header("if-modified-since").as_deref(), Some(lm));
}

#[tokio::test]
async fn no_cache_is_stored_but_revalidated_before_every_use() {
    let origin = CountingOrigin::start().await;
    origin.set(
        "/static/nc",
        Reply::cc("checked", "no-cache").header("etag", "\"nc\""),
    );
    let p = Proxy::start(&origin, "", &[route("static", "/static/", "{}")]).await;
    p.expect("/static/nc", &[], "MISS", "checked").await;
    p.expect("/static/nc", &[], "REVALIDATED", "checked").await;
    p.expect("/static/nc", &[], "REVALIDATED", "checked").await;
    let reqs = origin.requests("/static/nc");
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[2].header("if-none-match").as_deref(), Some("\"nc\""));
}

// ---------------------------------------------------------------------------------------------
// What is never stored, and what bypasses the cache
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_store_private_set_cookie_and_vary_star_are_never_stored() {
    let origin = CountingOrigin::start().await;
    origin.set("/static/ns", Reply::cc("ns", "no-store"));
    origin.set("/static/nsa", Reply::cc("nsa", "max-age=60, no-store"));
    origin.set("/static/priv", Reply::cc("priv", "private, max-age=60"));
    origin.set(
        "/static/cookie",
        Reply::cc("cookie", "max-age=60").header("set-cookie", "session=abc; Path=/"),
    );
    origin.set(
        "/static/star",
        Reply::cc("star", "max-age=60").header("vary", "*"),
    );
    // default_ttl would store a response that says nothing; these say not to.
    let p = Proxy::start(
        &origin,
        "",
        &[route("static", "/static/", "{default_ttl: 60s}")],
    )
    .await;
    for (path, body) in [
        ("/static/ns", "ns"),
        ("/static/nsa", "nsa"),
        ("/static/priv", "priv"),
        ("/static/cookie", "cookie"),
        ("/static/star", "star"),
    ] {
        p.expect(path, &[], "MISS", body).await;
        let r = p.expect(path, &[], "MISS", body).await;
        assert_eq!(origin.count(path), 2, "{path}");
        if path == "/static/cookie" {
            assert_eq!(
                r.header("set-cookie").as_deref(),
                Some("session=abc; Path=/"),
                "the cookie still reaches the client"
            );
        }
    }
}

#[tokio::test]
async fn authorization_and_other_methods_bypass_the_cache() {
    let origin = CountingOrigin::start().await;
    origin.set("/static/mine", Reply::cc("mine", "max-age=60"));
    origin.set("/static/pub", Reply::cc("pub", "public, max-age=60"));
    let p = Proxy::start(&origin, "", &[route("static", "/static/", "{}")]).await;
    let auth = [("authorization", "Bearer user-1")];

    // Not stored from a request with Authorization, not served to one.
    p.expect("/static/mine", &auth, "BYPASS", "mine").await;
    p.expect("/static/mine", &[], "MISS", "mine").await;
    p.expect("/static/mine", &[], "HIT", "mine").await;
    p.expect("/static/mine", &auth, "BYPASS", "mine").await;
    assert_eq!(origin.count("/static/mine"), 3);

    // A stored `public` response may be served to a request with Authorization.
    p.expect("/static/pub", &[], "MISS", "pub").await;
    p.expect("/static/pub", &auth, "HIT", "pub").await;
    assert_eq!(origin.count("/static/pub"), 1);
    // And an `s-maxage` (or `public`, `must-revalidate`) answer to one is stored.
    origin.set("/static/shared", Reply::cc("shared", "s-maxage=60"));
    let r = p.get_with("/static/shared", &auth).await;
    assert_eq!((r.status, r.body.as_str()), (200, "shared"));
    p.expect("/static/shared", &[], "HIT", "shared").await;
    assert_eq!(origin.count("/static/shared"), 1);

    // Other methods go to the origin and leave the stored copy alone.
    let r = p.send("POST", "/static/mine", None, &[]).await;
    assert_eq!((r.status, cache_status(&r).as_str()), (200, "BYPASS"));
    let r = p.send("DELETE", "/static/mine", None, &[]).await;
    assert_eq!((r.status, cache_status(&r).as_str()), (200, "BYPASS"));
    assert_eq!(origin.count("/static/mine"), 5);
    p.expect("/static/mine", &[], "HIT", "mine").await;
}

#[tokio::test]
async fn default_ttl_stores_only_heuristically_cacheable_statuses() {
    let origin = CountingOrigin::start().await;
    origin.set("/static/plain", Reply::ok("plain"));
    origin.set("/static/gone", Reply::ok("gone").status(404));
    origin.set("/static/broken", Reply::ok("broken").status(500));
    origin.set("/nottl/plain", Reply::ok("plain"));
    origin.set("/nottl/told", Reply::cc("told", "max-age=60"));
    origin.set("/quiet/told", Reply::cc("quiet", "max-age=60"));
    let p = Proxy::start(
        &origin,
        "",
        &[
            route("static", "/static/", "{default_ttl: 60s}"),
            route("nottl", "/nottl/", "{}"),
            route("quiet", "/quiet/", "{status_header: false}"),
        ],
    )
    .await;

    p.expect("/static/plain", &[], "MISS", "plain").await;
    p.expect("/static/plain", &[], "HIT", "plain").await;
    for _ in 0..2 {
        let r = p.get("/static/gone").await;
        assert_eq!((r.status, r.body.as_str()), (404, "gone"));
    }
    assert_eq!(
        origin.count("/static/gone"),
        1,
        "a 404 is stored under default_ttl"
    );
    for _ in 0..2 {
        let r = p.get("/static/broken").await;
        assert_eq!(
            (r.status, cache_status(&r).as_str(), r.body.as_str()),
            (500, "MISS", "broken")
        );
    }
    assert_eq!(
        origin.count("/static/broken"),
        2,
        "a 500 is never stored by default_ttl"
    );

    // Without default_ttl only explicit freshness is stored.
    p.expect("/nottl/plain", &[], "MISS", "plain").await;
    p.expect("/nottl/plain", &[], "MISS", "plain").await;
    p.expect("/nottl/told", &[], "MISS", "told").await;
    p.expect("/nottl/told", &[], "HIT", "told").await;
    assert_eq!(
        (origin.count("/nottl/plain"), origin.count("/nottl/told")),
        (2, 1)
    );

    // status_header: false caches just the same, silently.
    for _ in 0..2 {
        let r = p.get("/quiet/told").await;
        assert_eq!((r.status, r.body.as_str()), (200, "quiet"));
        assert_eq!(r.header("x-cache-status"), None);
    }
    assert_eq!(origin.count("/quiet/told"), 1);
}

// ---------------------------------------------------------------------------------------------
// Variants and the key
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn vary_keeps_one_variant_per_header_value() {
    let origin = CountingOrigin::start().await;
    origin.set(
        "/static/vary",
        Reply::cc("v", "max-age=60")
            .header("vary", "Accept-Language")
            .echo("accept-language"),
    );
    let p = Proxy::start(&origin, "", &[route("static", "/static/", "{}")]).await;
    let en = [("accept-language", "en")];
    let fr = [("accept-language", "fr")];
    p.expect("/static/vary", &en, "MISS", "v|en").await;
    p.expect("/static/vary", &fr, "MISS", "v|fr").await;
    p.expect("/static/vary", &en, "HIT", "v|en").await;
    p.expect("/static/vary", &fr, "HIT", "v|fr").await;
    p.expect("/static/vary", &[], "MISS", "v|-").await;
    p.expect("/static/vary", &[], "HIT", "v|-").await;
    assert_eq!(origin.count("/static/vary"), 3);
    // A purge of the path removes every variant.
    assert_eq!(p.purge("?route=static&path=/static/vary").await, 3);
    p.expect("/static/vary", &fr, "MISS", "v|fr").await;
    assert_eq!(origin.count("/static/vary"), 4);
}

#[tokio::test]
async fn key_parts_decide_which_requests_share_an_object() {
    let origin = CountingOrigin::start().await;
    origin.set("/full/t", Reply::cc("t", "max-age=60"));
    origin.set("/full/c", Reply::cc("c", "max-age=60"));
    origin.set("/full/q", Reply::cc("q", "max-age=60"));
    origin.set("/full/h", Reply::cc("h", "max-age=60"));
    origin.set("/bare/p", Reply::cc("p", "max-age=60"));
    let p = Proxy::start(
        &origin,
        "",
        &[
            route(
                "full",
                "/full/",
                "{key: [host, path, query, 'header:X-Tenant', 'cookie:lang']}",
            ),
            route("bare", "/bare/", "{key: [path]}"),
        ],
    )
    .await;

    // header:X-Tenant
    p.expect("/full/t", &[("x-tenant", "a")], "MISS", "t").await;
    p.expect("/full/t", &[("x-tenant", "b")], "MISS", "t").await;
    p.expect("/full/t", &[("x-tenant", "a")], "HIT", "t").await;
    p.expect("/full/t", &[], "MISS", "t").await;
    assert_eq!(origin.count("/full/t"), 3);

    // cookie:lang (other cookies do not matter)
    p.expect("/full/c", &[("cookie", "lang=en")], "MISS", "c")
        .await;
    p.expect("/full/c", &[("cookie", "lang=de")], "MISS", "c")
        .await;
    p.expect("/full/c", &[("cookie", "theme=dark; lang=en")], "HIT", "c")
        .await;
    assert_eq!(origin.count("/full/c"), 2);

    // query
    p.expect("/full/q?x=1", &[], "MISS", "q").await;
    p.expect("/full/q?x=2", &[], "MISS", "q").await;
    p.expect("/full/q?x=1", &[], "HIT", "q").await;
    assert_eq!(origin.count("/full/q"), 2);

    // host
    let r = p.send("GET", "/full/h", Some("a.example"), &[]).await;
    assert_eq!(cache_status(&r), "MISS");
    let r = p.send("GET", "/full/h", Some("b.example"), &[]).await;
    assert_eq!(cache_status(&r), "MISS");
    let r = p.send("GET", "/full/h", Some("a.example"), &[]).await;
    assert_eq!(cache_status(&r), "HIT");
    assert_eq!(origin.count("/full/h"), 2);

    // key [path]: query, host and headers are ignored.
    p.expect("/bare/p?x=1", &[], "MISS", "p").await;
    p.expect("/bare/p?x=2", &[("x-tenant", "a")], "HIT", "p")
        .await;
    let r = p.send("GET", "/bare/p", Some("c.example"), &[]).await;
    assert_eq!((cache_status(&r).as_str(), r.body.as_str()), ("HIT", "p"));
    assert_eq!(origin.count("/bare/p"), 1);
}

// ---------------------------------------------------------------------------------------------
// The cache lock
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_upstream_request() {
    const CLIENTS: usize = 100;
    const LEN: usize = 64 * 1024;
    let origin = CountingOrigin::start().await;
    origin.set(
        "/static/cold",
        Reply::cc("", "max-age=60")
            .sized(LEN)
            .delay(Duration::from_millis(500)),
    );
    let p = Proxy::start(&origin, "", &[route("static", "/static/", "{}")]).await;
    let url = p.fulcrum.url("/static/cold");
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (c, url) = (p.http.clone(), url.clone());
        tasks.push(tokio::spawn(async move { get(&c, &url).await }));
    }
    let mut statuses = std::collections::BTreeMap::new();
    let want = pattern(LEN);
    for t in tasks {
        let r = t.await.expect("client task");
        assert_eq!(r.status, 200);
        assert!(r.body == want, "body of {} bytes differs", r.body.len());
        *statuses.entry(cache_status(&r)).or_insert(0usize) += 1;
    }
    assert_eq!(origin.count("/static/cold"), 1);
    assert_eq!(
        statuses,
        [("HIT".to_string(), CLIENTS - 1), ("MISS".to_string(), 1)].into(),
        "one request fetched, the others were served what it stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_go_to_the_backend_themselves_after_the_lock_timeout() {
    const CLIENTS: usize = 5;
    let origin = CountingOrigin::start().await;
    origin.set(
        "/static/stuck",
        Reply::cc("", "max-age=60")
            .sized(1000)
            .delay(Duration::from_secs(3)),
    );
    let p = Proxy::start(
        &origin,
        "{lock_timeout: 1s}",
        &[route("static", "/static/", "{}")],
    )
    .await;
    let url = p.fulcrum.url("/static/stuck");
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (c, url) = (p.http.clone(), url.clone());
        tasks.push(tokio::spawn(async move { get(&c, &url).await }));
    }
    let want = pattern(1000);
    for t in tasks {
        let r = t.await.expect("client task");
        assert_eq!(r.status, 200);
        assert!(r.body == want, "body of {} bytes differs", r.body.len());
    }
    // Waiters gave up on the first fetch and fetched for themselves.
    let n = origin.count("/static/stuck");
    assert!(
        (2..=CLIENTS).contains(&n),
        "{n} origin requests for {CLIENTS} clients"
    );
    // And the first fetch was stored.
    p.expect("/static/stuck", &[], "HIT", &want).await;
    assert_eq!(origin.count("/static/stuck"), n);
}

// ---------------------------------------------------------------------------------------------
// Stale copies
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stale_copy_is_served_when_the_backend_fails() {
    let origin = CountingOrigin::start().await;
    origin.set("/static/a", Reply::cc("old a", "max-age=1"));
    origin.set("/static/b", Reply::cc("old b", "max-age=1"));
    origin.set("/strict/c", Reply::cc("old c", "max-age=1"));
    origin.set("/static/t", Reply::cc("old t", "max-age=1"));
    origin.set(
        "/static/mr",
        Reply::cc("old mr", "max-age=1, must-revalidate"),
    );
    let p = Proxy::start_with(
        &origin,
        "",
        "timeouts: {read: 1s}",
        &[
            route("static", "/static/", "{stale_if_error: 5m}"),
            route("strict", "/strict/", "{}"),
        ],
    )
    .await;
    // A new connection per request: a connection that served a stale copy on an error may be
    // closed afterwards (see the keep-alive test below).
    let mut p = p;
    p.http = client_no_pool();
    p.expect("/static/a", &[], "MISS", "old a").await;
    p.expect("/static/b", &[], "MISS", "old b").await;
    p.expect("/strict/c", &[], "MISS", "old c").await;
    p.expect("/static/t", &[], "MISS", "old t").await;
    p.expect("/static/mr", &[], "MISS", "old mr").await;

    // The backend times out.
    origin.set(
        "/static/t",
        Reply::cc("new t", "max-age=60").delay(Duration::from_secs(3)),
    );
    let r = p.poll_until_not("/static/t", "HIT").await;
    assert_eq!(
        (r.status, cache_status(&r).as_str(), r.body.as_str()),
        (200, "STALE", "old t")
    );

    // The backend answers 500.
    origin.fail_with(500);
    let r = p.poll_until_not("/static/a", "HIT").await;
    assert_eq!(
        (r.status, cache_status(&r).as_str(), r.body.as_str()),
        (200, "STALE", "old a")
    );
    assert_eq!(origin.count("/static/a"), 2, "the origin was asked first");
    // Without stale_if_error the error goes through; so it does for `must-revalidate`.
    let r = p.poll_until_not("/strict/c", "HIT").await;
    assert_eq!((r.status, r.body.as_str()), (500, "failing"));
    let r = p.poll_until_not("/static/mr", "HIT").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "failing"),
        "must-revalidate"
    );

    // The backend is gone: connections are refused.
    origin.stop().await;
    let r = p.poll_until_not("/static/b", "HIT").await;
    assert_eq!(
        (r.status, cache_status(&r).as_str(), r.body.as_str()),
        (200, "STALE", "old b")
    );
}

/// Sends raw `GET path` requests, one connection each, until `X-Cache-Status` is not `HIT`;
/// returns that exchange (its connection read until closed or idle for 300 ms).
async fn raw_poll_until_not_hit(port: u16, path: &str) -> (RawExchange, RawResponse) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let tries = (POLL_LIMIT.as_millis() / 300) as usize;
    for _ in 0..tries {
        let ex = raw_exchange(port, req.as_bytes(), Duration::from_millis(300)).await;
        let resp = ex.responses().into_iter().next();
        let resp = resp.unwrap_or_else(|| panic!("GET {path}: no response: {}", ex.summary()));
        if resp.header("x-cache-status").as_deref() != Some("HIT") {
            return (ex, resp);
        }
    }
    panic!("GET {path} stayed HIT for {POLL_LIMIT:?}");
}

#[tokio::test]
async fn a_stale_copy_served_on_an_error_keeps_or_announces_closing_the_connection() {
    let origin = CountingOrigin::start().await;
    origin.set("/static/e", Reply::cc("old e", "max-age=1"));
    origin.set("/static/t", Reply::cc("old t", "max-age=1"));
    let p = Proxy::start_with(
        &origin,
        "",
        "timeouts: {read: 1s}",
        &[route("static", "/static/", "{stale_if_error: 5m}")],
    )
    .await;
    p.expect("/static/e", &[], "MISS", "old e").await;
    p.expect("/static/t", &[], "MISS", "old t").await;
    origin.fail_with(500);
    let (ex, resp) = raw_poll_until_not_hit(p.fulcrum.port(), "/static/e").await;
    assert_eq!(
        (resp.status, resp.header("x-cache-status").as_deref()),
        (200, Some("STALE"))
    );
    let announced = resp.header("connection").as_deref() == Some("close");
    assert!(
        announced || !ex.closed,
        "500: closed after a keep-alive answer: {}",
        ex.summary()
    );

    origin.recover();
    origin.set(
        "/static/t",
        Reply::cc("new t", "max-age=60").delay(Duration::from_secs(3)),
    );
    let (ex, resp) = raw_poll_until_not_hit(p.fulcrum.port(), "/static/t").await;
    assert_eq!(
        (resp.status, resp.header("x-cache-status").as_deref()),
        (200, Some("STALE"))
    );
    // A keep-alive answer must not be followed by a close: a client sending its next request
    // on the connection meanwhile gets a reset.
    let announced = resp.header("connection").as_deref() == Some("close");
    assert!(
        announced || !ex.closed,
        "timeout: closed after a keep-alive answer: {}",
        ex.summary()
    );

    // Connections refused: /static/e is still stale.
    origin.stop().await;
    let (ex, resp) = raw_poll_until_not_hit(p.fulcrum.port(), "/static/e").await;
    assert_eq!(
        (resp.status, resp.header("x-cache-status").as_deref()),
        (200, Some("STALE"))
    );
    let announced = resp.header("connection").as_deref() == Some("close");
    assert!(
        announced || !ex.closed,
        "refused: closed after a keep-alive answer: {}",
        ex.summary()
    );
}

#[tokio::test]
async fn a_stale_copy_is_served_while_one_background_refresh_runs() {
    let origin = CountingOrigin::start().await;
    origin.set("/static/swr", Reply::cc("v1", "max-age=1"));
    let p = Proxy::start(
        &origin,
        "",
        &[route("static", "/static/", "{stale_while_revalidate: 10s}")],
    )
    .await;
    p.expect("/static/swr", &[], "MISS", "v1").await;
    origin.set("/static/swr", Reply::cc("v2", "max-age=60"));

    let r = p.poll_until_not("/static/swr", "HIT").await;
    assert_eq!(
        (r.status, cache_status(&r).as_str(), r.body.as_str()),
        (200, "STALE", "v1"),
        "the stale copy is served at once"
    );
    let r = p.poll_until_not("/static/swr", "STALE").await;
    assert_eq!(
        (r.status, cache_status(&r).as_str(), r.body.as_str()),
        (200, "HIT", "v2"),
        "the background refresh stored the new answer"
    );
    assert_eq!(origin.count("/static/swr"), 2, "one refresh");

    // Many requests for a stale copy at once, while a slow refresh runs: one refresh.
    origin.set("/static/slow", Reply::cc("s1", "max-age=1"));
    p.expect("/static/slow", &[], "MISS", "s1").await;
    origin.set(
        "/static/slow",
        Reply::cc("s2", "max-age=60").delay(Duration::from_millis(500)),
    );
    let r = p.poll_until_not("/static/slow", "HIT").await;
    assert_eq!(
        (cache_status(&r).as_str(), r.body.as_str()),
        ("STALE", "s1")
    );
    let url = p.fulcrum.url("/static/slow");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (c, url) = (p.http.clone(), url.clone());
        tasks.push(tokio::spawn(async move { get(&c, &url).await }));
    }
    for t in tasks {
        let r = t.await.expect("client task");
        assert_eq!((r.status, r.body.as_str()), (200, "s1"));
        assert_eq!(cache_status(&r), "STALE");
    }
    let r = p.poll_until_not("/static/slow", "STALE").await;
    assert_eq!((cache_status(&r).as_str(), r.body.as_str()), ("HIT", "s2"));
    assert_eq!(
        origin.count("/static/slow"),
        2,
        "one refresh for 22 stale answers"
    );
}

// ---------------------------------------------------------------------------------------------
// HEAD and Range from a stored GET
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn head_and_ranges_are_served_from_a_stored_get() {
    let origin = CountingOrigin::start().await;
    origin.set("/static/file", Reply::cc("", "max-age=60").sized(100));
    let p = Proxy::start(&origin, "", &[route("static", "/static/", "{}")]).await;
    p.expect("/static/file", &[], "MISS", &pattern(100)).await;

    let r = p.send("HEAD", "/static/file", None, &[]).await;
    assert_eq!(
        (r.status, cache_status(&r).as_str(), r.body.as_str()),
        (200, "HIT", "")
    );
    assert_eq!(r.header("content-length").as_deref(), Some("100"));

    let r = p.get_with("/static/file", &[("range", "bytes=0-9")]).await;
    assert_eq!((r.status, r.body.as_str()), (206, "0123456789"));
    assert_eq!(r.header("content-range").as_deref(), Some("bytes 0-9/100"));
    let r = p.get_with("/static/file", &[("range", "bytes=95-")]).await;
    assert_eq!((r.status, r.body.as_str()), (206, "56789"));
    assert_eq!(
        r.header("content-range").as_deref(),
        Some("bytes 95-99/100")
    );

    let reqs = origin.requests("/static/file");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");

    // A HEAD for a cold object fetches (and stores) the whole GET.
    origin.set("/static/cold", Reply::cc("", "max-age=60").sized(50));
    let r = p.send("HEAD", "/static/cold", None, &[]).await;
    assert_eq!(
        (r.status, cache_status(&r).as_str(), r.body.as_str()),
        (200, "MISS", "")
    );
    assert_eq!(r.header("content-length").as_deref(), Some("50"));
    p.expect("/static/cold", &[], "HIT", &pattern(50)).await;
    let reqs = origin.requests("/static/cold");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
}

// ---------------------------------------------------------------------------------------------
// Purge
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn purge_by_route_path_prefix_and_everything() {
    let origin = CountingOrigin::start().await;
    for path in ["/static/a", "/static/ab", "/static/b/c", "/static/b/d"] {
        origin.set(path, Reply::cc(path, "max-age=60"));
    }
    for path in ["/other/x", "/other/y"] {
        origin.set(path, Reply::cc(path, "max-age=60"));
    }
    let p = Proxy::start(
        &origin,
        "",
        &[
            route(
                "static",
                "/static/",
                "{key: [host, path, query, 'header:X-Tenant']}",
            ),
            route("", "/other/", "{}"),
        ],
    )
    .await;
    // 7 objects: /static/a has a query variant and a tenant variant besides the plain one.
    p.expect("/static/a", &[], "MISS", "/static/a").await;
    p.expect("/static/a?v=1", &[], "MISS", "/static/a").await;
    p.expect("/static/a", &[("x-tenant", "t")], "MISS", "/static/a")
        .await;
    for path in [
        "/static/ab",
        "/static/b/c",
        "/static/b/d",
        "/other/x",
        "/other/y",
    ] {
        p.expect(path, &[], "MISS", path).await;
    }

    // The token is required.
    let r = p.admin_call("DELETE", "/cache", "").await;
    assert_eq!(r.status, 401);
    let r = p.admin_call("DELETE", "/cache", "Bearer wrong").await;
    assert_eq!(r.status, 401);
    // Unknown routes and bad parameters.
    let auth = format!("Bearer {TOKEN}");
    let r = p.admin_call("DELETE", "/cache?route=nope", &auth).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = p.admin_call("DELETE", "/cache?path=/static/a", &auth).await;
    assert_eq!(r.status, 400, "path without route: {}", r.body);
    let r = p
        .admin_call("DELETE", "/cache?route=static&colour=red", &auth)
        .await;
    assert_eq!(r.status, 400, "unknown parameter: {}", r.body);
    p.expect("/static/a", &[], "HIT", "/static/a").await;

    // One path, every variant of it, nothing else.
    assert_eq!(p.purge("?route=static&path=/static/a").await, 3);
    p.expect("/static/ab", &[], "HIT", "/static/ab").await;
    p.expect("/static/a?v=1", &[], "MISS", "/static/a").await;

    // A prefix.
    assert_eq!(p.purge("?route=static&prefix=/static/b/").await, 2);
    p.expect("/static/b/c", &[], "MISS", "/static/b/c").await;
    p.expect("/static/ab", &[], "HIT", "/static/ab").await;

    // A route by its label (it has no name), as in the metrics.
    assert_eq!(p.purge("?route=/other/").await, 2);
    p.expect("/other/x", &[], "MISS", "/other/x").await;
    p.expect("/static/a?v=1", &[], "HIT", "/static/a").await;
    // By its index in `routes:`, as in GET /routes.
    p.expect("/other/x", &[], "HIT", "/other/x").await;
    assert_eq!(p.purge("?route=1").await, 1);
    p.expect("/other/x", &[], "MISS", "/other/x").await;

    // A route by name: /static/a?v=1, /static/ab, /static/b/c.
    p.expect("/static/b/c", &[], "HIT", "/static/b/c").await;
    assert_eq!(p.purge("?route=static").await, 3);
    p.expect("/other/x", &[], "HIT", "/other/x").await;
    p.expect("/static/ab", &[], "MISS", "/static/ab").await;

    // Everything: /other/x, /static/ab (a HIT shows each is stored).
    p.expect("/static/ab", &[], "HIT", "/static/ab").await;
    assert_eq!(p.purge("").await, 2);
    p.expect("/other/x", &[], "MISS", "/other/x").await;
    p.expect("/static/ab", &[], "MISS", "/static/ab").await;
    p.expect("/other/x", &[], "HIT", "/other/x").await;
    p.expect("/static/ab", &[], "HIT", "/static/ab").await;
    assert_eq!(p.purge("").await, 2);
    assert_eq!(p.purge("").await, 0);
}

// ---------------------------------------------------------------------------------------------
// Memory, metrics, access log
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn memory_stays_within_max_size_by_evicting_old_objects() {
    const OBJECTS: usize = 60;
    const LEN: usize = 64 * 1024;
    const MAX: f64 = (1 << 20) as f64;
    let origin = CountingOrigin::start().await;
    for i in 0..OBJECTS {
        origin.set(
            &format!("/static/m{i}"),
            Reply::cc("", "max-age=600").sized(LEN),
        );
    }
    origin.set(
        "/static/huge",
        Reply::cc("", "max-age=600").sized(300 * 1024),
    );
    origin.set(
        "/static/huge-chunked",
        Reply::cc("", "max-age=600").sized(300 * 1024).chunked(),
    );
    origin.set(
        "/static/small-chunked",
        Reply::cc("", "max-age=600").sized(100 * 1024).chunked(),
    );
    let p = Proxy::start(
        &origin,
        "{max_size: 1MiB, max_object_size: 256KiB}",
        &[route("static", "/static/", "{}")],
    )
    .await;
    let want = pattern(LEN);
    for i in 0..OBJECTS {
        let path = format!("/static/m{i}");
        let r = p.get(&path).await;
        assert_eq!(
            (r.status, cache_status(&r).as_str()),
            (200, "MISS"),
            "{path}"
        );
        assert!(r.body == want, "{path}: body of {} bytes", r.body.len());
        let size = metric(&p.metrics().await, "fulcrum_cache_size_bytes", &[]);
        let size = size.expect("fulcrum_cache_size_bytes");
        assert!(size <= MAX, "after {path}: {size} bytes held");
        // m0 is used after every other object is stored: it stays the most recently used.
        if i > 0 {
            p.expect("/static/m0", &[], "HIT", &want).await;
        }
    }
    let held_or_evicted = |text: &str| {
        let objects = metric(text, "fulcrum_cache_objects", &[]).unwrap_or(0.0);
        let evictions = metric(text, "fulcrum_cache_evictions_total", &[]).unwrap_or(0.0);
        objects + evictions == OBJECTS as f64
    };
    let text = p.metrics_when(held_or_evicted).await;
    let objects = metric(&text, "fulcrum_cache_objects", &[]).expect("fulcrum_cache_objects");
    let evictions =
        metric(&text, "fulcrum_cache_evictions_total", &[]).expect("fulcrum_cache_evictions_total");
    assert!(objects <= 16.0, "{objects} objects of 64KiB in 1MiB");
    assert_eq!(
        objects + evictions,
        OBJECTS as f64,
        "every object stored, then kept or evicted"
    );
    // The least recently used ones are gone; the last one and m0 are still there.
    p.expect(&format!("/static/m{}", OBJECTS - 1), &[], "HIT", &want)
        .await;
    p.expect("/static/m0", &[], "HIT", &want).await;
    p.expect("/static/m1", &[], "MISS", &want).await;
    p.expect("/static/m2", &[], "MISS", &want).await;
    assert_eq!(origin.count("/static/m0"), 1);

    // Larger than max_object_size: passed through whole, never stored; also when the size
    // is known only at the end (chunked). A chunked object within the limit is stored.
    let huge = pattern(300 * 1024);
    for path in ["/static/huge", "/static/huge-chunked"] {
        for _ in 0..2 {
            let r = p.get(path).await;
            assert_eq!(
                (r.status, cache_status(&r).as_str()),
                (200, "MISS"),
                "{path}"
            );
            assert!(r.body == huge, "{path}: body of {} bytes", r.body.len());
        }
        assert_eq!(origin.count(path), 2, "{path}");
    }
    let small = pattern(100 * 1024);
    p.expect("/static/small-chunked", &[], "MISS", &small).await;
    p.expect("/static/small-chunked", &[], "HIT", &small).await;
    let size = metric(&p.metrics().await, "fulcrum_cache_size_bytes", &[]).unwrap();
    assert!(size <= MAX, "{size} bytes held");
}

#[tokio::test]
async fn metrics_count_every_cache_status_and_what_is_held() {
    let origin = CountingOrigin::start().await;
    origin.set("/static/m", Reply::cc("", "max-age=60").sized(1000));
    origin.set("/static/exp", Reply::cc("e", "max-age=1"));
    let p = Proxy::start(&origin, "", &[route("static", "/static/", "{}")]).await;
    // What the client saw, by X-Cache-Status.
    let mut seen = std::collections::BTreeMap::<String, f64>::new();
    let body = pattern(1000);
    for want in ["MISS", "HIT", "HIT"] {
        let r = p.expect("/static/m", &[], want, &body).await;
        *seen.entry(cache_status(&r)).or_default() += 1.0;
    }
    let r = p.send("POST", "/static/m", None, &[]).await;
    assert_eq!(cache_status(&r), "BYPASS");
    *seen.entry(cache_status(&r)).or_default() += 1.0;
    // Until the short-lived object expires: a MISS, some HITs, an EXPIRED.
    let tries = (POLL_LIMIT.as_millis() / POLL_EVERY.as_millis()) as usize;
    for _ in 0..tries {
        let r = p.get("/static/exp").await;
        *seen.entry(cache_status(&r)).or_default() += 1.0;
        if cache_status(&r) == "EXPIRED" {
            break;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    assert_eq!(seen.get("EXPIRED"), Some(&1.0), "{seen:?}");
    assert_eq!(seen.get("MISS"), Some(&2.0), "{seen:?}");

    // A request is counted as it is logged, just after its last byte went out: poll.
    let statuses = ["HIT", "MISS", "EXPIRED", "STALE", "REVALIDATED", "BYPASS"];
    let count = |text: &str, status: &str| {
        let labels = [
            ("route", "static"),
            ("status", &*status.to_ascii_lowercase()),
        ];
        metric(text, "fulcrum_cache_requests_total", &labels)
    };
    let settled = |t: &str| {
        metric(t, "fulcrum_cache_objects", &[]) == Some(2.0)
            && statuses
                .iter()
                .all(|s| count(t, s) == Some(seen.get(*s).copied().unwrap_or(0.0)))
    };
    let text = p.metrics_when(settled).await;
    // Every status has its series from the start; each counts what the client saw.
    for status in statuses {
        assert_eq!(
            count(&text, status),
            Some(seen.get(status).copied().unwrap_or(0.0)),
            "{status}:\n{text}"
        );
    }
    assert_eq!(
        metric(&text, "fulcrum_cache_objects", &[]),
        Some(2.0),
        "{text}"
    );
    let size = metric(&text, "fulcrum_cache_size_bytes", &[]).expect("size");
    assert!(size >= 1001.0, "{size} bytes held for bodies of 1001 bytes");

    assert_eq!(p.purge("").await, 2);
    let text = p.metrics().await;
    assert_eq!(
        metric(&text, "fulcrum_cache_objects", &[]),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "fulcrum_cache_size_bytes", &[]),
        Some(0.0),
        "{text}"
    );
}

#[tokio::test]
async fn the_access_log_names_the_cache_status() {
    let origin = CountingOrigin::start().await;
    origin.set("/static/log", Reply::cc("log", "max-age=60"));
    origin.set("/plain/log", Reply::cc("plain", "max-age=60"));
    let p = Proxy::start(
        &origin,
        "",
        &[
            route("static", "/static/", "{}"),
            route("plain", "/plain/", ""),
        ],
    )
    .await;
    p.expect("/static/log?n=1", &[], "MISS", "log").await;
    p.expect("/static/log?n=1", &[], "HIT", "log").await;
    let r = p.get("/plain/log").await;
    assert_eq!((r.status, r.header("x-cache-status")), (200, None));
    p.wait_for_log_line(&["\"GET /static/log?n=1 HTTP/1.1\" 200 ", "cache=MISS"])
        .await;
    p.wait_for_log_line(&["\"GET /static/log?n=1 HTTP/1.1\" 200 ", "cache=HIT"])
        .await;
    p.wait_for_log_line(&["\"GET /plain/log HTTP/1.1\" 200 "])
        .await;
    let log = p.fulcrum.stderr();
    let plain: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"GET /plain/log HTTP/1.1\""))
        .collect();
    assert_eq!(plain.len(), 1);
    assert!(
        !plain[0].contains("cache="),
        "a route without cache: {}",
        plain[0]
    );
}

#[tokio::test]
async fn a_chunked_response_is_stored_like_any_other() {
    let origin = CountingOrigin::start().await;
    origin.set(
        "/static/c",
        Reply::cc("", "max-age=60").sized(1000).chunked(),
    );
    let p = Proxy::start(&origin, "", &[route("static", "/static/", "{}")]).await;
    p.expect("/static/c", &[], "MISS", &pattern(1000)).await;
    p.expect("/static/c", &[], "HIT", &pattern(1000)).await;
    let r = p.get_with("/static/c", &[("range", "bytes=990-")]).await;
    assert_eq!((r.status, r.body.as_str()), (206, "0123456789"));
    assert_eq!(origin.count("/static/c"), 1);
}

/// `curl` GET of `url` with `Accept-Encoding: accept` (none when empty): the status, the
/// `X-Cache-Status` and `Content-Encoding` headers, and the body decoded by curl itself.
fn curl_decoded(url: &str, accept: &str) -> (String, Vec<u8>) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "--compressed", "-o", "-", "-w"]);
    cmd.arg("\n%{http_code} %header{x-cache-status} [%header{content-encoding}]");
    if !accept.is_empty() {
        cmd.args(["-H", &format!("Accept-Encoding: {accept}")]);
    } else {
        // Without --compressed's own offer: no Accept-Encoding at all.
        cmd.args(["-H", "Accept-Encoding:"]);
    }
    cmd.arg(url);
    let out = cmd.output().expect("curl runs");
    assert!(out.status.success(), "curl {url}: {out:?}");
    let split = out
        .stdout
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("trailer");
    let summary = String::from_utf8_lossy(&out.stdout[split + 1..]).to_string();
    (summary, out.stdout[..split].to_vec())
}

/// Compression runs on the way out of the cache: one stored identity copy answers clients
/// that take zstd, Brotli, gzip or nothing, each byte-exact once decoded (by curl's own
/// decoders), and the origin is asked once.
#[tokio::test]
async fn one_stored_copy_is_compressed_for_each_client_on_the_way_out() {
    let origin = CountingOrigin::start().await;
    let body = "a stored page that compresses well ".repeat(300);
    origin.set(
        "/static/page.txt",
        Reply::cc(&body, "max-age=60").header("content-type", "text/plain"),
    );
    let mut r = route("static", "/static/", "{}");
    r.push_str("    compression: {gzip: 6, brotli: 4, zstd: 3}\n");
    let p = Proxy::start(&origin, "", &[r]).await;
    let url = p.fulcrum.url("/static/page.txt");
    let asks = [
        ("gzip", "200 MISS [gzip]"),
        ("zstd", "200 HIT [zstd]"),
        ("br", "200 HIT [br]"),
        ("gzip;q=1, br;q=0.5", "200 HIT [gzip]"),
        ("", "200 HIT []"),
    ];
    for (accept, want) in asks {
        let url = url.clone();
        let (summary, decoded) = tokio::task::spawn_blocking(move || curl_decoded(&url, accept))
            .await
            .unwrap();
        assert_eq!(summary, want, "Accept-Encoding: {accept}");
        assert!(
            decoded == body.as_bytes(),
            "Accept-Encoding: {accept}: body differs"
        );
    }
    assert_eq!(origin.count("/static/page.txt"), 1);
}
