//! The properties behind `tests/fuzz_properties.rs` (proptest) and `fuzz/fuzz_targets/*`
//! (cargo-fuzz): each function takes plain inputs, runs fulcrum's code on them, and panics when
//! a property does not hold. Both drivers include this one file, so a property is written once.
//!
//! Every check holds for *any* input: a driver may pass nonsense, and the check still says what
//! must be true of fulcrum's answer (at least: no panic).

use fulcrum::balancer::sticky::{cookie_value, StickyCookies};
use fulcrum::config::model::{
    canonical_ip, Backend, Forwarding, HashKey, HeaderEdits, HostMatch, Route, SameSite,
    StickyCookie,
};
use fulcrum::config::{parse_yaml, to_yaml, validate::validate, FileConfig};
use fulcrum::proxy::{forwarding, hash_key, head};
use fulcrum::routing::{normalize_host, prefix_matches, strip_prefix, Router};
use http::HeaderValue;
use pingora_http::RequestHeader;
use std::cmp::Reverse;
use std::net::{IpAddr, SocketAddr};

// ---------------------------------------------------------------------------------------------
// Config loader
// ---------------------------------------------------------------------------------------------

/// A path no test machine has: certificate and CA files point here, so validation reports a
/// read error instead of reading whatever file a fuzzer named (`/dev/zero` would never end).
pub const NO_FILE: &str = "/nonexistent/fulcrum-fuzz/file.pem";

/// Keep validation off the network and the disk: a backend `host:port` that validation would
/// resolve (a DNS query) becomes `127.0.0.1:port`, and TLS files become [`NO_FILE`]. Addresses
/// that validation rejects before resolving are left as they are, so those errors stay covered.
pub fn defuse(spec: &mut FileConfig) {
    for upstream in spec.upstreams.values_mut() {
        for backend in &mut upstream.backends {
            if backend.addr.parse::<SocketAddr>().is_ok() {
                continue;
            }
            if let Some((host, port)) = backend.addr.rsplit_once(':') {
                if !host.is_empty() && port.parse::<u16>().is_ok() {
                    backend.addr = format!("127.0.0.1:{port}");
                }
            }
        }
        if let Some(tls) = &mut upstream.tls {
            if tls.ca_file.is_some() {
                tls.ca_file = Some(NO_FILE.into());
            }
        }
    }
    for listener in &mut spec.listeners {
        if let Some(tls) = &mut listener.tls {
            for c in &mut tls.certificates {
                c.cert = NO_FILE.into();
                c.key = NO_FILE.into();
            }
        }
    }
}

