//! Every request accounted: mixed requests (streamed and not, three provider APIs, a failover,
//! gateway refusals, a provider error) each leave exactly one row in the control plane's
//! request log, with the tokens the client was told and the cost the pricing table gives them;
//! the owner's credit balance goes down by exactly that cost. The control plane is killed and
//! restarted in the middle of the run: records wait in Envoy and arrive once.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use switchyard_tests::{data_events, read_all, wait_until, ControlPlane, Stack, GATEWAY_KEY};

/// USD per Mtok as set below, in micro-USD: (input, output, cache read, cache write).
const PRICES: [(&str, &str, [u64; 4]); 3] = [
    ("mock", "gpt-4o-mini", [150_000, 600_000, 75_000, 150_000]),
    (
        "claude",
        "claude-sonnet-4-5",
        [3_000_000, 15_000_000, 300_000, 3_750_000],
    ),
    (
        "gem",
        "gemini-2.5-flash",
        [300_000, 2_500_000, 30_000, 300_000],
    ),
];

fn usd(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// The cost of a logged request at the table's price, worked out here: each kind of token at
/// its own price, rounded once to the nearest micro-USD.
fn expected_cost(row: &Value) -> Option<i64> {
    let (_, _, [input, output, cache_read, cache_write]) = PRICES
        .iter()
        .find(|(p, m, _)| row["provider"] == *p && row["upstream_model"] == *m)?;
    let n = |k: &str| row[k].as_u64().unwrap_or(0);
    let plain_input = n("prompt_tokens") - n("cached_tokens") - n("cache_write_tokens");
    let pico = plain_input * input
        + n("cached_tokens") * cache_read
        + n("cache_write_tokens") * cache_write
        + n("completion_tokens") * output;
    Some(i64::try_from((pico + 500_000) / 1_000_000).unwrap())
}

/// One request as the client saw it.
#[derive(Debug)]
struct Sent {
    id: String,
    status: u16,
    stream: bool,
    model: String,
    /// The usage the client was given (OpenAI's shape).
    usage: Option<Value>,
}

async fn send(client: &reqwest::Client, url: &str, key: &str, kind: usize) -> Sent {
    let (model, stream) = match kind % 10 {
        0 => ("smart", false),
        1 => ("smart", true),
        2 => ("claude-sonnet-4-5", false),
        3 => ("claude-sonnet-4-5", true),
        4 => ("gemini-2.5-flash", false),
        5 => ("gemini-2.5-flash", true),
        6 => ("resilient", false),
        7 => ("no-such-model", false),
        8 => ("smart", false), // sent with a wrong key below
        _ => ("claude-overloaded", false),
    };
    let key = if kind % 10 == 8 {
        "sk-wrong-key-123456"
    } else {
        key
    };
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "Count me."}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    let resp = client
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("request through Envoy");
    let status = resp.status().as_u16();
    let id = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("every answer names its request")
        .to_owned();
    let bytes = read_all(resp).await.expect("whole answer");
    let usage = if status != 200 {
        None
    } else if stream {
        data_events(&bytes)
            .iter()
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .find_map(|chunk| chunk.get("usage").filter(|u| !u.is_null()).cloned())
    } else {
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("usage").cloned())
    };
    Sent {
        id,
        status,
        stream,
        model: model.to_owned(),
        usage,
    }
}

