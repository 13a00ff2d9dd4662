//! The internal port's transport (ADS, limit leases and request records share it): TCP
//! with mutual TLS, where a peer without a client certificate from the control plane's CA is
//! refused in the handshake, or a Unix socket only its owner may open.
//!
//! The TLS configuration is swapped while serving: the server certificate is renewed at half
//! its life and the trusted CAs follow the store (a CA rotation), each new handshake taking the
//! current configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tonic::transport::server::Connected;

use crate::config::XdsAddress;
use crate::pki::{Authorities, PkiError};

/// A handshake not finished after this long is dropped (a peer holding connections open
/// half-way costs a task and a socket each).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; connections beyond are closed at once.
const MAX_HANDSHAKES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0} is in use by a running server")]
    InUse(String),
    #[error("{0} exists and is not a socket; not replaced")]
    NotSocket(String),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("TLS: {0}")]
    Pem(String),
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// The bound internal port.
pub enum Bound {
    Tcp(TcpListener),
    /// The socket and its path (removed when serving ends).
    Unix(UnixListener, PathBuf),
}

/// Binds the internal port. A Unix socket is made owner-only before it takes its name, so no
/// other user can ever open it.
pub async fn bind(addr: &XdsAddress) -> Result<Bound, ListenError> {
    let bind_err = |source| ListenError::Bind {
        addr: addr.to_string(),
        source,
    };
    match addr {
        XdsAddress::Tcp(a) => Ok(Bound::Tcp(TcpListener::bind(a).await.map_err(bind_err)?)),
        XdsAddress::Unix(path) => {
            use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, PermissionsExt as _};
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !dir.exists() {
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)
                        .map_err(bind_err)?;
                }
            }
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    return Err(ListenError::NotSocket(path.display().to_string()));
                }
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(ListenError::InUse(path.display().to_string()));
                }
                // A socket left by a control plane that did not stop cleanly.
                std::fs::remove_file(path).map_err(bind_err)?;
            }
            let staging = staging_path(path);
            let _ = std::fs::remove_file(&staging);
            let listener = UnixListener::bind(&staging).map_err(bind_err)?;
            std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
                .and_then(|()| std::fs::rename(&staging, path))
                .map_err(|e| {
                    let _ = std::fs::remove_file(&staging);
                    bind_err(e)
                })?;
            Ok(Bound::Unix(listener, path.clone()))
        }
    }
}

/// Where a socket is bound before it is locked down and renamed into place.
fn staging_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Who is on the other side of a verified TLS connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The node id its client certificate names.
    pub node: Option<Arc<str>>,
}

/// A connection that passed the mutual TLS handshake.
pub struct MtlsStream {
    inner: tokio_rustls::server::TlsStream<TcpStream>,
    peer: Peer,
}

impl Connected for MtlsStream {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for MtlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for MtlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The server side of mutual TLS, renewed while serving.
pub struct ServerTls {
    /// The address the certificate names besides [`crate::pki::SERVER_NAME`].
    ip: Option<std::net::IpAddr>,
    state: RwLock<TlsState>,
}

struct TlsState {
    config: Arc<ServerConfig>,
    /// The trusted CAs the configuration was made with.
    roots: Vec<CertificateDer<'static>>,
    /// When the server certificate is to be renewed (Unix seconds): at half its life.
    renew_at: i64,
}

impl ServerTls {
    pub fn new(
        authorities: &Authorities,
        ip: Option<std::net::IpAddr>,
        now: i64,
    ) -> Result<ServerTls, ListenError> {
        Ok(ServerTls {
            ip,
            state: RwLock::new(TlsState::new(authorities, ip, now)?),
        })
    }