/// Any text: the loader answers with a config or an error (which prints), never a panic. A
/// config it accepts prints (`--print-config`) as YAML that loads again and prints the same.
pub fn config_text(text: &str) {
    let mut spec = match parse_yaml(text) {
        Ok(spec) => spec,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    defuse(&mut spec);
    match validate(&spec) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(_) => {
            let printed = to_yaml(&spec);
            let again = parse_yaml(&printed)
                .unwrap_or_else(|e| panic!("--print-config output does not parse: {e}\n{printed}"));
            if let Err(e) = validate(&again) {
                panic!("--print-config output does not validate: {e}\n{printed}");
            }
            assert_eq!(to_yaml(&again), printed, "--print-config is not stable");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Route matcher
// ---------------------------------------------------------------------------------------------

/// A route as validation would hand it to the router, with no header edits.
pub fn route(host: HostMatch, path: &str) -> Route {
    Route {
        name: None,
        host,
        path: path.to_string(),
        matchers: Default::default(),
        destination: fulcrum::config::model::Destination::Upstream(0),
        rewrite: None,
        mirror: None,
        strip_prefix: false,
        redirect_to_https: false,
        request_headers: HeaderEdits::default(),
        response_headers: HeaderEdits::default(),
        max_body_bytes: None,
        request_buffering: 0,
        rate_limit: Default::default(),
        cache: None,
        compression: None,
    }
}

/// The definition of a segment prefix, written independently of `routing::prefix_matches`:
/// the path is the prefix, or continues it with a new segment, or the prefix ends in `/`.
pub fn is_segment_prefix(prefix: &str, path: &str) -> bool {
    path == prefix
        || (prefix.ends_with('/') && path.starts_with(prefix))
        || path.starts_with(&format!("{prefix}/"))
}

/// The routing rules of `routing.rs`'s module doc, by brute force: exact host, then wildcard
/// suffixes longest first, then catch-alls; the longest matching prefix of the first tier that
/// has one, config order breaking ties.
pub fn reference_find(routes: &[Route], host: Option<&str>, path: &str) -> Option<usize> {
    let best = |in_tier: &dyn Fn(&HostMatch) -> bool| {
        routes
            .iter()
            .enumerate()
            .filter(|(_, r)| in_tier(&r.host) && is_segment_prefix(&r.path, path))
            .max_by_key(|(i, r)| (r.path.len(), Reverse(*i)))
            .map(|(i, _)| i)
    };
    if let Some(host) = host {
        if let Some(i) = best(&|m| matches!(m, HostMatch::Exact(h) if h == host)) {
            return Some(i);
        }
        let mut suffixes: Vec<&str> = routes
            .iter()
            .filter_map(|r| match &r.host {
                HostMatch::Suffix(s) if host.len() > s.len() && host.ends_with(s.as_str()) => {
                    Some(s.as_str())
                }
                _ => None,
            })
            .collect();
        suffixes.sort_by_key(|s| Reverse(s.len()));
        suffixes.dedup();
        for suffix in suffixes {
            if let Some(i) = best(&|m| matches!(m, HostMatch::Suffix(s) if s == suffix)) {
                return Some(i);
            }
        }
    }
    best(&|m| *m == HostMatch::Any)
}

/// Any route table, Host header and path: the router agrees with [`reference_find`]; the route
/// it picks has a segment prefix of the path; stripping that prefix leaves a path starting with
/// `/` that, after the prefix, is the original path; host normalization lowercases.
pub fn routes(table: &[(HostMatch, String)], host_header: Option<&str>, path: &str) {
    let routes: Vec<Route> = table.iter().map(|(h, p)| route(h.clone(), p)).collect();
    let router = Router::new(&routes);
    let host = host_header.map(normalize_host);
    if let (Some(raw), Some(host)) = (host_header, &host) {
        assert!(
            !host.bytes().any(|b| b.is_ascii_uppercase()),
            "normalize_host({raw:?}) = {host:?} has uppercase"
        );
        assert!(
            raw.to_ascii_lowercase().contains(host.as_ref()),
            "normalize_host({raw:?}) = {host:?} is not part of the input"
        );
    }
    let req = pingora_http::RequestHeader::build("GET", b"/", None).expect("request head");
    let found = router.find(host.as_deref(), path, &req);
    assert_eq!(
        found,
        reference_find(&routes, host.as_deref(), path),
        "host {host:?}, path {path:?}, routes {table:?}"
    );
    for r in &routes {
        assert_eq!(
            prefix_matches(&r.path, path),
            is_segment_prefix(&r.path, path),
            "prefix {:?}, path {path:?}",
            r.path
        );
    }
    if let Some(i) = found {
        let prefix = routes[i].path.as_str();
        assert!(is_segment_prefix(prefix, path));
        let stripped = strip_prefix(prefix, path);
        assert!(
            stripped.starts_with('/'),
            "strip_prefix({prefix:?}, {path:?}) = {stripped:?}"
        );
        let base = prefix.strip_suffix('/').unwrap_or(prefix);
        assert!(
            format!("{base}{stripped}") == path || (stripped == "/" && path == prefix),
            "strip_prefix({prefix:?}, {path:?}) = {stripped:?} loses part of the path"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Forwarding headers
// ---------------------------------------------------------------------------------------------

/// A GET / with these headers; values that are not valid header values are skipped (a client
/// cannot send them).
pub fn request(uri: &[u8], headers: &[(&str, Vec<u8>)]) -> Option<RequestHeader> {
    let mut req = RequestHeader::build("GET", uri, None).ok()?;
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            let _ = req.append_header(name.to_string(), v);
        }
    }
    Some(req)
}

/// The lines of a header, as bytes.
fn lines(req: &RequestHeader, name: &str) -> Vec<Vec<u8>> {
    req.headers
        .get_all(name)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

/// A header's lines as one comma-separated list, as a proxy would read them: `None` when there
/// are none, or when one is not text (then the list cannot be extended, only replaced).
fn chain(req: &RequestHeader, name: &str) -> Option<String> {
    let mut parts = Vec::new();
    for v in req.headers.get_all(name) {
        let v = v.to_str().ok()?.trim();
        if !v.is_empty() {
            parts.push(v);
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// RFC 7239 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parse one RFC 7239 `forwarded-element` (`pair *( ";" pair )`, values tokens or
/// quoted-strings) that must span all of `text`; the pairs with quoted values unescaped.
pub fn parse_forwarded_element(text: &str) -> Option<Vec<(String, String)>> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut pairs = Vec::new();
    loop {
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == start || b.get(i) != Some(&b'=') {
            return None;
        }
        let name = text[start..i].to_ascii_lowercase();
        i += 1;
        let mut value = Vec::new();
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match *b.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        let c = *b.get(i + 1)?;
                        if c != b'\t' && !(0x20..0x7f).contains(&c) && c < 0x80 {
                            return None;
                        }
                        value.push(c);
                        i += 2;
                    }
                    c if c == b'\t' || (0x20..0x7f).contains(&c) || c >= 0x80 => {
                        value.push(c);
                        i += 1;
                    }
                    _ => return None,
                }
            }
            i += 1;
        } else {
            let start = i;
            while i < b.len() && is_tchar(b[i]) {
                i += 1;
            }
            if i == start {
                return None;
            }
            value.extend_from_slice(&b[start..i]);
        }
        pairs.push((name, String::from_utf8(value).ok()?));
        match b.get(i) {
            None => return Some(pairs),
            Some(b';') => i += 1,
            Some(_) => return None,
        }
    }
}

/// Any forwarding policy, request headers and peer:
/// - `client_ip` is the peer unless the peer is a trusted proxy; then the rightmost address of
///   the `X-Forwarded-For` chain that is not a trusted proxy, the walk stopping (at the last
///   address it believed) on anything that is not an address; so always the peer or an address
///   from the header;
/// - `apply` replaces what an untrusted peer sent (a client cannot forge an address, host or
///   scheme), extends what a trusted one sent, and writes a `Forwarded` element that is valid
///   RFC 7239 and says what fulcrum means (`for` the peer, the Host, the scheme).
pub fn forwarding(
    fwd: &Forwarding,
    headers: &[(&str, Vec<u8>)],
    peer: IpAddr,
    proto: &'static str,
) {
    let Some(req) = request(b"/", headers) else {
        return;
    };
    let cpeer = canonical_ip(peer);
    let trusted = !fwd.trusted_proxies.is_empty() && fwd.is_trusted(peer);

    // The chain, left to right: an address, or None for anything else (garbage, a line that is
    // not text).
    let mut entries: Vec<Option<IpAddr>> = Vec::new();
    for v in req.headers.get_all("x-forwarded-for") {
        match v.to_str() {
            Ok(text) => entries.extend(
                text.split(',')
                    .map(|item| item.trim().parse::<IpAddr>().ok().map(canonical_ip)),
            ),
            Err(_) => entries.push(None),
        }
    }
    let expected = if trusted {
        let mut client = cpeer;
        for entry in entries.iter().rev() {
            let Some(ip) = entry else { break };
            client = *ip;
            if !fwd.is_trusted(*ip) {
                break;
            }
        }
        client
    } else {
        cpeer
    };
    let client = forwarding::client_ip(fwd, &req, peer);
    assert_eq!(
        client, expected,
        "peer {peer}, trusted {trusted}, chain {entries:?}"
    );
    assert!(client == cpeer || entries.contains(&Some(client)));

    // What fulcrum's proxy passes as the host: the Host header when it is text.
    let host = req
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let mut out = req.clone();
    let all = fulcrum::proxy::survey::Present::ALL;
    forwarding::apply(fwd, &mut out, peer, host.as_deref(), proto, all);
    // The same edits on the plain header map (the default, `preserve_header_case: false`),
    // skipping what the survey of the fields says is absent, as the proxy does, give the
    // same fields.
    let present = fulcrum::proxy::survey::of(&req.headers).present;
    let mut plain = req.clone();
    head::edit_request(&mut plain, false, |h| {
        forwarding::apply(fwd, h, peer, host.as_deref(), proto, present)
    });
    assert!(!plain.has_case());
    assert_eq!(
        plain.headers, out.headers,
        "plain and case-keeping edits differ"
    );
    let one = |value: String| vec![value.into_bytes()];
    let unchanged = |name: &str| {
        assert_eq!(lines(&out, name), lines(&req, name), "{name} changed");
    };
    let absent = |name: &str| {
        assert!(
            lines(&out, name).is_empty(),
            "{name} from an untrusted peer kept"
        );
    };

    // X-Forwarded-For.
    if fwd.x_forwarded_for {
        let expected = match chain(&req, "x-forwarded-for").filter(|_| trusted) {
            Some(c) => format!("{c}, {cpeer}"),
            None => cpeer.to_string(),
        };
        assert_eq!(lines(&out, "x-forwarded-for"), one(expected));
    } else if trusted {
        unchanged("x-forwarded-for");
    } else {
        absent("x-forwarded-for");
    }

    // X-Forwarded-Proto and X-Forwarded-Host: a trusted proxy's own value is kept.
    let kept = |name: &str| trusted && !lines(&req, name).is_empty();
    if fwd.x_forwarded_proto {
        if kept("x-forwarded-proto") {
            unchanged("x-forwarded-proto");
        } else {
            assert_eq!(lines(&out, "x-forwarded-proto"), one(proto.to_string()));
        }
    } else if trusted {
        unchanged("x-forwarded-proto");
    } else {
        absent("x-forwarded-proto");
    }
    if fwd.x_forwarded_host {
        if kept("x-forwarded-host") {
            unchanged("x-forwarded-host");
        } else {
            match &host {
                Some(h) => assert_eq!(lines(&out, "x-forwarded-host"), one(h.clone())),
                None => absent("x-forwarded-host"),
            }
        }
    } else if trusted {
        unchanged("x-forwarded-host");
    } else {
        absent("x-forwarded-host");
    }

    // Forwarded: fulcrum's element is last, well-formed, and names the peer, host and scheme.
    if fwd.forwarded {
        let out_lines = lines(&out, "forwarded");
        assert_eq!(out_lines.len(), 1, "one Forwarded line");
        let value = String::from_utf8(out_lines[0].clone()).expect("Forwarded is text");
        let element = match chain(&req, "forwarded").filter(|_| trusted) {
            Some(c) => value
                .strip_prefix(&format!("{c}, "))
                .unwrap_or_else(|| panic!("{value:?} does not extend {c:?}"))
                .to_string(),
            None => value.clone(),
        };
        let pairs = parse_forwarded_element(&element)
            .unwrap_or_else(|| panic!("Forwarded element {element:?} is not RFC 7239"));
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let node = match cpeer {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        };
        assert_eq!(get("for"), Some(node.as_str()), "{element:?}");
        assert_eq!(get("proto"), Some(proto), "{element:?}");
        if let Some(h) = get("host") {
            assert_eq!(Some(h), host.as_deref(), "{element:?}");
        }
    } else if trusted {
        unchanged("forwarded");
    } else {
        absent("forwarded");
    }

    // Via: extended, whoever sent it.
    if fwd.via {
        let expected = match chain(&req, "via") {
            Some(c) => format!("{c}, {}", forwarding::VIA),
            None => forwarding::VIA.to_string(),
        };
        assert_eq!(lines(&out, "via"), one(expected));
    } else {
        unchanged("via");
    }
}

// ---------------------------------------------------------------------------------------------
// Hash keys and sticky cookies
// ---------------------------------------------------------------------------------------------

/// Any request and key: extraction never panics, never returns an empty key, and returns what
/// the request carries (the client's address bytes, the path, the header, the cookie or the
/// query parameter); a cookie value has no `;` and no surrounding spaces.
pub fn hash_key_request(uri: &[u8], headers: &[(&str, Vec<u8>)], key: &HashKey, client: IpAddr) {
    let Some(req) = request(uri, headers) else {
        return;
    };
    let got = hash_key::extract(key, &req, client).map(|k| k.as_bytes().to_vec());
    if let Some(k) = &got {
        assert!(!k.is_empty(), "empty key for {key:?}");
    }
    let nonempty = |b: Option<&[u8]>| b.filter(|b| !b.is_empty()).map(<[u8]>::to_vec);
    match key {
        HashKey::ClientIp => {
            let octets = match client {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            assert_eq!(got, Some(octets));
        }
        HashKey::Path => assert_eq!(got, nonempty(Some(req.uri.path().as_bytes()))),
        HashKey::Header(name) => {
            assert_eq!(got, nonempty(req.headers.get(name).map(|v| v.as_bytes())))
        }
        HashKey::Cookie(name) => {
            let value = hash_key::cookie(&req, name);
            if let Some(v) = value {
                assert!(!v.contains(&b';'), "cookie value {v:?} spans pairs");
                assert_eq!(v, v.trim_ascii(), "cookie value {v:?} not trimmed");
                // Some pair of some line is `name`, maybe padded, then `=`.
                let names_it = |line: &[u8]| {
                    line.split(|b| *b == b';').any(|pair| {
                        pair.trim_ascii()
                            .strip_prefix(name.as_bytes())
                            .is_some_and(|rest| rest.trim_ascii_start().starts_with(b"="))
                    })
                };
                assert!(
                    lines(&req, "cookie").iter().any(|l| names_it(l)),
                    "cookie {name:?} found in headers that do not name it"
                );
            }
            assert_eq!(got, nonempty(value));
        }
        HashKey::Query(name) => {
            let value = hash_key::query_param(&req, name);
            if let Some(v) = value {
                assert!(!v.contains(&b'&'), "query value {v:?} spans parameters");
                assert!(req.uri.query().is_some());
            }
            assert_eq!(got, nonempty(value));
        }
    }
}

/// Cookie pairs (`name`, `value`, starts a new `Cookie` line) written with the given padding
/// around names and values: looking up `wanted` finds the first pair whose trimmed name it is,
/// trimmed value; or nothing when no pair has that name. Pairs that cannot be written as one
/// pair (a `;` anywhere, `=` in the name, a byte no header may carry) are dropped first.
pub fn cookie_pairs(pairs: &[(String, String, bool)], pad: &str, wanted: &str) {
    let ok_text = |s: &str| s.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b));
    let pad = if ok_text(pad) && pad.trim_ascii().is_empty() {
        pad
    } else {
        ""
    };
    let pairs: Vec<_> = pairs
        .iter()
        .filter(|(n, v, _)| ok_text(n) && ok_text(v) && !n.contains([';', '=']) && !v.contains(';'))
        .collect();
    let mut header_lines: Vec<String> = Vec::new();
    for (i, (n, v, new_line)) in pairs.iter().enumerate() {
        let pair = format!("{pad}{n}{pad}={pad}{v}{pad}");
        match header_lines.last_mut() {
            Some(line) if !(*new_line && i > 0) => {
                line.push(';');
                line.push_str(&pair);
            }
            _ => header_lines.push(pair),
        }
    }
    let headers: Vec<(&str, Vec<u8>)> = header_lines
        .into_iter()
        .map(|l| ("cookie", l.into_bytes()))
        .collect();
    let Some(req) = request(b"/", &headers) else {
        return;
    };
    let expected = pairs
        .iter()
        .find(|(n, _, _)| n.trim_ascii() == wanted)
        .map(|(_, v, _)| v.trim_ascii().as_bytes());
    assert_eq!(hash_key::cookie(&req, wanted), expected, "{headers:?}");
}

/// Query parameters (`name`, `value`; `None` writes a bare `name`): looking up `wanted` finds
/// the raw value of the first parameter named so, `""` for a bare name. Parameters with
/// characters a URI cannot carry unescaped, or with `&`/`#`, or `=` in the name, are dropped.
/// An empty `wanted` is not looked up: validation rejects `hash_key: "query:"`.
pub fn query_pairs(params: &[(String, Option<String>)], wanted: &str) {
    if wanted.is_empty() {
        return;
    }
    let ok = |s: &str, extra: &[u8]| {
        s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || b"-._~%!$'()*+,;:@/?".contains(&b) || extra.contains(&b)
        })
    };
    let params: Vec<_> = params
        .iter()
        .filter(|(n, v)| ok(n, b"") && v.as_deref().is_none_or(|v| ok(v, b"=")))
        .collect();
    let query: Vec<String> = params
        .iter()
        .map(|(n, v)| match v {
            Some(v) => format!("{n}={v}"),
            None => n.clone(),
        })
        .collect();
    let uri = format!("/p?{}", query.join("&"));
    let Some(req) = request(uri.as_bytes(), &[]) else {
        return;
    };
    let expected = params
        .iter()
        .find(|(n, _)| n == wanted)
        .map(|(_, v)| v.as_deref().unwrap_or("").as_bytes());
    assert_eq!(hash_key::query_param(&req, wanted), expected, "{uri:?}");
}

