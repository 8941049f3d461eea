//! The request target, checked and normalized before anything routes on it.
//!
//! Two steps, both pure functions of the request line:
//!
//! 1. [`classify`] checks the target's form (RFC 9112 section 3.2): origin-form (`/x?q`) and
//!    absolute-form (`http://host/x`) are served; asterisk-form (`*`) only for `OPTIONS`;
//!    anything else (`public`, `x:/admin`, `host:80`) is a 400, and `CONNECT` is refused with
//!    a 405 (fulcrum is not a forward proxy). An absolute-form target names the request's host
//!    (section 3.2.2): fulcrum routes by it and forwards the request in origin-form with that
//!    `Host`, so the route and the backend see the same host.
//! 2. [`normalize_path`] normalizes the path (RFC 3986 section 6.2.2), so that one resource
//!    has one spelling for routing, for every route policy (rate limits, body limits, header
//!    rules, HTTPS redirects) and for the backend, which receives the normalized path:
//!    - percent-encoded unreserved characters are decoded (`%70ublic` is `public`, `%2e` is
//!      `.`), and the hex digits of the other escapes are upper-cased (`%2f` is `%2F`);
//!    - runs of `/` are merged into one (nginx's `merge_slashes on`, its default);
//!    - `.` and `..` segments are removed (section 5.2.4); a path whose `..` climbs above
//!      `/` is a 400, as it is for nginx;
//!    - `%2F` (an encoded `/`) stays encoded and is not a segment separator, so
//!      `/a%2F..%2Fb` is one segment (Envoy's default, `KEEP_UNCHANGED`; nginx decodes it);
//!    - a malformed escape (`%zz`, `%4`) is a 400.
//!
//! The query is left as it is.

use pingora_http::RequestHeader;
use std::borrow::Cow;

/// Why a request target cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// Neither origin-form nor absolute-form (nor `*` for `OPTIONS`): 400.
    Form,
    /// A `CONNECT` request: fulcrum does not tunnel (405).
    Connect,
    /// The absolute-form authority is not a valid host: 400.
    BadHost,
    /// The path's `..` segments climb above `/`: 400.
    AboveRoot,
    /// A `%` not followed by two hex digits: 400.
    BadEscape,
}

impl TargetError {
    /// The status and short body fulcrum answers with.
    pub fn answer(self) -> (u16, &'static str) {
        match self {
            TargetError::Form => (
                400,
                "400 Bad Request: the request target must be a path or an http(s) URL\n",
            ),
            TargetError::Connect => (405, "405 Method Not Allowed: CONNECT is not served here\n"),
            TargetError::BadHost => (400, "400 Bad Request: bad host in the request target\n"),
            TargetError::AboveRoot => (400, "400 Bad Request: the path climbs above /\n"),
            TargetError::BadEscape => (
                400,
                "400 Bad Request: malformed percent-encoding in the path\n",
            ),
        }
    }
}

/// The form of a request target that fulcrum serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Form<'a> {
    /// `/path?query`: route on the path.
    Origin,
    /// `*` of `OPTIONS *`: routed as `/`, forwarded unchanged.
    Asterisk,
    /// `http://authority/path?query`: the authority is the request's host.
    Absolute {
        /// The authority, as sent (`host` or `host:port`).
        authority: &'a str,
        /// The path and query after the authority; empty means `/`.
        path_and_query: &'a str,
    },
}

/// Classify the raw request target of a request with `method`.
pub fn classify<'a>(method: &http::Method, raw: &'a [u8]) -> Result<Form<'a>, TargetError> {
    if method == http::Method::CONNECT {
        return Err(TargetError::Connect);
    }
    match raw.first() {
        Some(b'/') => return Ok(Form::Origin),
        Some(b'*') if raw.len() == 1 && method == http::Method::OPTIONS => {
            return Ok(Form::Asterisk)
        }
        _ => {}
    }
    use pingora_http::authority::{raw_target_authority, RawTargetAuthority};
    match raw_target_authority(raw) {
        RawTargetAuthority::Absolute {
            scheme,
            authority,
            path_and_query,
        } if scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https") => {
            let authority = std::str::from_utf8(authority).map_err(|_| TargetError::BadHost)?;
            if authority.is_empty() || !super::host::is_valid(authority) {
                return Err(TargetError::BadHost);
            }
            let path_and_query =
                std::str::from_utf8(path_and_query).map_err(|_| TargetError::Form)?;
            if !(path_and_query.is_empty()
                || path_and_query.starts_with('/')
                || path_and_query.starts_with('?'))
            {
                return Err(TargetError::Form);
            }
            Ok(Form::Absolute {
                authority,
                path_and_query,
            })
        }
        _ => Err(TargetError::Form),
    }
}

