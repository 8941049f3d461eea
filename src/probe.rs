//! `fulcrum health -c FILE`: ask the fulcrum running on FILE whether it serves, through its
//! admin listener's `/health`, for container `HEALTHCHECK`s and scripts (as `traefik
//! healthcheck` does), so that an image needs no curl.
//!
//! Exit status 0 when `/health` answers `200`, 1 otherwise (not serving yet, a group with no
//! backend, nothing listening, no admin listener in the config). The admin token, when the
//! config has one, is sent as a bearer token.

use crate::config::model::Admin;
use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

/// `fulcrum health`'s arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct HealthArgs {
    /// The config of the fulcrum to ask (its `admin` section says where and how).
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    pub conf: PathBuf,
    /// How long to wait for the answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub timeout: f64,
}

/// Why the probe failed.
#[derive(Debug)]
pub enum ProbeError {
    /// The config has no `admin` section, so there is nothing to ask.
    NoAdmin,
    /// The admin listener could not be reached or did not answer in time.
    Io(SocketAddr, std::io::Error),
    /// The answer was not an HTTP response.
    Garbled(SocketAddr),
    /// `/health` answered, but not `200`: the first line of its body says why.
    Unhealthy {
        /// The status code.
        status: u16,
        /// The body's first line.
        reason: String,
    },
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::NoAdmin => write!(f, "the config has no `admin` listener to ask"),
            ProbeError::Io(addr, e) => write!(f, "http://{addr}/health: {e}"),
            ProbeError::Garbled(addr) => write!(f, "http://{addr}/health: not an HTTP answer"),
            ProbeError::Unhealthy { status, reason } => write!(f, "{status} {reason}"),
        }
    }
}

impl std::error::Error for ProbeError {}

/// Ask the admin listener of `admin` for `/health`; the first line of the body on `200`.
pub fn probe(admin: Option<&Admin>, timeout: Duration) -> Result<String, ProbeError> {
    let admin = admin.ok_or(ProbeError::NoAdmin)?;
    let addr = admin.addr;
    let io = |e| ProbeError::Io(addr, e);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = &admin.token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = Vec::new();
    // The answer is a few lines; read at most 64 KiB of it.
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(io)?;
    let (status, body) = parse(&answer).ok_or(ProbeError::Garbled(addr))?;
    let reason = body.lines().next().unwrap_or("").trim().to_string();
    match status {
        200 => Ok(reason),
        status => Err(ProbeError::Unhealthy { status, reason }),
    }
}

/// The status code and body of an HTTP/1.x response read to its end.
fn parse(answer: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    let mut words = status_line.split(' ');
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = words.next()?.parse().ok()?;
    Some((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_status_and_body() {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 9\r\n\r\nstarting\n";
        assert_eq!(parse(answer), Some((503, "starting\n".into())));
        assert_eq!(parse(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse(b"HTTP/1.1 abc\r\n\r\n"), None);
    }
}