    /// Makes a new configuration when the trusted CAs changed or the certificate is due;
    /// returns whether it did.
    pub fn refresh(&self, authorities: &Authorities, now: i64) -> Result<bool, ListenError> {
        let due = match self.state.read() {
            Ok(s) => s.roots != authorities.roots() || now >= s.renew_at,
            Err(_) => true,
        };
        if !due {
            return Ok(false);
        }
        let fresh = TlsState::new(authorities, self.ip, now)?;
        match self.state.write() {
            Ok(mut s) => *s = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(true)
    }

    fn config(&self) -> Arc<ServerConfig> {
        match self.state.read() {
            Ok(s) => s.config.clone(),
            Err(poisoned) => poisoned.into_inner().config.clone(),
        }
    }
}

impl TlsState {
    fn new(
        authorities: &Authorities,
        ip: Option<std::net::IpAddr>,
        now: i64,
    ) -> Result<TlsState, ListenError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = authorities.roots();
        let mut store = rustls::RootCertStore::empty();
        for root in &roots {
            store.add(root.clone())?;
        }
        // Every peer must present a certificate chaining to one of our CAs: the handshake of
        // anyone else fails, before a byte of gRPC or HTTP is read.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(store),
            provider.clone(),
        )
        .build()?;
        let issued = authorities.issue_server(ip, now)?;
        let chain = vec![CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
            .map_err(|e| ListenError::Pem(e.to_string()))?];
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
            .map_err(|e| ListenError::Pem(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let born = now - 300;
        Ok(TlsState {
            config: Arc::new(config),
            roots,
            renew_at: born + (issued.not_after - born) / 2,
        })
    }
}

/// Accepts TCP connections and hands on those that pass the handshake; each handshake runs in
/// its own task, bounded in time and in number.
pub fn accept_mtls(
    listener: TcpListener,
    tls: Arc<ServerTls>,
) -> (
    tokio_stream::wrappers::ReceiverStream<std::io::Result<MtlsStream>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    let task = tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!("xDS port: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                crate::metrics::add(&crate::metrics::METRICS.xds_refused_handshakes, 1);
                continue; // dropped: too many handshakes at once
            };
            let (tx, acceptor) = (tx.clone(), tokio_rustls::TlsAcceptor::from(tls.config()));
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let stream =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            crate::metrics::add(&crate::metrics::METRICS.xds_refused_handshakes, 1);
                            tracing::debug!(peer = %addr, "xDS port: handshake refused: {e}");
                            return;
                        }
                        Err(_) => {
                            crate::metrics::add(&crate::metrics::METRICS.xds_refused_handshakes, 1);
                            tracing::debug!(peer = %addr, "xDS port: handshake timed out");
                            return;
                        }
                    };
                drop(slot);
                let node = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| crate::pki::identity(c))
                    .map(Arc::from);
                let peer = Peer { addr, node };
                let _ = tx
                    .send(Ok(MtlsStream {
                        inner: stream,
                        peer,
                    }))
                    .await;
            });
        }
    });
    (tokio_stream::wrappers::ReceiverStream::new(rx), task)
}

/// How often a running control plane reads the CAs from the store and renews its certificate
/// when due: a CA rotated or retired by `switchyard certs` takes effect within this.
pub const TLS_RELOAD: Duration = Duration::from_secs(60);

