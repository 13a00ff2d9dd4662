//! Sessions on both stores: in memory, and in the local Redis under a prefix of their own
//! (skipped when Redis is not running, except in CI).

use super::*;
use crate::test_support;

fn client(ua: &str, ip: &str) -> Client {
    Client {
        device: "laptop".into(),
        user_agent: ua.into(),
        ip: ip.into(),
    }
}

/// Sessions on the local Redis under a prefix of their own, or `None` when it is not running.
async fn redis_sessions(ttl: i64) -> Option<Sessions> {
    let prefix = crate::crypto::new_id("sy-test-");
    let s = Sessions::connect(Some(test_support::REDIS_URL), &prefix, ttl)
        .await
        .ok()?;
    s.reachable().await.then_some(s)
}

async fn backends(ttl: i64) -> Vec<(&'static str, Sessions)> {
    let mut out = vec![("memory", Sessions::memory(ttl))];
    match redis_sessions(ttl).await {
        Some(s) => out.push(("redis", s)),
        None if test_support::services_required() => panic!("Redis is required in CI"),
        None => test_support::skip_tier("redis", test_support::REDIS_URL, &"not reachable"),
    }
    out
}

#[tokio::test]
async fn rotation_replay_and_revocation() {
    for (name, s) in backends(3600).await {
        let (session, t1) = s
            .create("usr_a", &client("ua/1", "10.0.0.5"), 100)
            .await
            .unwrap();
        assert!(s.alive(&session.id, "usr_a", 101).await.unwrap(), "{name}");
        assert!(
            !s.alive(&session.id, "usr_b", 101).await.unwrap(),
            "{name}: another user's"
        );

        let Refresh::Rotated {
            token: t2,
            suspicious,
            session: after,
        } = s.refresh(&t1, "10.0.0.9", "ua/1", 110).await.unwrap()
        else {
            panic!("{name}: current token rotates");
        };
        assert!(suspicious.is_empty(), "{name}: same device and range");
        assert_eq!((after.last_seen, after.last_ip.as_str()), (110, "10.0.0.9"));
        assert_ne!(t1, t2);
        // A forged secret on the family is refused without touching the family.
        let forged = format!("syr_{}.{}", session.id, "x".repeat(32));
        assert!(
            matches!(
                s.refresh(&forged, "1.1.1.1", "ua/1", 111).await.unwrap(),
                Refresh::Invalid
            ),
            "{name}"
        );
        assert!(s.alive(&session.id, "usr_a", 111).await.unwrap(), "{name}");

        let Refresh::Rotated { token: t3, .. } =
            s.refresh(&t2, "10.0.0.9", "ua/1", 120).await.unwrap()
        else {
            panic!("{name}: second rotation");
        };
        // The first token again: replay. The family is gone, t3 with it.
        match s.refresh(&t1, "6.6.6.6", "evil", 130).await.unwrap() {
            Refresh::Replayed {
                user_id,
                session: sid,
            } => {
                assert_eq!(
                    (user_id.as_str(), sid.as_str()),
                    ("usr_a", session.id.as_str()),
                    "{name}"
                );
            }
            other => panic!("{name}: replay not detected: {other:?}"),
        }
        assert!(!s.alive(&session.id, "usr_a", 131).await.unwrap(), "{name}");
        assert!(
            matches!(
                s.refresh(&t3, "10.0.0.9", "ua/1", 132).await.unwrap(),
                Refresh::Invalid
            ),
            "{name}"
        );
        assert!(s.list("usr_a", 133).await.unwrap().is_empty(), "{name}");
        for junk in [
            "",
            "syr_",
            "syr_zz.x",
            "nope",
            &format!("syr_{}.", session.id),
        ] {
            assert!(
                matches!(
                    s.refresh(junk, "1.1.1.1", "x", 140).await.unwrap(),
                    Refresh::Invalid
                ),
                "{name}: {junk}"
            );
        }
    }
}

