//! TLS on the receivers: `[receivers.otlp.grpc.tls]` and `[receivers.otlp.http.tls]`.
//!
//! The certificate and key are PEM files. With `client_ca_file` every client
//! must present a certificate signed by one of its CAs (mTLS), and the subject
//! Common Name of that certificate reaches the request handlers as a
//! [`PeerIdentity`] in the request's extensions.
//!
//! # Reload
//! Every `reload_interval` the files' modification times (and sizes) are
//! looked at; when one changed, the whole rustls `ServerConfig` is rebuilt
//! and swapped in, so a rotated certificate, key or client CA is used by the
//! next handshake without a restart. A reload that fails (a half-written
//! file, a key not matching the certificate) keeps the previous
//! configuration, logs a warning and counts
//! `otlp_gateway_receiver_tls_reload_errors_total`; it is tried again as soon
//! as a file changes again.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use metrics::counter;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{InconsistentKeys, RootCertStore, ServerConfig};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::settings::units::HumanDuration;
use crate::telemetry::metrics::RECEIVER_TLS_RELOAD_ERRORS;

/// ALPN of the OTLP/gRPC listener: HTTP/2 only.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN of the OTLP/HTTP listener: HTTP/2 and HTTP/1.1.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// `[receivers.otlp.grpc.tls]` / `[receivers.otlp.http.tls]`: serve TLS instead of plain text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The server certificate chain, PEM (leaf first). Example: `cert_file = "/etc/otlp-gateway/tls/server.pem"`.
    pub cert_file: PathBuf,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to. When set, every client
    /// must present a valid certificate (mTLS), and its subject CN identifies the client.
    /// Default: none (no client certificates asked for).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// How often the files' modification times are looked at; a changed file is re-read and
    /// used by the next handshake. `"0s"` turns reloading off. Default `"1m"`.
    #[serde(default = "default_reload_interval")]
    pub reload_interval: HumanDuration,
}

fn default_reload_interval() -> HumanDuration {
    HumanDuration::from_secs(60)
}

/// Who the client is, from its verified certificate (mTLS only). Inserted into
/// every request's extensions (`request.extensions().get::<PeerIdentity>()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject Common Name of the client certificate.
    pub subject_cn: Arc<str>,
}

/// Why the TLS settings of a receiver cannot be used. Each names the file (and its key).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {key} {}: {source}", .path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("{key} {}: {reason}", .path.display())]
    Invalid {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    /// The private key is not the one of the certificate.
    #[error(
        "key_file {} does not match the certificate in cert_file {}",
        .key_file.display(),
        .cert_file.display()
    )]
    KeyMismatch {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
    /// rustls refused the settings (no safe protocol version in the crypto provider).
    #[error("TLS settings: {0}")]
    Settings(#[source] rustls::Error),
}

/// A receiver's TLS: the current rustls configuration, swapped when the files change.
#[derive(Debug)]
pub struct TlsServer {
    transport: &'static str,
    settings: ServerTlsConfig,
    alpn: &'static [&'static [u8]],
    current: RwLock<Arc<ServerConfig>>,
    /// Modification time and size of each file as last read (`None`: could not stat).
    seen: Mutex<Stamps>,
}

type Stamps = Vec<Option<(SystemTime, u64)>>;

