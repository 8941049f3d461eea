//! The runtime API's state file (`admin.state_file`): what the API changed, kept across
//! restarts and `fulcrum --reload`, like HAProxy's server-state file.
//!
//! After every successful change the admin listener writes every group's runtime state (the
//! backends the API added, and its overrides by address: state, weight, deleted) as JSON,
//! atomically: to a temporary file in the same directory (mode 0600), then renamed over the
//! old one. At start, before the first discovery answer, the file is read and each group that
//! still exists takes its state back. A file that cannot be read or parsed is ignored with a
//! warning: fulcrum never refuses to start because of it. Deleting the file clears it.

mod splits;

pub use splits::SplitState;

use crate::balancer::group::Override;
use crate::balancer::stats::State;
use crate::balancer::UpstreamGroup;
use crate::config::model::Backend;
use crate::config::validate::MAX_WEIGHT;
use crate::proxy::state::ProxyState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The format version written in the file.
pub const VERSION: u32 = 1;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// Runtime state by upstream group name.
    pub upstreams: BTreeMap<String, GroupState>,
    /// Split weights changed through `PATCH /routes/ID/split`, by route ID.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub splits: BTreeMap<String, SplitState>,
}

/// One group's runtime state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupState {
    /// Backends added through the API, in the order they were added.
    #[serde(default)]
    pub added: Vec<AddedBackend>,
    /// Overrides by address.
    #[serde(default)]
    pub overrides: Vec<OverrideEntry>,
}

/// A backend added through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddedBackend {
    /// Its address.
    pub addr: SocketAddr,
    /// Its weight.
    pub weight: u32,
}

/// An override of one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideEntry {
    /// The backend's address.
    pub addr: SocketAddr,
    /// `drain` or `disabled` (absent: enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Weight set through the API (absent: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// Deleted through the API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// Why the state file could not be used.
#[derive(Debug)]
pub enum StateFileError {
    /// Reading or writing failed.
    Io(PathBuf, std::io::Error),
    /// The file is not a state file.
    Parse(PathBuf, String),
    /// Written by another format version.
    Version(PathBuf, u32),
}

impl fmt::Display for StateFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateFileError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            StateFileError::Parse(p, e) => write!(f, "{}: not a state file: {e}", p.display()),
            StateFileError::Version(p, v) => write!(
                f,
                "{}: format version {v}, this fulcrum reads version {VERSION}",
                p.display()
            ),
        }
    }
}

impl std::error::Error for StateFileError {}

impl GroupState {
    /// The state of a group now.
    pub fn of(group: &UpstreamGroup) -> GroupState {
        let (api, overrides) = group.runtime_state();
        GroupState {
            added: api
                .iter()
                .map(|b| AddedBackend {
                    addr: b.addr,
                    weight: b.weight,
                })
                .collect(),
            overrides: overrides
                .iter()
                .map(|(addr, o)| OverrideEntry {
                    addr: *addr,
                    state: o.state.map(|s| s.name().to_string()),
                    weight: o.weight,
                    deleted: o.deleted,
                })
                .collect(),
        }
    }

    /// The API backends and overrides to restore; entries with a weight out of bounds or an
    /// unknown state are left out, each named in the returned warnings.
    pub fn to_runtime(&self) -> (Vec<Backend>, BTreeMap<SocketAddr, Override>, Vec<String>) {
        let weight_ok = |w: u32| (1..=MAX_WEIGHT).contains(&i64::from(w));
        let mut warnings = Vec::new();
        let mut api = Vec::new();
        for b in &self.added {
            if !weight_ok(b.weight) {
                warnings.push(format!("added backend {}: bad weight {}", b.addr, b.weight));
                continue;
            }
            api.push(Backend {
                addr: b.addr,
                host: None,
                weight: b.weight,
            });
        }
        let mut overrides = BTreeMap::new();
        for o in &self.overrides {
            let state = match o.state.as_deref() {
                None => None,
                Some(name) => match State::parse(name) {
                    Some(State::Enabled) => None,
                    Some(s) => Some(s),
                    None => {
                        warnings.push(format!("override of {}: unknown state {name:?}", o.addr));
                        continue;
                    }
                },
            };
            if let Some(w) = o.weight.filter(|w| !weight_ok(*w)) {
                warnings.push(format!("override of {}: bad weight {w}", o.addr));
                continue;
            }
            overrides.insert(
                o.addr,
                Override {
                    state,
                    weight: o.weight,
                    deleted: o.deleted,
                },
            );
        }
        (api, overrides, warnings)
    }

