//! The status page: one self-contained HTML document (inline CSS and JavaScript, no external
//! assets) that polls `/status` and renders it. It holds no data itself, so it is served
//! without the admin token; when `/status` answers 401 it asks for the token, keeps it in
//! `sessionStorage` and sends it as `Authorization: Bearer`. A `#token=...` fragment in the
//! page's URL is taken as the token too (and removed from the address bar).
//!
//! The page is built once from `page/status.html`, `page/status.css` and `page/status.js`.
//! Its `Content-Security-Policy` allows exactly that style and that script (by SHA-256
//! hash), `fetch` to the admin listener itself, and `data:` images; nothing else.

use http::{Response, StatusCode};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const HTML: &str = include_str!("page/status.html");
const CSS: &str = include_str!("page/status.css");
const JS: &str = include_str!("page/status.js");

/// Whether `path` is the status page's.
pub fn is_page_path(path: &str) -> bool {
    path == "/" || path == "/index.html"
}

/// Standard base64 (RFC 4648, with padding).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A CSP source for inline text: `'sha256-...'`.
fn hash_source(text: &str) -> String {
    format!("'sha256-{}'", base64(&Sha256::digest(text.as_bytes())))
}

/// The page and its `Content-Security-Policy`.
struct Page {
    html: String,
    csp: String,
}

fn build() -> Page {
    let html = HTML.replace("/*STYLE*/", CSS).replace("/*SCRIPT*/", JS);
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash_source(JS),
        hash_source(CSS)
    );
    Page { html, csp }
}

fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(build)
}

/// The status page's response: the HTML, not to be cached, under its strict CSP.
pub fn response() -> Response<Vec<u8>> {
    let p = page();
    let body = p.html.as_bytes().to_vec();
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header("content-security-policy", p.csp.as_str())
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("x-frame-options", "DENY")
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_rfc_4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn the_page_embeds_exactly_the_hashed_style_and_script() {
        let p = build();
        assert!(!p.html.contains("/*STYLE*/") && !p.html.contains("/*SCRIPT*/"));
        assert!(p.html.contains(&format!("<style>{CSS}</style>")));
        assert!(p.html.contains(&format!("<script>{JS}</script>")));
        assert!(p.csp.contains(&hash_source(JS)) && p.csp.contains(&hash_source(CSS)));
        // Nothing is loaded from elsewhere (the SVG namespace is a name, not a fetch).
        let html = p.html.replace("http://www.w3.org/2000/svg", "");
        for needle in ["http://", "https://", " src=", "<link", "@import", "url("] {
            assert!(!html.contains(needle), "{needle}");
        }
        assert!(p.csp.starts_with("default-src 'none';"));
    }

    #[test]
    fn page_paths() {
        assert!(is_page_path("/") && is_page_path("/index.html"));
        assert!(!is_page_path("/status") && !is_page_path("/index.htm"));
    }
}
