//! End-to-end harness: a mock provider, the real control plane binary and the real Envoy with the
//! real filter, each on ephemeral loopback ports, started in that order and polled until ready.
//! Logs are kept in a temp dir and printed when a test fails.

pub mod mock;
pub mod raw;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use mock::MockOpenAi;

/// The provider key the mock accepts (never a real key).
pub const PROVIDER_KEY: &str = "sk-mock-provider-key-0123456789";
/// A provider key the mock refuses (401): provider `twokeys` has it before a good one.
pub const REVOKED_KEY: &str = "sk-mock-revoked-key-9876543210";
/// The requests-per-second limit of provider `metered`'s only key.
pub const METERED_QPS: u32 = 5;
/// A gateway key configured in every test stack.
pub const GATEWAY_KEY: &str = "sk-test-gateway-key-abcdefgh";
/// A gateway key that may only use `gpt-4o-mini`.
pub const LIMITED_KEY: &str = "sk-test-limited-key-ijklmnop";
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The control plane binary (built by `make test` before the tests run).
pub fn switchyard_bin() -> PathBuf {
    let p = std::env::var_os("SWITCHYARD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/switchyard"));
    assert!(
        p.exists(),
        "{} missing: run `make test` (or `cargo build -p switchyard`)",
        p.display()
    );
    p
}

pub fn envoy_bin() -> PathBuf {
    let p = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/envoy"));
    assert!(p.exists(), "{} missing: run `make envoy`", p.display());
    p
}

pub fn wasm_path() -> PathBuf {
    let p = wasm_path_unchecked();
    assert!(p.exists(), "{} missing: run `make wasm`", p.display());
    p
}

/// Where the filter's build lands, whether it is there or not.
pub fn wasm_path_unchecked() -> PathBuf {
    target_dir().join("wasm32-wasip1/release/switchyard_filter.wasm")
}

