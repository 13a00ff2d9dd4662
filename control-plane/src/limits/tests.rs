//! The limits service on both backends: in memory, and in the local Redis under a prefix of its
//! own (skipped when Redis is not running, except in CI).

use std::sync::Arc;

use switchyard_contract::limits::RefusalCode;

use crate::test_support;

use super::*;

/// What a test may look at inside a backend's counters.
pub(super) enum Inside {
    Memory(Arc<MemoryCounters>),
    /// The prefix of the counters' keys.
    Redis(String),
}

impl Inside {
    /// What `user`'s holds add up to.
    pub(super) async fn held(&self, user: &str) -> i64 {
        match self {
            Inside::Memory(m) => m.lock().unwrap().held(user),
            Inside::Redis(prefix) => {
                let mut c = ::redis::Client::open(test_support::REDIS_URL)
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                let held: Option<i64> = ::redis::cmd("GET")
                    .arg(format!("{prefix}:held:{user}"))
                    .query_async(&mut c)
                    .await
                    .unwrap();
                held.unwrap_or(0)
            }
        }
    }
}

/// Every backend, each with `table`.
pub(super) async fn backends(table: Table) -> Vec<(&'static str, Limits, Inside)> {
    let counters = Arc::new(MemoryCounters::default());
    let memory = Limits::new(counters.clone());
    memory.set_table(table.clone());
    let mut out = vec![("memory", memory, Inside::Memory(counters))];
    let prefix = crate::crypto::new_id("sy-limits-test-");
    let redis = Limits::connect(Some(test_support::REDIS_URL), &prefix).expect("a valid URL");
    if redis.reachable().await {
        redis.set_table(table);
        out.push(("redis", redis, Inside::Redis(prefix)));
    } else if test_support::services_required() {
        panic!("Redis is required in CI");
    } else {
        test_support::skip_tier("redis", test_support::REDIS_URL, &"not reachable");
    }
    out
}

pub(super) fn key(user: &str, rpm: Option<i64>, tpm: Option<i64>) -> KeyLimits {
    KeyLimits {
        user: user.into(),
        rpm,
        tpm,
        ..KeyLimits::default()
    }
}

fn metered() -> UserLimits {
    UserLimits {
        metered: true,
        ..UserLimits::default()
    }
}

/// A table of keys `k` (and `k2`) of user `u`, metered.
pub(super) fn metered_table() -> Table {
    Table {
        keys: [
            ("k".to_string(), key("u", None, None)),
            ("k2".to_string(), key("u", None, None)),
        ]
        .into(),
        users: [("u".to_string(), metered())].into(),
    }
}

/// Admits a request of `key` with id `request` reserving `reserve`.
async fn admit(l: &Limits, key: &str, request: &str, reserve: u64, now: i64) -> Admission {
    l.admit(
        &Admit {
            key,
            request,
            reserve,
        },
        now,
    )
    .await
    .expect("limits answer")
}

/// The refusal code of an admission, `None` when admitted.
async fn code(
    l: &Limits,
    key: &str,
    request: &str,
    reserve: u64,
    now: i64,
) -> Option<&'static str> {
    admit(l, key, request, reserve, now)
        .await
        .refusal
        .map(|r| r.code.as_str())
}

#[tokio::test]
async fn requests_per_minute_slide() {
    let table = Table {
        keys: [("k".to_string(), key("u", Some(3), None))].into(),
        ..Table::default()
    };
    for (name, l, _) in backends(table).await {
        for t in 0..3 {
            let a = admit(&l, "k", "", 0, 1_000 + t).await;
            assert!(a.refusal.is_none(), "{name}");
            assert_eq!(a.requests.unwrap().1.used, t + 1, "{name}");
        }
        let refused = admit(&l, "k", "", 0, 1_010).await;
        let r = refused.refusal.unwrap();
        assert_eq!(r.code, RefusalCode::RateLimitExceeded, "{name}");
        assert_eq!(
            r.retry_after,
            Some(50),
            "{name}: the first request leaves the window at 1,060"
        );
        assert_eq!(
            refused.requests.unwrap().1.used,
            3,
            "{name}: a refusal counts nowhere"
        );
        assert!(code(&l, "k", "", 0, 1_059).await.is_some(), "{name}");
        assert!(code(&l, "k", "", 0, 1_060).await.is_none(), "{name}");
        assert!(code(&l, "unknown", "", 0, 1_060).await.is_none(), "{name}");
    }
}

