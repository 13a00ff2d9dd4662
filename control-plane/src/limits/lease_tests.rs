//! Leases on both backends: requests per minute taken whole at grant time and given back,
//! credit allowances bounded by what is spendable in one hold per Envoy and key that each ask
//! shrinks by what it releases and grows by what it is granted, ends charged,
//! refusals, and hostile asks.

use switchyard_contract::lease::{LeaseAsk, LeaseEnd, MAX_REQUESTS};
use switchyard_contract::limits::RefusalCode;

use super::tests::{backends, key, metered_table};
use super::*;

fn ask(instance: &str, key: &str, requests: u32) -> LeaseAsk {
    LeaseAsk {
        instance: instance.into(),
        key: key.into(),
        at_ms: 0,
        requests,
        ..LeaseAsk::default()
    }
}

#[tokio::test]
async fn grants_take_requests_from_the_shared_window_so_rpm_is_never_overshot() {
    let table = Table {
        keys: [("k".to_string(), key("u", Some(60), None))].into(),
        ..Table::default()
    };
    for (name, l, _) in backends(table).await {
        let now = 1_000;
        // A tenth of the limit per grant, whatever is asked.
        let a = l.lease(&ask("a", "k", 500), now).await.unwrap();
        assert_eq!((a.requests, a.refusal.clone()), (6, None), "{name}");
        let w = a.request_window.unwrap();
        assert_eq!((w.limit, w.used), (60, 0), "{name}: used before this grant");
        // Two Envoys together never get more than the limit.
        let mut total = 6;
        for i in 0..20 {
            let instance = if i % 2 == 0 { "a" } else { "b" };
            let g = l.lease(&ask(instance, "k", 6), now).await.unwrap();
            total += g.requests;
            if g.requests == 0 {
                let r = g.refusal.expect("refused");
                assert_eq!(r.code(), RefusalCode::RateLimitExceeded, "{name}");
                assert!(r.retry_after.is_some_and(|s| s >= 1), "{name}");
                assert_eq!(g.request_window.unwrap().used, 60, "{name}");
            }
        }
        assert_eq!(total, 60, "{name}");
        // Unused requests given back leave the window at once.
        let mut back = ask("a", "k", 2);
        back.unused = 3;
        back.granted_at = now;
        let g = l.lease(&back, now + 1).await.unwrap();
        assert_eq!(g.requests, 2, "{name}: 3 given back, 2 taken");
        let g = l.lease(&ask("b", "k", 6), now + 1).await.unwrap();
        assert_eq!(g.requests, 1, "{name}: the last one left");
    }
}

/// A lease ask of Envoy `instance` for `requests` of key `k` reserving `reserve` each.
fn metered_ask(instance: &str, requests: u32, reserve: u64) -> LeaseAsk {
    LeaseAsk {
        reserve,
        ..ask(instance, "k", requests)
    }
}

#[tokio::test]
async fn a_credit_allowance_is_at_most_what_is_spendable_and_another_envoy_waits_for_it() {
    for (name, l, _) in backends(metered_table()).await {
        l.balances_changed(&[("u".into(), 10_000)]).await;
        let now = 2_000;
        let g = l.lease(&metered_ask("a", 10, 3_000), now).await.unwrap();
        assert_eq!((g.requests, g.credit), (10, Some(10_000)), "{name}");
        // Another Envoy finds nothing spendable while the first holds it all.
        let r = l.lease(&metered_ask("b", 10, 3_000), now).await.unwrap();
        let r = r.refusal.expect("refused");
        assert_eq!(r.code(), RefusalCode::InsufficientCredits, "{name}");
        // A return takes nothing.
        let g = l.lease(&ask("a", "k", 0), now + 1).await.unwrap();
        assert_eq!((g.requests, g.credit), (0, None), "{name}");
    }
}