#[tokio::test]
async fn devices_suspicious_refreshes_and_remote_logout() {
    for (name, s) in backends(3600).await {
        let (phone, _) = s
            .create("usr_a", &client("phone/1", "192.0.2.10"), 100)
            .await
            .unwrap();
        let (laptop, lt) = s
            .create("usr_a", &client("laptop/1", "192.0.2.11"), 200)
            .await
            .unwrap();
        let (other, _) = s
            .create("usr_b", &client("x", "192.0.2.12"), 200)
            .await
            .unwrap();
        let Refresh::Rotated { suspicious, .. } =
            s.refresh(&lt, "203.0.113.7", "curl/8", 300).await.unwrap()
        else {
            panic!("{name}: rotates");
        };
        let reasons: Vec<&str> = suspicious.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["new_device", "new_ip_range"], "{name}");
        let list = s.list("usr_a", 301).await.unwrap();
        assert_eq!(
            list.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            [laptop.id.as_str(), phone.id.as_str()],
            "{name}"
        );
        assert_eq!(list[0].suspicious.len(), 2, "{name}: visible on the device");
        assert_eq!(
            (list[0].ip.as_str(), list[0].last_ip.as_str()),
            ("192.0.2.11", "203.0.113.7")
        );
        assert_eq!(list[0].device, "laptop");
        // Remote logout of one device; another user's device cannot be ended by this user.
        assert!(!s.revoke("usr_a", &other.id).await.unwrap(), "{name}");
        assert!(s.revoke("usr_a", &phone.id).await.unwrap(), "{name}");
        assert!(!s.alive(&phone.id, "usr_a", 302).await.unwrap(), "{name}");
        assert!(s.alive(&laptop.id, "usr_a", 302).await.unwrap(), "{name}");
        assert_eq!(s.revoke_all("usr_a", 303).await.unwrap(), 1, "{name}");
        assert!(!s.alive(&laptop.id, "usr_a", 304).await.unwrap(), "{name}");
        assert!(s.alive(&other.id, "usr_b", 304).await.unwrap(), "{name}");
    }
}

#[tokio::test]
async fn sign_in_attempts_are_reserved_given_back_and_cleared() {
    for (name, s) in backends(3600).await {
        let who = crate::crypto::new_id("user-");
        for n in 1..=3 {
            let r = s.reserve_attempt(&who, 100).await.unwrap();
            assert_eq!(r.count, n, "{name}");
            assert!((1..=FAILURE_WINDOW_SECS).contains(&r.retry_after), "{name}");
        }
        s.give_back_attempt(&who).await.unwrap();
        assert_eq!(
            s.reserve_attempt(&who, 101).await.unwrap().count,
            3,
            "{name}"
        );
        s.clear_attempts(&who).await.unwrap();
        assert_eq!(
            s.reserve_attempt(&who, 102).await.unwrap().count,
            1,
            "{name}"
        );
        // Never below zero.
        let other = crate::crypto::new_id("user-");
        s.give_back_attempt(&other).await.unwrap();
        assert_eq!(
            s.reserve_attempt(&other, 103).await.unwrap().count,
            1,
            "{name}"
        );
    }
}

/// 50 attempts at once: each gets its own count, so exactly the allowance pass a
/// `count <= allowance` check.
#[tokio::test]
async fn concurrent_reservations_are_counted_one_by_one() {
    for (name, s) in backends(3600).await {
        let who = crate::crypto::new_id("user-");
        let counts = futures::future::join_all((0..50).map(|_| s.reserve_attempt(&who, 100))).await;
        let mut counts: Vec<u32> = counts.into_iter().map(|r| r.unwrap().count).collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=50).collect::<Vec<_>>(), "{name}");
    }
}

/// Tokens are signed: another key's, a changed generation, a changed family or a bent
/// spelling are refused without touching the family.
#[tokio::test]
async fn refresh_tokens_cannot_be_forged() {
    let s = Sessions::memory(3600).with_refresh_key(&[1; 32]);
    let other = Sessions::memory(3600).with_refresh_key(&[2; 32]);
    let (session, t0) = s
        .create("usr_a", &client("ua", "10.0.0.5"), 100)
        .await
        .unwrap();
    let Refresh::Rotated { token: t1, .. } = s.refresh(&t0, "10.0.0.5", "ua", 101).await.unwrap()
    else {
        panic!("rotates");
    };
    let tag = t1.rsplit('.').next().unwrap();
    let forged = [
        other.token(&session.id, 0),
        other.token(&session.id, 1),
        format!("syr_{}.0.{tag}", session.id),
        format!("syr_{}.+1.{tag}", session.id),
        format!("syr_{}.01.{tag}", session.id),
        format!("syr_{}.1.{tag}x", session.id),
        format!("syr_{}.1", session.id),
    ];
    for f in &forged {
        assert!(
            matches!(
                s.refresh(f, "1.1.1.1", "x", 102).await.unwrap(),
                Refresh::Invalid
            ),
            "{f}"
        );
    }
    assert!(s.alive(&session.id, "usr_a", 103).await.unwrap());
    assert!(matches!(
        s.refresh(&t1, "10.0.0.5", "ua", 104).await.unwrap(),
        Refresh::Rotated { .. }
    ));
    // Two control planes with the same key understand each other's tokens.
    let twin = Sessions::memory(3600).with_refresh_key(&[1; 32]);
    assert_eq!(twin.token(&session.id, 7), s.token(&session.id, 7));
}