impl TlsServer {
    /// Reads the files of `settings` and builds the rustls configuration offering `alpn`.
    ///
    /// # Errors
    /// A [`TlsError`] naming the file that is missing, holds no PEM certificate or key, or
    /// whose key does not match the certificate.
    pub fn load(
        transport: &'static str,
        settings: &ServerTlsConfig,
        alpn: &'static [&'static [u8]],
    ) -> Result<Self, TlsError> {
        // Stat before reading: a change made while reading is seen at the next look.
        let seen = stamps(settings);
        let config = build(settings, alpn)?;
        Ok(TlsServer {
            transport,
            settings: settings.clone(),
            alpn,
            current: RwLock::new(Arc::new(config)),
            seen: Mutex::new(seen),
        })
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        let current = match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        TlsAcceptor::from(current)
    }

    /// Re-reads the files when one changed since the last look (blocking file I/O).
    /// `Ok(true)`: the new configuration is in use.
    ///
    /// # Errors
    /// Why the changed files cannot be used; the previous configuration stays in use, and the
    /// same files are not reported again until one changes again.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamps(&self.settings);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let config = Arc::new(build(&self.settings, self.alpn)?);
        match self.current.write() {
            Ok(mut current) => *current = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(true)
    }

    /// Looks for changed files every `reload_interval` until `stop` (not at all when it is 0).
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let every = self.settings.reload_interval.get();
        if every.is_zero() {
            return;
        }
        let transport = self.transport;
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate; the files were just read
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let this = self.clone();
            let result = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
            match result {
                Ok(Ok(true)) => info!(transport, "Reloaded the receiver TLS certificate."),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    warn!(transport, %error, "Reloading the receiver TLS certificate failed; keeping the previous one.");
                    counter!(RECEIVER_TLS_RELOAD_ERRORS, "transport" => transport).increment(1);
                }
                Err(error) => {
                    warn!(transport, %error, "The receiver TLS reload task failed; keeping the previous certificate.");
                    counter!(RECEIVER_TLS_RELOAD_ERRORS, "transport" => transport).increment(1);
                }
            }
        }
    }
}

/// Runs the server side of the handshake on `stream`; the peer identity is set when the
/// client presented a (verified) certificate with a subject CN.
///
/// # Errors
/// The handshake failed (not TLS, no common protocol or ALPN, certificate refused, reset).
/// The caller bounds the time it may take.
pub async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
) -> io::Result<(TlsStream<TcpStream>, Option<PeerIdentity>)> {
    let stream = acceptor.accept(stream).await?;
    let peer = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(subject_cn)
        .map(|subject_cn| PeerIdentity { subject_cn });
    Ok((stream, peer))
}

/// The first subject Common Name of a DER certificate, if it has one that is a string.
pub fn subject_cn(cert: &CertificateDer<'_>) -> Option<Arc<str>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Some(Arc::from(cn))
}

fn files(settings: &ServerTlsConfig) -> impl Iterator<Item = &Path> {
    [Some(&settings.cert_file), Some(&settings.key_file)]
        .into_iter()
        .chain([settings.client_ca_file.as_ref()])
        .flatten()
        .map(PathBuf::as_path)
}

fn stamps(settings: &ServerTlsConfig) -> Stamps {
    files(settings)
        .map(|path| {
            let meta = std::fs::metadata(path).ok()?;
            Some((meta.modified().ok()?, meta.len()))
        })
        .collect()
}

