//! An upstream's `sticky:` cookie (`algorithm: cookie`).

use super::Result;
use crate::config::error::ConfigError;
use crate::config::model::*;
use crate::config::schema::*;
use crate::config::units::parse_duration;

pub(super) fn sticky(base: &str, spec: &StickySpec) -> Result<StickyCookie> {
    let name = spec
        .cookie
        .clone()
        .unwrap_or_else(|| "fulcrum_sticky".into());
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(&name) {
        return Err(ConfigError::invalid(
            format!("{base}.cookie"),
            format!("{name:?} is not a valid cookie name"),
        ));
    }
    let path = spec.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.bytes().any(|b| b == b';' || b.is_ascii_control()) {
        return Err(ConfigError::invalid(
            format!("{base}.path"),
            format!("expected a cookie path starting with /, found {path:?}"),
        ));
    }
    let max_age = spec
        .max_age
        .as_deref()
        .map(|d| parse_duration(&format!("{base}.max_age"), d))
        .transpose()?;
    let same_site = match spec
        .same_site
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("lax") => Some(SameSite::Lax),
        Some("strict") => Some(SameSite::Strict),
        Some("none") => Some(SameSite::None),
        Some(other) => {
            return Err(ConfigError::invalid(
                format!("{base}.same_site"),
                format!("expected strict, lax or none, found {other:?}"),
            ))
        }
    };
    let secret = match &spec.secret {
        Some(s) if s.len() < 16 => {
            return Err(ConfigError::invalid(
                format!("{base}.secret"),
                "expected at least 16 characters",
            ))
        }
        Some(s) => s.as_bytes().to_vec(),
        None => {
            use rand::RngCore;
            let mut key = vec![0u8; 32];
            rand::thread_rng().fill_bytes(&mut key);
            key
        }
    };
    Ok(StickyCookie {
        name,
        path,
        max_age,
        http_only: spec.http_only.unwrap_or(true),
        secure: spec.secure.unwrap_or(false),
        same_site,
        secret,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::rejects;

    fn upstream(sticky: &str) -> String {
        format!(
            "upstreams: {{api: {{algorithm: cookie, backends: [{{addr: '127.0.0.1:3001'}}], \
             sticky: {sticky}}}}}"
        )
    }

    #[test]
    fn rules() {
        let cases = [
            (
                upstream("{cookie: 'a b'}"),
                "upstreams.api.sticky.cookie",
                "\"a b\" is not a valid cookie name",
            ),
            (
                upstream("{path: x}"),
                "upstreams.api.sticky.path",
                "expected a cookie path starting with /, found \"x\"",
            ),
            (
                upstream("{same_site: always}"),
                "upstreams.api.sticky.same_site",
                "expected strict, lax or none, found \"always\"",
            ),
            (
                upstream("{secret: short}"),
                "upstreams.api.sticky.secret",
                "expected at least 16 characters",
            ),
        ];
        let cases: Vec<_> = cases.iter().map(|(y, p, m)| (y.as_str(), *p, *m)).collect();
        rejects(&cases);
    }
}
