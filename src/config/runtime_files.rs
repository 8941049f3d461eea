//! Default `pid_file` and `upgrade_sock` paths, one pair per instance.
//!
//! Two fulcrums must never share these files: `--reload` finds the process to replace through
//! `pid_file`, and a new process takes over the sockets of whoever listens on `upgrade_sock`.
//! So when the `pingora:` section does not name them, their defaults are derived from what
//! identifies an instance:
//!
//! - a config file: its path made absolute (against the current directory) and lexically
//!   normalized (`.` and `..` removed), *without* resolving symbolic links, so that
//!   `-c conf/x.yaml` from `/srv` and `-c /srv/conf/x.yaml` are the same instance, and a deploy
//!   that points a symlink (`current.yaml`, `current/`) at a new file still reloads the
//!   instance started through that symlink;
//! - a command-line config (quick mode): its listening addresses, since two of them cannot
//!   listen on the same address anyway.
//!
//! The name is `/tmp/fulcrum-<label>-<hash>.pid` (and `-upgrade.sock`): the label (the file's
//! stem, or the addresses) tells a person which instance the file belongs to, and the hash (the
//! first 64 bits of the SHA-256 of the identity) keeps instances apart when labels collide.

use sha2::{Digest, Sha256};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Where default runtime files go (fixed, not `$TMPDIR`: a `--reload` run from another shell
/// must find the same files).
const DIR: &str = "/tmp";
/// The longest label kept in a file name (a Unix socket path has at most 107 bytes).
const MAX_LABEL: usize = 32;

/// The `pid_file` and `upgrade_sock` one instance uses when its config does not set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFiles {
    /// The default `pingora.pid_file`.
    pub pid_file: String,
    /// The default `pingora.upgrade_sock`.
    pub upgrade_sock: String,
}

impl RuntimeFiles {
    /// The defaults for the config file at `path`; the same for every spelling of the path
    /// that names the same absolute path (see the module doc).
    pub fn for_config_file(path: &Path) -> RuntimeFiles {
        let absolute = match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => path.to_path_buf(),
        };
        Self::for_absolute_file(&absolute)
    }

    /// [`RuntimeFiles::for_config_file`] for a path already joined to the current directory.
    fn for_absolute_file(path: &Path) -> RuntimeFiles {
        let normal = lexically_normal(path);
        let label = normal
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut identity = b"file:".to_vec();
        identity.extend_from_slice(normal.as_os_str().as_bytes());
        RuntimeFiles::named(&label, &identity)
    }

    /// The defaults for a config given on the command line, identified by its listening
    /// addresses (as written; quick mode has exactly one).
    pub fn for_listeners<'a>(addrs: impl IntoIterator<Item = &'a str>) -> RuntimeFiles {
        let addrs: Vec<String> = addrs
            .into_iter()
            .map(|a| {
                a.trim()
                    .parse::<std::net::SocketAddr>()
                    .map_or_else(|_| a.trim().to_string(), |s| s.to_string())
            })
            .collect();
        let joined = addrs.join(",");
        RuntimeFiles::named(&joined, format!("listen:{joined}").as_bytes())
    }

    fn named(label: &str, identity: &[u8]) -> RuntimeFiles {
        let hash = Sha256::digest(identity);
        let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        let label = sanitize(label);
        let base = if label.is_empty() {
            format!("{DIR}/fulcrum-{hex}")
        } else {
            format!("{DIR}/fulcrum-{label}-{hex}")
        };
        RuntimeFiles {
            pid_file: format!("{base}.pid"),
            upgrade_sock: format!("{base}-upgrade.sock"),
        }
    }
}

/// `path` without `.` components, and with each `..` removing the component before it (never
/// the root). Symbolic links are not looked at.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            Component::Prefix(_) | Component::RootDir | Component::Normal(_) => out.push(c),
        }
    }
    out
}

