//! A route's `match:` conditions and its `rewrite:`.

use super::super::Result;
use crate::config::error::ConfigError;
use crate::config::model::{Matchers, Rewrite, ValueMatch};
use crate::config::schema::{MatchSpec, RewriteSpec};
use http::{HeaderName, HeaderValue, Method};
use regex::{Regex, RegexBuilder};
use std::collections::BTreeMap;

/// Largest compiled regular expression accepted (the regex crate's own default is 10 MiB).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// `regex` compiled, or an error at `path` that quotes the regex crate's reason.
pub(super) fn regex(path: &str, regex: &str) -> Result<Regex> {
    RegexBuilder::new(regex)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let reason = e.to_string();
            let reason = reason.lines().last().unwrap_or("").trim();
            ConfigError::invalid(path, format!("bad regular expression {regex:?}: {reason}"))
        })
}

/// The conditions at `base` (`routes[i].match`).
pub(super) fn matchers(base: &str, spec: Option<&MatchSpec>) -> Result<Matchers> {
    let Some(spec) = spec else {
        return Ok(Matchers::default());
    };
    let mut methods: Vec<Method> = Vec::with_capacity(spec.methods.len());
    for (i, text) in spec.methods.iter().enumerate() {
        let path = format!("{base}.methods[{i}]");
        let method = Method::from_bytes(text.as_bytes()).map_err(|_| {
            ConfigError::invalid(&path, format!("{text:?} is not a valid method name"))
        })?;
        let upper = text.to_ascii_uppercase();
        if upper != *text && Method::from_bytes(upper.as_bytes()).is_ok_and(|m| is_standard(&m)) {
            return Err(ConfigError::invalid(
                &path,
                format!("methods are case-sensitive: write {upper}, found {text:?}"),
            ));
        }
        if methods.contains(&method) {
            return Err(ConfigError::invalid(&path, format!("{text} is listed twice")));
        }
        methods.push(method);
    }
    let mut headers = Vec::with_capacity(spec.headers.len());
    for (name, value) in &spec.headers {
        let path = format!("{base}.headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ConfigError::invalid(&path, format!("{name:?} is not a valid header name")))?;
        let condition = value_match(&path, value)?;
        if let ValueMatch::Exact(v) = &condition {
            if HeaderValue::from_str(v).is_err() {
                return Err(ConfigError::invalid(
                    &path,
                    format!("{v:?} is not a valid header value"),
                ));
            }
        }
        headers.push((header, condition));
    }
    // Names differing only in case are one header.
    headers.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    if let Some(w) = headers.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ConfigError::invalid(
            format!("{base}.headers"),
            format!("header {} is listed twice (names are case-insensitive)", w[0].0),
        ));
    }
    let query = query(base, &spec.query)?;
    Ok(Matchers {
        methods,
        headers,
        query,
    })
}

fn query(base: &str, spec: &BTreeMap<String, String>) -> Result<Vec<(String, ValueMatch)>> {
    let mut out = Vec::with_capacity(spec.len());
    for (name, value) in spec {
        let path = format!("{base}.query.{name}");
        if name.is_empty() || name.contains(['&', '=', '#', ' ']) {
            return Err(ConfigError::invalid(
                &path,
                format!("{name:?} is not a query parameter name"),
            ));
        }
        out.push((name.clone(), value_match(&path, value)?));
    }
    Ok(out)
}

/// A value condition: `*` for present, `~regex`, or an exact value.
fn value_match(path: &str, text: &str) -> Result<ValueMatch> {
    if text == "*" {
        return Ok(ValueMatch::Present);
    }
    if let Some(re) = text.strip_prefix('~') {
        return Ok(ValueMatch::Regex(regex(path, re)?));
    }
    Ok(ValueMatch::Exact(text.to_string()))
}

fn is_standard(m: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ]
    .contains(m)
}

/// The rewrite at `base` (`routes[i].rewrite`): a regex that compiles, and a replacement that
/// starts with `/`, holds only characters a path may hold, and names only groups the regex has.
pub(super) fn rewrite(base: &str, spec: &RewriteSpec) -> Result<Rewrite> {
    let re = regex(&format!("{base}.regex"), &spec.regex)?;
    let path = format!("{base}.to");
    let to = &spec.to;
    if !to.starts_with('/') {
        return Err(ConfigError::invalid(
            &path,
            format!("expected a path starting with / (e.g. \"/v1/$1\"), found {to:?}"),
        ));
    }
    let literal = without_braced_references(to);
    if let Some(c) = literal
        .chars()
        .find(|c| c.is_ascii_control() || !c.is_ascii() || " ?#\"<>\\^`{|}".contains(*c))
    {
        return Err(ConfigError::invalid(
            &path,
            format!("{c:?} cannot appear in a path (the query is kept as it was), in {to:?}"),
        ));
    }
    for group in references(to) {
        let known = match group.parse::<usize>() {
            Ok(n) => n < re.captures_len(),
            Err(_) => re.capture_names().flatten().any(|n| n == group),
        };
        if !known {
            return Err(ConfigError::invalid(
                &path,
                format!(
                    "${group} names no group of the regex (it has {} numbered groups{}); \
                     write ${{1}}x to follow a group with a letter or digit",
                    re.captures_len() - 1,
                    names_of(&re)
                ),
            ));
        }
    }
    Ok(Rewrite {
        regex: re,
        to: to.clone(),
    })
}

fn names_of(re: &Regex) -> String {
    let names: Vec<&str> = re.capture_names().flatten().collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" and named groups {}", names.join(", "))
    }
}

/// The group names `$name`, `${name}` in a replacement, read as the regex crate reads them
/// (`$$` is a literal `$`).
fn references(to: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = to;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(inner) = rest.strip_prefix('{') {
            if let Some(end) = inner.find('}') {
                out.push(&inner[..end]);
                rest = &inner[end + 1..];
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end > 0 {
                out.push(&rest[..end]);
            }
            rest = &rest[end..];
        }
    }
    out
}

/// `to` without its `${...}` references (whose braces are not part of the path).
fn without_braced_references(to: &str) -> String {
    let mut out = String::with_capacity(to.len());
    let mut rest = to;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        match rest[at..].find('}') {
            Some(end) => rest = &rest[at + end + 1..],
            None => {
                out.push_str(&rest[at..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}