/// A loopback port nobody listens on right now, below the kernel's ephemeral range
/// (32768-60999 on Linux): a port the kernel handed out once could be handed out again to some
/// process's outgoing connection before the test binds it (seen: Envoy's listener failing with
/// `Address already in use`). Each call takes the next port of a sequence that starts at a
/// place depending on the process.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    let start = std::process::id().wrapping_mul(7_919);
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let port = u16::try_from(FIRST + start.wrapping_add(n) % COUNT).expect("below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free loopback port between {FIRST} and {}",
        FIRST + COUNT
    );
}

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("switchyard-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process with its output in a log file; killed on drop, log printed on failure.
pub struct Proc {
    pub name: &'static str,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name,
            child: Some(child),
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the process ends at once, whatever it was doing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (SIGKILL after 5 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(150).collect();
            eprintln!("----- {} log ({}) -----", self.name, self.log.display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
        self.stop();
    }
}

/// Ports of one stack.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub admin: u16,
    pub xds: u16,
    pub gateway: u16,
    pub envoy_admin: u16,
}

impl Ports {
    pub fn pick() -> Ports {
        Ports {
            admin: free_port(),
            xds: free_port(),
            gateway: free_port(),
            envoy_admin: free_port(),
        }
    }
}

/// The config every stack starts from: the mock as provider `mock`, a logical model `smart`,
/// and two gateway keys.
pub fn default_config(ports: Ports, dir: &Path, mock_base_url: &str) -> String {
    config_with_flaky(
        ports,
        dir,
        mock_base_url,
        &format!("http://127.0.0.1:{}/v1", free_port()),
        &format!("127.0.0.1:{}", free_port()),
    )
}

/// [`default_config`] with provider `flaky` at `flaky_base_url` (a [`mock::faulty::Faulty`]):
/// model `fickle` tries it first and the mock after it; and provider `proxied`, the mock
/// reached through a pool of two egress proxies: one that does not exist, then `proxy`.
pub fn config_with_flaky(
    ports: Ports,
    dir: &Path,
    mock_base_url: &str,
    flaky_base_url: &str,
    proxy: &str,
) -> String {
    format!(
        r#"listen: {{admin: "127.0.0.1:{admin}", xds: "127.0.0.1:{xds}"}}
gateway:
  listen: "127.0.0.1:{gateway}"
  admin: "127.0.0.1:{envoy_admin}"
  wasm: "{wasm}"
  max_body_bytes: 65536
  first_byte_timeout_secs: 2
database: "sqlite://{dir}/switchyard.db"
master_key_file: "{dir}/master.key"
probes: {{interval_secs: 1, timeout_secs: 1}}
providers:
  - name: mock
    kind: openai_compatible
    base_url: "{mock_base_url}"
    keys: [{{secret: "{PROVIDER_KEY}"}}]
    models: [gpt-4o-mini, text-embedding-3-small, gpt-image-1, mock-gated, mock-cut, mock-truncated,
             mock-slow, mock-held, mock-gzip]
  - name: claude
    kind: anthropic
    base_url: "{origin}"
    keys: [{{secret: "{PROVIDER_KEY}"}}]
    models: [claude-sonnet-4-5, claude-overloaded, claude-rate-limited, claude-gated, claude-huge]
  - name: gem
    kind: gemini
    base_url: "{origin}"
    keys: [{{secret: "{PROVIDER_KEY}"}}]
    models: [gemini-2.5-flash, gemini-overloaded, gemini-rate-limited, gemini-embedding-001,
             imagen-4.0-generate-001]
  - name: gem-wrong-key
    kind: gemini
    base_url: "{origin}"
    keys: [{{secret: "AIza-not-the-right-key"}}]
    models: [gemini-with-a-wrong-key]
  - name: azure
    kind: azure_openai
    base_url: "{origin}"
    keys: [{{secret: "{PROVIDER_KEY}"}}]
    models: [azure-gpt-4o]
  - name: mistral
    kind: openai_compatible
    preset: mistral
    base_url: "{origin}/mistral/v1"
    keys: [{{secret: "{PROVIDER_KEY}"}}]
    models: [mistral-small-latest]
  - name: bedrock
    kind: bedrock
    base_url: "{origin}"
    region: us-east-1
    keys: [{{secret: "{bedrock_key_id}:{PROVIDER_KEY}"}}]
    models: ["anthropic.claude-3-5-sonnet-20240620-v1:0", bedrock-throttled,
             "amazon.titan-embed-text-v2:0", cohere.embed-english-v3]
  - name: vertex
    kind: vertex
    base_url: "{origin}"
    project: switchyard-test
    location: us-east5
    keys: [{{secret: '{service_account}'}}]
    models: [gemini-2.5-pro, "claude-opus-4-1@20250805"]
  - name: dead
    kind: openai_compatible
    base_url: "http://127.0.0.1:{dead}/v1"
    keys: [{{secret: "sk-dead-provider"}}]
    models: [dead-model]
  - name: dead-bedrock
    kind: bedrock
    base_url: "http://127.0.0.1:{dead_bedrock}"
    region: us-east-1
    keys: [{{secret: "AKIDDEAD:dead-secret"}}]
  - name: flaky
    kind: openai_compatible
    base_url: "{flaky_base_url}"
    keys: [{{secret: "{PROVIDER_KEY}"}}]
  - name: metered
    kind: openai_compatible
    base_url: "{mock_base_url}"
    keys: [{{secret: "{PROVIDER_KEY}", qps: {METERED_QPS}}}]
    models: [mock-metered]
  - name: proxied
    kind: openai_compatible
    base_url: "{mock_base_url}"
    proxies: ["127.0.0.1:{dead_proxy}", "{proxy}"]
    keys: [{{secret: "{PROVIDER_KEY}"}}]
    models: [mock-proxied]
  - name: twokeys
    kind: openai_compatible
    base_url: "{mock_base_url}"
    keys: [{{secret: "{REVOKED_KEY}"}}, {{secret: "{PROVIDER_KEY}"}}]
    models: [mock-keys]
models:
  - name: smart
    targets: [{{provider: mock, model: gpt-4o-mini}}]
  - name: resilient
    targets: [{{provider: dead, model: dead-model}}, {{provider: mock, model: gpt-4o-mini, priority: 1}}]
  - name: picky
    targets: [{{provider: flaky, model: gpt-4o-mini, capabilities: []}},
              {{provider: mock, model: gpt-4o-mini, priority: 1, capabilities: [function_calling, vision]}}]
  - name: blind
    targets: [{{provider: flaky, model: gpt-4o-mini, capabilities: [function_calling]}}]
  - name: flaky-only
    targets: [{{provider: flaky, model: gpt-4o-mini}}]
  - name: resilient-unprobed
    targets: [{{provider: dead-bedrock, model: anthropic.claude-3-haiku-20240307-v1:0}},
              {{provider: mock, model: gpt-4o-mini, priority: 1}}]
  - name: fickle
    targets: [{{provider: flaky, model: gpt-4o-mini}}, {{provider: mock, model: gpt-4o-mini, priority: 1}}]
  - name: quick
    strategy: latency
    targets: [{{provider: mock, model: mock-slow}}, {{provider: mock, model: gpt-4o-mini}}]
  - name: polyglot
    targets: [{{provider: flaky, model: gpt-4o-mini}}, {{provider: claude, model: claude-sonnet-4-5, priority: 1}}]
  - name: polyglot-back
    targets: [{{provider: claude, model: claude-overloaded}}, {{provider: mock, model: gpt-4o-mini, priority: 1}}]
api_keys:
  - {{name: test, key: "{GATEWAY_KEY}", models: ["*"]}}
  - {{name: limited, key: "{LIMITED_KEY}", models: ["gpt-4o-mini"]}}
"#,
        admin = ports.admin,
        xds = ports.xds,
        gateway = ports.gateway,
        envoy_admin = ports.envoy_admin,
        wasm = wasm_path().display(),
        dir = dir.display(),
        dead = free_port(),
        dead_proxy = free_port(),
        dead_bedrock = free_port(),
        origin = mock_base_url.trim_end_matches("/v1"),
        bedrock_key_id = mock::bedrock::ACCESS_KEY_ID,
        service_account = mock::vertex::service_account_json(&format!(
            "{}/token",
            mock_base_url.trim_end_matches("/v1")
        )),
    )
}

pub struct ControlPlane {
    pub proc: Proc,
    pub config: PathBuf,
    pub ports: Ports,
}

impl ControlPlane {
    pub async fn start(dir: &Path, config_text: &str, ports: Ports) -> ControlPlane {
        let config = dir.join("switchyard.yaml");
        std::fs::write(&config, config_text).expect("config");
        Self::start_with(config, dir, ports).await
    }

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
        wait_until("control plane /healthz", Duration::from_secs(20), || {
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
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

pub struct Envoy {
    pub proc: Proc,
    pub bootstrap: PathBuf,
    pub ports: Ports,
}

impl Envoy {
    pub async fn start(dir: &Path, cp: &ControlPlane) -> Envoy {
        Self::start_workers(dir, cp, 1).await
    }

    pub async fn start_workers(dir: &Path, cp: &ControlPlane, workers: u32) -> Envoy {
        Self::start_node(dir, cp, workers, "test-gateway", cp.ports.envoy_admin).await
    }

    /// Another Envoy of the same gateway: its own node id and admin port, the same listener
    /// (Envoy binds it with `SO_REUSEPORT`, so the kernel shares connections between them).
    pub async fn start_another(dir: &Path, cp: &ControlPlane, node_id: &str) -> Envoy {
        let dir = dir.join(node_id);
        std::fs::create_dir_all(&dir).expect("node dir");
        Self::start_node(&dir, cp, 1, node_id, free_port()).await
    }

    async fn start_node(
        dir: &Path,
        cp: &ControlPlane,
        workers: u32,
        node_id: &str,
        admin_port: u16,
    ) -> Envoy {
        let bootstrap = dir.join("bootstrap.yaml");
        // The node's client certificate for the xDS port lands in `certs/`.
        let text = bootstrap_text(&cp.config, node_id, &dir.join("certs")).replace(
            &format!("port_value: {}", cp.ports.envoy_admin),
            &format!("port_value: {admin_port}"),
        );
        std::fs::write(&bootstrap, text).expect("bootstrap file");
        let mut cmd = Command::new(envoy_bin());
        cmd.env("SWITCHYARD_DATAPLANE_KEY", dataplane_key(&cp.config));
        cmd.arg("-c")
            .arg(&bootstrap)
            .args(["--use-dynamic-base-id", "-l", "info"])
            .args(["--concurrency", &workers.to_string()])
            // Access-log lines are read by the tests: flush them quickly.
            .args(["--file-flush-interval-msec", "50"]);
        let proc = Proc::spawn("envoy", cmd, dir.join("envoy.log"));
        let envoy = Envoy {
            proc,
            bootstrap,
            ports: Ports {
                envoy_admin: admin_port,
                ..cp.ports
            },
        };
        // Ready when this Envoy is live (its admin says so: the listener port may be shared
        // with another Envoy already answering) and the listener answers through the filter
        // (401 without a key).
        let ready = format!("http://127.0.0.1:{admin_port}/ready");
        wait_until("Envoy live", Duration::from_secs(60), || {
            let ready = ready.clone();
            async move { reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        let url = envoy.url("/v1/models");
        wait_until(
            "Envoy listener with the filter",
            Duration::from_secs(60),
            || {
                let url = url.clone();
                async move { reqwest::get(&url).await.is_ok_and(|r| r.status() == 401) }
            },
        )
        .await;
        envoy
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.gateway))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.gateway)
    }

    /// A counter's value from `/stats/prometheus` (0 when absent).
    pub async fn counter(&self, name: &str) -> u64 {
        let stats = self.stats().await;
        stats
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Waits until a counter reaches `at_least` (the filter flushes its counters every second).
    pub async fn wait_counter(&self, name: &str, at_least: u64) -> u64 {
        wait_until(
            &format!("{name} >= {at_least}"),
            Duration::from_secs(5),
            || async { self.counter(name).await >= at_least },
        )
        .await;
        self.counter(name).await
    }

    pub async fn stats(&self) -> String {
        let url = format!(
            "http://127.0.0.1:{}/stats/prometheus",
            self.ports.envoy_admin
        );
        reqwest::get(&url)
            .await
            .expect("stats")
            .text()
            .await
            .unwrap_or_default()
    }
}

/// Mock, control plane and Envoy, configured with [`default_config`].
pub struct Stack {
    pub envoy: Envoy,
    pub cp: ControlPlane,
    pub mock: MockOpenAi,
    /// The fault-injecting provider `flaky` (healthy until told otherwise).
    pub flaky: mock::faulty::Faulty,
    /// The egress proxy provider `proxied` is reached through.
    pub proxy: mock::connect_proxy::ConnectProxy,
    pub dir: TempDir,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(|_| {}).await
    }

    /// Like [`Stack::start`], with the mock set up by `prepare` before anything talks to it.
    pub async fn start_with(prepare: impl FnOnce(&MockOpenAi)) -> Stack {
        Self::start_workers(1, prepare).await
    }

    /// Like [`Stack::start_with`], with Envoy running `workers` worker threads.
    pub async fn start_workers(workers: u32, prepare: impl FnOnce(&MockOpenAi)) -> Stack {
        Self::start_edited(workers, prepare, |_| {}).await
    }

    /// Like [`Stack::start_workers`], with the control plane's config text changed by `edit`
    /// first.
    pub async fn start_edited(
        workers: u32,
        prepare: impl FnOnce(&MockOpenAi),
        edit: impl FnOnce(&mut String),
    ) -> Stack {
        let dir = TempDir::new("e2e");
        let flaky = mock::faulty::Faulty::start(PROVIDER_KEY).await;
        let proxy = mock::connect_proxy::ConnectProxy::start().await;
        let mock = MockOpenAi::start(
            PROVIDER_KEY,
            &[
                "gpt-4o-mini",
                "mock-gated",
                "mock-cut",
                "mock-truncated",
                "azure-gpt-4o",
                "mistral-small-latest",
                "mock-metered",
                "mock-keys",
                "mock-slow",
                "mock-held",
                "mock-gzip",
                "mock-proxied",
                "mock-private",
            ],
            &["text-embedding-3-small"],
        )
        .await;
        prepare(&mock);
        let ports = Ports::pick();
        let mut config = config_with_flaky(
            ports,
            &dir.0,
            &mock.base_url(),
            &flaky.base_url(),
            &proxy.addr.to_string(),
        );
        edit(&mut config);
        let cp = ControlPlane::start(&dir.0, &config, ports).await;
        let envoy = Envoy::start_workers(&dir.0, &cp, workers).await;
        Stack {
            envoy,
            cp,
            mock,
            flaky,
            proxy,
            dir,
        }
    }

    /// Waits until `model` is served (a Vertex provider is not until its first token is minted
    /// and has reached Envoy).
    pub async fn wait_ready(&self, model: &str) {
        let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "ready?"}]});
        wait_until(
            &format!("{model} to be served"),
            Duration::from_secs(10),
            || async { self.post("/v1/chat/completions", &body).await.status() != 503 },
        )
        .await;
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// `POST path` with the default gateway key and a JSON body.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client()
            .post(self.envoy.url(path))
            .bearer_auth(GATEWAY_KEY)
            .json(body)
            .send()
            .await
            .expect("request through Envoy")
    }

    /// The first usage record the access log shows for requests naming `model`.
    pub async fn usage_record(&self, model: &str) -> serde_json::Value {
        let find = || {
            usage_records(&self.envoy.proc.log_text())
                .into_iter()
                .find(|r| r["model"] == model)
        };
        wait_until(
            "a usage record in Envoy's access log",
            Duration::from_secs(10),
            || async { find().is_some() },
        )
        .await;
        find().unwrap_or_default()
    }

    /// Adds `micros` to `user`'s credit account through the admin API (opening it if needed).
    pub async fn top_up(&self, user: &str, micros: i64) {
        let (status, body) = self
            .admin(
                reqwest::Method::POST,
                &format!("/credits/{user}/entries"),
                Some(serde_json::json!({"amount_micros": micros, "kind": "topup"})),
            )
            .await;
        assert_eq!(status, 201, "top-up refused: {body}");
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.cp.admin(method, path, body).await
    }
}

