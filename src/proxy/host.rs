//! Checking the Host a client sent (RFC 9112 section 3.2: a server must answer 400 to an
//! HTTP/1.1 request without exactly one valid Host).

use pingora_http::RequestHeader;

/// The Host of a request (Host header, else the URI authority), raw.
pub fn raw(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// The bytes a host name may hold (RFC 3986 reg-name: unreserved, sub-delims and `%`), as
/// one table lookup per byte.
static NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            );
        b += 1;
    }
    table
};

/// Whether `host` is a valid `Host` value: a registered name or IPv4 address, or a bracketed
/// IPv6 literal, with an optional port.
pub fn is_valid(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, tail)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match tail {
                    "" => return true,
                    t => match t.strip_prefix(':') {
                        Some(p) => ("", p),
                        None => return false,
                    },
                }
            }
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((n, p)) => (n, p),
            None => (host, "0"),
        },
    };
    let name_ok = name.bytes().all(|b| NAME_BYTE[usize::from(b)]);
    let port_ok = port.is_empty()
        || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok());
    name_ok && port_ok && (!name.is_empty() || host.starts_with('['))
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn accepts_names_addresses_and_ports() {
        for ok in [
            "example.com",
            "EXAMPLE.com:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8443",
            "xn--bcher-kva.example",
            "a_b.local:",
            "a:65535",
        ] {
            assert!(is_valid(ok), "{ok}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_host() {
        for bad in [
            "",
            "app test",
            "a/b",
            "a@b",
            "[::1",
            "[zz]",
            "[::1]x",
            "host:port",
            "a:123456",
            "a:99999",
            "a:65536",
            "a:+80",
            ":80",
            "a\tb",
            "ex\"ample",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
