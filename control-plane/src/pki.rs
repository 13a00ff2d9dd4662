//! The internal port's certificate authority: made at first use and kept in the store sealed
//! under the master key (so every control plane on one database shares it), it issues the
//! control plane's own short-lived server certificate and the client certificates Envoys present
//! on the xDS port. Rotation keeps two CAs trusted side by side until the old one is retired.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::crypto::{KeyError, MasterKey};
use crate::store::{Store, StoreError};

/// The setting holding the CAs (JSON, sealed under the master key: the `_sealed` suffix makes a
/// master key rotation seal it again).
pub const CA_SETTING: &str = "xds_ca_sealed";
/// The name Envoy sends as SNI and checks in the server certificate: it does not depend on
/// the address Envoy dials, so one certificate serves a load balancer, a host name or an IP.
pub const SERVER_NAME: &str = "switchyard-xds";
/// A CA lives ten years; it is rotated by hand (`switchyard certs rotate-ca`).
const CA_LIFETIME_SECS: i64 = 10 * 365 * 86_400;
/// The control plane's server certificate lives a day and is renewed at half its life.
pub const SERVER_LIFETIME_SECS: i64 = 86_400;
/// Node certificates live 90 days unless `--days` says otherwise (`switchyard certs renew`).
pub const CLIENT_LIFETIME_DAYS: i64 = 90;
/// Certificates start this long before they are made: clocks of two hosts differ a little.
const CLOCK_SKEW_SECS: i64 = 300;
/// At most the current CA and the one it replaces are trusted at once.
const MAX_AUTHORITIES: usize = 2;
/// Node ids become certificate names and log fields: short and plain.
const MAX_NODE_ID: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("the stored xDS CA is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored xDS CA: {0}")]
    Key(#[from] KeyError),
    #[error("{0}")]
    Refused(String),
    #[error("the xDS CA kept changing while it was being written; try again")]
    Contended,
}

/// One CA as stored: its certificate and private key, PEM.
#[derive(Serialize, Deserialize)]
struct StoredAuthority {
    cert: String,
    key: String,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    /// Oldest first.
    authorities: Vec<StoredAuthority>,
}

/// A CA that can sign.
pub struct Authority {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    /// Unix seconds.
    pub not_after: i64,
}

impl std::fmt::Debug for Authority {
    // The private key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authority(not_after={})", self.not_after)
    }
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// Unix seconds.
    pub not_after: i64,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Issued(not_after={})", self.not_after)
    }
}

fn at(unix: i64) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| PkiError::Refused(format!("time out of range: {e}")))
}

/// A random positive serial number (RFC 5280: at most 20 octets, positive).
fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn parse_der(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| PkiError::Corrupt(format!("certificate PEM: {e}")))
}

fn not_after(der: &[u8]) -> Result<i64, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::Corrupt(format!("certificate: {e}")))?;
    Ok(cert.validity().not_after.timestamp())
}

impl Authority {
    /// A new CA, valid from `now` for ten years.
    pub fn new(now: i64) -> Result<Authority, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        // A name of its own per CA: during a rotation two CAs are trusted side by side, and
        // chain building matches issuers by name.
        let mut tag = [0u8; 6];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut tag);
        dn.push(
            DnType::CommonName,
            format!("Switchyard xDS CA {}", hex::encode(tag)),
        );
        dn.push(DnType::OrganizationName, "Switchyard");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = at(now - CLOCK_SKEW_SECS)?;
        params.not_after = at(now + CA_LIFETIME_SECS)?;
        params.serial_number = Some(serial());
        let cert = params.self_signed(&key)?;
        Authority::from_pem(&cert.pem(), &key.serialize_pem())
    }

    fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority, PkiError> {
        let der = parse_der(cert_pem)?;
        let key =
            KeyPair::from_pem(key_pem).map_err(|e| PkiError::Corrupt(format!("CA key: {e}")))?;
        let issuer = Issuer::from_ca_cert_der(&der, key)?;
        Ok(Authority {
            not_after: not_after(&der)?,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            der,
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs a leaf certificate for a new key: `name` as its common name, valid from `now`.
    fn issue(
        &self,
        name: &str,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
        now: i64,
        lifetime_secs: i64,
    ) -> Result<Issued, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial());
        let expires = (now + lifetime_secs).min(self.not_after);
        params.not_before = at(now - CLOCK_SKEW_SECS)?;
        params.not_after = at(expires)?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: expires,
        })
    }
}

