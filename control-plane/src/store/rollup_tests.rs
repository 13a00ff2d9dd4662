//! Usage reports from the rollups equal the same reports computed from the raw log, for random
//! records and ranges, on SQLite and PostgreSQL; upgrading a database fills the rollups from the
//! rows already logged; pruning the log keeps the ledger and the day and hour rollups.

use std::borrow::Cow;

use super::*;
use crate::test_support::{pg_url_for_schema, sqlite_url};

/// A small deterministic generator (xorshift64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

const T0: i64 = 1_790_000_000_000;

fn random_rows(rng: &mut Rng, n: usize) -> Vec<RequestRow> {
    (0..n)
        .map(|i| RequestRow {
            request_id: format!("r{i}"),
            // Three days, bunched so minutes and hours hold several records.
            at_ms: T0 + rng.below(3 * DAY_MS as u64) / 1_000 * 1_000 + rng.below(3),
            status: [200, 200, 200, 429, 503, 0, 401][rng.below(7) as usize],
            key_id: format!("key_{}", rng.below(4)),
            user: ["alice", "bob", ""][rng.below(3) as usize].into(),
            model: format!("m{}", rng.below(3)),
            provider: format!("p{}", rng.below(2)),
            prompt_tokens: rng.below(1_000),
            completion_tokens: rng.below(500),
            cached_tokens: rng.below(50),
            reasoning_tokens: rng.below(20),
            cost_micros: (rng.below(4) > 0).then(|| rng.below(10_000)),
            ..Default::default()
        })
        .collect()
}

/// The usage report computed from the raw request log (what reports read before rollups).
async fn raw_report(
    s: &Store,
    group: ReportGroup,
    from_ms: i64,
    to_ms: i64,
    user: Option<&str>,
) -> Vec<UsageRow> {
    let expr = match group {
        ReportGroup::Day => "CAST(at_ms / 86400000 AS TEXT)",
        ReportGroup::Key => "key_id",
        ReportGroup::User => "user_name",
        ReportGroup::Model => "model",
        ReportGroup::Provider => "provider",
    };
    let sql = format!(
        "SELECT {expr} AS grp, CAST(COUNT(*) AS BIGINT) AS requests,
                CAST(SUM(CASE WHEN status >= 400 OR status = 0 THEN 1 ELSE 0 END) AS BIGINT) AS errors,
                CAST(SUM(prompt_tokens) AS BIGINT) AS p, CAST(SUM(completion_tokens) AS BIGINT) AS c,
                CAST(SUM(cached_tokens) AS BIGINT) AS k, CAST(SUM(reasoning_tokens) AS BIGINT) AS r,
                CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS cost
         FROM request_log WHERE at_ms >= $1 AND at_ms < $2 AND ($3 = '' OR user_name = $3)
         GROUP BY {expr} ORDER BY {expr}"
    );
    let rows = sqlx::query(&sql)
        .bind(from_ms)
        .bind(to_ms)
        .bind(user.unwrap_or(""))
        .fetch_all(&s.pool)
        .await
        .unwrap();
    use sqlx::Row as _;
    rows.iter()
        .map(|r| {
            let mut g: String = r.get("grp");
            if group == ReportGroup::Day {
                g = crate::limits::date(g.parse().unwrap());
            }
            UsageRow {
                group: g,
                requests: r.get("requests"),
                errors: r.get("errors"),
                prompt_tokens: r.get("p"),
                completion_tokens: r.get("c"),
                cached_tokens: r.get("k"),
                reasoning_tokens: r.get("r"),
                cost_micros: r.get("cost"),
            }
        })
        .collect()
}

const GROUPS: [ReportGroup; 5] = [
    ReportGroup::Day,
    ReportGroup::Key,
    ReportGroup::User,
    ReportGroup::Model,
    ReportGroup::Provider,
];

/// Every group, for the whole span, day-aligned ranges and random ranges, with and without a
/// user: the report from rollups is the report from raw rows.
async fn assert_reports_match(s: &Store, rng: &mut Rng) {
    let mut ranges = vec![(0, T0 + 10 * DAY_MS), (T0 - T0 % DAY_MS, T0 + DAY_MS)];
    for _ in 0..25 {
        let a = T0 - HOUR_MS + rng.below(3 * DAY_MS as u64 + 2 * HOUR_MS as u64);
        let b = a + 1 + rng.below(2 * DAY_MS as u64);
        ranges.push((a, b));
    }
    for (from, to) in ranges {
        for group in GROUPS {
            for user in [None, Some("alice"), Some("")] {
                let user = user.filter(|u| !u.is_empty());
                assert_eq!(
                    s.usage_report(group, from, to, user).await.unwrap(),
                    raw_report(s, group, from, to, user).await,
                    "{group:?} over [{from}, {to}) for {user:?}"
                );
            }
        }
    }
}

async fn rollups_equal_raw_rows(s: Store) {
    let mut rng = Rng(0x5eed_1234_abcd);
    let rows = random_rows(&mut rng, 1_500);
    // In batches, one of them sent again (duplicates must not count twice).
    for chunk in rows.chunks(400) {
        s.ingest(chunk).await.unwrap();
    }
    s.ingest(&rows[..300]).await.unwrap();
    assert_reports_match(&s, &mut rng).await;
}

