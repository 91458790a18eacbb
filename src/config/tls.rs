//! TLS on the client listener: certificates loaded from PEM with the config, served through a
//! resolver that a reload (or a renewed file) updates without a restart.

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{ClientHello, CryptoProvider, ResolvesServerCert};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A client listener's TLS settings with the certificate they name, already parsed.
#[derive(Clone)]
pub struct TlsListener {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Offer `h2` before `http/1.1` by ALPN.
    pub http2: bool,
    pub key: Arc<CertifiedKey>,
    /// The files' modification stamps just before they were read, so that the watcher
    /// notices a renewal that lands between this load and its first look.
    pub loaded: [Option<FileStamp>; 2],
}

/// A file's modification time and length, as the config watcher compares them.
pub type FileStamp = (std::time::SystemTime, u64);

/// `path`'s stamp now (following symlinks, as a Kubernetes Secret's atomic swap needs).
pub fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl std::fmt::Debug for TlsListener {
    // The key material stays out of every Debug print (config dumps, panics).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("http2", &self.http2)
            .finish_non_exhaustive()
    }
}

impl PartialEq for TlsListener {
    /// Same files and protocols: a renewed certificate is not a different listener.
    fn eq(&self, other: &Self) -> bool {
        self.cert_path == other.cert_path
            && self.key_path == other.key_path
            && self.http2 == other.http2
    }
}

/// Reads a certificate chain and its private key and checks that they belong together. The
/// error names the file and the reason, never any of the file's content.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    pingora::tls::install_default_crypto_provider();
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "{}: cannot read a PEM certificate chain: {e}",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!("{}: holds no certificate", cert.display()));
    }
    // A PEM error can quote a line of the file, so only its kind is told for the key.
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        pem::Error::Io(e) => format!("{}: cannot read the private key: {e}", key.display()),
        pem::Error::NoItemsFound => format!("{}: holds no PEM private key", key.display()),
        _ => format!("{}: is not a valid PEM private key", key.display()),
    })?;
    let provider = CryptoProvider::get_default()
        .ok_or_else(|| "no TLS crypto provider is installed".to_string())?;
    let certified = CertifiedKey::from_der(certs, private, provider).map_err(|e| {
        format!(
            "{} and {} do not make a usable certificate: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Arc::new(certified))
}

/// Hands rustls the current certificate for every handshake; `set` swaps in a renewed one.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn new(key: Arc<CertifiedKey>) -> Self {
        CertResolver {
            current: ArcSwap::new(key),
        }
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
