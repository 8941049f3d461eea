//! One look at a discovery source (`dns`, `dns_srv` or `file`): the backends it names now,
//! in a stable order (sorted by address, each address once), at most `max` of them.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::dns::{DnsError, Resolver, Srv};
use crate::config::model::DiscoverySource;
use crate::config::validate::MAX_WEIGHT;

/// Largest backends file read; a bigger one is an error (not a list of backends).
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// One discovered backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The host name it was found by (the `dns` name, the SRV target, or the file's host
    /// name), for TLS SNI; `None` for an IP literal in a file.
    pub host: Option<String>,
    /// Its weight, 1..=[`MAX_WEIGHT`].
    pub weight: u32,
}

/// What one look at a source found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// The backends, sorted by address, each address once, at most `max`.
    pub backends: Vec<Found>,
    /// How long the DNS answers may be kept (the smallest TTL of the records used); `None`
    /// for a file.
    pub ttl: Option<Duration>,
    /// How many backends beyond `max` were dropped (the last ones in address order).
    pub truncated: usize,
}

/// Why a source gave no backend set (the runtime keeps its last good one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The DNS lookup failed.
    Dns(DnsError),
    /// The file could not be read or is not a valid list (the message names the file and,
    /// when it applies, the entry: `conf/backends.yaml: [2].weight: ...`).
    File(String),
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Dns(e) => write!(f, "DNS lookup failed: {e}"),
            SourceError::File(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for SourceError {}

impl From<DnsError> for SourceError {
    fn from(e: DnsError) -> Self {
        SourceError::Dns(e)
    }
}

/// The backends `source` names now, at most `max` (see [`Discovered::truncated`]).
pub async fn discover(
    source: &DiscoverySource,
    resolver: &Resolver,
    max: usize,
) -> Result<Discovered, SourceError> {
    let (found, ttl) = match source {
        DiscoverySource::Dns { name, port } => {
            let answer = resolver.lookup_ip(name).await?;
            let found = answer
                .records
                .iter()
                .map(|&ip| Found {
                    addr: SocketAddr::new(ip, *port),
                    host: Some(name.clone()),
                    weight: 1,
                })
                .collect();
            (found, Some(answer.ttl))
        }
        DiscoverySource::DnsSrv { name } => {
            let (found, ttl) = from_srv(name, resolver).await?;
            (found, Some(ttl))
        }
        DiscoverySource::File { path } => (from_file(path, resolver).await?, None),
    };
    Ok(finish(found, ttl, max))
}

/// Leaves out addresses that cannot be connected to (`0.0.0.0`, which some DNS blocklists
/// answer, port 0, multicast), sorts by address (the highest weight first among equal
/// addresses), keeps each address once, and cuts the list at `max`.
fn finish(mut found: Vec<Found>, ttl: Option<Duration>, max: usize) -> Discovered {
    found.retain(|f| crate::config::model::is_connectable(&f.addr));
    found.sort_by(|a, b| a.addr.cmp(&b.addr).then(b.weight.cmp(&a.weight)));
    found.dedup_by(|later, first| later.addr == first.addr);
    let truncated = found.len().saturating_sub(max);
    found.truncate(max);
    Discovered {
        backends: found,
        ttl,
        truncated,
    }
}

/// An SRV weight as a backend weight: 0 counts as 1, at most [`MAX_WEIGHT`].
fn srv_weight(weight: u16) -> u32 {
    (weight as u32).clamp(1, MAX_WEIGHT as u32)
}

/// The backends of the lowest-priority SRV records of `name` (targets "." left out), and
/// the smallest TTL used. A target that does not resolve is left out; when none resolves,
/// the last target's error is the result.
async fn from_srv(name: &str, resolver: &Resolver) -> Result<(Vec<Found>, Duration), DnsError> {
    let answer = resolver.lookup_srv(name).await?;
    let records: Vec<&Srv> = answer.records.iter().filter(|s| s.target != ".").collect();
    let Some(lowest) = records.iter().map(|s| s.priority).min() else {
        return Ok((Vec::new(), answer.ttl));
    };
    let chosen: Vec<&Srv> = records
        .into_iter()
        .filter(|s| s.priority == lowest)
        .collect();
    let lookups = chosen.iter().map(|srv| async move {
        if srv.addrs.is_empty() {
            resolver
                .lookup_ip(&srv.target)
                .await
                .map(|a| (a.records, a.ttl))
        } else {
            Ok((srv.addrs.clone(), srv.addrs_ttl.unwrap_or(answer.ttl)))
        }
    });
    let resolved = futures::future::join_all(lookups).await;
    let mut found = Vec::new();
    let mut ttl = answer.ttl;
    let mut last_error = None;
    let mut any = false;
    for (srv, result) in chosen.iter().zip(resolved) {
        match result {
            Ok((ips, t)) => {
                any = true;
                ttl = ttl.min(t);
                found.extend(ips.into_iter().map(|ip| Found {
                    addr: SocketAddr::new(ip, srv.port),
                    host: Some(srv.target.clone()),
                    weight: srv_weight(srv.weight),
                }));
            }
            Err(e) => {
                log::warn!("discovery {name}: SRV target {} left out: {e}", srv.target);
                last_error = Some(e);
            }
        }
    }
    match (any, last_error) {
        (false, Some(e)) => Err(e),
        _ => Ok((found, ttl)),
    }
}

/// One entry of a backends file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    addr: String,
    #[serde(default)]
    weight: Option<i64>,
}