    /// Nothing changed through the API.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.overrides.is_empty()
    }
}

impl StateFile {
    /// The runtime state of every group now (groups without any left out), and the splits
    /// whose weights were changed.
    pub fn of(state: &ProxyState) -> StateFile {
        StateFile {
            version: VERSION,
            upstreams: state
                .groups
                .iter()
                .map(|g| (g.config.name.clone(), GroupState::of(g)))
                .filter(|(_, s)| !s.is_empty())
                .collect(),
            splits: splits::of(state),
        }
    }

    /// Parse a file's contents.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<StateFile, StateFileError> {
        let file: StateFile = serde_json::from_slice(bytes)
            .map_err(|e| StateFileError::Parse(path.to_path_buf(), e.to_string()))?;
        if file.version != VERSION {
            return Err(StateFileError::Version(path.to_path_buf(), file.version));
        }
        Ok(file)
    }

    /// Read the file at `path`; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<StateFile>, StateFileError> {
        match std::fs::read(path) {
            Ok(bytes) => StateFile::parse(path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateFileError::Io(path.to_path_buf(), e)),
        }
    }

    /// Write to `path` atomically: a temporary file (mode 0600) in the same directory,
    /// flushed, then renamed over `path`.
    pub fn write(&self, path: &Path) -> Result<(), StateFileError> {
        let io = |e| StateFileError::Io(path.to_path_buf(), e);
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| StateFileError::Parse(path.to_path_buf(), e.to_string()))?;
        bytes.push(b'\n');
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // One temporary name per process: during a reload, old and new may both write.
        let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        // Created anew (O_EXCL never follows a link), so nothing placed at the temporary name in
        // a shared directory is written through.
        let _ = std::fs::remove_file(&tmp);
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }

    /// Give each group that still exists its state back, and each split whose config did not
    /// change its weights; the others are named in a warning.
    pub fn restore(&self, proxy: &ProxyState, path: &Path) {
        for reason in splits::restore(proxy, &self.splits) {
            log::warn!(
                "state file {}: {reason}; its runtime weights are dropped",
                path.display()
            );
        }
        let groups = &proxy.groups;
        for (name, state) in &self.upstreams {
            let Some(group) = groups.iter().find(|g| &g.config.name == name) else {
                log::warn!(
                    "state file {}: upstream {name} is no longer in the config; its runtime \
                     changes are dropped",
                    path.display()
                );
                continue;
            };
            let (api, overrides, warnings) = state.to_runtime();
            for w in warnings {
                log::warn!(
                    "state file {}: upstream {name}: {w}; left out",
                    path.display()
                );
            }
            log::info!(
                "upstream {name}: runtime API state restored from {} ({} added, {} overrides)",
                path.display(),
                api.len(),
                overrides.len()
            );
            group.restore(api, overrides);
        }
    }
}

/// At start: restore the groups from the state file at `path` if there is one. Never fails:
/// an unreadable or corrupt file is reported and ignored.
pub fn restore_at_start(path: &Path, state: &ProxyState) {
    match StateFile::read(path) {
        Ok(Some(file)) => file.restore(state, path),
        Ok(None) => {}
        Err(e) => log::warn!("runtime API state file ignored: {e}"),
    }
}

/// Writes the state file after each change, one write at a time.
#[derive(Debug)]
pub struct StateWriter {
    path: PathBuf,
    lock: Mutex<()>,
}