#[tokio::test]
async fn replay_detection_keeps_constant_state_over_many_rotations() {
    for (name, s) in backends(3600).await {
        let (session, mut token) = s
            .create("usr_a", &client("ua/1", "10.0.0.5"), 100)
            .await
            .unwrap();
        let mut sizes = std::collections::BTreeSet::new();
        let mut old = Vec::new();
        for i in 0..1_000 {
            let Refresh::Rotated { token: next, .. } = s
                .refresh(&token, "10.0.0.5", "ua/1", 101 + i)
                .await
                .unwrap()
            else {
                panic!("{name}: rotation {i}");
            };
            if i % 250 == 0 {
                old.push(token.clone());
            }
            token = next;
            sizes.insert(s.stored_entries(&session.id).await);
        }
        assert_eq!(
            sizes.len(),
            1,
            "{name}: state grew with rotations: {sizes:?}"
        );
        // Any older token of the family is still a replay, however old.
        assert!(
            matches!(
                s.refresh(&old[1], "6.6.6.6", "evil", 2_000).await.unwrap(),
                Refresh::Replayed { .. }
            ),
            "{name}"
        );
        assert!(
            !s.alive(&session.id, "usr_a", 2_001).await.unwrap(),
            "{name}"
        );
        assert_eq!(s.stored_entries(&session.id).await, 0, "{name}: all gone");
    }
}

#[tokio::test]
async fn a_users_live_sessions_are_capped_and_the_oldest_go_first() {
    for (name, s) in backends(3600).await {
        let user = crate::crypto::new_id("usr_");
        let mut ids = Vec::new();
        for i in 0..45 {
            let (session, _) = s
                .create(&user, &client("ua", "10.0.0.5"), 100 + i)
                .await
                .unwrap();
            ids.push(session.id);
        }
        let live = s.list(&user, 200).await.unwrap();
        assert_eq!(live.len(), DEFAULT_MAX_FAMILIES, "{name}: capped");
        assert_eq!(live[0].id, ids[44], "{name}: newest kept");
        assert!(
            !s.alive(&ids[0], &user, 200).await.unwrap(),
            "{name}: oldest revoked"
        );
        assert!(s.alive(&ids[44], &user, 200).await.unwrap(), "{name}");
    }
}

/// Redis down at start, back, lost while running, back again: sessions answer
/// "unavailable" (never another error) while it is gone and work again without a restart.
#[tokio::test]
async fn sessions_survive_redis_going_away_and_coming_back() {
    use crate::test_support::OwnRedis;
    let port = OwnRedis::free_port();
    let s = Sessions::connect(Some(&OwnRedis::url(port)), "sy-outage", 3600)
        .await
        .expect("starts without Redis");
    let started = std::time::Instant::now();
    let err = s
        .create("usr_a", &client("ua", "10.0.0.5"), 100)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "fails fast"
    );
    assert!(err.to_string().contains("unavailable"), "{err}");
    let mut redis = OwnRedis::start(port);
    let c = client("ua", "10.0.0.5");
    let (session, token) = eventually(|| s.create("usr_a", &c, 101)).await;
    assert!(s.alive(&session.id, "usr_a", 102).await.unwrap());
    redis.kill();
    let err = s.alive(&session.id, "usr_a", 103).await.unwrap_err();
    assert!(err.to_string().contains("unavailable"), "{err}");
    let err = s.refresh(&token, "10.0.0.5", "ua", 104).await.unwrap_err();
    assert!(matches!(err, SessionError::Unavailable(_)), "{err}");
    let _redis = OwnRedis::start(port);
    let (again, _) = eventually(|| s.create("usr_a", &c, 105)).await;
    assert!(s.alive(&again.id, "usr_a", 106).await.unwrap());
}

/// Retries `f` for a few seconds (a connection lost to a restarted Redis fails once).
async fn eventually<T, E, F>(mut f: impl FnMut() -> F) -> T
where
    E: std::fmt::Debug,
    F: std::future::Future<Output = std::result::Result<T, E>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) if std::time::Instant::now() > deadline => panic!("still failing: {e:?}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}