/// Check the target of `req` and bring it to the form fulcrum routes on and forwards: an
/// absolute-form target becomes origin-form with its authority as the `Host`, and the path is
/// normalized ([`normalize_path`]). Route on [`route_path`] afterwards.
pub fn prepare(req: &mut RequestHeader) -> Result<(), TargetError> {
    let (host, path_and_query) = match classify(&req.method, req.raw_path())? {
        Form::Origin => (None, None),
        Form::Asterisk => return Ok(()),
        Form::Absolute {
            authority,
            path_and_query,
        } => (Some(authority.to_owned()), Some(path_and_query.to_owned())),
    };
    if let Some(host) = host {
        // Pingora refused a Host that differs from the authority; one that is missing is
        // the authority (RFC 9112 section 3.2.2).
        if req.headers.get(http::header::HOST).is_none() {
            req.insert_header(http::header::HOST, host)
                .map_err(|_| TargetError::BadHost)?;
        }
    }
    let (path, query) = match &path_and_query {
        Some(pq) => match pq.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (pq.as_str(), None),
        },
        None => (req.uri.path(), req.uri.query()),
    };
    let path = if path.is_empty() { "/" } else { path };
    let normal = normalize_path(path)?;
    if path_and_query.is_none() && matches!(normal, Cow::Borrowed(_)) {
        return Ok(());
    }
    let target = match query {
        Some(q) => format!("{normal}?{q}"),
        None => normal.to_string(),
    };
    let mut parts = req.uri.clone().into_parts();
    parts.path_and_query = Some(target.parse().map_err(|_| TargetError::Form)?);
    let uri = http::Uri::from_parts(parts).map_err(|_| TargetError::Form)?;
    req.set_uri(uri);
    Ok(())
}

/// The path a prepared request is routed on: its path, or `/` for `OPTIONS *`.
pub fn route_path(req: &RequestHeader) -> &str {
    match req.uri.path() {
        "*" => "/",
        p => p,
    }
}

/// Whether `b` is an RFC 3986 unreserved character.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether a path may need normalizing: it has an escape, an empty segment or a segment that
/// starts with a dot. Most paths have none, and are returned without a copy.
fn may_change(path: &[u8]) -> bool {
    path.iter().enumerate().any(|(i, &b)| {
        b == b'%' || (b == b'/' && matches!(path.get(i + 1), Some(b'/') | Some(b'.')))
    })
}

/// Decode escaped unreserved characters and upper-case the other escapes.
fn decode_unreserved(path: &[u8]) -> Result<Vec<u8>, TargetError> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            path.get(i + 1).copied().and_then(hex),
            path.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(TargetError::BadEscape);
        };
        let v = hi * 16 + lo;
        if unreserved(v) {
            out.push(v);
        } else {
            out.push(b'%');
            out.push(path[i + 1].to_ascii_uppercase());
            out.push(path[i + 2].to_ascii_uppercase());
        }
        i += 3;
    }
    Ok(out)
}

