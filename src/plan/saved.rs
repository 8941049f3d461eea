//! The copy of its config a running fulcrum keeps next to its pid file, for
//! `fulcrum --reload --dry-run`.
//!
//! At start, once the process owns its listening sockets (so a reload that fails to take over
//! leaves the running process's copy alone), it writes the config file's text, byte for byte
//! as it read it, to [`path_for`] its `pid_file` (`/tmp/fulcrum.pid` gives
//! `/tmp/fulcrum.config.yaml`), mode 0600, replacing the file atomically. In the foreground
//! the copy is written before the pid file, so `--reload`, which waits for the pid file, never
//! returns before the new process's copy is in place.

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where the process with `pid_file` keeps its config copy: the pid file's path with the
/// extension `.config.yaml`.
pub fn path_for(pid_file: &str) -> PathBuf {
    Path::new(pid_file).with_extension("config.yaml")
}

/// Why the running fulcrum's config copy cannot be used.
#[derive(Debug)]
pub enum SavedError {
    /// There is no copy (the process was started before fulcrum kept one, or could not
    /// write it).
    Missing {
        /// The running process.
        pid: i32,
        /// Where the copy should be.
        path: PathBuf,
    },
    /// The copy cannot be read.
    Read {
        /// Where the copy is.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

impl std::fmt::Display for SavedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SavedError::Missing { pid, path } => write!(
                f,
                "pid {pid} left no copy of its config at {} (it may predate this fulcrum); \
                 compare files with `fulcrum diff OLD NEW` instead",
                path.display()
            ),
            SavedError::Read { path, error } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
        }
    }
}

impl std::error::Error for SavedError {}

/// The saved config text of running process `pid` at `path`.
pub fn read(path: &Path, pid: i32) -> Result<String, SavedError> {
    std::fs::read_to_string(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => SavedError::Missing {
            pid,
            path: path.to_path_buf(),
        },
        _ => SavedError::Read {
            path: path.to_path_buf(),
            error,
        },
    })
}

/// Write `text` to `path`, mode 0600, through a temporary file renamed over it. Refuses to
/// replace `source` itself (a config file that happens to sit where the copy goes).
pub fn write(path: &Path, text: &str, source: Option<&Path>) -> std::io::Result<()> {
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if source.is_some_and(|s| same(s, path)) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "it is the config file itself",
        ));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    // The copy may hold secrets and may live in a shared directory such as /tmp: the
    // temporary file is created anew (O_EXCL, which never follows a symbolic link), so a file
    // or link someone placed at its name is never written through, and its mode is 0600 from
    // the start.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A background service that writes the config copy, then reports ready (so that services
/// depending on it, the pid file, follow).
pub struct SaveConfig {
    /// Where the copy goes ([`path_for`]).
    pub path: PathBuf,
    /// The config file's text as read.
    pub text: String,
    /// The config file, which is never overwritten.
    pub source: Option<PathBuf>,
}

#[async_trait]
impl BackgroundService for SaveConfig {
    async fn start_with_ready_notifier(
        &self,
        _shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        if let Err(e) = write(&self.path, &self.text, self.source.as_deref()) {
            log::warn!(
                "cannot save a copy of the config to {} (for --reload --dry-run): {e}",
                self.path.display()
            );
        }
        ready.notify_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_copy_sits_next_to_the_pid_file() {
        assert_eq!(
            path_for("/tmp/fulcrum.pid"),
            PathBuf::from("/tmp/fulcrum.config.yaml")
        );
        assert_eq!(
            path_for("/run/fulcrum/pid"),
            PathBuf::from("/run/fulcrum/pid.config.yaml")
        );
    }

    #[test]
    fn writes_the_bytes_private_and_never_over_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.config.yaml");
        let text = "# as written\nlisteners: []\n";
        write(&path, text, None).unwrap();
        write(&path, text, None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(write(&path, "other", Some(&path)).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(matches!(
            read(&dir.path().join("none.yaml"), 7),
            Err(SavedError::Missing { pid: 7, .. })
        ));
    }

    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let path = dir.path().join("f.config.yaml");
        let tmp = dir
            .path()
            .join(format!("f.config.yaml.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write(&path, "secret: 1\n", None).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "secret: 1\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