/// Polls `check` every 20 ms until it holds; panics after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The usage records the filter published, as Envoy's access log printed them, each with the
/// response code Envoy logged on the same line added as `status`.
pub fn usage_records(envoy_log: &str) -> Vec<serde_json::Value> {
    envoy_log
        .lines()
        .filter_map(|line| {
            let (head, usage) = line.split_once(" usage=")?;
            let mut record: serde_json::Value = serde_json::from_str(usage.trim()).ok()?;
            // `[time] "METHOD PATH" STATUS FLAGS ...`
            let status: u64 = head.split("\" ").nth(1)?.split(' ').next()?.parse().ok()?;
            record["status"] = status.into();
            let field = |name: &str| {
                head.split(' ')
                    .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                    .map(str::to_owned)
            };
            if let Some(attempts) = field("attempts").and_then(|a| a.parse::<u64>().ok()) {
                record["attempts"] = attempts.into();
            }
            if let Some(cluster) = field("cluster") {
                record["cluster"] = cluster.into();
            }
            Some(record)
        })
        .collect()
}

/// A fixture file, by its path below `tests/fixtures/`.
pub fn fixture(path: &str) -> String {
    let full = workspace_root().join("tests/fixtures").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// A fixture file parsed as JSON.
pub fn fixture_json(path: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `created` is the gateway's clock; everything else of an answer must match its fixture.
pub fn without_created(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("created");
    }
    v
}

/// A response body read to its end (an error when the connection breaks first).
pub async fn read_all(resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    use futures::StreamExt as _;
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// The `data` of each SSE event, as text.
pub fn data_events(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_owned))
        .collect()
}

/// The `data` of each SSE event, parsed and without `created` (`[DONE]` kept as a string).
pub fn sse_events(body: &str) -> Vec<serde_json::Value> {
    body.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .map(|d| {
            if d == "[DONE]" {
                serde_json::Value::String(d.into())
            } else {
                without_created(
                    serde_json::from_str(d).unwrap_or_else(|e| panic!("event {d:?}: {e}")),
                )
            }
        })
        .collect()
}
