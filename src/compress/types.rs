//! Which media types are worth compressing.
//!
//! Only the media type counts: `Text/HTML; charset=utf-8` is `text/html`. A route's `types`
//! replace the built-in list; in both, `text/*` matches every subtype of `text` and
//! `application/*+json` every subtype ending in `+json`. Two kinds are never compressed
//! whatever the list says: gRPC (`application/grpc*`, which has its own message compression)
//! and `text/event-stream` (the encoders hold data back until they have enough or the body
//! ends, which would stall a stream of events).

/// The built-in list: text formats, structured data, scripts, SVG, WebAssembly and
/// uncompressed fonts. Already-compressed formats (JPEG, PNG, WebP, WOFF2, zip, video, ...)
/// are absent on purpose.
pub const BUILT_IN: &[&str] = &[
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/xml",
    "application/*+xml",
    "application/yaml",
    "application/x-yaml",
    "application/wasm",
    "application/vnd.ms-fontobject",
    "application/x-font-ttf",
    "application/x-font-opentype",
    "font/ttf",
    "font/otf",
    "font/collection",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
];

/// The media type of a `Content-Type` value: lowercase, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether `pattern` (lowercase: `type/subtype`, `type/*` or `type/*+suffix`) matches the
/// media type `media`.
fn matches(pattern: &str, media: &str) -> bool {
    let (Some((ptype, psub)), Some((mtype, msub))) =
        (pattern.split_once('/'), media.split_once('/'))
    else {
        return false;
    };
    if ptype != mtype {
        return false;
    }
    match psub.strip_prefix('*') {
        Some("") => true,
        Some(suffix) if suffix.starts_with('+') => {
            msub.len() > suffix.len() && msub.ends_with(suffix)
        }
        _ => psub == msub,
    }
}

/// Media types never compressed, whatever the list says.
fn never(media: &str) -> bool {
    media.starts_with("application/grpc") || media == "text/event-stream"
}

/// Whether the media type `media` (see [`media_type`]) is compressed, given a route's `types`
/// (empty: the built-in list).
pub fn compressible(media: &str, types: &[String]) -> bool {
    if never(media) {
        return false;
    }
    if types.is_empty() {
        BUILT_IN.iter().any(|p| matches(p, media))
    } else {
        types.iter().any(|p| matches(p, media))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built_in(ct: &str) -> bool {
        compressible(&media_type(ct), &[])
    }

    #[test]
    fn parameters_and_case_are_ignored() {
        assert_eq!(media_type("Text/HTML; charset=UTF-8"), "text/html");
        assert_eq!(media_type(" application/json "), "application/json");
        assert!(built_in("text/html; charset=utf-8"));
        assert!(built_in("APPLICATION/JSON"));
    }

    #[test]
    fn the_built_in_list_takes_text_and_leaves_compressed_formats() {
        for yes in [
            "text/plain",
            "text/css",
            "application/javascript",
            "application/problem+json",
            "application/atom+xml",
            "image/svg+xml",
            "application/wasm",
            "font/ttf",
        ] {
            assert!(built_in(yes), "{yes}");
        }
        for no in [
            "image/png",
            "image/jpeg",
            "video/mp4",
            "application/zip",
            "font/woff2",
            "application/octet-stream",
            "application/grpc",
            "application/grpc+proto",
            "text/event-stream",
            "application/+json",
            "",
            "text",
        ] {
            assert!(!built_in(no), "{no}");
        }
    }

    #[test]
    fn a_route_list_replaces_the_built_in_one() {
        let types = vec!["text/*".to_string(), "application/*+json".to_string()];
        assert!(compressible("text/csv", &types));
        assert!(compressible("application/ld+json", &types));
        assert!(!compressible("application/json", &types));
        assert!(!compressible("text/event-stream", &types));
        let exact = vec!["application/octet-stream".to_string()];
        assert!(compressible("application/octet-stream", &exact));
        assert!(!compressible("text/html", &exact));
    }
}