/// The trusted CAs, oldest first (never empty). The newest issues node certificates; the
/// oldest issues the server certificate, because every Envoy trusts it until it is retired.
#[derive(Debug)]
pub struct Authorities(Vec<Authority>);

impl Authorities {
    pub fn new(first: Authority) -> Authorities {
        Authorities(vec![first])
    }

    fn newest(&self) -> &Authority {
        &self.0[self.0.len() - 1]
    }

    fn oldest(&self) -> &Authority {
        &self.0[0]
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A node's client certificate: the node id is its common name (the ADS server checks
    /// that a stream's node id matches it).
    pub fn issue_client(
        &self,
        node_id: &str,
        now: i64,
        lifetime_secs: i64,
    ) -> Result<Issued, PkiError> {
        check_node_id(node_id)?;
        self.newest().issue(
            node_id,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
            now,
            lifetime_secs,
        )
    }

    /// The control plane's server certificate: [`SERVER_NAME`], and the address it listens on
    /// when that is a specific one.
    pub fn issue_server(&self, ip: Option<std::net::IpAddr>, now: i64) -> Result<Issued, PkiError> {
        let mut sans = vec![SanType::DnsName(SERVER_NAME.try_into()?)];
        if let Some(ip) = ip.filter(|ip| !ip.is_unspecified()) {
            sans.push(SanType::IpAddress(ip));
        }
        self.oldest().issue(
            SERVER_NAME,
            sans,
            ExtendedKeyUsagePurpose::ServerAuth,
            now,
            SERVER_LIFETIME_SECS,
        )
    }

    /// Every trusted CA certificate, PEM: the bundle Envoy verifies the server with.
    pub fn bundle_pem(&self) -> String {
        self.0.iter().map(|a| a.cert_pem.as_str()).collect()
    }

    /// Every trusted CA certificate, DER: the roots client certificates must chain to.
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        self.0.iter().map(|a| a.der.clone()).collect()
    }

    /// Opens the stored form.
    fn open(sealed: &str, master: &MasterKey) -> Result<Authorities, PkiError> {
        let text = master.open(sealed)?;
        let stored: Stored =
            serde_json::from_str(&text).map_err(|e| PkiError::Corrupt(e.to_string()))?;
        if stored.authorities.is_empty() || stored.authorities.len() > MAX_AUTHORITIES {
            return Err(PkiError::Corrupt(format!(
                "{} CAs stored",
                stored.authorities.len()
            )));
        }
        let list = stored
            .authorities
            .iter()
            .map(|a| Authority::from_pem(&a.cert, &a.key))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Authorities(list))
    }

    fn seal(&self, master: &MasterKey) -> Result<String, PkiError> {
        let stored = Stored {
            authorities: self
                .0
                .iter()
                .map(|a| StoredAuthority {
                    cert: a.cert_pem.clone(),
                    key: a.key_pem.clone(),
                })
                .collect(),
        };
        let text = serde_json::to_string(&stored).map_err(|e| PkiError::Corrupt(e.to_string()))?;
        Ok(master.seal(&text))
    }
}

/// The CAs in the store, made at first use (by whichever control plane or command comes first;
/// the others read what it wrote).
pub async fn load_or_create(store: &Store, master: &MasterKey) -> Result<Authorities, PkiError> {
    if let Some(found) = load(store, master).await? {
        return Ok(found);
    }
    let fresh = Authorities::new(Authority::new(crate::store::now())?);
    if store
        .set_setting_if_absent(CA_SETTING, &fresh.seal(master)?)
        .await?
    {
        tracing::info!("xDS CA created");
        return Ok(fresh);
    }
    load(store, master)
        .await?
        .ok_or_else(|| PkiError::Corrupt("vanished while it was being made".into()))
}

/// The CAs in the store, if any.
pub async fn load(store: &Store, master: &MasterKey) -> Result<Option<Authorities>, PkiError> {
    match store.get_setting(CA_SETTING).await? {
        Some(sealed) => Authorities::open(&sealed, master).map(Some),
        None => Ok(None),
    }
}