impl StateWriter {
    /// A writer to `path`.
    pub fn new(path: PathBuf) -> Self {
        StateWriter {
            path,
            lock: Mutex::new(()),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write the runtime state now. The lock makes the last writer's snapshot the newest.
    pub fn save(&self, state: &ProxyState) -> Result<(), StateFileError> {
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        StateFile::of(state).write(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateFile {
        let mut upstreams = BTreeMap::new();
        upstreams.insert(
            "app".to_string(),
            GroupState {
                added: vec![AddedBackend {
                    addr: "10.0.0.5:8080".parse().unwrap(),
                    weight: 2,
                }],
                overrides: vec![
                    OverrideEntry {
                        addr: "[::1]:81".parse().unwrap(),
                        state: Some("drain".into()),
                        weight: Some(7),
                        deleted: false,
                    },
                    OverrideEntry {
                        addr: "127.0.0.1:82".parse().unwrap(),
                        state: None,
                        weight: None,
                        deleted: true,
                    },
                ],
            },
        );
        let mut splits = BTreeMap::new();
        splits.insert(
            "api".to_string(),
            SplitState {
                config: [("v1".to_string(), 90), ("v2".to_string(), 10)].into(),
                weights: [("v1".to_string(), 70), ("v2".to_string(), 30)].into(),
            },
        );
        StateFile {
            version: VERSION,
            upstreams,
            splits,
        }
    }

    #[test]
    fn round_trip_through_a_file_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.state.json");
        assert!(StateFile::read(&path).unwrap().is_none(), "no file: None");
        let file = sample();
        file.write(&path).unwrap();
        assert_eq!(StateFile::read(&path).unwrap(), Some(file.clone()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Written again over the old one; no temporary file left behind.
        file.write(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["f.state.json".to_string()]);
    }

    #[test]
    fn runtime_form_keeps_valid_entries_and_names_bad_ones() {
        let (api, overrides, warnings) = sample().upstreams["app"].to_runtime();
        assert_eq!(api.len(), 1);
        assert_eq!(api[0].weight, 2);
        let v6: SocketAddr = "[::1]:81".parse().unwrap();
        assert_eq!(
            overrides[&v6],
            Override {
                state: Some(State::Drain),
                weight: Some(7),
                deleted: false
            }
        );
        assert!(overrides[&"127.0.0.1:82".parse().unwrap()].deleted);
        assert!(warnings.is_empty());

        let bad = GroupState {
            added: vec![AddedBackend {
                addr: "10.0.0.1:1".parse().unwrap(),
                weight: 0,
            }],
            overrides: vec![OverrideEntry {
                addr: "10.0.0.2:1".parse().unwrap(),
                state: Some("removed".into()),
                weight: None,
                deleted: false,
            }],
        };
        let (api, overrides, warnings) = bad.to_runtime();
        assert!(api.is_empty() && overrides.is_empty());
        assert_eq!(
            warnings,
            vec![
                "added backend 10.0.0.1:1: bad weight 0".to_string(),
                "override of 10.0.0.2:1: unknown state \"removed\"".to_string()
            ]
        );
    }

    #[test]
    fn corrupt_and_foreign_files_are_errors() {
        let p = Path::new("/x/s.json");
        assert!(matches!(
            StateFile::parse(p, b"{not json"),
            Err(StateFileError::Parse(..))
        ));
        assert!(matches!(
            StateFile::parse(p, br#"{"version": 9, "upstreams": {}}"#),
            Err(StateFileError::Version(_, 9))
        ));
        assert!(matches!(
            StateFile::parse(p, br#"{"version": 1, "upstreams": {}, "x": 1}"#),
            Err(StateFileError::Parse(..))
        ));
        assert_eq!(
            StateFile::parse(p, br#"{"version": 1, "upstreams": {"a": {}}}"#)
                .unwrap()
                .upstreams["a"],
            GroupState::default()
        );
    }
}
