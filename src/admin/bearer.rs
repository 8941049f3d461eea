//! The admin listener's `Authorization: Bearer <token>` check.
//!
//! The scheme is matched case-insensitively and may be followed by one or more spaces or tabs
//! (RFC 9110 11.4: `credentials = auth-scheme [ 1*SP ( token68 / ... ) ]`, auth schemes are
//! case-insensitive). Tokens are compared as SHA-256 digests, in constant time: the time taken
//! depends neither on where the first difference is nor on the configured token's length.

use sha2::{Digest, Sha256};

/// The configured admin token, kept only as its SHA-256 digest.
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The credentials of an `Authorization` value using the Bearer scheme, without the
/// surrounding whitespace; `None` for another scheme, or none at all.
pub fn bearer_credentials(authorization: &[u8]) -> Option<&[u8]> {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let split = authorization.iter().position(is_space)?;
    let (scheme, rest) = authorization.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = rest.iter().position(|b| !is_space(b))?;
    let end = rest.iter().rposition(|b| !is_space(b))? + 1;
    Some(&rest[start..end])
}

impl BearerToken {
    /// Remember `token` (as its digest).
    pub fn new(token: &str) -> Self {
        BearerToken {
            digest: sha256(token.as_bytes()),
        }
    }

    /// Whether an `Authorization` header value carries this token with the Bearer scheme.
    pub fn accepts(&self, authorization: &[u8]) -> bool {
        let Some(given) = bearer_credentials(authorization) else {
            return false;
        };
        let given = sha256(given);
        // Every byte is looked at, whatever the first difference.
        given
            .iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-secret";

    #[test]
    fn scheme_is_case_insensitive() {
        let t = BearerToken::new(TOKEN);
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            assert!(
                t.accepts(format!("{scheme} {TOKEN}").as_bytes()),
                "{scheme}"
            );
        }
    }

    #[test]
    fn whitespace_after_the_scheme() {
        let t = BearerToken::new(TOKEN);
        assert!(t.accepts(format!("Bearer  \t {TOKEN}").as_bytes()));
        assert!(t.accepts(format!("Bearer\t{TOKEN} ").as_bytes()));
        assert!(!t.accepts(format!("Bearer{TOKEN}").as_bytes()));
        assert!(!t.accepts(b"Bearer "));
        assert!(!t.accepts(b"Bearer"));
    }

    #[test]
    fn wrong_prefix_longer_and_other_schemes_are_refused() {
        let t = BearerToken::new(TOKEN);
        assert!(!t.accepts(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]).as_bytes()));
        assert!(!t.accepts(format!("Bearer {TOKEN}x").as_bytes()));
        assert!(!t.accepts(b"Bearer wrong-token-of-some-length"));
        assert!(!t.accepts(format!("Basic {TOKEN}").as_bytes()));
        assert!(!t.accepts(format!("Bearers {TOKEN}").as_bytes()));
        assert!(!t.accepts(b""));
    }

    #[test]
    fn credentials_are_trimmed() {
        assert_eq!(bearer_credentials(b"bearer  abc \t"), Some(&b"abc"[..]));
        assert_eq!(bearer_credentials(b"Basic abc"), None);
    }
}