/// Normalize an origin-form path (it starts with `/`; no query): see the module doc.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, TargetError> {
    if !may_change(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path.as_bytes())?;
    let mut segments: Vec<&[u8]> = Vec::new();
    // Whether the path ends in a directory (`/`, `/.`, `/..`): the result keeps a final `/`.
    let mut trailing = false;
    for seg in decoded.split(|&b| b == b'/').skip(1) {
        trailing = true;
        match seg {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err(TargetError::AboveRoot);
                }
            }
            s => {
                segments.push(s);
                trailing = false;
            }
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing || segments.is_empty() {
        out.push(b'/');
    }
    // Only ASCII was decoded, into valid UTF-8 input; nothing can fail here.
    let out = String::from_utf8(out).map_err(|_| TargetError::BadEscape)?;
    Ok(if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn norm(p: &str) -> Result<String, TargetError> {
        normalize_path(p).map(Cow::into_owned)
    }

    #[test]
    fn unchanged_paths_are_not_copied() {
        for p in ["/", "/api/users", "/a-b_c~d.e", "/x?", "/static/app.v2.js"] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
        // Looks suspicious, is already normal.
        assert!(matches!(
            normalize_path("/.well-known/x"),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(norm("/public/../admin").unwrap(), "/admin");
        assert_eq!(norm("/x/../public/y").unwrap(), "/public/y");
        assert_eq!(norm("/./login").unwrap(), "/login");
        assert_eq!(norm("/a/b/./c/../d").unwrap(), "/a/b/d");
        assert_eq!(norm("/a/.").unwrap(), "/a/");
        assert_eq!(norm("/a/..").unwrap(), "/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/..a/.b/c..").unwrap(), "/..a/.b/c..");
    }

    #[test]
    fn escapes_of_unreserved_characters_are_decoded() {
        assert_eq!(norm("/%70ublic/x").unwrap(), "/public/x");
        assert_eq!(norm("/%6cogin").unwrap(), "/login");
        assert_eq!(norm("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/public/.%2E/admin").unwrap(), "/admin");
        assert_eq!(norm("/%7E%5f%2D").unwrap(), "/~_-");
    }

    #[test]
    fn other_escapes_stay_escaped_in_upper_case() {
        assert_eq!(norm("/a%2fb").unwrap(), "/a%2Fb");
        assert_eq!(norm("/a%20b%3f").unwrap(), "/a%20b%3F");
        // An encoded slash is not a separator: `..` stays inside the segment.
        assert_eq!(norm("/a%2F..%2Fb").unwrap(), "/a%2F..%2Fb");
        assert_eq!(norm("/%C3%A9t%C3%A9").unwrap(), "/%C3%A9t%C3%A9");
    }

    #[test]
    fn slashes_are_merged() {
        assert_eq!(norm("//x").unwrap(), "/x");
        assert_eq!(norm("/v1//x").unwrap(), "/v1/x");
        assert_eq!(norm("/a///b//").unwrap(), "/a/b/");
        assert_eq!(norm("//").unwrap(), "/");
    }

    #[test]
    fn climbing_above_the_root_is_refused() {
        for p in [
            "/..",
            "/../x",
            "/a/../..",
            "/a/../../b",
            "/%2e%2e/x",
            "/./..",
        ] {
            assert_eq!(norm(p), Err(TargetError::AboveRoot), "{p}");
        }
    }

    #[test]
    fn malformed_escapes_are_refused() {
        for p in ["/a%zz", "/a%4", "/a%", "/%g0"] {
            assert_eq!(norm(p), Err(TargetError::BadEscape), "{p}");
        }
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for p in ["/a/./b/../c//d/", "/%41%2f%2e.", "/x/%2E%2E/y"] {
            let once = norm(p).unwrap();
            assert_eq!(norm(&once).unwrap(), once, "{p}");
        }
    }

    #[test]
    fn forms() {
        let get = Method::GET;
        assert_eq!(classify(&get, b"/x?y"), Ok(Form::Origin));
        assert_eq!(classify(&get, b"public"), Err(TargetError::Form));
        assert_eq!(classify(&get, b"x:/admin"), Err(TargetError::Form));
        assert_eq!(classify(&get, b"secret.test:80"), Err(TargetError::Form));
        assert_eq!(classify(&get, b"*"), Err(TargetError::Form));
        assert_eq!(classify(&get, b""), Err(TargetError::Form));
        assert_eq!(classify(&Method::OPTIONS, b"*"), Ok(Form::Asterisk));
        assert_eq!(
            classify(&Method::CONNECT, b"secret.test:443"),
            Err(TargetError::Connect)
        );
        assert_eq!(
            classify(&get, b"http://secret.test/a?b"),
            Ok(Form::Absolute {
                authority: "secret.test",
                path_and_query: "/a?b"
            })
        );
        assert_eq!(
            classify(&get, b"HTTPS://h:8443"),
            Ok(Form::Absolute {
                authority: "h:8443",
                path_and_query: ""
            })
        );
        assert_eq!(classify(&get, b"ftp://h/x"), Err(TargetError::Form));
        assert_eq!(classify(&get, b"http:///x"), Err(TargetError::Form));
        assert_eq!(classify(&get, b"http://a b/x"), Err(TargetError::BadHost));
    }
}