/// Starts a CA rotation: a new CA issues node certificates from now on, and both are trusted
/// (node certificates renewed from now on carry both in their bundle). The old CA still
/// issues the server certificate, which every Envoy trusts, until [`retire`].
pub async fn rotate(store: &Store, master: &MasterKey) -> Result<Authorities, PkiError> {
    load_or_create(store, master).await?;
    update(store, master, |list| {
        if list.len() >= MAX_AUTHORITIES {
            return Err(PkiError::Refused(
                "a rotation is under way: renew every node's certificate, then retire the old CA \
                 (`switchyard certs retire-ca`)"
                    .into(),
            ));
        }
        list.push(Authority::new(crate::store::now())?);
        Ok(())
    })
    .await
}

/// Ends a CA rotation: only the newest CA stays trusted, and control planes issue their
/// server certificate from it at their next reload. Node certificates from the old CA are
/// refused from then on.
pub async fn retire(store: &Store, master: &MasterKey) -> Result<Authorities, PkiError> {
    update(store, master, |list| {
        if list.len() < 2 {
            return Err(PkiError::Refused(
                "only one CA is trusted: nothing to retire".into(),
            ));
        }
        list.drain(..list.len() - 1);
        Ok(())
    })
    .await
}

/// Reads, changes and writes the stored CAs with compare and swap (a master key rotation or
/// another command may write them at the same time).
async fn update(
    store: &Store,
    master: &MasterKey,
    change: impl Fn(&mut Vec<Authority>) -> Result<(), PkiError>,
) -> Result<Authorities, PkiError> {
    for _ in 0..5 {
        let Some(sealed) = store.get_setting(CA_SETTING).await? else {
            return Err(PkiError::Refused("no xDS CA yet".into()));
        };
        let mut list = Authorities::open(&sealed, master)?.0;
        change(&mut list)?;
        let next = Authorities(list);
        if store
            .replace_setting(CA_SETTING, &sealed, &next.seal(master)?)
            .await?
        {
            return Ok(next);
        }
    }
    Err(PkiError::Contended)
}

/// A node id that can name a certificate: 1 to 128 letters, digits, `-`, `_`, `.` or `:`.
pub fn check_node_id(id: &str) -> Result<(), PkiError> {
    let ok = (1..=MAX_NODE_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(PkiError::Refused(format!(
            "a node id is 1 to {MAX_NODE_ID} letters, digits, '-', '_', '.' or ':'"
        )))
    }
}

