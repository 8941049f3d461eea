//! [`H2Backend`]: a server that speaks nothing but HTTP/2, either in plain text with prior
//! knowledge (h2c) or over TLS offering ALPN `h2` only. An HTTP/1.1 request gets no answer
//! from it (the connection fails at the preface, or at the TLS handshake).

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;

use super::server::Server;

/// A running HTTP/2-only backend; stops when dropped.
pub struct H2Backend {
    server: Server,
    /// The certificate (PEM) of a TLS backend, for a client's `ca_file`.
    pub cert_pem: Option<String>,
}

impl H2Backend {
    /// A plaintext backend speaking HTTP/2 with prior knowledge.
    pub fn h2c(name: &'static str) -> H2Backend {
        let server = Server::start(move |stream| async move {
            let _ = serve(stream, name).await;
        });
        H2Backend {
            server,
            cert_pem: None,
        }
    }

    /// Like [`H2Backend::h2c`], on `port` (one [`super::free_port`] handed out earlier, e.g.
    /// to a config that names the backend before it runs).
    pub async fn h2c_on(port: u16, name: &'static str) -> H2Backend {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the h2c backend's port");
        let server = Server::start_on(listener, move |stream| async move {
            let _ = serve(stream, name).await;
        });
        H2Backend {
            server,
            cert_pem: None,
        }
    }

    /// A plaintext HTTP/2 backend that resets every stream with `REFUSED_STREAM` (RFC 9113
    /// 8.7: "not processed, safe to retry"), as one at its stream limit or shutting down does.
    pub fn refusing() -> H2Backend {
        let server = Server::start(|stream| async move {
            let Ok(mut conn) = h2::server::handshake(stream).await else {
                return;
            };
            while let Some(Ok((_req, mut respond))) = conn.accept().await {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
            }
        });
        H2Backend {
            server,
            cert_pem: None,
        }
    }

    /// A TLS backend with a self-signed certificate for `localhost` whose ALPN offers `h2`
    /// only.
    pub fn tls(name: &'static str) -> H2Backend {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("self-signed certificate");
        let cert_pem = cert.cert.pem();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let server = Server::start(move |stream| {
            let acceptor = acceptor.clone();
            async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    let _ = serve(tls, name).await;
                }
            }
        });
        H2Backend {
            server,
            cert_pem: Some(cert_pem),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.server.port()
    }
}

/// Serve one connection: every request gets 200 with a body naming the backend, the method,
/// the path and the `te` header, and a trailer `x-trailer: done`.
async fn serve<S>(stream: S, name: &'static str) -> Result<(), h2::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut conn = h2::server::handshake(stream).await?;
    while let Some(next) = conn.accept().await {
        let (req, mut respond) = next?;
        let te = req
            .headers()
            .get("te")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let body = format!(
            "{name} {} {} {:?} te={te}\n",
            req.method(),
            req.uri().path(),
            req.version()
        );
        let resp = http::Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(())
            .expect("response head");
        let Ok(mut send) = respond.send_response(resp, false) else {
            continue;
        };
        let _ = send.send_data(Bytes::from(body), false);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-trailer", http::HeaderValue::from_static("done"));
        let _ = send.send_trailers(trailers);
    }
    Ok(())
}
