//! The request `fulcrum route` explains, built from its command line the way curl would send
//! it: an absolute URL becomes an origin-form target with the URL's host as `Host`.

use pingora_http::RequestHeader;

/// Why the command line does not describe a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// No method and URL.
    Missing,
    /// The method is not a valid HTTP method token.
    Method(String),
    /// The URL's host part is not a valid authority.
    Authority(String),
    /// The target cannot be a request target at all (spaces, control characters).
    Target(String),
    /// A `-H` value is not `name: value`, or not a valid header.
    Header(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Missing => write!(f, "give the request as 'METHOD URL'"),
            RequestError::Method(m) => write!(f, "{m:?} is not an HTTP method"),
            RequestError::Authority(a) => write!(f, "{a:?} is not a valid host[:port]"),
            RequestError::Target(t) => write!(f, "{t:?} is not a request target"),
            RequestError::Header(h) => write!(f, "-H {h:?}: expected 'name: value'"),
        }
    }
}

impl std::error::Error for RequestError {}

/// A request as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// The method, as given.
    pub method: String,
    /// `Some(true)` for an `https://` URL, `Some(false)` for `http://`, `None` for a path.
    pub https: Option<bool>,
    /// The URL's authority (`host[:port]`), for an absolute URL.
    pub authority: Option<String>,
    /// The URL's port, if it names one.
    pub port: Option<u16>,
    /// The request target sent: the path and query (or the target as given, for a path).
    pub target: String,
    /// Header fields from `-H`, in order.
    pub headers: Vec<(String, String)>,
}

/// Read `words` (`["GET", "https://host/path"]`, `["GET https://host/path"]`, or just a URL
/// for a GET) and the `-H 'name: value'` arguments.
pub fn parse(words: &[String], headers: &[String]) -> Result<RequestSpec, RequestError> {
    let joined = words.join(" ");
    let mut parts = joined.split_whitespace();
    let (method, url) = match (parts.next(), parts.next(), parts.next()) {
        (Some(url), None, None) => ("GET", url),
        (Some(method), Some(url), None) => (method, url),
        (None, ..) => return Err(RequestError::Missing),
        _ => return Err(RequestError::Target(joined)),
    };
    if http::Method::from_bytes(method.as_bytes()).is_err() {
        return Err(RequestError::Method(method.into()));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let (https, rest) = if lower.starts_with("https://") {
        (Some(true), &url[8..])
    } else if lower.starts_with("http://") {
        (Some(false), &url[7..])
    } else {
        (None, url)
    };
    let (authority, port, target) = match https {
        None => (None, None, url.to_string()),
        Some(_) => {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, target) = rest.split_at(end);
            let parsed: http::uri::Authority = authority
                .parse()
                .map_err(|_| RequestError::Authority(authority.into()))?;
            if authority.is_empty() || authority.contains('@') {
                return Err(RequestError::Authority(authority.into()));
            }
            let target = match target {
                "" => "/".to_string(),
                t if t.starts_with('?') => format!("/{t}"),
                t => t.to_string(),
            };
            (Some(authority.to_string()), parsed.port_u16(), target)
        }
    };
    let headers = headers
        .iter()
        .map(|h| match h.split_once(':') {
            Some((n, v)) if !n.trim().is_empty() => {
                Ok((n.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(RequestError::Header(h.clone())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RequestSpec {
        method: method.into(),
        https,
        authority,
        port,
        target,
        headers,
    })
}

impl RequestSpec {
    /// The request head an HTTP/1.1 client sends: the target, then the `-H` fields, and a
    /// `Host` from the URL unless `-H` gave one.
    pub fn head(&self) -> Result<RequestHeader, RequestError> {
        let mut req = RequestHeader::build(self.method.as_str(), self.target.as_bytes(), None)
            .map_err(|_| RequestError::Target(self.target.clone()))?;
        let has_host = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("host"));
        if let (Some(authority), false) = (&self.authority, has_host) {
            req.append_header(http::header::HOST, authority.as_str())
                .map_err(|_| RequestError::Authority(authority.clone()))?;
        }
        for (name, value) in &self.headers {
            req.append_header(name.clone(), value.as_str())
                .map_err(|_| RequestError::Header(format!("{name}: {value}")))?;
        }
        Ok(req)
    }

    /// The request as the user wrote it: `GET https://api.example.com/x`.
    pub fn line(&self) -> String {
        match (&self.authority, self.https) {
            (Some(a), Some(tls)) => {
                let scheme = if tls { "https" } else { "http" };
                format!("{} {scheme}://{a}{}", self.method, self.target)
            }
            _ => format!("{} {}", self.method, self.target),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn absolute_urls_become_host_and_target() {
        let r = parse(&words(&["GET https://API.example.com:8443?x=1"]), &[]).unwrap();
        assert_eq!(r.https, Some(true));
        assert_eq!(r.authority.as_deref(), Some("API.example.com:8443"));
        assert_eq!(r.port, Some(8443));
        assert_eq!(r.target, "/?x=1");
        let head = r.head().unwrap();
        assert_eq!(head.uri.path(), "/");
        assert_eq!(head.headers.get("host").unwrap(), "API.example.com:8443");
        let r = parse(&words(&["POST", "http://a.test/x/../y"]), &[]).unwrap();
        assert_eq!((r.https, r.port), (Some(false), None));
        assert_eq!(r.target, "/x/../y");
        assert_eq!(r.line(), "POST http://a.test/x/../y");
    }

    #[test]
    fn paths_take_their_host_from_headers() {
        let h = words(&["host: b.test", "X-Canary:true"]);
        let r = parse(&words(&["/api"]), &h).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.https, None);
        let head = r.head().unwrap();
        assert_eq!(head.headers.get("host").unwrap(), "b.test");
        assert_eq!(head.headers.get("x-canary").unwrap(), "true");
        // -H host wins over the URL's.
        let r = parse(&words(&["GET http://a.test/"]), &words(&["Host: c.test"])).unwrap();
        let head = r.head().unwrap();
        assert_eq!(head.headers.get_all("host").iter().count(), 1);
        assert_eq!(head.headers.get("host").unwrap(), "c.test");
    }

    #[test]
    fn malformed_command_lines_are_errors() {
        assert_eq!(parse(&[], &[]), Err(RequestError::Missing));
        assert_eq!(
            parse(&words(&["G@T /"]), &[]),
            Err(RequestError::Method("G@T".into()))
        );
        assert_eq!(
            parse(&words(&["GET /"]), &words(&["nocolon"])),
            Err(RequestError::Header("nocolon".into()))
        );
        assert!(matches!(
            parse(&words(&["GET http://a b/"]), &[]),
            Err(RequestError::Target(_))
        ));
        assert!(matches!(
            parse(&words(&["GET http://u@h/"]), &[]),
            Err(RequestError::Authority(_))
        ));
    }
}