/// The identity a verified client certificate carries: its common name (the node id).
pub fn identity(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use rustls::client::danger::ServerCertVerifier as _;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn verifier(
        roots: &Authorities,
    ) -> std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier> {
        let mut store = rustls::RootCertStore::empty();
        for r in roots.roots() {
            store.add(r).unwrap();
        }
        rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(store),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap()
    }

    fn client_ok(roots: &Authorities, issued: &Issued, at: i64) -> bool {
        let der = parse_der(&issued.cert_pem).unwrap();
        let now = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(at).unwrap(),
        ));
        verifier(roots).verify_client_cert(&der, &[], now).is_ok()
    }

    fn server_ok(roots: &Authorities, issued: &Issued, at: i64) -> bool {
        let mut store = rustls::RootCertStore::empty();
        for r in roots.roots() {
            store.add(r).unwrap();
        }
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(store),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let der = parse_der(&issued.cert_pem).unwrap();
        let now = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(at).unwrap(),
        ));
        let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).unwrap();
        verifier
            .verify_server_cert(&der, &[], &name, &[], now)
            .is_ok()
    }

    #[test]
    fn issued_certificates_chain_to_their_ca_and_to_no_other() {
        let ours = Authorities::new(Authority::new(NOW).unwrap());
        let theirs = Authorities::new(Authority::new(NOW).unwrap());
        let client = ours.issue_client("node-a", NOW, 86_400).unwrap();
        assert!(client_ok(&ours, &client, NOW + 60));
        assert!(!client_ok(&theirs, &client, NOW + 60), "another CA's roots");
        assert!(!client_ok(&ours, &client, NOW + 2 * 86_400), "expired");
        assert_eq!(
            identity(&parse_der(&client.cert_pem).unwrap()).as_deref(),
            Some("node-a")
        );
        let server = ours
            .issue_server(Some("127.0.0.1".parse().unwrap()), NOW)
            .unwrap();
        assert!(server_ok(&ours, &server, NOW + 60));
        assert!(!server_ok(&theirs, &server, NOW + 60));
        assert_eq!(server.not_after, NOW + SERVER_LIFETIME_SECS);
        // A server certificate is no client certificate, and the reverse.
        assert!(!client_ok(&ours, &server, NOW + 60));
        assert!(!server_ok(&ours, &client, NOW + 60));
        // Keys are PEM for Envoy, and never in Debug output.
        assert!(client.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{client:?}{ours:?}").contains("PRIVATE"));
    }

    #[test]
    fn node_ids_are_plain_and_bounded() {
        let ca = Authorities::new(Authority::new(NOW).unwrap());
        for bad in ["", "a b", "x\ny", "n/1", &"n".repeat(129)] {
            assert!(ca.issue_client(bad, NOW, 60).is_err(), "{bad:?}");
        }
        assert!(ca.issue_client("gw-1.eu:a_b", NOW, 60).is_ok());
    }

    async fn on(store: Store) {
        let master = MasterKey::from_bytes(&[7; 32]);
        let first = load_or_create(&store, &master).await.unwrap();
        // The same CA after a restart (or in another control plane on the same database).
        let again = load_or_create(&store, &master).await.unwrap();
        assert_eq!(first.roots(), again.roots());
        let sealed = store.get_setting(CA_SETTING).await.unwrap().unwrap();
        assert!(!sealed.contains("PRIVATE"), "sealed at rest");
        let other_master = MasterKey::from_bytes(&[8; 32]);
        assert!(load(&store, &other_master).await.is_err());

        // Rotation: node certificates from the new CA, the server's still from the old one,
        // both CAs trusted, so Envoys with either bundle keep working.
        let old_node = first.issue_client("node-a", NOW, 86_400).unwrap();
        let rotated = rotate(&store, &master).await.unwrap();
        assert_eq!(rotated.len(), 2);
        assert!(
            rotate(&store, &master).await.is_err(),
            "one rotation at a time"
        );
        let new_node = rotated.issue_client("node-a", NOW, 86_400).unwrap();
        let server = rotated.issue_server(None, NOW).unwrap();
        assert!(client_ok(&rotated, &old_node, NOW + 60));
        assert!(client_ok(&rotated, &new_node, NOW + 60));
        assert!(
            !client_ok(&first, &new_node, NOW + 60),
            "issued by the new CA"
        );
        assert!(
            server_ok(&first, &server, NOW + 60),
            "old bundles still verify it"
        );
        assert!(server_ok(&rotated, &server, NOW + 60));
        assert_eq!(rotated.bundle_pem().matches("BEGIN CERTIFICATE").count(), 2);

        // Retirement: only the new CA; the server's certificate now comes from it, which the
        // renewed nodes' bundles hold.
        let retired = retire(&store, &master).await.unwrap();
        assert_eq!(retired.len(), 1);
        assert!(retire(&store, &master).await.is_err());
        assert!(!client_ok(&retired, &old_node, NOW + 60));
        assert!(client_ok(&retired, &new_node, NOW + 60));
        let server = retired.issue_server(None, NOW).unwrap();
        assert!(server_ok(&rotated, &server, NOW + 60));
        assert!(!server_ok(&first, &server, NOW + 60));
        let loaded = load(&store, &master).await.unwrap().unwrap();
        assert_eq!(loaded.roots(), retired.roots());
    }

    #[tokio::test]
    async fn the_ca_is_kept_sealed_shared_rotated_and_retired_on_sqlite() {
        on(Store::connect(&crate::test_support::sqlite_url())
            .await
            .unwrap())
        .await;
    }

    #[tokio::test]
    async fn the_ca_is_kept_sealed_shared_rotated_and_retired_on_postgres() {
        let Some(url) = crate::test_support::pg_url_for_schema().await else {
            return;
        };
        on(Store::connect(&url).await.unwrap()).await;
    }
}
