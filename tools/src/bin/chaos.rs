//! `make chaos`: two minutes of bounded load through the real gateway (Envoy with two workers,
//! the filter, the control plane) while three providers of one model fail and recover at
//! random: 500s, 429s with `retry-after`, connection resets, silence before the first byte
//! (each attempt bounded to 2 s). At every moment one provider has been healthy for longer than
//! a request can last, so every request must succeed: the run prints its figures and fails on
//! any error a client saw.
//!
//! usage: switchyard-chaos [--secs 120] [--clients 16] [--max-requests 200000] [--seed N]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard_tests::config::{ApiKey, Model, Provider, Target};
use switchyard_tests::mock::faulty::{Fault, Faulty};
use switchyard_tests::{
    data_events, free_port, read_all, usage_records, wasm_path, Config, ControlPlane, Envoy, Ports,
    TempDir, GATEWAY_KEY, PROVIDER_KEY,
};

const PROVIDERS: usize = 3;

/// A small deterministic generator (xorshift64*), so a run can be repeated with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn config(ports: Ports, dir: &std::path::Path, providers: &[Faulty]) -> Config {
    let mut config = Config::new(ports, dir);
    config.gateway.wasm = wasm_path();
    config.gateway.access_log = Some(true);
    config.gateway.first_byte_timeout_secs = Some(2);
    config.gateway.attempt_timeout_secs = Some(2);
    config.gateway.failover_attempts = Some(PROVIDERS as u32);
    config.providers = providers
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Provider::new(
                &format!("p{i}"),
                "openai_compatible",
                &p.base_url(),
                PROVIDER_KEY,
            )
        })
        .collect();
    config.models = vec![Model {
        strategy: Some("balanced".into()),
        ..Model::new(
            "chaotic",
            (0..providers.len())
                .map(|i| Target::new(&format!("p{i}"), "gpt-4o-mini"))
                .collect(),
        )
    }];
    config.api_keys = vec![ApiKey::new("chaos", GATEWAY_KEY, &["*"])];
    config
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: Mutex<Vec<String>>,
    latencies_ms: Mutex<Vec<f64>>,
}

