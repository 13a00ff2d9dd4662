//! `make bench`, last section: how long an admin write takes to come back when it answers only
//! once every connected Envoy acknowledged the configuration holding it (read-your-writes).
//! One control plane, 1 and then 4 Envoys (one worker each) on the same listener; each write
//! creates a gateway key, timed from the call to its answer, and the key is then used at once
//! through the listener (a fresh connection, so either Envoy may take it): a refusal there
//! would be a write answered before the data plane held it.
//!
//! usage: switchyard-ack-bench [--writes 200] [--envoys 1,4] [--no-wait]
//! (`--no-wait`: `gateway.ack_timeout_ms: 0`, the answer does not wait: the old behaviour.)

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_tests::config::ApiKey;
use switchyard_tests::{Config, ControlPlane, Envoy, Ports, TempDir, ADMIN_TOKEN, GATEWAY_KEY};

/// What one run measured.
struct Run {
    envoys: usize,
    millis: Vec<f64>,
    accepted: usize,
    refused_after: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(envoys: usize, writes: usize, wait: bool) -> Run {
    let dir = TempDir::new("ack-bench");
    let ports = Ports::pick();
    let mut config = Config::new(ports, &dir.0);
    config.api_keys = vec![ApiKey::new("bench", GATEWAY_KEY, &["*"])];
    config.gateway.ack_timeout_ms = Some(if wait { 2000 } else { 0 });
    let cp = ControlPlane::start(&dir.0, &config, ports).await;
    let mut nodes = vec![Envoy::start(&dir.0, &cp).await];
    for i in 1..envoys {
        nodes.push(Envoy::start_another(&dir.0, &cp, &format!("bench-{i}")).await);
    }
    // Every Envoy has its first configuration before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let admin = reqwest::Client::new();
    let use_url = nodes[0].url("/v1/models");
    let mut result = Run {
        envoys,
        millis: Vec::with_capacity(writes),
        accepted: 0,
        refused_after: 0,
    };
    for i in 0..writes {
        let start = Instant::now();
        let resp = admin
            .post(cp.admin_url("/keys"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": format!("ack-{i}"), "models": ["*"]}))
            .send()
            .await
            .expect("admin API");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        result.millis.push(start.elapsed().as_secs_f64() * 1000.0);
        match status {
            201 => {}
            202 => result.accepted += 1,
            other => panic!("key creation answered {other}: {body}"),
        }
        let key = body["key"].as_str().expect("the new key's secret");
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        let used = fresh.get(&use_url).bearer_auth(key).send().await;
        if used.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
            result.refused_after += 1;
        }
    }
    drop(nodes);
    drop(cp);
    result
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let writes: usize = value("--writes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let envoys: Vec<usize> = value("--envoys")
        .unwrap_or_else(|| "1,4".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| (1..=16).contains(n))
        .collect();
    let wait = !args.iter().any(|a| a == "--no-wait");

    let mut runs = Vec::new();
    for n in envoys {
        runs.push(run(n, writes, wait).await);
    }
    println!(
        "\nwrite-to-acknowledgement ({writes} key creations each{}):",
        if wait {
            ""
        } else {
            ", not waiting for the ACK"
        }
    );
    println!(
        "{:>8}{:>11}{:>11}{:>11}{:>7}{:>24}",
        "Envoys", "p50 (ms)", "p99 (ms)", "max (ms)", "202s", "refused right after"
    );
    for r in &mut runs {
        r.millis.sort_by(f64::total_cmp);
        println!(
            "{:>8}{:>11.2}{:>11.2}{:>11.2}{:>7}{:>24}",
            r.envoys,
            percentile(&r.millis, 0.5),
            percentile(&r.millis, 0.99),
            r.millis.last().copied().unwrap_or(0.0),
            r.accepted,
            r.refused_after
        );
    }
}
