//! The one-shot subcommands besides `serve`: `bootstrap`, `certs`, `dataplane-key` and
//! `render-static`.

use std::path::Path;

use anyhow::Context as _;

use crate::config::{Config, XdsAddress};
use crate::pki::{self, Authorities};
use crate::serve::{init, open_store};
use crate::xds::build::{self, XdsUpstream};

/// The data plane key for the store the config names, as 64 hex digits (for Envoy's
/// environment).
pub async fn print_dataplane_key(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(config_path).context("configuration")?.config;
    let (store, master) = open_store(&config).await?;
    let key = crate::secrets::dataplane_key(&store, &master).await?;
    store.close().await;
    println!("{}", hex::encode(key));
    Ok(())
}

/// Writes the gateway's whole configuration as a binary static bootstrap (`.pb`).
pub async fn render_static(config_path: &Path, out: &Path) -> anyhow::Result<()> {
    use prost::Message as _;
    let (app, config) = init(config_path).await?;
    let state = app.reconciler.compute().await?;
    let wasm_path = crate::serve::absolute(&config.gateway.wasm);
    let bootstrap = build::static_bootstrap(&config.gateway, &state, &wasm_path);
    std::fs::write(out, bootstrap.encode_to_vec())
        .with_context(|| format!("writing {}", out.display()))?;
    app.store.close().await;
    Ok(())
}

/// `switchyard bootstrap`: prints the bootstrap for `node_id`; over TCP it also issues the
/// node's certificate into `certs_dir` (required there).
pub async fn bootstrap(
    config_path: &Path,
    node_id: &str,
    certs_dir: Option<&Path>,
    days: i64,
) -> anyhow::Result<()> {
    pki::check_node_id(node_id)?;
    let config = Config::load(config_path).context("configuration")?.config;
    let upstream = match &config.listen.xds {
        XdsAddress::Unix(path) => XdsUpstream::Unix(path.clone()),
        XdsAddress::Tcp(addr) => {
            let dir = certs_dir.ok_or_else(|| {
                anyhow::anyhow!(
                    "the xDS port ({addr}) takes only clients with a certificate from the \
                     control plane's CA: give --certs-dir DIR, where this node's certificate is \
                     written (or use a unix: socket for listen.xds)"
                )
            })?;
            let dir = crate::serve::absolute(dir);
            issue_into(&config, node_id, &dir, days).await?;
            XdsUpstream::Tls {
                addr: *addr,
                certs: dir,
            }
        }
    };
    print!(
        "{}",
        build::bootstrap_yaml(
            &config.gateway,
            &upstream,
            node_id,
            // As configured: a relative path is Envoy's working directory's (the committed
            // example bootstrap stays the same on every machine).
            &config.gateway.wasm
        )
    );
    Ok(())
}

/// Issues a node's certificate from the store's CA (made at first use) into `dir`.
async fn issue_into(config: &Config, node_id: &str, dir: &Path, days: i64) -> anyhow::Result<()> {
    if !(1..=3650).contains(&days) {
        anyhow::bail!("--days must be between 1 and 3650");
    }
    let (store, master) = crate::serve::open_store(config).await?;
    let authorities = pki::load_or_create(&store, &master).await;
    store.close().await;
    let authorities = authorities?;
    let now = crate::store::now();
    let issued = authorities.issue_client(node_id, now, days * 86_400)?;
    crate::certs::write_node_files(dir, &issued, &authorities.bundle_pem(), now * 1000)
        .with_context(|| format!("writing the certificate files to {}", dir.display()))?;
    eprintln!(
        "switchyard: certificate for node {node_id:?} written to {} (valid {days} days)",
        dir.display()
    );
    Ok(())
}

/// `switchyard certs ...`.
pub async fn certs(
    config_path: &Path,
    action: &str,
    node_id: Option<&str>,
    certs_dir: Option<&Path>,
    days: i64,
) -> anyhow::Result<()> {
    let config = Config::load(config_path).context("configuration")?.config;
    match action {
        "renew" => {
            let node = node_id.ok_or_else(|| anyhow::anyhow!("--node-id is required"))?;
            let dir = certs_dir.ok_or_else(|| anyhow::anyhow!("--certs-dir is required"))?;
            issue_into(&config, node, &crate::serve::absolute(dir), days).await
        }
        "rotate-ca" | "retire-ca" => {
            let (store, master) = crate::serve::open_store(&config).await?;
            let done: Result<Authorities, pki::PkiError> = if action == "rotate-ca" {
                pki::rotate(&store, &master).await
            } else {
                pki::retire(&store, &master).await
            };
            store.close().await;
            let trusted = done?.len();
            if action == "rotate-ca" {
                eprintln!(
                    "switchyard: a new xDS CA issues node certificates; both CAs are trusted \
                     ({trusted}). Renew every node's certificate (`switchyard certs renew`), then \
                     run `switchyard certs retire-ca`."
                );
            } else {
                eprintln!(
                    "switchyard: the old xDS CA is retired; control planes serve a certificate \
                     from the new one within a minute, and refuse nodes not renewed since the \
                     rotation."
                );
            }
            Ok(())
        }
        other => anyhow::bail!("unknown certs action {other:?} (renew, rotate-ca, retire-ca)"),
    }
}