async fn one_request(client: &reqwest::Client, url: &str, stream: bool) -> Result<(), String> {
    let body = json!({"model": "chaotic", "stream": stream,
                      "messages": [{"role": "user", "content": "Hi"}]});
    let resp = client
        .post(url)
        .bearer_auth(GATEWAY_KEY)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = read_all(resp).await.map_err(|e| format!("body: {e}"))?;
    if status != 200 {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    if stream {
        let events = data_events(&bytes);
        if events.last().map(String::as_str) != Some("[DONE]")
            || bytes.windows(8).any(|w| w == b"\"error\":")
        {
            return Err(format!("stream incomplete: {events:?}"));
        }
    } else {
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("json: {e}"))?;
        if v["choices"][0]["message"]["content"].as_str().is_none() {
            return Err(format!("no answer: {v}"));
        }
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: u64| -> u64 {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let secs = flag("--secs", 120);
    let clients = flag("--clients", 16);
    let max_requests = flag("--max-requests", 200_000);
    let seed = flag("--seed", 0x0005_eedc_4a05);

    let dir = TempDir::new("chaos");
    let mut providers = Vec::new();
    for _ in 0..PROVIDERS {
        providers.push(Faulty::start(PROVIDER_KEY).await);
    }
    let ports = Ports::pick();
    let cp = ControlPlane::start(&dir.0, &config(ports, &dir.0, &providers), ports).await;
    let envoy = Envoy::start_workers(&dir.0, &cp, 2).await;
    let url = envoy.url("/v1/chat/completions");
    let _ = free_port;
    eprintln!(
        "chaos: {secs} s, {clients} clients, {PROVIDERS} providers, seed {seed}; logs in {}",
        dir.0.display()
    );

    let providers = Arc::new(providers);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let sent = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());

    // The chaos: every 0.3-2 s a provider breaks or heals. One provider, the anchor, is kept
    // healthy; every 8-12 s another (healed first) takes over, and the old anchor may break
    // only once no request that started under it can still be running (attempts x timeout).
    // So at every moment some provider has been healthy for longer than any request lasts.
    let chaos = {
        let providers = providers.clone();
        tokio::spawn(async move {
            let mut rng = Rng(seed | 1);
            let mut broken = [false; PROVIDERS];
            let mut anchor = 0usize;
            let mut anchor_since = Instant::now();
            let mut anchor_for = Duration::from_secs(8 + rng.below(5));
            let mut protected: Option<(usize, Instant)> = None;
            let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
            let longest_request = Duration::from_secs(2 * PROVIDERS as u64 + 1);
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(300 + rng.below(1700))).await;
                if anchor_since.elapsed() >= anchor_for {
                    let next = (anchor + 1 + rng.below(PROVIDERS as u64 - 1) as usize) % PROVIDERS;
                    providers[next].set(Fault::Healthy);
                    broken[next] = false;
                    protected = Some((anchor, Instant::now() + longest_request));
                    anchor = next;
                    anchor_since = Instant::now();
                    anchor_for = Duration::from_secs(8 + rng.below(5));
                    *faults.entry("anchor handovers").or_default() += 1;
                    continue;
                }
                let i = rng.below(PROVIDERS as u64) as usize;
                let shielded = protected.is_some_and(|(p, until)| p == i && Instant::now() < until);
                if i == anchor || shielded {
                    continue;
                }
                if broken[i] {
                    providers[i].set(Fault::Healthy);
                    broken[i] = false;
                    *faults.entry("recoveries").or_default() += 1;
                } else {
                    let (fault, name) = match rng.below(4) {
                        0 => (Fault::Status(500, None), "500"),
                        1 => (
                            Fault::Status(429, Some(1 + rng.below(3))),
                            "429 + retry-after",
                        ),
                        2 => (Fault::Reset, "reset"),
                        _ => (Fault::Stall, "stall"),
                    };
                    providers[i].set(fault);
                    broken[i] = true;
                    *faults.entry(name).or_default() += 1;
                }
            }
            for p in providers.iter() {
                p.set(Fault::Healthy);
            }
            faults
        })
    };

    let mut load = Vec::new();
    for c in 0..clients {
        let (url, sent, tally) = (url.clone(), sent.clone(), tally.clone());
        load.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let mut n = 0u64;
            while Instant::now() < deadline && sent.fetch_add(1, Ordering::SeqCst) < max_requests {
                let stream = (c + n).is_multiple_of(2);
                n += 1;
                let t = Instant::now();
                match one_request(&client, &url, stream).await {
                    Ok(()) => {
                        tally.ok.fetch_add(1, Ordering::SeqCst);
                        if let Ok(mut l) = tally.latencies_ms.lock() {
                            l.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut errors) = tally.errors.lock() {
                            errors.push(e);
                        }
                    }
                }
            }
        }));
    }
    for l in load {
        let _ = l.await;
    }
    let faults = chaos.await.unwrap_or_default();
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let records = usage_records(&envoy.proc.log_text());
    let mut attempts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut served: BTreeMap<String, u64> = BTreeMap::new();
    // Requests that reached a target (not the readiness probe Envoy::start makes).
    for r in records.iter().filter(|r| r["provider"] != "") {
        *attempts
            .entry(r["attempts"].as_u64().unwrap_or(0))
            .or_default() += 1;
        *served
            .entry(r["provider"].as_str().unwrap_or("-").to_owned())
            .or_default() += 1;
    }
    let ok = tally.ok.load(Ordering::SeqCst);
    let errors = tally.errors.lock().map(|e| e.clone()).unwrap_or_default();
    let mut lat = tally
        .latencies_ms
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    let report = json!({
        "seconds": (elapsed * 10.0).round() / 10.0,
        "clients": clients,
        "requests": ok + errors.len() as u64,
        "succeeded": ok,
        "client_visible_errors": errors.len(),
        "requests_per_second": ((ok as f64 / elapsed) * 10.0).round() / 10.0,
        "latency_ms": {
            "p50": (percentile(&lat, 0.5) * 10.0).round() / 10.0,
            "p99": (percentile(&lat, 0.99) * 10.0).round() / 10.0,
            "max": (percentile(&lat, 1.0) * 10.0).round() / 10.0,
        },
        "faults_injected": faults,
        "attempts_per_request": attempts,
        "served_by": served,
        "first_errors": errors.iter().take(10).collect::<Vec<_>>(),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    drop(envoy);
    drop(cp);
    if !errors.is_empty() {
        eprintln!(
            "chaos: {} requests failed while a provider was healthy",
            errors.len()
        );
        std::process::exit(1);
    }
}