/// Validation's rule for cookie names (an RFC 9110 token).
pub fn is_cookie_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_tchar)
}

/// A sticky group (distinct backend addresses, as validation ensures; a token cookie name):
/// the value for backend i is 20 lowercase hex characters that do not contain its address, its
/// `Set-Cookie` sends it, and a request carrying it (among other cookies) goes back to i;
/// a value changed in one character, shortened, lengthened or made under another secret names
/// no backend; and whatever `other_cookie` line a client sends, the backend it picks is the one
/// whose value it carries.
pub fn sticky(
    secret: &[u8],
    foreign_secret: &[u8],
    addrs: &[SocketAddr],
    name: &str,
    tamper: (usize, u8),
    other_cookie: &[u8],
) {
    let mut distinct: Vec<SocketAddr> = Vec::new();
    for a in addrs {
        if !distinct.contains(a) {
            distinct.push(*a);
        }
    }
    if distinct.is_empty() || !is_cookie_name(name) {
        return;
    }
    let spec = StickyCookie {
        name: name.to_string(),
        path: "/".into(),
        max_age: None,
        http_only: true,
        secure: false,
        same_site: Some(SameSite::Lax),
        secret: secret.to_vec(),
    };
    let backends: Vec<Backend> = distinct
        .iter()
        .map(|&addr| Backend {
            addr,
            host: None,
            weight: 1,
        })
        .collect();
    let cookies = StickyCookies::new(&spec, &backends.iter().map(Some).collect::<Vec<_>>());
    let values: Vec<String> = backends.iter().map(|b| cookie_value(secret, b)).collect();
    let pick = |line: &[u8]| {
        request(b"/", &[("cookie", line.to_vec())]).and_then(|r| cookies.backend_for(&r))
    };
    for (i, value) in values.iter().enumerate() {
        let addr = backends[i].addr.to_string();
        assert_eq!(value.len(), 20, "{value:?}");
        assert!(value
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let set_cookie = cookies.set_cookie(i).expect("a Set-Cookie per backend");
        let set_cookie = set_cookie.to_str().expect("Set-Cookie is text");
        assert!(
            set_cookie.starts_with(&format!("{name}={value}; ")),
            "{set_cookie:?}"
        );
        assert!(!set_cookie.contains(&addr), "{set_cookie:?} reveals {addr}");
        // Neighbours whose names start or end like this one's must not be taken for it.
        let sent = format!("{name}x=1; {name}={value}; x{name}=2");
        assert_eq!(pick(sent.as_bytes()), Some(i), "{sent:?}");

        // Tampered values name nothing (or, astronomically rarely, another backend exactly).
        let names = |v: &str| values.iter().position(|x| x == v);
        let (at, to) = (
            tamper.0 % value.len(),
            b"0123456789abcdef"[tamper.1 as usize % 16],
        );
        let mut changed = value.clone().into_bytes();
        if changed[at] == to {
            changed[at] = if to == b'0' { b'1' } else { b'0' };
        }
        let changed = String::from_utf8(changed).expect("hex");
        let shorter = &value[..value.len() - 1];
        let longer = format!("{value}0");
        let upper = value.to_ascii_uppercase();
        for forged in [changed.as_str(), shorter, &longer, &upper] {
            if forged != value {
                assert_eq!(pick(format!("{name}={forged}").as_bytes()), names(forged));
            }
        }
        // HMAC pads keys up to its block size with zeros, so keys that differ only in trailing
        // zero bytes are the same key; other secrets give other values.
        let trimmed = |s: &[u8]| s.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
        if secret[..trimmed(secret)] != foreign_secret[..trimmed(foreign_secret)]
            && secret.len() <= 64
            && foreign_secret.len() <= 64
        {
            let foreign = cookie_value(foreign_secret, &backends[i]);
            assert_eq!(
                pick(format!("{name}={foreign}").as_bytes()),
                names(&foreign)
            );
        }
    }
    assert!(cookies.set_cookie(values.len()).is_none());
    if let Some(i) = pick(other_cookie) {
        let req = request(b"/", &[("cookie", other_cookie.to_vec())]).expect("built before");
        assert_eq!(hash_key::cookie(&req, name), Some(values[i].as_bytes()));
    }
}
