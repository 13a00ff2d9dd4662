//! Usage reports at scale: loads synthetic request records (5 million by default, over 35
//! days, many keys, users, models and providers) into a database through the store's own
//! ingest (log rows and usage rollups, as the records endpoint writes them), then times every
//! report over the last 30 days. Run by hand (not part of `make test`); bounded by `--records`.
//!
//! `switchyard-report-bench --database URL [--records 5000000] [--days 35] [--skip-load]`

use std::time::{Duration, Instant};

use switchyard::store::{ReportGroup, RequestQuery, RequestRow, Store};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number(args: &[String], name: &str, default: i64) -> i64 {
    arg(args, name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} takes a number, not {v}"))
    })
}

const USERS: u64 = 300;
const KEYS_PER_USER: u64 = 2;
const MODELS: u64 = 40;
const PROVIDERS: u64 = 10;
const DAY_MS: i64 = 86_400_000;

/// Record `n` of `total` spread over `days` ending at `end_ms`: each user has two keys and
/// favours three models; a model has a home provider and fails over to another 5 % of the time.
fn record(n: u64, total: u64, days: i64, end_ms: i64) -> RequestRow {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let span = u64::try_from(days * DAY_MS).unwrap_or(1);
    let at_ms = end_ms - i64::try_from(span).unwrap_or(0)
        + i64::try_from(n * (span / total.max(1))).unwrap_or(0);
    let user = next(USERS);
    let key = user * KEYS_PER_USER + next(KEYS_PER_USER);
    let model = (user * 7 + next(3) * 13) % MODELS;
    let provider = if next(20) == 0 {
        (model + 1 + next(PROVIDERS - 1)) % PROVIDERS
    } else {
        model % PROVIDERS
    };
    let status = [200, 200, 200, 200, 200, 200, 200, 200, 200, 429, 503, 400][next(12) as usize];
    let prompt = 50 + next(4_000) as i64;
    let completion = 10 + next(800) as i64;
    RequestRow {
        request_id: format!("rb{n:012x}"),
        at_ms,
        api: "chat.completions".into(),
        status,
        key_id: format!("key_{key:04}"),
        user: format!("user{user:03}"),
        model: format!("model-{model:02}"),
        provider: format!("provider-{provider}"),
        upstream_model: format!("upstream-{model:02}"),
        attempts: 1,
        stream: n.is_multiple_of(2),
        complete: true,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: next(200) as i64,
        reasoning_tokens: next(50) as i64,
        cost_micros: (status == 200).then_some(prompt + 4 * completion),
        duration_ms: Some(100 + next(3_000) as i64),
        upstream_ms: Some(50 + next(500) as i64),
        ttft_ms: Some(80 + next(900) as i64),
        ..Default::default()
    }
}

async fn timed<T, F: std::future::Future<Output = T>>(f: F) -> (T, Duration) {
    let started = Instant::now();
    let out = f.await;
    (out, started.elapsed())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let database = arg(&args, "--database").expect("--database URL");
    let total = number(&args, "--records", 5_000_000) as u64;
    let days = number(&args, "--days", 35);
    let store = Store::connect(&database).await.expect("the database");
    let now = switchyard::store::now_ms();
    // The data ends an hour ago, so reports ending now have partial hours and minutes.
    let end_ms = now - 3_600_000;
    if !args.iter().any(|a| a == "--skip-load") {
        let started = Instant::now();
        let batch = 5_000u64;
        let mut n = 0;
        while n < total {
            let rows: Vec<RequestRow> = (n..(n + batch).min(total))
                .map(|i| record(i, total, days, end_ms))
                .collect();
            store.ingest(&rows).await.expect("ingest");
            n += batch;
            if n % 500_000 == 0 {
                eprintln!(
                    "  {n} records loaded ({:.0} records/s)",
                    n as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        println!(
            "loaded {total} records over {days} days in {:.0} s ({:.0} records/s, log rows and rollups)",
            started.elapsed().as_secs_f64(),
            total as f64 / started.elapsed().as_secs_f64()
        );
    }
    // The admin UI's ranges: the last 30 days up to now (unaligned), as admin and as a user.
    let (from, to) = (now - 30 * DAY_MS, now + 1);
    let mut worst = Duration::ZERO;
    for (group, name) in [
        (ReportGroup::Day, "day"),
        (ReportGroup::Key, "key"),
        (ReportGroup::User, "user"),
        (ReportGroup::Model, "model"),
        (ReportGroup::Provider, "provider"),
    ] {
        for user in [None, Some("user042")] {
            let (rows, took) = timed(store.usage_report(group, from, to, user)).await;
            let rows = rows.expect("report");
            let requests: i64 = rows.iter().map(|r| r.requests).sum();
            worst = worst.max(took);
            println!(
                "usage report 30 days by {name:<8} {:<9} {:>7.1} ms  ({} groups, {requests} requests)",
                if user.is_some() { "(a user)" } else { "(admin)" },
                took.as_secs_f64() * 1e3,
                rows.len()
            );
        }
    }
    for (label, span, bucket) in [("1 hour", 3_600_000, 60_000), ("1 day", DAY_MS, 3_600_000)] {
        let (points, took) = timed(store.provider_series(to - span, to, bucket, 500_000)).await;
        let points = points.expect("series");
        worst = worst.max(took);
        println!(
            "provider series {label:<7} {:>7.1} ms  ({})",
            took.as_secs_f64() * 1e3,
            points.map_or("over the row cap".to_string(), |p| format!(
                "{} points",
                p.len()
            ))
        );
    }
    let (page, took) = timed(store.list_requests(&RequestQuery {
        limit: 100,
        ..Default::default()
    }))
    .await;
    page.expect("requests");
    worst = worst.max(took);
    println!(
        "request log first page   {:>7.1} ms",
        took.as_secs_f64() * 1e3
    );
    println!("slowest: {:.1} ms", worst.as_secs_f64() * 1e3);
    store.close().await;
}
