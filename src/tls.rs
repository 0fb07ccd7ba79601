//! Optional TLS for the one HTTP port of every peer.
//!
//! Plain `http://` stays the default; a `[tls]` table in `cluster.toml`
//! turns every peer's port into `https://` and makes every client in the
//! program (Raft RPCs, forwarded writes, log proxying, artifact copies, the
//! CLI) trust the cluster's CA. The pieces:
//!
//! - [`server_config`]: the peer's certificate and key, read and checked
//!   once at start so a bad file stops `serve` with the file's name.
//! - [`incoming`]: TLS handshakes on accepted connections, for warp's
//!   `serve_incoming`. A failed handshake (a plaintext client, an untrusting
//!   peer) closes that one connection and never ends the server.
//! - [`Trust`]: the CA certificates a reqwest client adds to its roots.
//! - [`generate`]: `sgnode tls gen`, a throwaway CA and one certificate for
//!   a list of peer addresses, for tests and first setups.
//!
//! The server is tokio-rustls over the same rustls (with the ring provider)
//! that reqwest already uses, rather than warp's `tls` feature, which would
//! pull in a second, older rustls.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client that connects and then says nothing must not hold a handshake
/// slot for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; past it, accepting waits.
const MAX_HANDSHAKES: usize = 128;

/// Why TLS material could not be used or made. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read TLS file {path}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("TLS file {path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS certificate {cert} and key {key} are not usable together: {message}")]
    Identity { cert: PathBuf, key: PathBuf, message: String },
    #[error("cannot write {path}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("cannot generate certificates: {0}")]
    Generate(String),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let pem = |message: String| TlsError::Pem { path: path.to_path_buf(), message };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(pem("holds no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The server side of a peer: its certificate chain and private key.
///
/// # Errors
/// [`TlsError`] naming the file that is missing, unreadable or not PEM, or
/// both files when the key does not fit the certificate.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key_bytes = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| TlsError::Pem {
        path: key.to_path_buf(),
        message: format!("holds no usable PEM private key: {e}"),
    })?;
    let identity =
        |message: String| TlsError::Identity { cert: cert.to_path_buf(), key: key.to_path_buf(), message };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| identity(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| identity(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Accepted connections on `listener` after their TLS handshake, for warp's
/// `serve_incoming`. Connections whose handshake fails or stalls are
/// dropped here (and logged): hyper would end the whole server on an error
/// item, so this stream only ever yields `Ok`.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> + Send {
    let acceptor = TlsAcceptor::from(config);
    let accepted = futures::stream::unfold(listener, |listener| async move {
        let next = listener.accept().await;
        Some((next, listener))
    });
    accepted
        .map(move |next| handshake(acceptor.clone(), next))
        // Handshakes run concurrently, so one slow client delays no other.
        .buffer_unordered(MAX_HANDSHAKES)
        .filter_map(|stream| std::future::ready(stream.map(Ok)))
}

async fn handshake(
    acceptor: TlsAcceptor,
    next: std::io::Result<(TcpStream, SocketAddr)>,
) -> Option<TlsStream<TcpStream>> {
    let (tcp, from) = match next {
        Ok(accepted) => accepted,
        Err(e) => {
            // E.g. out of file descriptors: back off instead of spinning.
            tracing::warn!("accept failed: {e}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            return None;
        }
    };
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::info!("TLS handshake with {from} failed: {e}");
            None
        }
        Err(_) => {
            tracing::info!("TLS handshake with {from} took longer than {HANDSHAKE_TIMEOUT:?}");
            None
        }
    }
}

/// CA certificates a client trusts for the cluster's HTTPS ports. Empty
/// (the default) for a plaintext cluster: clients are then left as they are.
#[derive(Clone, Default)]
pub struct Trust {
    roots: Vec<reqwest::Certificate>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trust({} CA certificates)", self.roots.len())
    }
}