/// Serves `router` on the bound port until `stop`: over mutual TLS on TCP (`tls` is required
/// there: never plain TCP), as is on the Unix socket (removed afterwards).
pub async fn serve(
    bound: Bound,
    tls: Option<Arc<ServerTls>>,
    router: tonic::transport::server::Router,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    match bound {
        Bound::Tcp(listener) => {
            let tls = tls.ok_or(ServeError::PlainTcp)?;
            let (incoming, accept) = accept_mtls(listener, tls);
            let served = router.serve_with_incoming_shutdown(incoming, stop).await;
            accept.abort();
            Ok(served?)
        }
        Bound::Unix(listener, path) => {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let served = router.serve_with_incoming_shutdown(incoming, stop).await;
            let _ = std::fs::remove_file(&path);
            Ok(served?)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the xDS port is not served over plain TCP")]
    PlainTcp,
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt as _;

    use super::*;
    use crate::pki::{Authority, Issued};

    const NOW: i64 = 1_800_000_000;

    fn now() -> i64 {
        crate::store::now()
    }

    /// A TLS client of the port: trusts `roots`, presents `client` if given; returns whether
    /// the server still talks after the handshake (TLS 1.3 verifies the client's certificate
    /// after the client has finished, so a refusal shows on the first read).
    async fn client_gets_through(
        addr: SocketAddr,
        roots: &Authorities,
        client: Option<&Issued>,
    ) -> bool {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut store = rustls::RootCertStore::empty();
        for r in roots.roots() {
            store.add(r).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(store);
        let config = match client {
            Some(c) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(crate::pki::SERVER_NAME).unwrap();
        let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
        else {
            return false;
        };
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let _ = tls.write_all(b"ping").await;
        let mut buf = [0u8; 4];
        // The test server echoes nothing: a live connection times out, a refused one errors.
        tokio::time::timeout(Duration::from_millis(300), tls.read(&mut buf))
            .await
            .is_err()
    }

    #[tokio::test]
    async fn only_certificates_from_our_ca_pass_the_handshake_and_name_their_node() {
        let ours = Authorities::new(Authority::new(now()).unwrap());
        let theirs = Authorities::new(Authority::new(now()).unwrap());
        let tls = Arc::new(ServerTls::new(&ours, None, now()).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mut incoming, task) = accept_mtls(listener, tls);

        let good = ours.issue_client("node-a", now(), 3600).unwrap();
        assert!(client_gets_through(addr, &ours, Some(&good)).await);
        let conn = incoming.next().await.unwrap().unwrap();
        assert_eq!(conn.connect_info().node.as_deref(), Some("node-a"));

        let foreign = theirs.issue_client("node-a", now(), 3600).unwrap();
        assert!(
            !client_gets_through(addr, &ours, None).await,
            "no certificate"
        );
        assert!(
            !client_gets_through(addr, &ours, Some(&foreign)).await,
            "another CA"
        );
        // A server certificate of our own CA is no client certificate.
        let server = ours.issue_server(None, now()).unwrap();
        assert!(!client_gets_through(addr, &ours, Some(&server)).await);
        // A client that does not trust our CA gives up itself.
        assert!(!client_gets_through(addr, &theirs, Some(&good)).await);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), incoming.next())
                .await
                .is_err(),
            "nothing refused reached the server"
        );
        task.abort();
    }

    #[test]
    fn the_server_certificate_is_renewed_at_half_life_and_follows_the_cas() {
        let first = Authorities::new(Authority::new(NOW).unwrap());
        let tls = ServerTls::new(&first, None, NOW).unwrap();
        assert!(!tls.refresh(&first, NOW + 60).unwrap());
        let half = NOW + crate::pki::SERVER_LIFETIME_SECS / 2;
        assert!(tls.refresh(&first, half).unwrap(), "due at half its life");
        assert!(!tls.refresh(&first, half + 60).unwrap());
        let other = Authorities::new(Authority::new(NOW).unwrap());
        assert!(tls.refresh(&other, half + 120).unwrap(), "the CAs changed");
    }

    #[tokio::test]
    async fn a_socket_is_owner_only_and_a_live_one_is_not_taken_over() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(crate::crypto::new_id("sy-sock-"));
        let path = dir.join("sub/xds.sock");
        let addr = XdsAddress::Unix(path.clone());
        let bound = bind(&addr).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700, "{dir_mode:o}");
        assert!(matches!(bind(&addr).await, Err(ListenError::InUse(_))));
        drop(bound);
        // Stale (nobody listens): replaced.
        assert!(bind(&addr).await.is_ok());
        let file = dir.join("plain");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            bind(&XdsAddress::Unix(file)).await,
            Err(ListenError::NotSocket(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