/// Where an entry's `addr` points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `IP:port`.
    Ip(SocketAddr),
    /// `host:port`, to resolve.
    Host(String, u16),
}

/// The entries of a backends file's text: each `(index, target, weight)`. Errors start with
/// the entry path (`[2].weight: ...`); the caller puts the file name in front.
fn parse_file(text: &str) -> Result<Vec<(usize, Target, u32)>, String> {
    if text.trim().is_empty() {
        return Err("the file is empty (half-written?); an empty list is `[]`".into());
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let entries: Vec<FileEntry> = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde_yaml prefixes some messages with the (parent) path it tracked itself.
        let message = match message.split_once(": ") {
            Some((p, rest)) if !p.contains(' ') && path.starts_with(p.trim_start_matches('.')) => {
                rest.to_string()
            }
            _ => message,
        };
        if path == "." {
            message
        } else {
            format!("{path}: {message}")
        }
    })?;
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let weight = entry.weight.unwrap_or(1);
            if !(1..=MAX_WEIGHT).contains(&weight) {
                return Err(format!(
                    "[{i}].weight: must be between 1 and {MAX_WEIGHT}, got {weight}"
                ));
            }
            let target = parse_addr(&entry.addr).map_err(|e| format!("[{i}].addr: {e}"))?;
            Ok((i, target, weight as u32))
        })
        .collect()
}

/// `IP:port`, `[IPv6]:port` or `host:port`.
fn parse_addr(addr: &str) -> Result<Target, String> {
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(Target::Ip(sa));
    }
    let bad = || format!("{addr:?} is not IP:port or host:port");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(format!("{addr:?}: port 0"));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.is_empty()
        || host.len() > 253
        || host.parse::<IpAddr>().is_ok()
        || !host.split('.').all(valid_label)
    {
        return Err(bad());
    }
    Ok(Target::Host(host.to_ascii_lowercase(), port))
}

/// The backends listed in the file at `path`, host names resolved (every address).
async fn from_file(path: &Path, resolver: &Resolver) -> Result<Vec<Found>, SourceError> {
    let shown = path.display().to_string();
    let owned = path.to_path_buf();
    let text = tokio::task::spawn_blocking(move || read_limited(&owned))
        .await
        .map_err(|e| SourceError::File(format!("{shown}: {e}")))?
        .map_err(|e| SourceError::File(format!("{shown}: {e}")))?;
    let entries = parse_file(&text).map_err(|e| SourceError::File(format!("{shown}: {e}")))?;
    let mut found = Vec::new();
    for (i, target, weight) in entries {
        match target {
            Target::Ip(addr) => found.push(Found {
                addr,
                host: None,
                weight,
            }),
            Target::Host(host, port) => {
                let answer = resolver.lookup_ip(&host).await.map_err(|e| {
                    SourceError::File(format!("{shown}: [{i}].addr: resolving {host}: {e}"))
                })?;
                found.extend(answer.records.into_iter().map(|ip| Found {
                    addr: SocketAddr::new(ip, port),
                    host: Some(host.clone()),
                    weight,
                }));
            }
        }
    }
    Ok(found)
}

/// The file's text, refusing files over [`MAX_FILE_BYTES`].
fn read_limited(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(text)
}