#[tokio::test]
async fn tokens_count_when_responses_end_and_users_share_their_limits() {
    let table = Table {
        keys: [
            ("a".to_string(), key("u", None, Some(100))),
            ("b".to_string(), key("u", None, None)),
        ]
        .into(),
        users: [(
            "u".to_string(),
            UserLimits {
                rpm: Some(2),
                ..UserLimits::default()
            },
        )]
        .into(),
    };
    for (name, l, _) in backends(table).await {
        assert!(code(&l, "a", "", 0, 10).await.is_none(), "{name}");
        l.ended("a", "r1", 120, 0, 11).await.unwrap();
        assert_eq!(
            code(&l, "a", "", 0, 12).await,
            Some("tokens_per_minute_exceeded"),
            "{name}"
        );
        assert!(
            code(&l, "b", "", 0, 12).await.is_none(),
            "{name}: second of the user's two"
        );
        assert_eq!(
            code(&l, "b", "", 0, 13).await,
            Some("rate_limit_exceeded"),
            "{name}: the owner's limit covers all its keys"
        );
    }
}

#[tokio::test]
async fn credits_count_each_request_once_whichever_report_comes_first() {
    for (name, l, _) in backends(metered_table()).await {
        assert!(l.table().limited("k"));
        l.balances_changed(&[("u".into(), 100)]).await;
        l.ended("k", "r1", 5, 60, 1).await.unwrap();
        assert!(code(&l, "k", "", 0, 1).await.is_none(), "{name}: 40 left");
        // r1 reaches the ledger (balance 40): settled, not counted twice.
        l.balances_changed(&[("u".into(), 40)]).await;
        l.settled(&[("r1".into(), "u".into(), 60)], 2).await;
        assert!(code(&l, "k", "", 0, 2).await.is_none(), "{name}: still 40");
        // r2's record comes first, then its end: counted once.
        l.balances_changed(&[("u".into(), 0)]).await;
        l.settled(&[("r2".into(), "u".into(), 40)], 3).await;
        l.ended("k", "r2", 5, 40, 3).await.unwrap();
        assert_eq!(
            code(&l, "k", "", 0, 3).await,
            Some("insufficient_credits"),
            "{name}"
        );
        l.balances_changed(&[("u".into(), 10)]).await;
        assert!(code(&l, "k", "", 0, 4).await.is_none(), "{name}: topped up");
    }
}

#[tokio::test]
async fn reservations_hold_credits_until_the_end_replaces_them_with_the_cost() {
    for (name, l, inside) in backends(metered_table()).await {
        l.balances_changed(&[("u".into(), 100)]).await;
        // Two requests in flight reserve 80 each: the first leaves 20, the second -60.
        assert!(code(&l, "k", "r1", 80, 10).await.is_none(), "{name}");
        assert!(code(&l, "k2", "r2", 80, 10).await.is_none(), "{name}");
        assert_eq!(
            code(&l, "k", "r3", 1, 10).await,
            Some("insufficient_credits"),
            "{name}: the reservations of requests in flight count, on every key of the owner"
        );
        // r1 ends costing 10: 100 - 10 - 80 = 10 left.
        l.ended("k", "r1", 5, 10, 11).await.unwrap();
        assert!(code(&l, "k", "r3", 50, 11).await.is_none(), "{name}");
        assert_eq!(
            code(&l, "k", "r4", 1, 11).await,
            Some("insufficient_credits"),
            "{name}"
        );
        // r2 fails upstream (no cost), r3 costs 30: 100 - 10 - 30 = 60 left.
        l.ended("k2", "r2", 0, 0, 12).await.unwrap();
        l.ended("k", "r3", 5, 30, 12).await.unwrap();
        assert!(code(&l, "k", "r4", 59, 12).await.is_none(), "{name}");
        l.ended("k", "r4", 5, 59, 13).await.unwrap();
        assert!(code(&l, "k", "r5", 1, 13).await.is_none(), "{name}: 1 left");
        l.ended("k", "r5", 5, 1, 13).await.unwrap();
        assert_eq!(
            code(&l, "k", "r6", 0, 13).await,
            Some("insufficient_credits"),
            "{name}"
        );
        // The ledger takes them all (balance 0): nothing is counted twice, a top-up works.
        l.balances_changed(&[("u".into(), 0)]).await;
        let ids = ["r1", "r2", "r3", "r4", "r5"];
        let settled: Vec<(String, String, i64)> = ids
            .iter()
            .map(|r| ((*r).to_string(), "u".to_string(), 1))
            .collect();
        l.settled(&settled, 14).await;
        l.balances_changed(&[("u".into(), 5)]).await;
        assert!(code(&l, "k", "r6", 0, 14).await.is_none(), "{name}");
        if let Inside::Memory(m) = &inside {
            assert_eq!(m.lock().unwrap().held("u"), 0, "only r6's zero reservation");
        }
    }
}

