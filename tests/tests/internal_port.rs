//! The control plane's internal port (ADS, limit leases, request records) as a stranger
//! and as Envoy see it: only a client certificate from the control plane's CA gets through the
//! handshake, over a Unix socket only its owner connects; and Envoy's own downstream
//! connection limit (overload manager). Loopback only, every wait bounded.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use switchyard_tests::{
    default_config, wait_until, ControlPlane, Envoy, MockOpenAi, NodeCerts, Ports, Stack, TempDir,
    GATEWAY_KEY, PROVIDER_KEY, XDS_SERVER_NAME,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// A length-delimited protobuf field.
fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
    out
}

/// One gRPC message frame (uncompressed).
fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// A DiscoveryRequest for every cluster, from `node` if given.
fn ads_request(node: Option<&str>) -> Vec<u8> {
    let mut m = Vec::new();
    if let Some(id) = node {
        m.extend(field(2, &field(1, id.as_bytes())));
    }
    m.extend(field(4, CLUSTER_TYPE.as_bytes()));
    grpc_frame(&m)
}

/// What each of the port's three services answers `client` at `base`: the ADS body (the
/// configuration), the lease endpoint's status, the records endpoint's status; `Err` when
/// no HTTP answer came at all (the connection was refused).
async fn probe(
    client: &reqwest::Client,
    base: &str,
    node: Option<&str>,
) -> Result<(Vec<u8>, u16, u16), String> {
    let grpc = |path: &str, body: Vec<u8>| {
        client
            .post(format!("{base}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body)
            .send()
    };
    let ads = grpc(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
        ads_request(node),
    )
    .await
    .map_err(|e| format!("ADS: {e:?}"))?;
    let config = tokio::time::timeout(Duration::from_secs(5), ads.bytes())
        .await
        .map_err(|_| "ADS: no end".to_owned())?
        .map_err(|e| format!("ADS body: {e:?}"))?
        .to_vec();
    // An unsigned lease ask for key `k`'s allowance.
    let ask = r#"{"instance":"e1","key":"k","at_ms":1,"requests":100,"reserve":0,"held":0,"unused":0,"granted_at":0}"#;
    let limits = client
        .post(format!("{base}/switchyard.limits.v1/lease"))
        .header("content-type", "application/json")
        .body(ask)
        .send()
        .await
        .map_err(|e| format!("lease: {e:?}"))?
        .status()
        .as_u16();
    let forged = r#"{"id":"forged-1","at":1,"user":"victim","cost_micros":1000000}"#;
    let records = client
        .post(format!("{base}/switchyard.v1/records"))
        .header("content-type", "application/x-ndjson")
        .body(forged)
        .send()
        .await
        .map_err(|e| format!("records: {e:?}"))?
        .status()
        .as_u16();
    Ok((config, limits, records))
}

/// What a refused probe got, short: the configuration's size and the two statuses.
fn short(r: &Result<(Vec<u8>, u16, u16), String>) -> String {
    match r {
        Ok((config, limits, records)) => format!(
            "answered: {} bytes of configuration, lease {limits}, records {records}",
            config.len()
        ),
        Err(e) => e.clone(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn only_a_certificate_from_the_control_planes_ca_reaches_the_xds_port() {
    let stack = Stack::start().await;
    let xds: SocketAddr = ([127, 0, 0, 1], stack.cp.ports.xds).into();
    // A stranger speaking plain HTTP/2 (gRPC) gets no answer from any service.
    let plain = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let refused = probe(&plain, &format!("http://{xds}"), None).await;
    assert!(refused.is_err(), "plain HTTP/2 {}", short(&refused));

    // Envoy itself, with the certificate `switchyard bootstrap` issued it: configured (ACKed),
    // serving, and its request records reach the ledger over the same port.
    let resp = stack
        .post(
            "/v1/chat/completions",
            &serde_json::json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    wait_until("a record stored", Duration::from_secs(10), || async {
        stack
            .cp
            .metric("switchyard_cp_records_total{outcome=\"stored\"}")
            .await
            .is_some_and(|n| n >= 1)
    })
    .await;
    let (_, nodes) = stack.admin(Method::GET, "/xds/nodes", None).await;
    assert_eq!(nodes["nodes"]["test-gateway"]["connected"], true, "{nodes}");
    assert!(
        nodes["nodes"]["test-gateway"]["acked"][CLUSTER_TYPE].is_string(),
        "{nodes}"
    );

    // A certificate of our own CA gets answers from all three services (the control for the
    // refusals below): the configuration, and 401 for an unsigned lease ask and batch.
    let ours = NodeCerts::issue(&stack.cp.config, "probe", &stack.dir.0.join("probe-certs"));
    let tls_base = format!("https://{XDS_SERVER_NAME}:{}", xds.port());
    let (config, limits, records) = probe(&ours.client(xds, true), &tls_base, None)
        .await
        .expect("answered");
    assert!(contains(&config, CLUSTER_TYPE.as_bytes()), "{config:?}");
    assert_eq!(limits, 401, "unsigned lease asks stay refused");
    assert_eq!(records, 401, "unsigned batches stay refused");
    // Its node id is the certificate's: it cannot pass itself off as another Envoy.
    let (config, _, _) = probe(&ours.client(xds, true), &tls_base, Some("test-gateway"))
        .await
        .expect("answered");
    assert!(
        !contains(&config, CLUSTER_TYPE.as_bytes()),
        "another node's id: no configuration"
    );

    // Strangers: TLS without a certificate, a certificate from another CA (a second control
    // plane's, on another database). No answer at all from any service.
    let refused = probe(&ours.client(xds, false), &tls_base, None).await;
    assert!(
        refused.is_err(),
        "no client certificate: {}",
        short(&refused)
    );
    let other_dir = TempDir::new("other-ca");
    let other_config = other_dir.0.join("switchyard.yaml");
    std::fs::write(
        &other_config,
        default_config(Ports::pick(), &other_dir.0, "http://127.0.0.1:9/v1").to_yaml(),
    )
    .unwrap();
    let theirs = NodeCerts::issue(&other_config, "test-gateway", &other_dir.0.join("certs"));
    assert_ne!(theirs.ca_pem, ours.ca_pem, "a CA of its own");
    // Trusting our CA (so the client itself is content), presenting theirs.
    let foreign = NodeCerts {
        ca_pem: ours.ca_pem.clone(),
        ..theirs
    };
    let refused = probe(&foreign.client(xds, true), &tls_base, None).await;
    assert!(
        refused.is_err(),
        "another CA's certificate: {}",
        short(&refused)
    );

    let refused_metric = stack
        .cp
        .metric("switchyard_cp_xds_refused_total{stage=\"handshake\"}")
        .await
        .unwrap_or(0);
    assert!(refused_metric >= 2, "handshakes refused: {refused_metric}");
    // Nothing the strangers sent was charged.
    let (_, log) = stack
        .admin(Method::GET, "/requests?user=victim", None)
        .await;
    assert!(!log.to_string().contains("forged-1"), "{log}");
}

#[tokio::test]
async fn over_a_unix_socket_the_stack_serves_and_only_the_owner_may_connect() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new("unix");
    let socket_dir = TempDir::new("sock");
    let socket = socket_dir.0.join("run/xds.sock");
    let mock = MockOpenAi::start(PROVIDER_KEY, &["gpt-4o-mini"], &[]).await;
    let ports = Ports::pick();
    let mut config = default_config(ports, &dir.0, &mock.base_url());
    config.listen.xds = format!("unix:{}", socket.display());
    let cp = ControlPlane::start(&dir.0, &config, ports).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let envoy = Envoy::start(&dir.0, &cp).await;
    let bootstrap = std::fs::read_to_string(&envoy.bootstrap).unwrap();
    assert!(bootstrap.contains("pipe:") && !bootstrap.contains("transport_socket"));
    assert!(!dir.0.join("certs").exists(), "no certificate for a socket");
    let resp = reqwest::Client::new()
        .post(envoy.url("/v1/chat/completions"))
        .bearer_auth(GATEWAY_KEY)
        .json(
            &serde_json::json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    wait_until("a record stored", Duration::from_secs(10), || async {
        cp.metric("switchyard_cp_records_total{outcome=\"stored\"}")
            .await
            .is_some_and(|n| n >= 1)
    })
    .await;
}

/// Sends a request on `conn` and reads until a whole response head arrived; `None` when the
/// connection closed or broke first, or nothing came within 5 s.
async fn exchange(conn: &mut tokio::net::TcpStream) -> Option<u16> {
    let request = b"GET /v1/models HTTP/1.1\r\nhost: gw\r\n\r\n";
    conn.write_all(request).await.ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, conn.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if data.len() >= head_end + 4 + length {
                return text.split(' ').nth(1)?.parse().ok();
            }
        }
    }
}

#[tokio::test]
async fn connections_beyond_max_connections_are_not_served_while_the_first_ones_are() {
    const LIMIT: usize = 8;
    let stack = Stack::start_edited(
        1,
        |_| {},
        |config| config.gateway.max_connections = Some(LIMIT as u64),
    )
    .await;
    let addr = stack.envoy.addr();
    // The harness's own readiness probes have closed their connections by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut open = Vec::new();
    for i in 0..LIMIT {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(exchange(&mut conn).await, Some(401), "connection {i}");
        open.push(conn);
    }
    for extra in 0..2 {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            exchange(&mut conn).await,
            None,
            "connection {} beyond the limit",
            LIMIT + extra
        );
    }
    // The first ones are still served, and Envoy's admin (exempt from the limit) answers.
    for (i, conn) in open.iter_mut().enumerate() {
        assert_eq!(exchange(conn).await, Some(401), "kept connection {i}");
    }
    let overflow = stack
        .envoy
        .counter("envoy_listener_downstream_global_cx_overflow")
        .await;
    assert!(overflow >= 2, "overflow counted: {overflow}");
    // One closes: a new connection takes its place.
    drop(open.pop());
    wait_until("a freed slot", Duration::from_secs(5), || async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        exchange(&mut conn).await == Some(401)
    })
    .await;
}

/// The serial numbers of the client certificates Envoy holds (admin `/certs`).
async fn envoy_cert_serials(envoy: &Envoy) -> Vec<String> {
    let url = format!("http://127.0.0.1:{}/certs", envoy.ports.envoy_admin);
    let certs: serde_json::Value = reqwest::get(&url)
        .await
        .expect("admin /certs")
        .json()
        .await
        .unwrap_or_default();
    certs["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["cert_chain"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["serial_number"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_renewed_node_certificate_is_taken_without_a_restart() {
    let mut stack = Stack::start().await;
    let before = envoy_cert_serials(&stack.envoy).await;
    assert_eq!(
        before.len(),
        1,
        "Envoy holds its node certificate: {before:?}"
    );
    let certs = stack.dir.0.join("certs");
    switchyard_tests::switchyard_cli([
        "certs".as_ref(),
        "renew".as_ref(),
        "--config".as_ref(),
        stack.cp.config.as_os_str(),
        "--node-id".as_ref(),
        "test-gateway".as_ref(),
        "--certs-dir".as_ref(),
        certs.as_os_str(),
    ]);
    wait_until(
        "Envoy to load the renewed certificate",
        Duration::from_secs(10),
        || async {
            let now = envoy_cert_serials(&stack.envoy).await;
            now.len() == 1 && now != before
        },
    )
    .await;
    // Envoy's next connection to the control plane presents it: restart the control plane and
    // a key made then reaches Envoy.
    stack.cp.stop();
    let (config, ports) = (stack.cp.config.clone(), stack.cp.ports);
    stack.cp = ControlPlane::start_with(config, &stack.dir.0, ports).await;
    let (status, key) = stack
        .admin(
            Method::POST,
            "/keys",
            Some(serde_json::json!({"name": "after-renewal"})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["key"].as_str().unwrap().to_owned();
    wait_until("the new key to work", Duration::from_secs(10), || async {
        reqwest::Client::new()
            .get(stack.envoy.url("/v1/models"))
            .bearer_auth(&secret)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}
