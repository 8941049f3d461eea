//! Units in config values: durations like `250ms`, `5s`, `2m`, `1h`; sizes like `64KiB`.

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

/// Parse a size in bytes: a plain integer, or a number with a binary unit (`k`/`KB`/`KiB`,
/// `m`/`MB`/`MiB`, `g`/`GB`/`GiB`, all powers of 1024, as in nginx).
pub fn parse_size(path: &str, value: &serde_yaml::Value) -> Result<u64, ConfigError> {
    let bad = |found: String| {
        ConfigError::invalid(
            path,
            format!("expected a size like 512, 64KiB, 10MiB or 1GiB, found {found}"),
        )
    };
    let text = match value {
        serde_yaml::Value::Number(n) => return n.as_u64().ok_or_else(|| bad(n.to_string())),
        serde_yaml::Value::String(s) => s.trim(),
        other => return Err(bad(format!("{other:?}"))),
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad(format!("{text:?}")))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad(format!("{text:?}"))),
    };
    n.checked_mul(scale).ok_or_else(|| bad(format!("{text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        let v = |s: &str| serde_yaml::Value::String(s.into());
        assert_eq!(parse_size("k", &v("64KiB")), Ok(64 * 1024));
        assert_eq!(parse_size("k", &v("10m")), Ok(10 << 20));
        assert_eq!(parse_size("k", &v("1 GB")), Ok(1 << 30));
        assert_eq!(parse_size("k", &serde_yaml::Value::from(512u64)), Ok(512));
        for bad in ["", "KiB", "-1", "1.5MiB", "12 parsecs", "99999999999999G"] {
            assert_eq!(parse_size("a.b", &v(bad)).unwrap_err().path, "a.b", "{bad}");
        }
        assert!(parse_size("k", &serde_yaml::Value::from(-3)).is_err());
    }

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
