//! TLS settings of the data plane, read from PEM files at start: the HTTPS
//! server's certificate ([`server_config`]), and what the config stream
//! trusts and presents to the control plane ([`ControlPlaneTls`]). A file
//! that cannot be read or holds no certificate or key stops the process with
//! a message naming the flag and the file; nothing is retried or guessed.
//!
//! rustls with the ring provider throughout, as everywhere in the process.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {flag} {}: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {} holds no PEM certificate", path.display())]
    NoCertificate { flag: &'static str, path: PathBuf },
    #[error("{flag} {} holds no PEM private key", path.display())]
    NoKey { flag: &'static str, path: PathBuf },
    #[error("the certificate and key cannot serve TLS: {0}")]
    Server(#[from] rustls::Error),
}

/// A PEM file's contents, with the flag that named it for messages.
#[derive(Clone)]
pub struct PemFile {
    flag: &'static str,
    path: PathBuf,
    pem: Vec<u8>,
}

impl std::fmt::Debug for PemFile {
    /// The path only: the file may be a private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.flag, self.path.display())
    }
}

impl PemFile {
    pub fn read(flag: &'static str, path: &Path) -> Result<PemFile, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::Read {
            flag,
            path: path.to_owned(),
            source,
        })?;
        Ok(PemFile {
            flag,
            path: path.to_owned(),
            pem,
        })
    }

    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// The certificates in the file; at least one.
    pub fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&self.pem)
            .filter_map(Result::ok)
            .collect();
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                flag: self.flag,
                path: self.path.clone(),
            });
        }
        Ok(certs)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.pem).map_err(|_| TlsError::NoKey {
            flag: self.flag,
            path: self.path.clone(),
        })
    }
}

/// Accepts the HTTPS server's TLS connections.
#[derive(Clone)]
pub struct Acceptor(pub tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    /// Nothing of the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

/// The HTTPS server's acceptor: `cert` (chain) and `key`, offering HTTP/2
/// and HTTP/1.1 by ALPN.
pub fn acceptor(cert: &PemFile, key: &PemFile) -> Result<Acceptor, TlsError> {
    Ok(Acceptor(tokio_rustls::TlsAcceptor::from(server_config(
        cert, key,
    )?)))
}

fn server_config(cert: &PemFile, key: &PemFile) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cert.certificates()?, key.private_key()?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How the config stream reaches an `https://` control plane.
#[derive(Debug, Clone)]
pub struct ControlPlaneTls {
    /// The CA the control plane's certificate must chain to (no system
    /// roots are built in).
    pub ca: PemFile,
    /// Certificate and key presented for mutual TLS.
    pub identity: Option<(PemFile, PemFile)>,
    /// The name the certificate must carry, when not the URL's host.
    pub domain: Option<String>,
}

impl ControlPlaneTls {
    /// Checks the files hold what they should, so a mistake shows at start
    /// rather than as a failing handshake on every reconnect.
    pub fn check(&self) -> Result<(), TlsError> {
        self.ca.certificates()?;
        if let Some((cert, key)) = &self.identity {
            cert.certificates()?;
            key.private_key()?;
        }
        Ok(())
    }

    /// tonic's client configuration for a control plane named `host`.
    pub fn client_config(&self, host: &str) -> tonic::transport::ClientTlsConfig {
        let mut tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(self.ca.pem()))
            .domain_name(self.domain.as_deref().unwrap_or(host));
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(tonic::transport::Identity::from_pem(cert.pem(), key.pem()));
        }
        tls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(flag: &'static str, text: &str) -> (tempfile::NamedTempFile, PemFile) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        let pem = PemFile::read(flag, f.path()).unwrap();
        (f, pem)
    }

    #[test]
    fn a_missing_file_names_its_flag() {
        let e = PemFile::read("--tls-cert-file", Path::new("/nonexistent/cert.pem")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("--tls-cert-file") && text.contains("/nonexistent/cert.pem"),
            "{text}"
        );
    }

    #[test]
    fn files_without_pem_are_refused_by_name() {
        let (_c, cert) = file("--tls-cert-file", "not a certificate");
        let (_k, key) = file("--tls-key-file", "not a key");
        let e = server_config(&cert, &key).unwrap_err().to_string();
        assert!(
            e.contains("--tls-cert-file") && e.contains("no PEM certificate"),
            "{e}"
        );
        let tls = ControlPlaneTls {
            ca: cert,
            identity: None,
            domain: None,
        };
        assert!(
            tls.check()
                .unwrap_err()
                .to_string()
                .contains("no PEM certificate")
        );
    }

    #[test]
    fn debug_output_shows_paths_not_contents() {
        let (_k, key) = file(
            "--tls-key-file",
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        );
        let shown = format!("{key:?}");
        assert!(shown.contains("--tls-key-file"), "{shown}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }
}