/// The rustls server configuration of `settings`.
fn build(settings: &ServerTlsConfig, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs("cert_file", &settings.cert_file)?;
    let key = read_key(&settings.key_file)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| TlsError::Invalid {
            key: "key_file",
            path: settings.key_file.clone(),
            reason: format!("unusable private key: {error}"),
        })?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        // Unknown: the key type cannot tell its public key; the handshake will fail if wrong.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                cert_file: settings.cert_file.clone(),
                key_file: settings.key_file.clone(),
            })
        }
        Err(error) => {
            return Err(TlsError::Invalid {
                key: "cert_file",
                path: settings.cert_file.clone(),
                reason: format!("unusable certificate: {error}"),
            })
        }
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Settings)?;
    let builder = match &settings.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let invalid = |reason: String| TlsError::Invalid {
                key: "client_ca_file",
                path: path.clone(),
                reason,
            };
            let mut roots = RootCertStore::empty();
            for cert in read_certs("client_ca_file", path)? {
                roots.add(cert).map_err(|e| invalid(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        key,
        path: path.to_owned(),
        reason,
    };
    let pem = read(key, path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate found".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        key: "key_file",
        path: path.to_owned(),
        reason,
    };
    let pem = read("key_file", path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| invalid(format!("invalid PEM: {e}")))?
        .ok_or_else(|| invalid("no PEM private key found".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
        settings: ServerTlsConfig,
    }

    fn self_signed(cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes `text` to `path` with a modification time `step` seconds from now, so each write
    /// is seen as a change even within the file system's time granularity.
    fn write(path: &Path, text: &str, step: u64) {
        std::fs::write(path, text).unwrap();
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() + std::time::Duration::from_secs(step))
            .unwrap();
    }

    fn files(cn: &str) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(cn);
        let settings = ServerTlsConfig {
            cert_file: dir.path().join("cert.pem"),
            key_file: dir.path().join("key.pem"),
            client_ca_file: None,
            reload_interval: HumanDuration::from_secs(60),
        };
        std::fs::write(&settings.cert_file, cert).unwrap();
        std::fs::write(&settings.key_file, key).unwrap();
        Files { dir, settings }
    }

    #[test]
    fn loads_and_offers_alpn() {
        let f = files("gw");
        let server = TlsServer::load("grpc", &f.settings, ALPN_HTTP).unwrap();
        let config = server.acceptor().config().clone();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        drop(f.dir);
    }

    #[test]
    fn a_missing_file_is_named_with_its_key() {
        let f = files("gw");
        let mut settings = f.settings.clone();
        settings.key_file = f.dir.path().join("absent.pem");
        let error = TlsServer::load("grpc", &settings, ALPN_GRPC).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(
                error,
                TlsError::Read {
                    key: "key_file",
                    ..
                }
            ),
            "{text}"
        );
        assert!(text.contains("absent.pem"), "{text}");
    }

    #[test]
    fn a_key_file_without_a_key_is_refused() {
        let f = files("gw");
        std::fs::write(&f.settings.key_file, "not a pem").unwrap();
        let error = TlsServer::load("grpc", &f.settings, ALPN_GRPC).unwrap_err();
        assert!(error.to_string().contains("no PEM private key"), "{error}");
        assert!(error.to_string().contains("key.pem"), "{error}");
    }

    #[test]
    fn a_key_of_another_certificate_is_a_mismatch() {
        let f = files("gw");
        let (_, other_key) = self_signed("other");
        std::fs::write(&f.settings.key_file, other_key).unwrap();
        let error = TlsServer::load("grpc", &f.settings, ALPN_GRPC).unwrap_err();
        assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error}");
    }

    #[test]
    fn a_cert_file_without_certificates_is_refused() {
        let f = files("gw");
        let (_, key) = self_signed("x");
        std::fs::write(&f.settings.cert_file, key).unwrap();
        let error = TlsServer::load("grpc", &f.settings, ALPN_GRPC).unwrap_err();
        assert!(error.to_string().contains("no PEM certificate"), "{error}");
    }

    #[test]
    fn reload_picks_up_a_new_pair_and_keeps_the_old_one_on_error() {
        let f = files("first");
        let server = TlsServer::load("http", &f.settings, ALPN_HTTP).unwrap();
        assert!(!server.reload_if_changed().unwrap(), "nothing changed");
        let before = server.acceptor().config().clone();

        // A key that does not match: refused, the old configuration stays.
        let (_, other_key) = self_signed("other");
        write(&f.settings.key_file, &other_key, 10);
        assert!(server.reload_if_changed().is_err());
        assert!(Arc::ptr_eq(&before, server.acceptor().config()));
        // Not reported again until a file changes again.
        assert!(!server.reload_if_changed().unwrap());

        let (cert, key) = self_signed("second");
        write(&f.settings.cert_file, &cert, 20);
        write(&f.settings.key_file, &key, 20);
        assert!(server.reload_if_changed().unwrap());
        assert!(!Arc::ptr_eq(&before, server.acceptor().config()));
    }

    #[test]
    fn subject_cn_of_a_certificate() {
        let (cert, _) = self_signed("acme-prod");
        let der = rustls_pemfile::certs(&mut cert.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(subject_cn(&der).as_deref(), Some("acme-prod"));
        assert_eq!(subject_cn(&CertificateDer::from(vec![1, 2, 3])), None);
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config: ServerTlsConfig =
            toml::from_str("cert_file = \"c.pem\"\nkey_file = \"k.pem\"\n").unwrap();
        assert_eq!(config.reload_interval, HumanDuration::from_secs(60));
        assert_eq!(config.client_ca_file, None);
        assert!(toml::from_str::<ServerTlsConfig>(
            "cert_file = \"c.pem\"\nkey_file = \"k.pem\"\nca_file = \"x\"\n"
        )
        .is_err());
    }
}
