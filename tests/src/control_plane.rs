//! The control plane under test: the real binary started on a config (polled until `/healthz`
//! answers), its admin API and metrics, and its command line (bootstrap, node certificates,
//! the data plane key).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::artifacts::switchyard_bin;
use crate::config::{Config, Ports};
use crate::process::Proc;
use crate::ADMIN_TOKEN;

pub struct ControlPlane {
    pub proc: Proc,
    pub config: PathBuf,
    pub ports: Ports,
}

impl ControlPlane {
    /// Writes `config` to `dir/switchyard.yaml` and starts the control plane on it.
    pub async fn start(dir: &Path, config: &Config, ports: Ports) -> ControlPlane {
        let path = dir.join("switchyard.yaml");
        config.write(&path);
        Self::start_with(path, dir, ports).await
    }

    /// Starts the control plane on the config file at `config` (a restart reuses it).
    pub async fn start_with(config: PathBuf, dir: &Path, ports: Ports) -> ControlPlane {
        let mut cmd = Command::new(switchyard_bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("SWITCHYARD_MASTER_KEY")
            .env("SWITCHYARD_LOG", "info,switchyard::xds=debug,sqlx=warn");
        let proc = Proc::spawn("control-plane", cmd, dir.join("control-plane.log"));
        let cp = ControlPlane {
            proc,
            config,
            ports,
        };
        let url = format!("http://127.0.0.1:{}/healthz", ports.admin);
        let start = std::time::Instant::now();
        // Generous: six test binaries' stacks may start at once on a 2-core CI machine.
        while !reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if start.elapsed() > Duration::from_secs(60) {
                // Where a control plane that never answers is stuck, for the failure's log.
                if let Some(pid) = cp.proc.pid() {
                    crate::process::dump_stuck(pid);
                }
                panic!("timed out after 60 s waiting for control plane /healthz");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cp
    }

    /// One series of the control plane's `/metrics` (its line's value), if it is there.
    pub async fn metric(&self, series: &str) -> Option<u64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.ports.admin))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// An admin API call with the admin token: the status and the JSON answer (`null` if none).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = reqwest::Client::new()
            .request(method, self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin request");
        let status = resp.status().as_u16();
        let value = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, value)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/admin/v1{path}", self.ports.admin)
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }
}

/// `switchyard bootstrap` for `node_id`, its certificate written to `certs_dir`.
pub fn bootstrap_text(config: &Path, node_id: &str, certs_dir: &Path) -> String {
    let (config, certs_dir) = (config.as_os_str(), certs_dir.as_os_str());
    switchyard_cli([
        "bootstrap".as_ref(),
        "--config".as_ref(),
        config,
        "--node-id".as_ref(),
        node_id.as_ref(),
        "--certs-dir".as_ref(),
        certs_dir,
    ])
}

/// Runs the control plane binary with `args` (the master key from the config's key file) and
/// returns what it printed; panics with its error output when it fails.
pub fn switchyard_cli<'a>(args: impl IntoIterator<Item = &'a std::ffi::OsStr>) -> String {
    let args: Vec<&std::ffi::OsStr> = args.into_iter().collect();
    let out = Command::new(switchyard_bin())
        .args(&args)
        .env_remove("SWITCHYARD_MASTER_KEY")
        .output()
        .expect("switchyard runs");
    assert!(
        out.status.success(),
        "switchyard {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node's certificate files as `switchyard bootstrap` wrote them into a directory.
pub struct NodeCerts {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl NodeCerts {
    /// Issues `node_id` a certificate from the control plane's CA into `dir` and reads it.
    pub fn issue(config: &Path, node_id: &str, dir: &Path) -> NodeCerts {
        bootstrap_text(config, node_id, dir);
        NodeCerts::read(dir)
    }

    /// The newest certificate, key and CA bundle in `dir` (files `node-<stamp>.crt`,
    /// `node-<stamp>.key`, `ca-<stamp>.crt`).
    pub fn read(dir: &Path) -> NodeCerts {
        let stamp = std::fs::read_dir(dir)
            .expect("certs dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| Some(n.strip_prefix("node-")?.strip_suffix(".crt")?.to_owned()))
            .max()
            .expect("a node certificate");
        let read = |name: String| std::fs::read_to_string(dir.join(name)).expect("cert file");
        NodeCerts {
            cert_pem: read(format!("node-{stamp}.crt")),
            key_pem: read(format!("node-{stamp}.key")),
            ca_pem: read(format!("ca-{stamp}.crt")),
        }
    }

    /// An HTTP/2 client of the xDS port at `addr` presenting this certificate (and, with
    /// `identity: false`, presenting none), trusting the CA bundle and checking the server's
    /// fixed name: URLs are `https://switchyard-xds/...`.
    pub fn client(&self, addr: SocketAddr, identity: bool) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .http2_prior_knowledge()
            .resolve(XDS_SERVER_NAME, addr)
            .timeout(Duration::from_secs(10));
        for cert in reqwest::Certificate::from_pem_bundle(self.ca_pem.as_bytes()).expect("CA") {
            builder = builder.add_root_certificate(cert);
        }
        if identity {
            let pem = format!("{}{}", self.cert_pem, self.key_pem);
            builder =
                builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
        }
        builder.build().expect("client")
    }
}

/// The name the control plane's xDS server certificate carries.
pub const XDS_SERVER_NAME: &str = "switchyard-xds";

/// The key Envoy opens sealed provider keys with (`switchyard dataplane-key`).
pub fn dataplane_key(config: &Path) -> String {
    switchyard_cli([
        "dataplane-key".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ])
    .trim()
    .to_owned()
}