/// Every row of the request log from `since_ms` on, page by page.
async fn all_rows(stack: &Stack, since_ms: u64) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/requests?limit=100&cursor={c}"),
            None => "/requests?limit=100".to_owned(),
        };
        let (status, page) = stack.admin(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        rows.extend(page["data"].as_array().cloned().unwrap_or_default());
        rows.retain(|r| r["at_ms"].as_u64().unwrap_or(0) >= since_ms);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return rows,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_request_is_logged_once_with_its_tokens_and_cost_across_a_control_plane_crash() {
    let mut stack = Stack::start().await;
    for (provider, model, [input, output, cache_read, cache_write]) in PRICES {
        let (status, body) = stack
            .admin(
                Method::PUT,
                &format!("/prices/{provider}/{model}"),
                Some(json!({"input": usd(input), "output": usd(output),
                            "cache_read": usd(cache_read), "cache_write": usd(cache_write)})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["input_micros"], input);
    }
    const START_BALANCE: i64 = 1_000_000_000;
    stack.top_up("test", START_BALANCE).await;

    // Prices reach Envoy with the next configuration: wait until a request is priced.
    let client = reqwest::Client::new();
    let url = stack.envoy.url("/v1/chat/completions");
    // Rows from before (the harness asking whether Envoy is up) are not this test's.
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut warmup = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "requests never priced"
        );
        let sent = send(&client, &url, GATEWAY_KEY, 0).await;
        let id = sent.id.clone();
        warmup.push(sent);
        let mut row = None;
        for _ in 0..100 {
            row = all_rows(&stack, started_ms)
                .await
                .into_iter()
                .find(|r| r["request_id"] == id);
            if row.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if row.is_some_and(|r| !r["cost_micros"].is_null()) {
            break;
        }
    }

    // The run: 8 clients, 200 requests; the control plane is killed after the first 60 and
    // started again a moment later, while requests go on.
    const N: usize = 200;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            let mut sent = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= N {
                    return sent;
                }
                sent.push(send(&client, &url, GATEWAY_KEY, i).await);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    wait_until("60 requests sent", Duration::from_secs(30), || async {
        next.load(std::sync::atomic::Ordering::SeqCst) >= 60
    })
    .await;
    stack.cp.proc.kill();
    let down_at = next.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (config, ports) = (stack.cp.config.clone(), stack.cp.ports);
    stack.cp = ControlPlane::start_with(config, &stack.dir.0, ports).await;
    let up_at = next.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        up_at > down_at,
        "requests were served while the control plane was down"
    );
    let mut sent: Vec<Sent> = Vec::new();
    for c in clients {
        sent.extend(c.await.unwrap());
    }
    assert_eq!(sent.len(), N);
    sent.extend(warmup);

    let ids: HashSet<&str> = sent.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), sent.len(), "request ids are unique");
    wait_until(
        "every record in the log",
        Duration::from_secs(30),
        || async { all_rows(&stack, started_ms).await.len() >= sent.len() },
    )
    .await;
    // Anything sent twice would show now.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let rows = all_rows(&stack, started_ms).await;
    let extra: Vec<&Value> = rows
        .iter()
        .filter(|r| !ids.contains(r["request_id"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(
        rows.len(),
        sent.len(),
        "exactly one row per request: {extra:?}"
    );
    let by_id: HashMap<&str, &Value> = rows
        .iter()
        .map(|r| (r["request_id"].as_str().unwrap(), r))
        .collect();

    let mut debited = 0i64;
    let mut seen_kinds = HashSet::new();
    for s in &sent {
        let row = by_id
            .get(s.id.as_str())
            .unwrap_or_else(|| panic!("no row for {s:?}"));
        assert_eq!(row["status"], s.status, "{row}");
        // A request refused at its key is not read further.
        let model = if s.status == 401 {
            ""
        } else {
            s.model.as_str()
        };
        assert_eq!(row["model"], model, "{row}");
        assert_eq!(row["api"], "chat.completions");
        assert!(row["duration_ms"].is_u64(), "{row}");
        if let Some(usage) = &s.usage {
            seen_kinds.insert((s.model.clone(), s.stream));
            assert_eq!(
                row["prompt_tokens"], usage["prompt_tokens"],
                "{row} {usage}"
            );
            assert_eq!(
                row["completion_tokens"], usage["completion_tokens"],
                "{row} {usage}"
            );
            let cached = usage["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0);
            assert_eq!(row["cached_tokens"], cached, "{row} {usage}");
            assert_eq!(row["stream"], s.stream);
            assert_eq!(row["complete"], true);
            assert!(row["prompt_tokens"].as_u64().unwrap() > 0);
            let cost = expected_cost(row).expect("priced");
            assert_eq!(row["cost_micros"], cost, "{row}");
            debited += cost;
            if s.stream {
                assert!(row["ttft_ms"].is_u64(), "{row}");
            }
        }
        match s.model.as_str() {
            "resilient" => {
                // The dead target is tried until it cools down (probes find it quickly).
                let failed = row["failed"].as_array().unwrap();
                assert_eq!(row["attempts"], 1 + failed.len(), "{row}");
                assert!(failed.iter().all(|f| f == "dead/dead-model"), "{row}");
                assert_eq!(row["provider"], "mock");
            }
            "no-such-model" => {
                assert!(s.status >= 400);
                assert_eq!(row["error"], "model_not_found", "{row}");
                assert_eq!(row["provider"], "");
            }
            "claude-overloaded" => {
                assert!(s.status >= 500, "{s:?}");
                assert!(row["cost_micros"].is_null(), "no price, no cost: {row}");
            }
            _ => {}
        }
        if s.status == 401 {
            assert_eq!(row["error"], "invalid_api_key", "{row}");
            assert_eq!(row["key_id"], "");
        } else {
            assert_eq!(row["user"], "test");
        }
    }
    for model in ["smart", "claude-sonnet-4-5", "gemini-2.5-flash"] {
        for stream in [false, true] {
            assert!(
                seen_kinds.contains(&(model.to_owned(), stream)),
                "three providers, streamed and not: {seen_kinds:?}"
            );
        }
    }

    // The ledger took exactly the logged cost, once per request.
    let (_, account) = stack.admin(Method::GET, "/credits/test", None).await;
    assert_eq!(
        account["balance_micros"],
        START_BALANCE - debited,
        "{account}"
    );

    // Filters.
    let (_, failed) = stack
        .admin(Method::GET, "/requests?status=5xx&limit=1000", None)
        .await;
    let failed = failed["data"].as_array().unwrap();
    assert!(!failed.is_empty());
    assert!(failed.iter().all(|r| r["status"].as_u64().unwrap() >= 500));
    let (_, claude) = stack
        .admin(Method::GET, "/requests?provider=claude&limit=1000", None)
        .await;
    assert!(claude["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["provider"] == "claude"));
    let (status, bad) = stack
        .admin(Method::GET, "/requests?cursor=not-ours", None)
        .await;
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    // Reports add up to the log.
    let (status, report) = stack
        .admin(
            Method::GET,
            &format!("/reports/usage?group_by=provider&from={started_ms}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let groups = report["data"].as_array().unwrap();
    let total: u64 = groups.iter().map(|g| g["requests"].as_u64().unwrap()).sum();
    assert_eq!(total as usize, rows.len());
    let cost: i64 = groups
        .iter()
        .map(|g| g["cost_micros"].as_i64().unwrap())
        .sum();
    assert_eq!(cost, debited, "{report}");
    let (status, series) = stack
        .admin(
            Method::GET,
            &format!("/reports/providers?from={started_ms}&bucket_secs=60"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{series}");
    let claude = series["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "claude")
        .expect("claude's figures");
    assert!(
        claude["errors"].as_u64().unwrap() > 0,
        "claude-overloaded: {claude}"
    );
    assert!(claude["latency_ms"]["p99"].is_u64());
    // How the restart went, for the record.
    let again = stack
        .cp
        .metric("switchyard_cp_records_total{outcome=\"duplicate\"}")
        .await
        .expect("the control plane counts duplicate records");
    eprintln!(
        "control plane killed after request {down_at}, serving again at request {up_at}: \
         {} requests were answered while it was down; {} rows for {} requests; records sent \
         again after the restart: {again}",
        up_at - down_at,
        rows.len(),
        sent.len()
    );
    let dropped = stack
        .envoy
        .counter("switchyard_records_dropped_total")
        .await;
    assert_eq!(dropped, 0);
}
