//! [`TlsConfig`] (feature `tls`): the server's certificate chain and private key, read from PEM,
//! and the TLS handshake of each accepted connection.

use std::{fmt, path::Path, sync::Arc};

use tokio::net::TcpStream;
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    },
    server::TlsStream,
};

use crate::Error;

/// What [`serve`](crate::serve) needs to speak HTTPS: a certificate chain and its private key.
///
/// rustls with the aws-lc-rs provider; TLS 1.2 and 1.3, HTTP/1.1 (ALPN `http/1.1`). The
/// handshake runs on the connection's own task, within
/// [`header_read_timeout`](crate::ServerConfig::header_read_timeout), after the per-address
/// connection limit has admitted it: a client that opens a connection and never finishes the
/// handshake holds one connection slot for that long, like one that never sends its headers.
///
/// ```
/// use artifact_http::{ServerConfig, TlsConfig};
///
/// let key = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
/// let tls = TlsConfig::from_pem(key.cert.pem().as_bytes(), key.signing_key.serialize_pem().as_bytes())?;
/// let config = ServerConfig::default().tls(Some(tls));
/// assert!(config.tls.is_some());
///
/// let err = TlsConfig::from_pem(b"not a certificate", b"").unwrap_err();
/// assert_eq!(err.to_string(), "cannot use the TLS certificate <memory>: no certificate in it");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Reads the certificate chain (the server's certificate first, then its intermediates)
    /// and the private key (PKCS#8, PKCS#1 or SEC1) from PEM files.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] naming the file that cannot be read, holds no certificate or key, or
    /// whose key does not fit the certificate.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, Error> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|err| Error::Tls {
                what,
                path: path.to_owned(),
                reason: "cannot read it".into(),
                source: Some(Arc::new(err)),
            })
        };
        Self::build(&read("certificate", cert)?, cert, &read("key", key)?, key)
    }

    /// Like [`from_pem_files`](TlsConfig::from_pem_files), from PEM text in memory.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] as for [`from_pem_files`](TlsConfig::from_pem_files), naming `<memory>`.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, Error> {
        let memory = Path::new("<memory>");
        Self::build(cert, memory, key, memory)
    }

    fn build(cert: &[u8], cert_path: &Path, key: &[u8], key_path: &Path) -> Result<Self, Error> {
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| tls_error("certificate", cert_path, err.to_string()))?;
        if chain.is_empty() {
            return Err(tls_error("certificate", cert_path, "no certificate in it".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|err| {
            let reason = match err {
                rustls::pki_types::pem::Error::NoItemsFound => "no private key in it".into(),
                err => err.to_string(),
            };
            tls_error("key", key_path, reason)
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| tls_error("certificate", cert_path, err.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|err| tls_error("key", key_path, err.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig { acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// The TLS handshake on an accepted connection.
    pub(crate) async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.acceptor.accept(stream).await
    }
}

fn tls_error(what: &'static str, path: &Path, reason: String) -> Error {
    Error::Tls { what, path: path.to_owned(), reason, source: None }
}
