//! TLS: certificates for HTTPS listeners, chosen by SNI, and trust for HTTPS backends.
//!
//! fulcrum uses Pingora's `rustls` backend: it adds no system library to build or install,
//! and it only speaks TLS 1.2 and 1.3 with rustls' modern AEAD cipher suites (AES-GCM and
//! ChaCha20-Poly1305 with forward secrecy), which is the safe policy we want anyway.
//!
//! Everything is checked when the config is validated (so `fulcrum -t` catches a missing file,
//! a key that does not match its certificate, or an expired certificate, naming the file), and
//! the checked keys are what the listeners serve. This module works on PEM bytes and names:
//! reading the files is the config's job, so TLS sits below the config layer.

use pingora_core::utils::tls::WrappedX509;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a certificate or key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    /// The file cannot be read.
    Read(String, String),
    /// No certificate (or no key) in the file.
    Empty(String, &'static str),
    /// The file does not parse.
    Parse(String, String),
    /// The key does not belong to the certificate.
    KeyMismatch(String, String),
    /// The certificate is not valid now.
    Expired(String, String),
    /// Session-ticket keys cannot be made (the system's random source failed).
    Ticketer(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read(file, e) => write!(f, "cannot read {file}: {e}"),
            TlsError::Empty(file, what) => write!(f, "{file} contains no {what}"),
            TlsError::Parse(file, e) => write!(f, "{file} does not parse: {e}"),
            TlsError::KeyMismatch(key, cert) => {
                write!(
                    f,
                    "the key in {key} does not match the certificate in {cert}"
                )
            }
            TlsError::Expired(file, when) => write!(f, "the certificate in {file} {when}"),
            TlsError::Ticketer(e) => write!(f, "cannot make session ticket keys: {e}"),
        }
    }
}

impl std::error::Error for TlsError {}

/// The certificates of the PEM text `pem` (read from the file named `file`), in order.
pub fn parse_certs(pem: &[u8], file: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Parse(file.to_string(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty(file.to_string(), "PEM certificate"));
    }
    Ok(certs)
}

/// DNS names (SAN, else CN) of a DER certificate, and its validity check against now.
fn inspect(der: &[u8], file: &str) -> Result<Vec<String>, TlsError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| TlsError::Parse(file.to_string(), e.to_string()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let validity = cert.validity();
    if validity.not_after.timestamp() < now {
        return Err(TlsError::Expired(
            file.to_string(),
            format!("expired on {}", validity.not_after),
        ));
    }
    if validity.not_before.timestamp() > now {
        return Err(TlsError::Expired(
            file.to_string(),
            format!("is not valid before {}", validity.not_before),
        ));
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert.subject().iter_common_name().next() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// A listener's certificate chain (PEM text of the file `file`), checked to be valid now;
/// returns the chain and the DNS names of its first certificate.
pub fn server_chain(
    pem: &[u8],
    file: &str,
) -> Result<(Vec<CertificateDer<'static>>, Vec<String>), TlsError> {
    let chain = parse_certs(pem, file)?;
    let names = inspect(&chain[0], file)?;
    Ok((chain, names))
}

/// The key for a chain from [`server_chain`] (read from the file `cert_file`), from the PEM
/// text of the file `key_file`, checked to match the chain's certificate.
pub fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    cert_file: &str,
    key_pem: &[u8],
    key_file: &str,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            TlsError::Empty(key_file.to_string(), "PEM private key")
        }
        other => TlsError::Parse(key_file.to_string(), other.to_string()),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, der, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            TlsError::KeyMismatch(key_file.to_string(), cert_file.to_string())
        }
        other => TlsError::Parse(key_file.to_string(), other.to_string()),
    })?;
    Ok(Arc::new(certified))
}

/// A source of stateless TLS session tickets for an HTTPS listener, as nginx's default
/// `ssl_session_tickets on`: tickets are encrypted with ChaCha20-Poly1305 under random keys
/// that live only in this process and rotate every 6 hours (a ticket stays valid for up to
/// 12), so the server keeps no per-session state and any number of clients can resume.
/// Tickets issued by another process (before a reload or restart) are not accepted: those
/// clients make one full handshake and get new tickets.
pub fn session_ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, TlsError> {
    rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Ticketer(e.to_string()))
}

