//! Facts about this process, set once at start-up: its build (`fulcrum_build_info`), the
//! config it runs on (`fulcrum_config_info`, `fulcrum_config_last_reload_success_timestamp_seconds`),
//! whether it took over from an older process (`fulcrum_started_by_upgrade`), and when each
//! listener certificate expires (`fulcrum_tls_certificate_not_after_timestamp_seconds`).

use super::gauge_vec;
use crate::config::model::{Listener, ListenerTls};
use pingora_prometheus::prometheus::{self, Gauge, IntGauge};
use std::time::{SystemTime, UNIX_EPOCH};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The Pingora version fulcrum is built on (checked against `Cargo.lock` by a test).
pub const PINGORA_VERSION: &str = "0.9.1";

/// What this process knows about how it started.
#[derive(Debug, Clone, Copy)]
pub struct StartFacts {
    /// Started with `-u`: took over the listening sockets of an older process (a reload).
    pub upgrade: bool,
}

/// Register the build, config and start-up facts, and the certificates of `listeners`.
pub fn register(facts: StartFacts, listeners: &[Listener]) {
    gauge_vec(
        "fulcrum_build_info",
        "Always 1; the labels say which fulcrum and which Pingora this process runs.",
        &["version", "pingora"],
    )
    .with_label_values(&[env!("CARGO_PKG_VERSION"), PINGORA_VERSION])
    .set(1);
    if let Some(loaded) = crate::config::source::loaded() {
        let file = loaded
            .path
            .as_ref()
            .map_or_else(|| "(command line)".to_string(), |p| p.display().to_string());
        gauge_vec(
            "fulcrum_config_info",
            "Always 1; the labels name the config file this process loaded (or \
             \"(command line)\" in quick mode) and the first 16 hex digits of its SHA-256.",
            &["hash", "file"],
        )
        .with_label_values(&[&loaded.hash, &file])
        .set(1);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    register_one_gauge(
        "fulcrum_config_last_reload_success_timestamp_seconds",
        "When this process loaded its config (unix seconds): a reload starts a new process.",
        now,
    );
    let upgraded = IntGauge::new(
        "fulcrum_started_by_upgrade",
        "1 when this process took over the listening sockets of an older one (-u, as \
         --reload does), 0 when it bound them itself.",
    )
    .expect("valid metric");
    upgraded.set(i64::from(facts.upgrade));
    let _ = prometheus::register(Box::new(upgraded));
    for l in listeners {
        if let Some(tls) = &l.tls {
            register_certificates(&l.addr.to_string(), tls);
        }
    }
}

fn register_one_gauge(name: &str, help: &str, value: f64) {
    let g = Gauge::new(name, help).expect("valid metric");
    g.set(value);
    let _ = prometheus::register(Box::new(g));
}

/// A certificate's subject and its expiry (`notAfter`, unix seconds), from its DER bytes.
pub fn not_after(der: &[u8]) -> Option<(String, i64)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some((
        cert.subject().to_string(),
        cert.validity().not_after.timestamp(),
    ))
}

/// Set the expiry gauge of every certificate of the listener at `listener`.
fn register_certificates(listener: &str, tls: &ListenerTls) {
    let v = gauge_vec(
        "fulcrum_tls_certificate_not_after_timestamp_seconds",
        "When a listener's certificate expires (its notAfter, unix seconds), by listener, \
         certificate subject and the host names it serves.",
        &["listener", "subject", "names"],
    );
    for c in &tls.certs {
        let Some(der) = c.key.cert.first() else {
            continue;
        };
        if let Some((subject, when)) = not_after(der) {
            v.with_label_values(&[listener, subject.as_str(), c.names.join(",").as_str()])
                .set(when);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pingora_version_is_the_one_in_cargo_lock() {
        let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock"))
            .expect("Cargo.lock");
        let at = lock
            .find("name = \"pingora-core\"\nversion = \"")
            .expect("pingora-core in Cargo.lock");
        let rest = &lock[at..];
        let version = rest.lines().nth(1).unwrap();
        assert_eq!(version, format!("version = \"{PINGORA_VERSION}\""));
    }

    #[test]
    fn a_certificates_expiry_is_read() {
        let mut params = rcgen::CertificateParams::new(vec!["example.test".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "example.test");
        params.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (subject, when) = not_after(cert.der()).unwrap();
        assert_eq!(subject, "CN=example.test");
        // 2031-01-02T00:00:00Z
        assert_eq!(when, 1_925_078_400);
        assert_eq!(not_after(b"not a certificate"), None);
    }
}
