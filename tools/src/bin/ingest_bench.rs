//! `make bench` (ingest part): how many request records per second the control plane stores.
//!
//! Starts the control plane (`SWITCHYARD_BIN`, the release build under `make bench`) on the
//! given database, then sends synthetic records the way Envoy's workers do: batches of JSON
//! lines over HTTP/2 and mutual TLS to the records endpoint, several senders at once, each
//! waiting for the answer (which comes once the rows are committed). Every record belongs to
//! a metered user, so each one is also a ledger debit, and request ids are made as the
//! filter makes them (`switchyard_core::outbox::Ids`: hashed, so in no order). The CPU time
//! printed is the whole control plane process's over the run: TLS, HTTP, signature check,
//! parsing, the store and what the writer does after it. Bounded: a fixed number of records,
//! loopback only.
//!
//! As fast as it goes (default), or at a fixed rate for a bounded time, which is how the
//! budget is stated (CPU per record at a sustained 10,000 records/s):
//!
//! `switchyard-ingest-bench --database URL [--records 100000] [--senders 8] [--batch 500]
//!  [--rate RECORDS_PER_S --seconds S] [--random-ids]`
//!
//! With `--rate`, batch `n` is sent `n * batch / rate` seconds after the start (by whichever
//! sender is free), and the run reports the rate it kept.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_tests::config::ApiKey;
use switchyard_tests::{Config, ControlPlane, Ports, TempDir};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// CPU time (user + system) the process `pid` has used so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces, so split after its `)`):
    // utime and stime are the 12th and 13th, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

fn number(args: &[String], name: &str, default: usize) -> usize {
    arg(args, name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} takes a number, not {v}"))
    })
}

/// One synthetic record, shaped like the filter's (about 480 bytes).
fn record(out: &mut String, n: usize, id: &str) {
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        r#"{{"id":"{id}","at":{at},"api":"chat.completions","status":200,"key":"key_bench","user":"bench","model":"smart","provider":"openai","upstream_model":"gpt-4o-mini","attempts":1,"stream":{stream},"complete":true,"prompt_tokens":{p},"completion_tokens":{c},"total_tokens":{t},"cached_tokens":0,"cache_write_tokens":0,"reasoning_tokens":0,"cost_micros":{cost},"duration_ms":{d},"upstream_ms":{u},"ttft_ms":{u}}}"#,
        at = 1_790_000_000_000u64 + n as u64,
        stream = n.is_multiple_of(2),
        p = 100 + n % 900,
        c = 20 + n % 300,
        t = 120 + n % 900 + n % 300,
        cost = 30 + n % 500,
        d = 200 + n % 1000,
        u = 50 + n % 200,
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let database = arg(&args, "--database").expect("--database URL");
    let total = number(&args, "--records", 100_000);
    let senders = number(&args, "--senders", 8);
    let batch = number(&args, "--batch", 500).max(1);
    let rate = number(&args, "--rate", 0);
    let total = match rate {
        0 => total,
        // Bounded: at most ten minutes.
        rate => rate * number(&args, "--seconds", 10).clamp(1, 600),
    };

    let dir = TempDir::new("ingest-bench");
    let ports = Ports::pick();
    // The filter is not loaded (no Envoy runs): its path need not exist.
    let mut config = Config::new(ports, &dir.0);
    config.database = database.clone();
    config.api_keys = vec![ApiKey {
        credits: Some(1_000_000_000),
        ..ApiKey::new("bench", "sk-bench-ingest-0123456789", &["*"])
    }];
    let mut cp = ControlPlane::start(&dir.0, &config, ports).await;
    // Batches are signed with the data plane key, as Envoy's are (signing is part of the cost).
    let key = switchyard_contract::sealed::parse_key(&switchyard_tests::dataplane_key(&cp.config))
        .expect("a data plane key");
    // Over mutual TLS with a node certificate, as Envoy sends them.
    let certs =
        switchyard_tests::NodeCerts::issue(&cp.config, "ingest-bench", &dir.0.join("certs"));
    let client = certs.client(([127, 0, 0, 1], ports.xds).into(), true);
    let url = format!(
        "https://{}:{}/switchyard.v1/records",
        switchyard_tests::XDS_SERVER_NAME,
        ports.xds
    );
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    // The ids, made before the clock starts (the filter makes them, not the control plane),
    // as if ten requests a millisecond came in.
    // `--random-ids`: ids in no order, as the filter made them before they started with the
    // time (to compare).
    let random_ids = args.iter().any(|a| a == "--random-ids");
    let mut maker = switchyard_core::outbox::Ids::new(seed);
    let first_ms = seed / 1_000_000;
    let ids: Arc<Vec<String>> = Arc::new(
        (0..total)
            .map(|n| {
                let id = maker.next_id(first_ms + n as u64 / 10);
                if random_ids {
                    // The unpredictable part first, then the rest.
                    format!("{}{}", &id[11..], &id[..11])
                } else {
                    id
                }
            })
            .collect(),
    );
    let batches = total.div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let pid = cp.proc.pid().expect("the control plane runs");
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (client, url, next, ids) = (client.clone(), url.clone(), next.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            loop {
                let b = next.fetch_add(1, Ordering::SeqCst);
                if b >= batches {
                    return slowest;
                }
                let mut body = String::with_capacity(batch * 500);
                for n in b * batch..((b + 1) * batch).min(total) {
                    record(&mut body, n, &ids[n]);
                }
                if rate > 0 {
                    let due = started + Duration::from_secs_f64((b * batch) as f64 / rate as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                let signature = switchyard_contract::sealed::sign_records(&key, body.as_bytes());
                let resp = client
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .header(switchyard_contract::sealed::SIGNATURE_HEADER, signature)
                    .body(body)
                    .send()
                    .await
                    .expect("records endpoint");
                assert_eq!(resp.status(), 200, "batch not stored");
                slowest = slowest.max(sent.elapsed());
            }
        }));
    }
    let mut slowest = Duration::ZERO;
    for t in tasks {
        slowest = slowest.max(t.await.expect("sender"));
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    let store = if database.starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let pace = match rate {
        0 => "as fast as it goes".to_string(),
        rate => format!("paced at {rate}/s"),
    };
    println!(
        "ingest {store:<10}  {total} records in {:.2} s ({pace}): {:.0} records/s, control plane CPU {:.1} us/record  ({senders} senders x {batch}-record batches; slowest batch {} ms; each record a log row and a ledger debit)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / total as f64,
        slowest.as_millis()
    );
    cp.stop();
}
