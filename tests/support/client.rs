//! The client side over reqwest: clients with timeouts, [`Resp`] (a fully read response), and
//! request helpers that panic with the URL on transport errors.

use std::time::Duration;

/// A reqwest client: no proxy from the environment, 10 s timeout, HTTP/1.1.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build reqwest client")
}

/// Like [`client`] but never reuses a connection (a new TCP connection per request).
pub fn client_no_pool() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .expect("build reqwest client")
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    /// All values of a response header, empty when absent.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// A response header's values joined with `", "`, `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.header_all(name);
        if values.is_empty() {
            None
        } else {
            Some(values.join(", "))
        }
    }
}

/// Sends a request and reads the whole response. Panics (naming the URL) on transport errors.
pub async fn request(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    match try_request(client, method, url, host, headers, body).await {
        Ok(resp) => resp,
        Err(e) => panic!("{method} {url} (host {host:?}) failed: {e:?}"),
    }
}

/// Like [`request`] but returns transport errors.
pub async fn try_request(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Resp, reqwest::Error> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
    let mut builder = client.request(method, url);
    if let Some(host) = host {
        builder = builder.header(reqwest::header::HOST, host);
    }
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    if let Some(body) = body {
        builder = builder.body(body);
    }
    let resp = builder.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// GET `url`.
pub async fn get(client: &reqwest::Client, url: &str) -> Resp {
    request(client, "GET", url, None, &[], None).await
}

/// GET `url` with the given `Host` header.
pub async fn get_host(client: &reqwest::Client, url: &str, host: &str) -> Resp {
    request(client, "GET", url, Some(host), &[], None).await
}

/// GET `url` with extra headers (and optionally a Host header).
pub async fn get_with(
    client: &reqwest::Client,
    url: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    request(client, "GET", url, host, headers, None).await
}

/// Sends `n` GETs to `url` (optionally with a Host header) one after another and returns the
/// response bodies, panicking on any non-200 status.
pub async fn bodies(
    client: &reqwest::Client,
    url: &str,
    host: Option<&str>,
    n: usize,
) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let resp = request(client, "GET", url, host, &[], None).await;
        assert_eq!(
            resp.status, 200,
            "request #{i} to {url}: expected 200, got {} with body {:?}",
            resp.status, resp.body
        );
        out.push(resp.body);
    }
    out
}

/// Asserts a body is a short plain message (non-empty, under 512 bytes, not an HTML page).
pub fn assert_short_body(resp: &Resp, what: &str) {
    assert!(
        !resp.body.trim().is_empty(),
        "{what}: expected a short non-empty body, got an empty one (status {})",
        resp.status
    );
    assert!(
        resp.body.len() < 512,
        "{what}: expected a short body, got {} bytes: {:?}",
        resp.body.len(),
        resp.body
    );
    assert!(
        !resp.body.to_ascii_lowercase().contains("<html"),
        "{what}: expected a plain body, got HTML: {:?}",
        resp.body
    );
}