/// The cause of 32 concurrent clients being refused credit they had paid for: each ask held
/// its own allowance until a few seconds after its lease, so an Envoy's next ask found the
/// last one's unspent allowance (and the costs of its ended requests, held twice) still held.
/// One hold per Envoy and key, shrunk by what each ask releases, leaves them spendable at once.
#[tokio::test]
async fn an_envoys_next_ask_may_spend_what_its_last_lease_left_at_once() {
    for (name, l, inside) in backends(metered_table()).await {
        l.balances_changed(&[("u".into(), 10_000)]).await;
        let now = 2_000;
        let g = l.lease(&metered_ask("a", 10, 3_000), now).await.unwrap();
        assert_eq!(g.credit, Some(10_000), "{name}");
        // Two requests ended at 2,000 each and the lease expired with 6,000 left: the next
        // ask, a second later, reports the ends and releases their costs and the 6,000.
        let mut next = metered_ask("a", 10, 3_000);
        next.ends = ["r1", "r2"]
            .map(|r| LeaseEnd {
                request: r.into(),
                tokens: 10,
                cost: 2_000,
                held: true,
            })
            .to_vec();
        next.release = 6_000;
        let g = l.lease(&next, now + 1).await.unwrap();
        assert_eq!(
            (g.credit, g.refusal),
            (Some(6_000), None),
            "{name}: the balance less the two costs, still held until the ledger has them"
        );
        assert_eq!(inside.held("u").await, 4_000 + 6_000, "{name}");
        // The records reach the ledger: the costs' holds go, the Envoy's stays.
        l.balances_changed(&[("u".into(), 6_000)]).await;
        l.settled(
            &[
                ("r1".into(), "u".into(), 2_000),
                ("r2".into(), "u".into(), 2_000),
            ],
            now + 2,
        )
        .await;
        assert_eq!(inside.held("u").await, 6_000, "{name}");
        assert!(
            l.lease(&metered_ask("b", 10, 3_000), now + 2)
                .await
                .unwrap()
                .refusal
                .is_some(),
            "{name}"
        );
        // A return releases it all, and another Envoy may have it.
        let mut back = ask("a", "k", 0);
        back.release = 6_000;
        l.lease(&back, now + 3).await.unwrap();
        assert_eq!(inside.held("u").await, 0, "{name}");
        let g = l
            .lease(&metered_ask("b", 10, 3_000), now + 3)
            .await
            .unwrap();
        assert_eq!(g.credit, Some(6_000), "{name}");
    }
}

/// An Envoy whose requests are in flight asks for more while its credit is below zero (given
/// back its unused requests, and refused: its hold has the whole balance); their ends then
/// refund its credit above zero. Its next ask, with nothing more spendable, still gets requests
/// to spend that credit on (under load the 32-client test stalled at 7 served without this).
#[tokio::test]
async fn an_envoy_with_credit_left_is_granted_requests_when_nothing_more_is_spendable() {
    for (name, l, inside) in backends(metered_table()).await {
        l.balances_changed(&[("u".into(), 10_000)]).await;
        let now = 2_700;
        let g = l.lease(&metered_ask("a", 10, 3_000), now).await.unwrap();
        assert_eq!(g.credit, Some(10_000), "{name}");
        let r = l.lease(&metered_ask("a", 10, 3_000), now).await.unwrap();
        let r = r.refusal.expect("nothing more, and none left");
        assert_eq!(r.code(), RefusalCode::InsufficientCredits, "{name}");
        let mut next = metered_ask("a", 10, 3_000);
        next.credit = 2_000;
        let g = l.lease(&next, now + 1).await.unwrap();
        assert_eq!(
            (g.refusal, g.requests, g.credit),
            (None, 10, Some(0)),
            "{name}: requests for what it has, no more credit"
        );
        assert_eq!(inside.held("u").await, 10_000, "{name}");
    }
}

