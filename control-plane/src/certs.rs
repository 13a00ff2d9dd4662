//! A node's certificate files for Envoy (its client certificate and key, and the CA bundle)
//! written to a directory.
//!
//! Each renewal writes a new generation of files (owner-only), then replaces the two SDS files
//! naming them by rename: Envoy watches the directory and takes the new certificate and key
//! together, without a restart. The two newest generations are kept; older ones are removed.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::pki;
use crate::xds::build;

const GENERATIONS_KEPT: usize = 2;

/// The files of one generation, by its stamp.
fn generation(dir: &Path, stamp: &str) -> [PathBuf; 3] {
    [
        dir.join(format!("node-{stamp}.crt")),
        dir.join(format!("node-{stamp}.key")),
        dir.join(format!("ca-{stamp}.crt")),
    ]
}

/// Writes `text` to `path` (new file, mode 0600).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Replaces `path` with `text` atomically (a new file renamed over it).
fn replace_private(path: &Path, text: &str) -> std::io::Result<()> {
    let staging = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    write_private(&staging, text)?;
    std::fs::rename(&staging, path)
}

/// Writes a node's certificate, key and the CA bundle into `dir` (made owner-only when
/// missing) as a new generation, switches the SDS files to it and removes old generations.
pub fn write_node_files(
    dir: &Path,
    issued: &pki::Issued,
    bundle: &str,
    now_ms: i64,
) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // Stamps sort as they were made (fixed width), and two renewals in one millisecond differ.
    let mut tag = [0u8; 3];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut tag);
    let stamp = format!("{now_ms:015}-{}", hex::encode(tag));
    let [cert, key, ca] = generation(dir, &stamp);
    write_private(&cert, &issued.cert_pem)?;
    write_private(&key, &issued.key_pem)?;
    write_private(&ca, bundle)?;
    // The trust first: during a CA rotation the new bundle holds both CAs.
    replace_private(&dir.join(build::CA_SDS_FILE), &build::ca_sds_yaml(&ca))?;
    replace_private(
        &dir.join(build::CLIENT_SDS_FILE),
        &build::certificate_sds_yaml(&cert, &key),
    )?;
    prune(dir)
}

/// Removes generations older than the newest [`GENERATIONS_KEPT`] (Envoy may still be reading
/// the previous one).
fn prune(dir: &Path) -> std::io::Result<()> {
    let stamps = stamps(dir)?;
    let old = stamps.len().saturating_sub(GENERATIONS_KEPT);
    for stamp in &stamps[..old] {
        for f in generation(dir, stamp) {
            let _ = std::fs::remove_file(f);
        }
    }
    Ok(())
}

/// The newest generation's files in `dir`: certificate, key, CA bundle.
pub fn newest_files(dir: &Path) -> Option<[PathBuf; 3]> {
    let stamp = stamps(dir).ok()?.pop()?;
    Some(generation(dir, &stamp))
}

/// The stamps of the generations in `dir`, oldest first.
fn stamps(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut stamps: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| Some(n.strip_prefix("node-")?.strip_suffix(".crt")?.to_owned()))
        .collect();
    stamps.sort();
    Ok(stamps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::Authorities;

    #[test]
    fn renewals_switch_the_sds_files_and_keep_two_generations_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir()
            .join(crate::crypto::new_id("sy-certs-"))
            .join("node");
        let ca = Authorities::new(pki::Authority::new(1_800_000_000).unwrap());
        let mut seen = Vec::new();
        for i in 0..3 {
            let issued = ca.issue_client("n1", 1_800_000_000, 86_400).unwrap();
            write_node_files(&dir, &issued, &ca.bundle_pem(), 1_800_000_000_000 + i).unwrap();
            let [cert, key, bundle] = newest_files(&dir).unwrap();
            assert_eq!(std::fs::read_to_string(&cert).unwrap(), issued.cert_pem);
            assert_eq!(std::fs::read_to_string(&key).unwrap(), issued.key_pem);
            assert_eq!(std::fs::read_to_string(&bundle).unwrap(), ca.bundle_pem());
            let sds = std::fs::read_to_string(dir.join(build::CLIENT_SDS_FILE)).unwrap();
            assert!(sds.contains(&*cert.to_string_lossy()), "{sds}");
            assert!(sds.contains(&*key.to_string_lossy()), "{sds}");
            let sds = std::fs::read_to_string(dir.join(build::CA_SDS_FILE)).unwrap();
            assert!(sds.contains(&*bundle.to_string_lossy()), "{sds}");
            seen.push(cert);
        }
        assert!(!seen[0].exists(), "the oldest generation is removed");
        assert!(seen[1].exists() && seen[2].exists());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{:?}", entry.file_name());
        }
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }
}
