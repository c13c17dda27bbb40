//! TLS client settings shared by the gRPC and HTTP transports.
//!
//! Trust is one of three, from [`TlsConfig`]: the CA certificates in `ca_file`
//! (instead of the built-in roots), the Mozilla roots from `webpki-roots`
//! (default, so the binary needs no system CA bundle), or no verification at
//! all (`insecure_skip_verify`, for tests), where signatures are still checked
//! but the certificate chain and name are not.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{self, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::config::TlsConfig;
use super::OtlpBuildError;

/// The server certificate verifier that `tls` asks for.
///
/// Both transports use it: hyper-rustls through [`client_config`], tonic
/// through `Endpoint::tls_config_with_verifier`, so they trust the same roots.
///
/// # Errors
/// [`OtlpBuildError::CaFile`] when `ca_file` cannot be read or holds no
/// certificate, [`OtlpBuildError::Tls`] when a certificate is unusable.
pub(crate) fn verifier(tls: &TlsConfig) -> Result<Arc<dyn ServerCertVerifier>, OtlpBuildError> {
    if tls.insecure_skip_verify {
        return Ok(Arc::new(SkipServerVerification(provider())));
    }
    let roots = match &tls.ca_file {
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_ca_file(path)? {
                roots.add(cert).map_err(|e| OtlpBuildError::CaFile {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            }
            roots
        }
    };
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| OtlpBuildError::Tls(e.to_string()))?;
    Ok(verifier)
}

/// A rustls client config with `verifier` and no ALPN protocols (hyper-rustls
/// sets them, and refuses a config that already has some).
///
/// # Errors
/// [`OtlpBuildError::Tls`] if the crypto provider offers no safe protocol version.
pub(crate) fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<ClientConfig, OtlpBuildError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| OtlpBuildError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(config)
}

/// The crypto provider every client of this module uses: `ring`, named
/// explicitly so a process-wide default installed elsewhere cannot change it.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, OtlpBuildError> {
    let ca_error = |reason: String| OtlpBuildError::CaFile {
        path: PathBuf::from(path),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ca_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(ca_error("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// Accepts any server certificate; still checks the handshake signatures so
/// the connection is at least encrypted to whoever holds the presented key.
#[derive(Debug)]
pub(crate) struct SkipServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ca_file_is_named() {
        let tls = TlsConfig {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            insecure_skip_verify: false,
        };
        let err = verifier(&tls).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn ca_file_without_certificates_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not a pem").unwrap();
        let tls = TlsConfig {
            ca_file: Some(file.path().to_path_buf()),
            insecure_skip_verify: false,
        };
        let err = verifier(&tls).err().unwrap();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn default_and_insecure_build_a_client_config() {
        for insecure_skip_verify in [false, true] {
            let tls = TlsConfig {
                ca_file: None,
                insecure_skip_verify,
            };
            let config = client_config(verifier(&tls).unwrap()).unwrap();
            assert!(config.alpn_protocols.is_empty());
        }
    }
}