/// A database written before rollups existed: upgrading fills them from the log.
async fn upgrade_backfills(url: String, backend: Backend) {
    sqlx::any::install_default_drivers();
    let url_rwc = if backend == Backend::Sqlite {
        format!("{url}?mode=rwc")
    } else {
        url.clone()
    };
    let pool = sqlx::AnyPool::connect(&url_rwc).await.unwrap();
    let mut before = match backend {
        Backend::Sqlite => sqlx::migrate!("migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("migrations/postgres"),
    };
    let upto = before
        .migrations
        .iter()
        .position(|m| m.description.contains("usage rollups"))
        .expect("the rollup migration");
    before.migrations = Cow::Owned(before.migrations[..upto].to_vec());
    before.run(&pool).await.unwrap();
    let mut rng = Rng(0x0bac_f111);
    for r in random_rows(&mut rng, 500) {
        sqlx::query(
            "INSERT INTO request_log (request_id, at_ms, status, key_id, user_name, model,
                 provider, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
                 cost_micros) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&r.request_id)
        .bind(r.at_ms)
        .bind(r.status)
        .bind(&r.key_id)
        .bind(&r.user)
        .bind(&r.model)
        .bind(&r.provider)
        .bind(r.prompt_tokens)
        .bind(r.completion_tokens)
        .bind(r.cached_tokens)
        .bind(r.reasoning_tokens)
        .bind(r.cost_micros)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    let s = Store::connect(&url).await.unwrap();
    assert_reports_match(&s, &mut rng).await;
    // New records add to the filled rollups.
    let more: Vec<RequestRow> = random_rows(&mut rng, 200)
        .into_iter()
        .map(|mut r| {
            r.request_id = format!("new-{}", r.request_id);
            r
        })
        .collect();
    s.ingest(&more).await.unwrap();
    assert_reports_match(&s, &mut rng).await;
}

/// Pruning deletes old log rows in bounded rounds and old minute rollups; the ledger and the
/// hour and day rollups stay, so old reports and balances still add up.
async fn pruning_keeps_money_and_coarse_rollups(s: Store) {
    s.create_user("alice", None, "", crate::auth::Role::User)
        .await
        .unwrap();
    s.credit("alice", 1_000_000, "topup", "").await.unwrap();
    let mut rng = Rng(0x77);
    let rows = random_rows(&mut rng, 2 * PRUNE_BATCH as usize + 100);
    s.ingest(&rows).await.unwrap();
    let whole = (T0 - T0 % DAY_MS, T0 + 4 * DAY_MS);
    let report = s
        .usage_report(ReportGroup::User, whole.0, whole.1, None)
        .await
        .unwrap();
    let ledger_before = s.ledger("alice", None, 1000).await.unwrap().len();
    let cut = T0 + 4 * DAY_MS;
    let mut rounds = 0;
    while s.prune_request_log(cut).await.unwrap().log_rows == PRUNE_BATCH as u64 {
        rounds += 1;
    }
    assert_eq!(rounds, 2, "bounded rounds");
    let all = RequestQuery {
        limit: 10,
        ..Default::default()
    };
    assert!(s.list_requests(&all).await.unwrap().is_empty());
    assert_eq!(
        s.ledger("alice", None, 1000).await.unwrap().len(),
        ledger_before
    );
    assert_eq!(
        s.usage_report(ReportGroup::User, whole.0, whole.1, None)
            .await
            .unwrap(),
        report,
        "day-aligned reports outlive the log"
    );
    // Minute rollups go an hour per round, until none is left before the cut.
    let mut rounds = 0;
    while s.prune_request_log(cut).await.unwrap().more {
        rounds += 1;
        assert!(rounds < 200, "pruning ends");
    }
    let minutes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_rollup WHERE grain_ms = $1")
        .bind(MINUTE_MS)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(minutes, 0);
}

#[tokio::test]
async fn sqlite_rollups_equal_raw_rows() {
    rollups_equal_raw_rows(Store::connect(&sqlite_url()).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_rollups_equal_raw_rows() {
    let Some(url) = pg_url_for_schema().await else {
        return;
    };
    rollups_equal_raw_rows(Store::connect(&url).await.unwrap()).await;
}

#[tokio::test]
async fn sqlite_upgrade_backfills_rollups() {
    upgrade_backfills(sqlite_url(), Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_upgrade_backfills_rollups() {
    let Some(url) = pg_url_for_schema().await else {
        return;
    };
    upgrade_backfills(url, Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_pruning_keeps_money_and_coarse_rollups() {
    pruning_keeps_money_and_coarse_rollups(Store::connect(&sqlite_url()).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_pruning_keeps_money_and_coarse_rollups() {
    let Some(url) = pg_url_for_schema().await else {
        return;
    };
    pruning_keeps_money_and_coarse_rollups(Store::connect(&url).await.unwrap()).await;
}