#[tokio::test]
async fn a_reservation_whose_end_never_comes_stops_counting_after_the_request_timeout() {
    for (name, l, _) in backends(metered_table()).await {
        let l = l.with_request_timeout(30);
        l.balances_changed(&[("u".into(), 100)]).await;
        assert!(
            code(&l, "k", "lost", 1_000, 1_000).await.is_none(),
            "{name}"
        );
        assert_eq!(
            code(&l, "k", "r2", 1, 1_089).await,
            Some("insufficient_credits"),
            "{name}: held for the timeout and the margin"
        );
        assert!(
            code(&l, "k", "r2", 1, 1_090).await.is_none(),
            "{name}: then released"
        );
    }
}

#[tokio::test]
async fn forged_charges_never_let_a_user_without_credits_through() {
    for (name, l, _) in backends(metered_table()).await {
        l.balances_changed(&[("u".into(), 0)]).await;
        // Out of bounds: refused, counted nowhere.
        for (tokens, cost) in [
            (5, i64::MAX),
            (5, MAX_CHARGE_MICROS + 1),
            (5, -1),
            (-1, 5),
            (MAX_TOKENS + 1, 5),
        ] {
            let e = l.ended("k", "forged", tokens, cost, 10).await;
            assert!(
                matches!(e, Err(LimitsError::OutOfRange(_))),
                "{name}: {tokens} {cost}: {e:?}"
            );
        }
        // The largest charges, many times over: totals saturate, never wrap below zero.
        for i in 0..50 {
            l.ended("k", &format!("big{i}"), MAX_TOKENS, MAX_CHARGE_MICROS, 10)
                .await
                .unwrap();
        }
        // A ledger report for each, then more reports for requests never seen.
        let settled: Vec<(String, String, i64)> = (0..60)
            .map(|i| (format!("big{i}"), "u".to_string(), MAX_CHARGE_MICROS))
            .collect();
        l.settled(&settled, 11).await;
        assert_eq!(
            code(&l, "k", "r", 0, 12).await,
            Some("insufficient_credits"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn spend_caps_per_day_of_a_key_and_of_its_owner_over_all_keys() {
    let table = Table {
        keys: [
            (
                "k".to_string(),
                KeyLimits {
                    user: "u".into(),
                    daily_micros: Some(1_000),
                    ..KeyLimits::default()
                },
            ),
            ("k2".to_string(), key("u", None, None)),
            ("other".to_string(), key("v", None, None)),
        ]
        .into(),
        users: [(
            "u".to_string(),
            UserLimits {
                daily_micros: Some(1_500),
                ..UserLimits::default()
            },
        )]
        .into(),
    };
    assert!(
        table.limited("k2"),
        "a key whose owner has a cap is limited"
    );
    assert!(!table.limited("other"));
    for (name, l, inside) in backends(table).await {
        let now = 1_795_705_200;
        l.ended("k", "r1", 10, 999, now).await.unwrap();
        assert!(code(&l, "k", "", 0, now).await.is_none(), "{name}");
        l.ended("k", "r2", 10, 1, now).await.unwrap();
        let r = admit(&l, "k", "", 0, now).await.refusal.unwrap();
        assert_eq!(
            (r.code, r.retry_after),
            (RefusalCode::BudgetExceeded, Some(9 * 3_600)),
            "{name}"
        );
        assert!(
            r.message.starts_with("This key has spent"),
            "{name}: {}",
            r.message
        );
        // The owner's cap counts both keys: 1,000 + 500.
        l.ended("k2", "r3", 10, 499, now).await.unwrap();
        assert!(code(&l, "k2", "", 0, now).await.is_none(), "{name}");
        l.ended("k2", "r4", 10, 1, now).await.unwrap();
        let r = admit(&l, "k2", "", 0, now).await.refusal.unwrap();
        assert_eq!(r.code, RefusalCode::BudgetExceeded, "{name}");
        assert!(
            r.message.starts_with("This key's owner has spent"),
            "{name}: {}",
            r.message
        );
        assert!(
            code(&l, "k2", "", 0, now + 9 * 3_600).await.is_none(),
            "{name}: a new day"
        );
        // The past day's totals are forgotten once they expired.
        l.ended("k", "r5", 10, 1, now + 11 * 3_600).await.unwrap();
        if let Inside::Memory(m) = &inside {
            assert_eq!(
                m.lock().unwrap().sizes().0,
                2,
                "only the new day's, of the key and its owner (no monthly caps)"
            );
        }
    }
}

#[tokio::test]
async fn maps_keyed_by_request_ids_are_bounded() {
    for (name, l, inside) in backends(metered_table()).await {
        l.balances_changed(&[("u".into(), i64::MAX / 2)]).await;
        // Ends of requests never admitted (forged, or reservations long gone): each holds its
        // cost, up to the cap; beyond it the soonest to expire goes.
        let n = MAX_HOLDS_PER_USER + 50;
        for i in 0..n {
            l.ended("k", &format!("e{i}"), 1, 1, 100).await.unwrap();
        }
        assert!(
            code(&l, "k", "new", 1, 100).await == Some("rate_limit_exceeded"),
            "{name}: admission refuses beyond the most requests held"
        );
        // Ledger reports of requests whose end never came: remembered, up to a cap.
        let settled: Vec<(String, String, i64)> = (0..120_000)
            .map(|i| (format!("s{i}"), "u".to_string(), 1))
            .collect();
        for chunk in settled.chunks(2_000) {
            l.settled(chunk, 100).await;
        }
        match &inside {
            Inside::Memory(m) => {
                let m = m.lock().unwrap();
                let (_, holds, settled, order) = m.sizes();
                assert_eq!(holds, MAX_HOLDS_PER_USER, "{name}");
                assert!(
                    settled <= 100_000 && order <= 100_000,
                    "{name}: {settled} {order}"
                );
                assert_eq!(
                    m.held("u"),
                    MAX_HOLDS_PER_USER as i64,
                    "{name}: the sum follows"
                );
            }
            Inside::Redis(prefix) => {
                // Without the service's short timeouts: the checks below read every key.
                let mut c = ::redis::Client::open("redis://127.0.0.1:6379")
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                    .unwrap();
                let holds: usize = ::redis::cmd("ZCARD")
                    .arg(format!("{prefix}:expiry:u"))
                    .query_async(&mut c)
                    .await
                    .unwrap();
                assert_eq!(holds, MAX_HOLDS_PER_USER, "{name}");
                let held: i64 = ::redis::cmd("GET")
                    .arg(format!("{prefix}:held:u"))
                    .query_async(&mut c)
                    .await
                    .unwrap();
                assert_eq!(held, MAX_HOLDS_PER_USER as i64, "{name}: the sum follows");
                // Every key the counters made expires.
                let keys: Vec<String> = ::redis::cmd("KEYS")
                    .arg(format!("{prefix}:*"))
                    .query_async(&mut c)
                    .await
                    .unwrap();
                assert!(keys.len() > 100_000, "{name}: {}", keys.len());
                let mut pipe = ::redis::pipe();
                for k in &keys {
                    pipe.ttl(k);
                }
                let ttls: Vec<i64> = pipe.query_async(&mut c).await.unwrap();
                let forever: Vec<&String> = keys
                    .iter()
                    .zip(&ttls)
                    .filter(|(_, t)| **t < 0)
                    .map(|(k, _)| k)
                    .collect();
                assert!(
                    forever.is_empty(),
                    "{name}: keys without a TTL: {forever:?}"
                );
                let mut pipe = ::redis::pipe();
                for k in &keys {
                    pipe.del(k).ignore();
                }
                pipe.query_async::<()>(&mut c).await.unwrap();
            }
        }
    }
}

/// A TCP port nothing listens on.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn without_redis_the_service_starts_and_answers_an_error_at_once_then_recovers() {
    let port = dead_port();
    let l = Limits::connect(Some(&format!("redis://127.0.0.1:{port}")), "sy-down")
        .expect("no connection needed to start");
    l.set_table(metered_table());
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let e = l
            .admit(
                &Admit {
                    key: "k",
                    request: "r",
                    reserve: 1,
                },
                1,
            )
            .await;
        assert!(e.is_err(), "{e:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_millis(300),
            "{:?}",
            started.elapsed()
        );
    }
    // Redis comes up on that port: limits work again, no restart needed.
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    let mut reached = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if l.reachable().await {
            reached = true;
            break;
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(reached, "reconnected once Redis was back");
}

#[tokio::test]
async fn a_hanging_redis_fails_calls_within_the_timeouts() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let l = Limits::connect(Some(&format!("redis://127.0.0.1:{port}")), "sy-hang").unwrap();
    l.set_table(metered_table());
    for _ in 0..3 {
        let started = std::time::Instant::now();
        assert!(!l.reachable().await);
        assert!(
            started.elapsed() < std::time::Duration::from_millis(450),
            "{:?}",
            started.elapsed()
        );
    }
    held.abort();
}