/// A label fit for a file name: ASCII letters, digits, `.` and `_` kept, runs of anything else
/// made one `-`, at most [`MAX_LABEL`] bytes.
fn sanitize(label: &str) -> String {
    let mut out = String::new();
    for ch in label.chars() {
        if ch.is_ascii_alphanumeric() || ch == '.' || ch == '_' {
            out.push(ch);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-');
    out[..out.len().min(MAX_LABEL)].trim_end_matches('-').into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gets_files_named_after_it() {
        let f = RuntimeFiles::for_absolute_file(Path::new("/etc/fulcrum/edge.yaml"));
        let base = f.pid_file.strip_suffix(".pid").expect("ends with .pid");
        assert!(base.starts_with("/tmp/fulcrum-edge-"), "{base}");
        let hash = base.rsplit('-').next().unwrap();
        assert_eq!(hash.len(), 16);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(f.upgrade_sock, format!("{base}-upgrade.sock"));
        assert!(f.upgrade_sock.len() < 108);
    }

    #[test]
    fn the_same_path_spelled_differently_is_the_same_instance() {
        let plain = RuntimeFiles::for_absolute_file(Path::new("/srv/conf/a.yaml"));
        for other in [
            "/srv/./conf/a.yaml",
            "/srv/conf/../conf/a.yaml",
            "/srv//conf/a.yaml",
            "/srv/x/y/../../conf/a.yaml",
        ] {
            assert_eq!(
                RuntimeFiles::for_absolute_file(Path::new(other)),
                plain,
                "{other}"
            );
        }
    }

    #[test]
    fn relative_paths_are_taken_from_the_current_directory() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            RuntimeFiles::for_config_file(Path::new("conf/a.yaml")),
            RuntimeFiles::for_absolute_file(&cwd.join("conf/a.yaml"))
        );
    }

    #[test]
    fn different_files_get_different_files_even_with_the_same_name() {
        let a = RuntimeFiles::for_absolute_file(Path::new("/srv/one/fulcrum.yaml"));
        let b = RuntimeFiles::for_absolute_file(Path::new("/srv/two/fulcrum.yaml"));
        let c = RuntimeFiles::for_absolute_file(Path::new("/srv/one/other.yaml"));
        assert_ne!(a.pid_file, b.pid_file);
        assert_ne!(a.upgrade_sock, b.upgrade_sock);
        assert_ne!(a.pid_file, c.pid_file);
        assert!(a.pid_file.starts_with("/tmp/fulcrum-fulcrum-"));
    }

    #[test]
    fn command_line_configs_are_told_apart_by_their_addresses() {
        let a = RuntimeFiles::for_listeners(["127.0.0.1:8080"]);
        let b = RuntimeFiles::for_listeners(["127.0.0.1:8081"]);
        assert_ne!(a, b);
        assert!(
            a.pid_file.starts_with("/tmp/fulcrum-127.0.0.1-8080-"),
            "{a:?}"
        );
        // The same address written differently is the same instance.
        assert_eq!(RuntimeFiles::for_listeners([" 127.0.0.1:8080"]), a);
        let v6 = RuntimeFiles::for_listeners(["[::1]:8080"]);
        assert!(v6.pid_file.starts_with("/tmp/fulcrum-1-8080-"), "{v6:?}");
        // A file and an address never share files, whatever their labels.
        assert_ne!(
            RuntimeFiles::for_absolute_file(Path::new("/x/127.0.0.1:8080")).pid_file,
            a.pid_file
        );
    }

    #[test]
    fn labels_are_safe_and_short() {
        assert_eq!(sanitize("my config (v2)"), "my-config-v2");
        assert_eq!(sanitize("../../etc"), "..-..-etc");
        assert_eq!(sanitize("é"), "");
        assert_eq!(sanitize(&"a".repeat(100)).len(), MAX_LABEL);
        let f = RuntimeFiles::for_absolute_file(Path::new("/x/ünï.yaml"));
        assert!(f.pid_file.starts_with("/tmp/fulcrum-n-"), "{f:?}");
        assert!(
            !RuntimeFiles::for_absolute_file(Path::new("/x/a b/c d.yaml"))
                .pid_file
                .contains(' ')
        );
    }
}