#[tokio::test]
async fn concurrent_asks_of_one_envoy_add_up_and_never_exceed_the_balance() {
    for (name, l, inside) in backends(metered_table()).await {
        l.balances_changed(&[("u".into(), 10_000)]).await;
        let now = 2_500;
        // Three requests of one Envoy found its lease empty at once: each asks.
        let mut granted = 0;
        for _ in 0..3 {
            let g = l.lease(&metered_ask("a", 2, 3_000), now).await.unwrap();
            granted += g.credit.unwrap_or(0);
        }
        assert_eq!(
            granted, 10_000,
            "{name}: 6,000, then the 4,000 left, then none"
        );
        assert_eq!(inside.held("u").await, 10_000, "{name}: one hold");
        // Releases are amounts, not states: a late or reordered ask cannot undo another's
        // grant, and releasing more than is held only empties the hold.
        let mut back = ask("a", "k", 0);
        back.release = 7_000;
        l.lease(&back, now + 1).await.unwrap();
        assert_eq!(inside.held("u").await, 3_000, "{name}");
        l.lease(&back, now + 1).await.unwrap();
        assert_eq!(inside.held("u").await, 0, "{name}");
        // Another Envoy's hold is its own.
        let g = l.lease(&metered_ask("b", 2, 3_000), now + 1).await.unwrap();
        assert_eq!(g.credit, Some(6_000), "{name}");
        l.lease(&back, now + 2).await.unwrap();
        assert_eq!(inside.held("u").await, 6_000, "{name}");
    }
}

#[tokio::test]
async fn an_unused_allowance_returns_when_its_hold_expires() {
    for (name, l, _) in backends(metered_table()).await {
        l.balances_changed(&[("u".into(), 10_000)]).await;
        let mut a = ask("a", "k", 10);
        a.reserve = 5_000;
        let g = l.lease(&a, 3_000).await.unwrap();
        assert_eq!(g.credit, Some(10_000), "{name}");
        let mut b = ask("b", "k", 10);
        b.reserve = 5_000;
        assert!(
            l.lease(&b, 3_001).await.unwrap().refusal.is_some(),
            "{name}"
        );
        // The first Envoy went away: a few seconds after its lease, its hold is gone.
        let g = l.lease(&b, 3_010).await.unwrap();
        assert_eq!(g.credit, Some(10_000), "{name}");
    }
}

#[tokio::test]
async fn ends_count_tokens_and_a_full_token_window_refuses() {
    let table = Table {
        keys: [("k".to_string(), key("u", None, Some(50)))].into(),
        ..Table::default()
    };
    for (name, l, _) in backends(table).await {
        let g = l.lease(&ask("a", "k", 5), 4_000).await.unwrap();
        assert_eq!((g.requests, g.tokens), (5, Some(50)), "{name}");
        let mut next = ask("a", "k", 5);
        next.ends = vec![LeaseEnd {
            request: "r1".into(),
            tokens: 29,
            cost: 0,
            held: false,
        }];
        let g = l.lease(&next, 4_001).await.unwrap();
        assert_eq!(g.tokens, Some(21), "{name}");
        // Summed ends (an owner without credits) count as well.
        next.ends.clear();
        next.tokens = 29;
        let g = l.lease(&next, 4_002).await.unwrap();
        let r = g.refusal.expect("refused");
        assert_eq!(r.code(), RefusalCode::TokensPerMinuteExceeded, "{name}");
        assert_eq!(g.token_window.unwrap().used, 58, "{name}");
    }
}

#[tokio::test]
async fn keys_without_limits_spend_freely_and_hostile_asks_count_nowhere() {
    for (name, l, _) in backends(metered_table()).await {
        l.balances_changed(&[("u".into(), 10_000)]).await;
        let g = l.lease(&ask("a", "unknown", 5), 5_000).await.unwrap();
        assert_eq!((g.requests, g.credit), (MAX_REQUESTS, None), "{name}");
        let mut hostile = ask("a", "k", 5);
        hostile.ends = vec![LeaseEnd {
            request: "r1".into(),
            tokens: 1,
            cost: u64::MAX,
            held: false,
        }];
        assert!(l.lease(&hostile, 5_000).await.is_err(), "{name}");
        hostile.ends.clear();
        hostile.held = u64::MAX;
        assert!(l.lease(&hostile, 5_000).await.is_err(), "{name}");
        hostile.held = 0;
        hostile.instance = "a:b".into();
        assert!(l.lease(&hostile, 5_000).await.is_err(), "{name}");
        // None of them took anything.
        let mut fine = ask("b", "k", 5);
        fine.reserve = 10_000;
        let g = l.lease(&fine, 5_000).await.unwrap();
        assert_eq!(g.credit, Some(10_000), "{name}");
    }
}

