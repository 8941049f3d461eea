//! Units in config values: durations like `250ms`, `5s`, `2m`, `1h`.

use super::error::ConfigError;
use std::time::Duration;

/// Parse a duration with a unit (`ms`, `s`, `m`, `h`); `path` names the key for errors.
pub fn parse_duration(path: &str, text: &str) -> Result<Duration, ConfigError> {
    let bad = || {
        ConfigError::invalid(
            path,
            format!("expected a duration like 500ms, 5s, 2m or 1h, found {text:?}"),
        )
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    }
    .ok_or_else(bad)?;
    Ok(Duration::from_millis(ms))
}

/// Like [`parse_duration`], and the duration must be above zero (a zero timeout or interval
/// would mean "never wait" or "spin").
pub fn parse_positive_duration(path: &str, text: &str) -> Result<Duration, ConfigError> {
    let d = parse_duration(path, text)?;
    if d.is_zero() {
        return Err(ConfigError::invalid(path, "expected a duration above zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("k", "250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("k", "5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("k", "2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("k", "1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn rejects_missing_or_unknown_units() {
        for bad in ["5", "s", "", "5 parsecs", "-1s", "1.5s"] {
            let err = parse_duration("a.b", bad).unwrap_err();
            assert_eq!(err.path, "a.b", "{bad}");
        }
    }
}
