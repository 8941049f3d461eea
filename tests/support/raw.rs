//! Raw TCP clients for what reqwest cannot send: arbitrary bytes to a port, and the responses
//! that come back parsed leniently ([`raw_http`], [`raw_exchange`], [`RawExchange`]).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes to 127.0.0.1:`port` and reads until the server closes the connection (send
/// `Connection: close`), at most 10 s. Returns the raw response text.
pub async fn raw_http(port: u16, request: &[u8]) -> String {
    let fut = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request).await?;
        stream.flush().await?;
        let mut out = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        for _ in 0..100_000 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(out)
    };
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Ok(Err(e)) => panic!("raw request to port {port} failed: {e}"),
        Err(_) => panic!("raw request to port {port} timed out"),
    }
}

/// The status code of a raw HTTP response text (`HTTP/1.1 200 OK...` -> 200).
pub fn raw_status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in raw response: {response:?}"))
}

/// One HTTP response parsed out of raw bytes by [`RawExchange::responses`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header fields: (lowercase name, value).
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked; up to EOF when the response has no length).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header's values joined with `", "`, `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<&str> = self
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    }

    /// Body as (lossy) UTF-8.
    pub fn body_string(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What came back on one TCP connection after [`raw_exchange`] wrote raw bytes to it.
#[derive(Debug, Clone, Default)]
pub struct RawExchange {
    /// Every byte the server sent.
    pub bytes: Vec<u8>,
    /// The server closed the connection (EOF or reset) before the client stopped waiting.
    pub closed: bool,
    /// Writing the request failed part-way (the server closed or reset early).
    pub write_error: Option<String>,
    /// Reading failed (typically a reset after the server's answer).
    pub read_error: Option<String>,
    /// The client stopped waiting: nothing arrived within the first-byte timeout.
    pub timed_out: bool,
}

impl RawExchange {
    /// The bytes as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The responses in [`bytes`](Self::bytes), in order; an incomplete trailing one is
    /// dropped. Interim (1xx) responses are included.
    pub fn responses(&self) -> Vec<RawResponse> {
        parse_raw_responses(&self.bytes, self.closed)
    }

    /// The status codes of [`responses`](Self::responses).
    pub fn statuses(&self) -> Vec<u16> {
        self.responses().iter().map(|r| r.status).collect()
    }

    /// A one-line summary for messages and tables: `400, closed` / `200 200` / `closed, no
    /// response` / `no answer within the timeout`.
    pub fn summary(&self) -> String {
        let statuses: Vec<String> = self.statuses().iter().map(|s| s.to_string()).collect();
        let mut out = if statuses.is_empty() {
            if self.bytes.is_empty() {
                "no response".to_string()
            } else {
                format!("{} unparseable bytes", self.bytes.len())
            }
        } else {
            statuses.join(" ")
        };
        if self.closed {
            out.push_str(", closed");
        } else if self.timed_out {
            out.push_str(", no answer within the timeout (connection left open)");
        } else {
            out.push_str(", kept open");
        }
        out
    }
}

fn parse_raw_responses(bytes: &[u8], closed: bool) -> Vec<RawResponse> {
    let mut out = Vec::new();
    let mut pos = 0;
    // Bounded: each iteration consumes at least the head of one response.
    for _ in 0..10_000 {
        let Some(rel) = bytes[pos..].windows(4).position(|w| w == b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&bytes[pos..pos + rel]).into_owned();
        let body_start = pos + rel + 4;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let Some(status) = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|s| s.get(2..5))
            .and_then(|s| s.parse::<u16>().ok())
        else {
            break;
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let no_body = (100..200).contains(&status) || status == 204 || status == 304;
        let (body, next) = if no_body {
            (Vec::new(), body_start)
        } else if get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            let mut body = Vec::new();
            let mut p = body_start;
            let mut complete = false;
            for _ in 0..1_000_000 {
                let Some(lf) = bytes[p..].windows(2).position(|w| w == b"\r\n") else {
                    break;
                };
                let size_text = String::from_utf8_lossy(&bytes[p..p + lf]).into_owned();
                let Ok(size) =
                    usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                else {
                    break;
                };
                p += lf + 2;
                if size == 0 {
                    // Skip trailers up to the empty line.
                    match bytes[p..].windows(2).position(|w| w == b"\r\n") {
                        Some(0) => {
                            p += 2;
                            complete = true;
                        }
                        Some(_) => {
                            if let Some(e) = bytes[p..].windows(4).position(|w| w == b"\r\n\r\n") {
                                p += e + 4;
                                complete = true;
                            }
                        }
                        None => {}
                    }
                    break;
                }
                if bytes.len() < p + size + 2 {
                    break;
                }
                body.extend_from_slice(&bytes[p..p + size]);
                p += size + 2;
            }
            if !complete {
                break;
            }
            (body, p)
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            if bytes.len() < body_start + len {
                break;
            }
            (
                bytes[body_start..body_start + len].to_vec(),
                body_start + len,
            )
        } else {
            if !closed {
                break;
            }
            (bytes[body_start..].to_vec(), bytes.len())
        };
        out.push(RawResponse {
            status,
            headers,
            body,
        });
        pos = next;
        if pos >= bytes.len() {
            break;
        }
    }
    out
}

/// Connects to 127.0.0.1:`port`, writes `request` (all at once), and reads what comes back:
/// until the server closes the connection, or nothing arrives for `idle` after the last byte
/// received, or nothing at all arrives within 5 s (then `timed_out`). The whole exchange is
/// bounded by 15 s. Write errors (a server that answers and closes before the request is fully
/// written) are recorded, not fatal: the answer is still read.
pub async fn raw_exchange(port: u16, request: &[u8], idle: Duration) -> RawExchange {
    let first_byte = Duration::from_secs(5);
    let fut = async {
        let mut ex = RawExchange::default();
        let mut stream = match tokio::time::timeout(
            Duration::from_secs(5),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => panic!("connect to 127.0.0.1:{port}: {e}"),
            Err(_) => panic!("connect to 127.0.0.1:{port} timed out"),
        };
        let _ = stream.set_nodelay(true);
        if let Err(e) = stream.write_all(request).await {
            ex.write_error = Some(e.to_string());
        } else {
            let _ = stream.flush().await;
        }
        let mut chunk = vec![0u8; 64 * 1024];
        for _ in 0..100_000 {
            let wait = if ex.bytes.is_empty() {
                first_byte
            } else {
                idle
            };
            match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
                Ok(Ok(0)) => {
                    ex.closed = true;
                    break;
                }
                Ok(Ok(n)) => ex.bytes.extend_from_slice(&chunk[..n]),
                Ok(Err(e)) => {
                    ex.read_error = Some(e.to_string());
                    ex.closed = true;
                    break;
                }
                Err(_) => {
                    ex.timed_out = ex.bytes.is_empty();
                    break;
                }
            }
        }
        ex
    };
    match tokio::time::timeout(Duration::from_secs(15), fut).await {
        Ok(ex) => ex,
        Err(_) => panic!("raw exchange with port {port} did not finish within 15 s"),
    }
}
