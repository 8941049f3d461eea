//! TLS: certificates for HTTPS listeners, chosen by SNI, and trust for HTTPS backends.
//!
//! fulcrum uses Pingora's `rustls` backend: it adds no system library to build or install,
//! and it only speaks TLS 1.2 and 1.3 with rustls' modern AEAD cipher suites (AES-GCM and
//! ChaCha20-Poly1305 with forward secrecy), which is the safe policy we want anyway.
//!
//! Everything is loaded and checked when the config is validated (so `fulcrum -t` catches a
//! missing file, a key that does not match its certificate, or an expired certificate, naming
//! the file), and the loaded keys are what the listeners serve.

use crate::config::model::{ListenerCert, ListenerTls};
use pingora_core::utils::tls::WrappedX509;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::fmt;
use std::io::BufReader;
use std::path::Path;
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
        }
    }
}

impl std::error::Error for TlsError {}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read(path.display().to_string(), e.to_string()))
}

/// The certificates of a PEM file, in order.
pub fn load_certs(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    let name = path.display().to_string();
    let pem = read_pem(path)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(&pem[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Parse(name.clone(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Empty(name, "PEM certificate"));
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

/// Load a certificate chain and its key, check that they match and that the certificate is
/// valid now; returns the key and the certificate's DNS names.
pub fn load_cert_key(
    cert: &Path,
    key: &Path,
) -> Result<(Arc<CertifiedKey>, Vec<String>), TlsError> {
    let chain = load_certs(cert)?;
    let cert_name = cert.display().to_string();
    let names = inspect(&chain[0], &cert_name)?;
    let key_name = key.display().to_string();
    let pem = read_pem(key)?;
    let der = rustls_pemfile::private_key(&mut BufReader::new(&pem[..]))
        .map_err(|e| TlsError::Parse(key_name.clone(), e.to_string()))?
        .ok_or_else(|| TlsError::Empty(key_name.clone(), "PEM private key"))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, der, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch(key_name.clone(), cert_name),
        other => TlsError::Parse(key_name.clone(), other.to_string()),
    })?;
    Ok((Arc::new(certified), names))
}

/// CA certificates for verifying backends, in the form Pingora's peers take.
pub fn load_ca(path: &Path) -> Result<Arc<[WrappedX509]>, TlsError> {
    let name = path.display().to_string();
    let certs = load_certs(path)?;
    certs
        .into_iter()
        .map(|der| {
            X509Certificate::from_der(der.as_ref())
                .map_err(|e| TlsError::Parse(name.clone(), e.to_string()))?;
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
    let certs = rustls_pemfile::certs(&mut BufReader::new(PLACEHOLDER_CA.as_bytes()))
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
    /// A resolver over a listener's certificates (the first is the default).
    pub fn new(tls: &ListenerTls) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for ListenerCert { names, key, .. } in &tls.certs {
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
            default: tls.certs.first().map(|c| Arc::clone(&c.key)),
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