/// Sends `body` (signed with `sign`, if any) to the lease endpoint of a control plane whose
/// data plane key is `[7; 32]`: (status, answer).
async fn post(
    l: std::sync::Arc<Limits>,
    body: &[u8],
    sign: Option<[u8; 32]>,
) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::post(switchyard_contract::lease::PATH)
        .header("content-type", "application/json");
    if let Some(k) = sign {
        req = req.header(
            switchyard_contract::sealed::SIGNATURE_HEADER,
            switchyard_contract::sealed::sign_lease(&k, body),
        );
    }
    let req = req.body(axum::body::Body::from(body.to_vec())).unwrap();
    let resp = lease_router(l, Some([7; 32])).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn the_endpoint_takes_only_signed_fresh_bounded_asks() {
    let l = std::sync::Arc::new(Limits::in_memory());
    l.set_table(Table {
        keys: [("k".to_string(), key("u", Some(60), None))].into(),
        ..Table::default()
    });
    let now_ms = u64::try_from(crate::store::now()).unwrap() * 1_000;
    let mut a = ask("a", "k", 6);
    a.at_ms = now_ms;
    let body = serde_json::to_vec(&a).unwrap();
    let (status, grant) = post(l.clone(), &body, Some([7; 32])).await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["requests"], 6);
    // Unsigned, or signed with another key, or a records signature: refused, nothing taken.
    assert_eq!(post(l.clone(), &body, None).await.0, 401);
    assert_eq!(post(l.clone(), &body, Some([8; 32])).await.0, 401);
    {
        use tower::ServiceExt;
        let req = axum::http::Request::post(switchyard_contract::lease::PATH)
            .header(
                switchyard_contract::sealed::SIGNATURE_HEADER,
                switchyard_contract::sealed::sign_records(&[7; 32], &body),
            )
            .body(axum::body::Body::from(body.clone()))
            .unwrap();
        let resp = lease_router(l.clone(), Some([7; 32]))
            .oneshot(req)
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
    }
    // Signed but hostile: stale (a replay), out of bounds, not JSON, too large.
    let mut stale = a.clone();
    stale.at_ms = now_ms - 60_000;
    let mut huge = a.clone();
    huge.requests = u32::MAX;
    let mut owed = a.clone();
    owed.ends = vec![LeaseEnd {
        request: "r".into(),
        tokens: u64::MAX,
        cost: 1,
        held: false,
    }];
    for odd in [&stale, &huge, &owed] {
        let body = serde_json::to_vec(odd).unwrap();
        assert_eq!(post(l.clone(), &body, Some([7; 32])).await.0, 400);
    }
    assert_eq!(post(l.clone(), b"{", Some([7; 32])).await.0, 400);
    let big = vec![b' '; 70 << 10];
    assert_eq!(post(l.clone(), &big, Some([7; 32])).await.0, 413);
    // Only the first ask took requests: 54 are left.
    let mut more = a.clone();
    more.instance = "b".into();
    let mut left = 0;
    for _ in 0..20 {
        left += l.lease(&more, crate::store::now()).await.unwrap().requests;
    }
    assert_eq!(left, 54);
}

#[tokio::test]
async fn spend_caps_bound_what_a_lease_may_reserve() {
    let table = Table {
        keys: [(
            "k".to_string(),
            KeyLimits {
                user: "u".into(),
                daily_micros: Some(5_000),
                ..KeyLimits::default()
            },
        )]
        .into(),
        ..Table::default()
    };
    for (name, l, _) in backends(table).await {
        let now = 1_700_000_000;
        let mut a = ask("a", "k", 10);
        a.reserve = 4_500;
        let g = l.lease(&a, now).await.unwrap();
        assert_eq!((g.credit, g.cap), (None, Some(5_000)), "{name}");
        a.ends = vec![LeaseEnd {
            request: "r1".into(),
            tokens: 29,
            cost: 2_900,
            held: false,
        }];
        let g = l.lease(&a, now + 1).await.unwrap();
        assert_eq!(g.cap, Some(2_100), "{name}");
        a.ends[0].request = "r2".into();
        let g = l.lease(&a, now + 2).await.unwrap();
        let r = g.refusal.expect("refused");
        assert_eq!(r.code(), RefusalCode::BudgetExceeded, "{name}");
    }
}