/// CA certificates for verifying backends (PEM text of the file `file`), in the form
/// Pingora's peers take.
pub fn ca_list(pem: &[u8], file: &str) -> Result<Arc<[WrappedX509]>, TlsError> {
    parse_certs(pem, file)?
        .into_iter()
        .map(|der| {
            X509Certificate::from_der(der.as_ref())
                .map_err(|e| TlsError::Parse(file.to_string(), e.to_string()))?;
            Ok(WrappedX509::new(der.to_vec(), |raw| {
                // Parsed just above, so this succeeds.
                X509Certificate::from_der(raw)
                    .map(|(_, c)| c)
                    .unwrap_or_else(|_| unreachable!("certificate parsed a moment ago"))
            }))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Into::into)
}

/// A stand-in CA for `insecure_skip_verify`: Pingora's rustls connector only honours
/// "do not verify" on its per-peer configuration path, which it takes when a peer has its own
/// CA list. This self-signed certificate is never trusted for anything, since verification is
/// off for those peers.
const PLACEHOLDER_CA: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBtzCCAV2gAwIBAgIUP4LFY6z6RHdh3UkhFCvUb9gkyRAwCgYIKoZIzj0EAwIw\n\
MDEuMCwGA1UEAwwlZnVsY3J1bSBwbGFjZWhvbGRlciBDQSwgbmV2ZXIgdHJ1c3Rl\n\
ZDAgFw0yNjExMjMxMjE2MjhaGA8yMTI2MTAzMDEyMTYyOFowMDEuMCwGA1UEAwwl\n\
ZnVsY3J1bSBwbGFjZWhvbGRlciBDQSwgbmV2ZXIgdHJ1c3RlZDBZMBMGByqGSM49\n\
AgEGCCqGSM49AwEHA0IABONnpFdA/ZY3/HIv2vvatxd5/sxyp5F+LDDPysiI+1Ho\n\
uGo7FFCyR+azp3RU7qOO64nAfSB6KDC5P0mI5Rh72HGjUzBRMB0GA1UdDgQWBBQD\n\
3qil8TVlRuGqqBivNpzmboKQBjAfBgNVHSMEGDAWgBQD3qil8TVlRuGqqBivNpzm\n\
boKQBjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQCiEIpCFRyU\n\
cQrkLPGd6Dct8s1YRvDBYLzo0F/mht44SAIgZ0Cf12hlaVP2qsaBk5cD3y6db8bx\n\
7FJ2G5IvJwKUq8g=\n\
-----END CERTIFICATE-----\n\
";

/// The CA list to give an insecure peer (its configured CA, or the placeholder).
pub fn placeholder_ca() -> Option<Arc<[WrappedX509]>> {
    let certs = CertificateDer::pem_slice_iter(PLACEHOLDER_CA.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let wrapped: Vec<WrappedX509> = certs
        .into_iter()
        .filter(|der| X509Certificate::from_der(der.as_ref()).is_ok())
        .map(|der| {
            WrappedX509::new(der.to_vec(), |raw| {
                X509Certificate::from_der(raw)
                    .map(|(_, c)| c)
                    .unwrap_or_else(|_| unreachable!("checked by the filter above"))
            })
        })
        .collect();
    (!wrapped.is_empty()).then(|| wrapped.into())
}

/// Picks a listener's certificate by SNI: exact name, then `*.` wildcard (one label), then
/// the first certificate of the listener.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// A resolver over a listener's certificates, given as (DNS names, key) pairs; the first
    /// is the default.
    pub fn new<'a>(certs: impl IntoIterator<Item = (&'a [String], &'a Arc<CertifiedKey>)>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        for (names, key) in certs {
            default.get_or_insert_with(|| Arc::clone(key));
            for name in names {
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_string()),
                    None => exact.entry(name.clone()),
                }
                .or_insert_with(|| Arc::clone(key));
            }
        }
        SniResolver {
            exact,
            wildcard,
            default,
        }
    }

    /// The certificate for a server name (`None`: no SNI sent).
    pub fn pick(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return Some(Arc::clone(k));
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.wildcard.get(parent) {
                    return Some(Arc::clone(k));
                }
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_ca_parses() {
        assert_eq!(placeholder_ca().map(|c| c.len()), Some(1));
    }

    #[test]
    fn pem_errors_name_the_file() {
        assert_eq!(
            parse_certs(b"not a certificate\n", "a.pem").unwrap_err(),
            TlsError::Empty("a.pem".into(), "PEM certificate")
        );
        let cut = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
        assert!(matches!(
            parse_certs(cut, "cut.pem"),
            Err(TlsError::Parse(file, _)) if file == "cut.pem"
        ));
        let (chain, names) = server_chain(PLACEHOLDER_CA.as_bytes(), "ca.pem").unwrap();
        assert_eq!(names, ["fulcrum placeholder ca, never trusted"]);
        assert_eq!(
            certified_key(chain, "ca.pem", b"no key here\n", "k.pem").unwrap_err(),
            TlsError::Empty("k.pem".into(), "PEM private key")
        );
    }
}
