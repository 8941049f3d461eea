//! The one seam between validation and the outside world: reading the files a config names
//! (certificates, keys, CA lists) and resolving backend host names. Validation takes a
//! [`Load`], so its rules can be tested without files or DNS; [`System`] does the real I/O.

use crate::tls::TlsError;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

/// The I/O validation needs.
pub trait Load {
    /// The contents of a file the config names.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The addresses `host:port` resolves to, best first.
    fn resolve(&self, host_port: &str) -> io::Result<Vec<SocketAddr>>;
}

/// The file system and the system's resolver.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Load for System {
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn resolve(&self, host_port: &str) -> io::Result<Vec<SocketAddr>> {
        Ok(host_port.to_socket_addrs()?.collect())
    }
}

/// A PEM file's bytes, or the TLS error that names it.
pub(super) fn read_pem(io: &dyn Load, file: &str) -> Result<Vec<u8>, TlsError> {
    io.read_file(Path::new(file))
        .map_err(|e| TlsError::Read(file.to_string(), e.to_string()))
}