impl Trust {
    /// The certificates of the PEM bundle at `ca`.
    ///
    /// # Errors
    /// [`TlsError`] naming `ca` when it is unreadable or holds no certificate.
    pub fn load(ca: &Path) -> Result<Trust, TlsError> {
        let roots = certificates(ca)?
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem { path: ca.to_path_buf(), message: e.to_string() })?;
        Ok(Trust { roots })
    }

    /// The cluster's CA when it has a `[tls]` table, else nothing.
    ///
    /// # Errors
    /// As [`Trust::load`].
    pub fn for_cluster(config: &crate::config::ClusterConfig) -> Result<Trust, TlsError> {
        match &config.tls {
            Some(tls) => Trust::load(&tls.ca),
            None => Ok(Trust::default()),
        }
    }

    /// Whether any CA is configured.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// For clients that only ever call peers: the cluster CA replaces the
    /// public roots, so no publicly issued certificate can impersonate a peer.
    pub fn peers_only(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if self.is_empty() {
            return builder;
        }
        self.with_public_roots(builder.tls_built_in_root_certs(false))
    }

    /// For clients that also fetch from elsewhere (artifact URLs, a CLI
    /// pointed at any URL): the cluster CA in addition to the public roots.
    pub fn with_public_roots(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        self.roots.iter().cloned().fold(builder, reqwest::ClientBuilder::add_root_certificate)
    }
}

/// What [`generate`] wrote.
#[derive(Debug)]
pub struct Generated {
    /// The CA certificate clients and peers trust (`ca.pem`).
    pub ca: PathBuf,
    /// The certificate every peer presents (`peer.pem`).
    pub cert: PathBuf,
    /// Its private key (`peer.key`, mode 0600).
    pub key: PathBuf,
}

/// Makes a fresh CA and one peer certificate for `hosts` (IPs or DNS
/// names, each a subject alternative name) in `out`. The CA's private key
/// is never written: nothing more can be signed with it, which is what a
/// test or first-setup CA wants. Existing files are overwritten.
///
/// # Errors
/// [`TlsError::Generate`] for an empty or invalid host list,
/// [`TlsError::Write`] naming the file that could not be written.
pub fn generate(out: &Path, hosts: &[String]) -> Result<Generated, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    use std::os::unix::fs::OpenOptionsExt;

    if hosts.is_empty() {
        return Err(TlsError::Generate("give at least one peer address (IP or DNS name)".into()));
    }
    let fail = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let ca_key = KeyPair::generate().map_err(fail)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.distinguished_name.push(DnType::CommonName, "sgnode test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(fail)?;

    let peer_key = KeyPair::generate().map_err(fail)?;
    let mut peer_params = CertificateParams::new(hosts.to_vec())
        .map_err(|e| TlsError::Generate(format!("peer addresses {hosts:?}: {e}")))?;
    peer_params.distinguished_name.push(DnType::CommonName, "sgnode peer");
    peer_params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let peer_cert = peer_params.signed_by(&peer_key, &ca_cert, &ca_key).map_err(fail)?;

    std::fs::create_dir_all(out).map_err(|source| TlsError::Write { path: out.to_path_buf(), source })?;
    let write = |name: &str, text: String, mode: u32| -> Result<PathBuf, TlsError> {
        let path = out.join(name);
        let error = |source| TlsError::Write { path: path.clone(), source };
        // Remove first: the mode of an existing file would survive a rewrite.
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(error(e)),
            _ => {}
        }
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&path).map_err(error)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(error)?;
        Ok(path)
    };
    Ok(Generated {
        ca: write("ca.pem", ca_cert.pem(), 0o644)?,
        cert: write("peer.pem", peer_cert.pem(), 0o644)?,
        key: write("peer.key", peer_key.serialize_pem(), 0o600)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_load_as_server_identity_and_trust() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate(dir.path(), &["127.0.0.1".into(), "peer1.example".into()]).unwrap();
        server_config(&made.cert, &made.key).unwrap();
        assert!(!Trust::load(&made.ca).unwrap().is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&made.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate(dir.path(), &["127.0.0.1".into()]).unwrap();
        let missing = dir.path().join("missing.pem");
        let err = server_config(&missing, &made.key).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem").unwrap();
        let err = server_config(&made.cert, &garbage).unwrap_err().to_string();
        assert!(err.contains("garbage.pem"), "{err}");
        let err = Trust::load(&garbage).unwrap_err().to_string();
        assert!(err.contains("garbage.pem") && err.contains("no CERTIFICATE"), "{err}");
        // A key that belongs to another certificate.
        let other = tempfile::tempdir().unwrap();
        let other = generate(other.path(), &["127.0.0.1".into()]).unwrap();
        let err = server_config(&made.cert, &other.key).unwrap_err().to_string();
        assert!(err.contains("peer.pem") && err.contains("not usable together"), "{err}");
    }
}
