//! The request's `Content-Length`, as fulcrum reads it for the body limit and sends it on.

use pingora_http::RequestHeader;

/// The request's Content-Length, when its values (repeated lines or a list) all agree; Pingora
/// refuses requests whose values differ.
pub fn of(req: &RequestHeader) -> Option<u64> {
    let mut out = None;
    for v in req.headers.get_all(http::header::CONTENT_LENGTH) {
        for item in v.to_str().ok()?.split(',') {
            let n: u64 = item.trim().parse().ok()?;
            if out.is_some_and(|o| o != n) {
                return None;
            }
            out = Some(n);
        }
    }
    out
}

/// Whether the request's Content-Length is written more than once (`5, 5` or two lines).
pub fn repeated(req: &RequestHeader) -> bool {
    let mut values = req.headers.get_all(http::header::CONTENT_LENGTH).iter();
    match (values.next(), values.next()) {
        (Some(_), Some(_)) => true,
        (Some(v), None) => v.as_bytes().contains(&b','),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_lengths(values: &[&str]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/", None).unwrap();
        for v in values {
            req.append_header("content-length", *v).unwrap();
        }
        req
    }

    #[test]
    fn agreeing_values_are_one_length_and_disagreeing_ones_none() {
        assert_eq!(of(&with_lengths(&[])), None);
        assert_eq!(of(&with_lengths(&["5"])), Some(5));
        assert_eq!(of(&with_lengths(&["5, 5"])), Some(5));
        assert_eq!(of(&with_lengths(&["5", "5"])), Some(5));
        assert_eq!(of(&with_lengths(&["5", "6"])), None);
        assert_eq!(of(&with_lengths(&["x"])), None);
    }

    #[test]
    fn a_list_or_a_second_line_is_a_repeat() {
        assert!(!repeated(&with_lengths(&[])));
        assert!(!repeated(&with_lengths(&["5"])));
        assert!(repeated(&with_lengths(&["5, 5"])));
        assert!(repeated(&with_lengths(&["5", "5"])));
    }
}