/// What identifies a version of a file: modification time, length and inode (symlinks
/// followed, so a swapped symlink counts as a change). `None` when it cannot be read.
pub fn file_stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Target {
        Target::Ip(s.parse().unwrap())
    }

    #[test]
    fn file_entries_parse_with_default_weight() {
        let text = "- addr: 10.0.0.1:8080\n- {addr: \"[::1]:81\", weight: 5}\n\
                    - addr: API.internal.:9000\n  weight: 1000\n";
        assert_eq!(
            parse_file(text).unwrap(),
            vec![
                (0, ip("10.0.0.1:8080"), 1),
                (1, ip("[::1]:81"), 5),
                (2, Target::Host("api.internal".into(), 9000), 1000),
            ]
        );
    }

    #[test]
    fn explicit_empty_list_is_valid() {
        assert_eq!(parse_file("[]\n").unwrap(), vec![]);
    }

    #[test]
    fn empty_or_blank_file_is_an_error() {
        for text in ["", "  \n\t\n"] {
            let err = parse_file(text).unwrap_err();
            assert!(err.contains("empty"), "{err}");
        }
    }

    #[test]
    fn bad_weight_names_the_entry() {
        let text = "- addr: 10.0.0.1:80\n- addr: 10.0.0.2:80\n- addr: 10.0.0.3:80\n  weight: 0\n";
        assert_eq!(
            parse_file(text).unwrap_err(),
            "[2].weight: must be between 1 and 1000, got 0"
        );
        let text = "- addr: 10.0.0.1:80\n  weight: 1001\n";
        assert!(parse_file(text).unwrap_err().starts_with("[0].weight:"));
    }

    #[test]
    fn type_errors_and_unknown_keys_name_the_path() {
        let err = parse_file("- addr: 10.0.0.1:80\n  weight: heavy\n").unwrap_err();
        assert!(err.starts_with("[0].weight: "), "{err}");
        let err = parse_file("- addr: 10.0.0.1:80\n- adr: 10.0.0.2:80\n").unwrap_err();
        assert!(err.starts_with("[1].adr: unknown field `adr`"), "{err}");
        let err = parse_file("- weight: 3\n").unwrap_err();
        assert!(err.contains("missing field `addr`"), "{err}");
        let err = parse_file("addr: 10.0.0.1:80\n").unwrap_err();
        assert!(err.contains("expected a sequence"), "{err}");
    }

    #[test]
    fn bad_addresses_name_the_entry() {
        for addr in [
            "10.0.0.1",
            "host",
            "host:",
            "host:99999",
            "a..b:80",
            ":80",
            "h:0",
        ] {
            let text = format!("- addr: \"{addr}\"\n");
            let err = parse_file(&text).unwrap_err();
            assert!(err.starts_with("[0].addr: "), "{addr}: {err}");
        }
    }

    fn found(addr: &str, weight: u32) -> Found {
        Found {
            addr: addr.parse().unwrap(),
            host: None,
            weight,
        }
    }

    #[test]
    fn finish_sorts_dedups_and_truncates() {
        let list = vec![
            found("10.0.0.3:80", 1),
            found("10.0.0.1:80", 2),
            found("10.0.0.1:80", 7),
            found("10.0.0.2:80", 1),
        ];
        let d = finish(list.clone(), None, 10);
        assert_eq!(
            d.backends,
            vec![
                found("10.0.0.1:80", 7),
                found("10.0.0.2:80", 1),
                found("10.0.0.3:80", 1)
            ]
        );
        assert_eq!(d.truncated, 0);
        let d = finish(list, None, 2);
        assert_eq!(
            d.backends,
            vec![found("10.0.0.1:80", 7), found("10.0.0.2:80", 1)]
        );
        assert_eq!(d.truncated, 1);
    }

    #[test]
    fn srv_weights_map_to_backend_weights() {
        assert_eq!(srv_weight(0), 1);
        assert_eq!(srv_weight(7), 7);
        assert_eq!(srv_weight(65535), 1000);
    }

    #[test]
    fn file_stamp_sees_changes() {
        let dir = std::env::temp_dir().join(format!("fulcrum-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.yaml");
        assert_eq!(file_stamp(&path), None);
        std::fs::write(&path, "[]").unwrap();
        let first = file_stamp(&path).unwrap();
        std::fs::write(&path, "- addr: 10.0.0.1:80\n").unwrap();
        assert_ne!(file_stamp(&path).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
