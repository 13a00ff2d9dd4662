//! The same store tests on SQLite and on the real PostgreSQL (`SWITCHYARD_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432/test`), each PostgreSQL test in a schema of its own.

use switchyard_contract::pricing::Price;

use super::*;
use crate::config::TargetSpec;
use crate::domain::{ProviderDef, ProviderKind, ProviderSettings, Strategy};
use crate::test_support::{pg_url_for_schema, sqlite_url};

async fn sqlite() -> Store {
    Store::connect(&sqlite_url()).await.expect("sqlite store")
}

async fn postgres() -> Option<Store> {
    let url = pg_url_for_schema().await?;
    Some(Store::connect(&url).await.expect("postgres store"))
}

macro_rules! on_both_backends {
    ($($name:ident => $body:expr;)*) => {
        mod sqlite_backend {
            use super::*;
            $(#[tokio::test] async fn $name() { let store = sqlite().await; ($body)(store).await; })*
        }
        mod postgres_backend {
            use super::*;
            $(#[tokio::test] async fn $name() {
                let Some(store) = postgres().await else { return };
                ($body)(store).await;
            })*
        }
    };
}

fn key(secret: &str, weight: u32) -> NewProviderKey {
    NewProviderKey {
        digest: crate::crypto::digest(secret),
        secret_sealed: format!("sealed:{secret}"),
        weight,
        qps: Some(5),
    }
}

fn api_key(name: &str, secret: &str) -> NewApiKey {
    NewApiKey {
        name: name.into(),
        user: "alice".into(),
        prefix: secret[..6].into(),
        digest: crate::crypto::digest(secret),
        models: vec!["*".into()],
        rpm: Some(60),
        tpm: None,
        credits: Some(12.5),
        expires_at: None,
        daily_budget_micros: Some(5_000_000),
        monthly_budget_micros: None,
    }
}

fn def(kind: ProviderKind, base_url: &str, models: &[String]) -> ProviderDef {
    ProviderDef {
        kind,
        base_url: base_url.into(),
        models: models.to_vec(),
        settings: ProviderSettings::default(),
    }
}

/// Known health figures and prices in the store; the configuration computed from them makes the
/// filter's ranking choose as each strategy says.
async fn strategies_choose_from_known_figures(s: Store) {
    use std::collections::HashMap;

    use crate::config::TargetSpec;
    use crate::domain::Strategy;
    use crate::health::Figures;
    use switchyard_core::cooldown::Cooldowns;
    use switchyard_core::route::Index;

    // fast: quick, reliable, dear. cheap: slow, reliable, cheap. shaky: quick-ish, fails 40 %.
    let figures = [
        ("fast", 100, 1, 10.0, 30.0),
        ("cheap", 900, 1, 0.1, 0.4),
        ("shaky", 150, 40, 1.0, 2.0),
    ];
    let minute = now() / 60;
    for (name, latency, failed_per_100, input, output) in figures {
        let p = s
            .upsert_provider(
                name,
                &def(
                    ProviderKind::OpenaiCompatible,
                    "http://127.0.0.1:1/v1",
                    &["m".into()],
                ),
            )
            .await
            .unwrap();
        s.replace_provider_keys(&p, &[key(name, 1)]).await.unwrap();
        s.add_health(&[HealthRow {
            provider: name.into(),
            model: "m".into(),
            minute,
            attempts: 100,
            failures: failed_per_100,
            latency_ms_sum: latency * (100 - failed_per_100),
            latency_count: 100 - failed_per_100,
            prompt_tokens: 7500,
            completion_tokens: 2500,
            ..Default::default()
        }])
        .await
        .unwrap();
        s.put_price(&PriceRow {
            provider: name.into(),
            model: "m".into(),
            price: Price {
                input: (input * 1e6) as u64,
                output: (output * 1e6) as u64,
                ..Price::default()
            },
        })
        .await
        .unwrap();
    }
    // Written twice for the same minute: figures add up, shares stay.
    s.add_health(&[HealthRow {
        provider: "fast".into(),
        model: "m".into(),
        minute,
        attempts: 100,
        failures: 1,
        latency_ms_sum: 9900,
        latency_count: 99,
        ..Default::default()
    }])
    .await
    .unwrap();
    let strategies = [
        ("by-weight", Strategy::Weighted),
        ("by-latency", Strategy::Latency),
        ("by-cost", Strategy::Cost),
        ("by-reliability", Strategy::Reliability),
        ("by-balance", Strategy::Balanced),
    ];
    for (name, strategy) in strategies {
        s.upsert_model(&ModelRow {
            name: name.into(),
            strategy,
            targets: ["fast", "cheap", "shaky"]
                .iter()
                .map(|p| TargetSpec {
                    provider: (*p).into(),
                    model: "m".into(),
                    weight: 1,
                    priority: 0,
                    capabilities: None,
                })
                .collect(),
        })
        .await
        .unwrap();
    }
    let window = s.health_since(minute - 4).await.unwrap();
    assert_eq!(
        window
            .iter()
            .find(|r| r.provider == "fast")
            .unwrap()
            .attempts,
        200
    );
    let figures = Figures::new(
        window,
        &s.list_prices().await.unwrap(),
        Default::default(),
        Default::default(),
    );
    let keys: Vec<_> = s
        .list_provider_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k, "secret".to_string()))
        .collect();
    let state = crate::snapshot::compute(&crate::snapshot::Input {
        providers: s.list_providers().await.unwrap(),
        keys,
        models: s.list_models().await.unwrap(),
        max_body_bytes: 1024,
        figures,
        ..Default::default()
    });
    let index = Index::new(state.filter).unwrap();
    let chosen = |model: &str| -> HashMap<String, usize> {
        let entry = index.targets(model).unwrap();
        let mut counts = HashMap::new();
        for _ in 0..300 {
            let t = index
                .choose_target(entry, 0, &Cooldowns::default())
                .unwrap();
            *counts
                .entry(index.provider(t.provider).name.clone())
                .or_default() += 1;
        }
        counts
    };
    let only = |model: &str| -> Vec<String> {
        let mut names: Vec<String> = chosen(model).into_keys().collect();
        names.sort();
        names
    };
    assert_eq!(
        only("by-weight"),
        ["cheap", "fast", "shaky"],
        "weights alone: all share"
    );
    assert_eq!(only("by-latency"), ["fast"]);
    assert_eq!(only("by-cost"), ["cheap"]);
    assert_eq!(
        only("by-reliability"),
        ["cheap", "fast"],
        "equally reliable: both"
    );
    // Balanced: fast is 85x dearer, shaky fails 40 %, cheap is only slow: cheap.
    assert_eq!(only("by-balance"), ["cheap"]);
}

fn request(id: &str, user: &str, cost: Option<i64>, at_ms: i64) -> RequestRow {
    RequestRow {
        request_id: id.into(),
        at_ms,
        api: "chat.completions".into(),
        status: 200,
        key_id: "key_1".into(),
        user: user.into(),
        model: "smart".into(),
        provider: "p".into(),
        upstream_model: "m".into(),
        attempts: 1,
        prompt_tokens: 10,
        completion_tokens: 5,
        cost_micros: cost,
        ..Default::default()
    }
}

/// Records arriving twice count once, in the log and in the ledger; unpriced requests and
/// users without an account are logged, not debited; automatic top-up and cursor paging.
async fn requests_are_logged_and_debited_once(s: Store) {
    s.ensure_user("alice").await.unwrap();
    assert!(s.open_account_with("alice", 1_000).await.unwrap());
    assert!(
        !s.open_account_with("alice", 5_000).await.unwrap(),
        "opened once"
    );
    s.ensure_user("bob").await.unwrap();
    let batch = vec![
        request("r1", "alice", Some(300), 1_000),
        request("r2", "alice", Some(200), 2_000),
        request("r3", "alice", None, 3_000),
        request("r4", "bob", Some(50), 4_000),
    ];
    let first = s.ingest(&batch).await.unwrap();
    assert_eq!(first.inserted, [true; 4]);
    assert_eq!(first.balances, [("alice".to_string(), 500)]);
    // The same records again, with one new: only the new one counts.
    let mut again = batch.clone();
    again.push(request("r5", "alice", Some(100), 5_000));
    let second = s.ingest(&again).await.unwrap();
    assert_eq!(second.inserted, [false, false, false, false, true]);
    assert_eq!(s.get_account("alice").await.unwrap().balance_micros, 400);
    assert!(matches!(
        s.get_account("bob").await,
        Err(StoreError::NotFound)
    ));

    let ledger = s.ledger("alice", None, 10).await.unwrap();
    let kinds: Vec<(&str, i64)> = ledger
        .iter()
        .map(|e| (e.kind.as_str(), e.amount_micros))
        .collect();
    assert_eq!(
        kinds.iter().filter(|(k, _)| *k == "usage").count(),
        3,
        "r1, r2 and r5, once each"
    );
    assert_eq!(
        kinds.iter().map(|(_, a)| a).sum::<i64>(),
        400,
        "the ledger adds up to the balance"
    );

    // Automatic top-up when a debit leaves the balance below the threshold.
    s.set_account_rules(
        "alice",
        &AccountRules {
            low_balance_micros: Some(1_000),
            topup_below_micros: Some(100),
            topup_amount_micros: Some(10_000),
        },
    )
    .await
    .unwrap();
    s.ingest(&[request("r6", "alice", Some(350), 6_000)])
        .await
        .unwrap();
    let alice = s.get_account("alice").await.unwrap();
    assert_eq!(alice.balance_micros, 50 + 10_000);
    assert!(!alice.low);
    let adjusted = s
        .credit("alice", -9_500, "adjustment", "refund")
        .await
        .unwrap();
    assert!(adjusted.low, "below the low-balance threshold");
    assert!(matches!(
        s.credit("nobody", 5, "topup", "").await,
        Err(StoreError::NotFound)
    ));

    // Paging: newest first, then older than the cursor.
    let page = s
        .list_requests(&RequestQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = page.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["r6", "r5"]);
    let last = page.last().unwrap();
    let next = s
        .list_requests(&RequestQuery {
            limit: 10,
            before: Some((last.at_ms, last.request_id.clone())),
            user: Some("alice".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = next.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["r3", "r2", "r1"]);
    let failed = s
        .list_requests(&RequestQuery {
            status: Some((500, 599)),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(failed.is_empty());
    assert_eq!(
        next[2],
        request("r1", "alice", Some(300), 1_000),
        "round trip"
    );
    // Twice in one batch (a batch sent again while the first was being written): new once,
    // debited once.
    let before = s.get_account("alice").await.unwrap().balance_micros;
    let twice = [
        request("r7", "alice", Some(1), 7_000),
        request("r7", "alice", Some(1), 7_000),
    ];
    assert_eq!(s.ingest(&twice).await.unwrap().inserted, [true, false]);
    assert_eq!(
        s.get_account("alice").await.unwrap().balance_micros,
        before - 1
    );
}

/// Reports group the log by day, key, user, model or provider; time series per provider.
async fn reports_add_up(s: Store) {
    let day = 86_400_000;
    let mut rows = Vec::new();
    for i in 0..10 {
        let mut r = request(
            &format!("q{i}"),
            if i < 6 { "alice" } else { "bob" },
            Some(100),
            day + i * 1_000,
        );
        r.provider = if i % 2 == 0 { "p" } else { "q" }.into();
        r.duration_ms = Some(10 * (i + 1));
        r.status = if i == 9 { 503 } else { 200 };
        rows.push(r);
    }
    rows.push(request("next-day", "alice", None, 2 * day + 5));
    s.ingest(&rows).await.unwrap();
    let by_day = s
        .usage_report(ReportGroup::Day, 0, 3 * day, None)
        .await
        .unwrap();
    let days: Vec<(&str, i64, i64)> = by_day
        .iter()
        .map(|r| (r.group.as_str(), r.requests, r.cost_micros))
        .collect();
    assert_eq!(days, [("1970-01-02", 10, 1_000), ("1970-01-03", 1, 0)]);
    let by_user = s
        .usage_report(ReportGroup::User, 0, 3 * day, None)
        .await
        .unwrap();
    let users: Vec<(&str, i64, i64)> = by_user
        .iter()
        .map(|r| (r.group.as_str(), r.requests, r.errors))
        .collect();
    assert_eq!(users, [("alice", 7, 0), ("bob", 4, 1)]);
    assert_eq!(by_user[0].prompt_tokens, 70);
    let series = s
        .provider_series(day, 2 * day, 60_000, 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(series.len(), 2);
    let p = &series[0];
    assert_eq!(
        (p.provider.as_str(), p.start_ms, p.requests, p.errors),
        ("p", day, 5, 0)
    );
    let latency = p.latency_ms.unwrap();
    assert_eq!(
        (latency.p50, latency.p99),
        (50, 90),
        "10, 30, 50, 70, 90 ms"
    );
    assert_eq!(series[1].errors, 1);
    assert!(
        s.provider_series(day, 2 * day, 60_000, 5)
            .await
            .unwrap()
            .is_none(),
        "over the cap"
    );
}

/// Users who sign in, provider owners, shares, reviews, the audit log, sealed values.
async fn identity_and_provider_access(s: Store) {
    use crate::auth::Role;
    let ada = s
        .create_user("ada", Some("ada@example.com"), "$argon2id$x", Role::Admin)
        .await
        .unwrap();
    assert!(ada.has_password && ada.active());
    assert!(matches!(
        s.create_user("ada", None, "h", Role::User).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.create_user("other", Some("ada@example.com"), "h", Role::User)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let bob = s
        .create_user("bob", None, "$argon2id$y", Role::User)
        .await
        .unwrap();
    let (by_email, hash) = s
        .user_credentials("ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (by_email.name.as_str(), hash.as_deref()),
        ("ada", Some("$argon2id$x"))
    );
    assert!(s.user_credentials("nobody").await.unwrap().is_none());
    assert_eq!(s.active_admins().await.unwrap(), 1);
    let patched = s
        .update_user(
            "bob",
            &UserPatch {
                status: Some("disabled".into()),
                role: Some(Role::Admin),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((patched.role, patched.active()), (Role::Admin, false));
    assert_eq!(
        s.active_admins().await.unwrap(),
        1,
        "a disabled admin does not count"
    );
    s.update_user(
        "bob",
        &UserPatch {
            status: Some("active".into()),
            role: Some(Role::User),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // A key-made user has no password; its keys follow its status.
    s.put_api_key(&api_key("k1", "sk-bob"), false)
        .await
        .unwrap();
    assert!(s
        .list_api_keys()
        .await
        .unwrap()
        .iter()
        .all(|k| k.user_active));

    // Bob's private provider, shared with ada, submitted and approved.
    let models = vec!["m".to_string()];
    let id = s
        .insert_provider(
            "bobs",
            &def(
                ProviderKind::OpenaiCompatible,
                "https://93.184.216.34/v1",
                &models,
            ),
        )
        .await
        .unwrap();
    s.set_provider_owner("bobs", &bob.id).await.unwrap();
    let p = s.get_provider("bobs").await.unwrap();
    assert_eq!(p.access.owner.as_deref(), Some("bob"));
    assert!(!p.access.public && p.access.untrusted());
    assert!(p.access.serves("bob") && !p.access.serves("ada"));
    s.share_provider(&id, &ada.id).await.unwrap();
    s.share_provider(&id, &ada.id).await.unwrap();
    let p = s.get_provider("bobs").await.unwrap();
    assert_eq!(p.access.shared_with, vec!["ada".to_string()]);
    assert!(p.access.serves("ada"));
    s.unshare_provider(&id, &ada.id).await.unwrap();
    assert!(matches!(
        s.unshare_provider(&id, &ada.id).await,
        Err(StoreError::NotFound)
    ));
    s.set_provider_review("bobs", "pending", "", false)
        .await
        .unwrap();
    s.set_provider_review("bobs", "approved", "ok", true)
        .await
        .unwrap();
    let listed = s.list_providers().await.unwrap();
    let p = listed.iter().find(|p| p.name == "bobs").unwrap();
    assert!(p.access.public && p.access.serves("anyone"));
    assert_eq!(
        (p.access.review.as_str(), p.access.review_note.as_str()),
        ("approved", "ok")
    );
    // Deleting the provider deletes its shares.
    s.share_provider(&id, &ada.id).await.unwrap();
    s.delete_provider("bobs").await.unwrap();
    assert!(s.all_shares().await.unwrap().is_empty());

    // The audit log pages newest first and filters by actor and action prefix.
    for i in 0..5 {
        s.add_audit(&AuditEntry {
            id: 0,
            at_ms: 1_000 + i,
            actor: if i % 2 == 0 {
                "ada".into()
            } else {
                "bob".into()
            },
            role: "user".into(),
            ip: "127.0.0.1".into(),
            user_agent: "t".into(),
            action: if i < 3 {
                "auth.login".into()
            } else {
                "POST /admin/v1/keys".into()
            },
            target: "x".into(),
            status: 200,
            detail: String::new(),
        })
        .await
        .unwrap();
    }
    let page = s
        .list_audit(&AuditFilter {
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
        [1_004, 1_003]
    );
    let next = s
        .list_audit(&AuditFilter {
            limit: 10,
            before: Some(page[1].id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next.len(), 3);
    let ada_logins = s
        .list_audit(&AuditFilter {
            actor: Some("ada".into()),
            action: Some("auth.".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ada_logins.len(), 2);

    // Sealed values are sealed again in one pass; an error aborts it all.
    s.set_setting_if_absent("token_key_sealed", "old:t")
        .await
        .unwrap();
    s.set_setting_if_absent("plain", "old:p").await.unwrap();
    let pid = s
        .insert_provider(
            "p2",
            &def(ProviderKind::Openai, "https://api.openai.com/v1", &models),
        )
        .await
        .unwrap();
    s.replace_provider_keys(&pid, &[key("sk-1", 1)])
        .await
        .unwrap();
    let n = s
        .reseal_all(|v| Ok(Some(format!("new:{v}"))))
        .await
        .unwrap();
    assert_eq!(
        n, 2,
        "the provider key and the sealed setting, not the plain one"
    );
    assert_eq!(
        s.get_setting("token_key_sealed").await.unwrap().as_deref(),
        Some("new:old:t")
    );
    assert_eq!(
        s.get_setting("plain").await.unwrap().as_deref(),
        Some("old:p")
    );
    assert!(s.reseal_all(|_| Err("no".into())).await.is_err());
    assert_eq!(
        s.get_setting("token_key_sealed").await.unwrap().as_deref(),
        Some("new:old:t"),
        "untouched"
    );
}

fn found(
    id: &str,
    tags: &[crate::discovery::Tag],
    window: Option<u64>,
) -> crate::discovery::Discovered {
    crate::discovery::Discovered {
        id: id.into(),
        display_name: Some(format!("The {id}")),
        tags: tags.to_vec(),
        context_window: window,
        base_model: None,
        tags_from_metadata: true,
        created: Some(1_700_000_000),
    }
}

/// Static lists, discoveries (new, vanished, back), the new-model policy and an admin's
/// overrides, which discoveries keep.
async fn catalog_follows_static_lists_and_discoveries(s: Store) {
    use crate::discovery::Tag;
    let statics = vec!["gpt-4o".to_string(), "static-only".to_string()];
    let id = s
        .upsert_provider(
            "openai",
            &def(ProviderKind::Openai, "https://api.openai.com/v1", &statics),
        )
        .await
        .unwrap();
    let rows = s.provider_models("openai").await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| r.static_listed && r.enabled && r.served() && !r.discovered));
    assert!(
        rows[0].capabilities().is_none(),
        "a guess by name routes nothing"
    );

    let first = s
        .apply_discovery(
            &id,
            &[
                found("gpt-4o", &[Tag::Chat, Tag::Vision], Some(128_000)),
                found("gpt-new", &[Tag::Chat], None),
                found("gpt-new", &[Tag::Chat], None),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(first.added, ["gpt-new"]);
    assert_eq!(first.updated, ["gpt-4o"], "a static model now discovered");
    assert!(first.vanished.is_empty());
    let new = s.get_provider_model("openai", "gpt-new").await.unwrap();
    assert!(
        !new.enabled && !new.served(),
        "policy: new models wait for an admin"
    );
    assert_eq!(new.created, 1_700_000_000);
    let gpt4o = s.get_provider_model("openai", "gpt-4o").await.unwrap();
    assert_eq!(gpt4o.context_window(), Some(128_000));
    assert_eq!(gpt4o.display_name.as_deref(), Some("The gpt-4o"));

    // The same list again changes nothing.
    let again = s
        .apply_discovery(
            &id,
            &[
                found("gpt-4o", &[Tag::Chat, Tag::Vision], Some(128_000)),
                found("gpt-new", &[Tag::Chat], None),
            ],
            true,
        )
        .await
        .unwrap();
    assert!(!again.changed(), "{again:?}");

    // An admin enables the new one and overrides its tags and window.
    let patched = s
        .update_provider_model(
            "openai",
            "gpt-new",
            &ProviderModelPatch {
                enabled: Some(true),
                tags: Some(Some(vec![Tag::Chat, Tag::FunctionCalling])),
                context_window: Some(Some(4096)),
            },
        )
        .await
        .unwrap();
    assert!(patched.served());
    assert_eq!(patched.tags(), [Tag::Chat, Tag::FunctionCalling]);
    assert_eq!(
        patched.capabilities(),
        Some(vec![
            switchyard_contract::config::Capability::FunctionCalling
        ])
    );
    assert_eq!(patched.context_window(), Some(4096));

    // Gone from the list: marked, not deleted, and not served; back: served with its settings.
    let gone = s
        .apply_discovery(&id, &[found("gpt-4o", &[Tag::Chat], Some(128_000))], false)
        .await
        .unwrap();
    assert_eq!(gone.vanished, ["gpt-new"]);
    let vanished = s.get_provider_model("openai", "gpt-new").await.unwrap();
    assert!(vanished.vanished_at.is_some() && !vanished.served());
    let back = s
        .apply_discovery(
            &id,
            &[
                found("gpt-4o", &[Tag::Chat], Some(128_000)),
                found("gpt-new", &[Tag::Chat], None),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(back.returned, ["gpt-new"]);
    let returned = s.get_provider_model("openai", "gpt-new").await.unwrap();
    assert!(returned.served() && returned.vanished_at.is_none());
    assert_eq!(
        returned.context_window(),
        Some(4096),
        "the admin's window stays"
    );
    let reset = s
        .update_provider_model(
            "openai",
            "gpt-new",
            &ProviderModelPatch {
                tags: Some(None),
                context_window: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(reset.tags(), [Tag::Chat]);
    assert_eq!(reset.context_window(), None);
    assert!(reset.enabled);

    // A static model no discovery lists any more is still served (it is configured).
    let static_only = s.get_provider_model("openai", "static-only").await.unwrap();
    assert!(static_only.served());
    // Taken out of the static list: gone, unless discovered.
    s.update_provider(
        "openai",
        &def(ProviderKind::Openai, "https://api.openai.com/v1", &[]),
        true,
    )
    .await
    .unwrap();
    let names: Vec<String> = s
        .provider_models("openai")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.model)
        .collect();
    assert_eq!(names, ["gpt-4o", "gpt-new"]);
    assert!(matches!(
        s.update_provider_model("openai", "nope", &ProviderModelPatch::default())
            .await,
        Err(StoreError::NotFound)
    ));

    // Aliases.
    let alias = AliasRow {
        name: "claude-*".into(),
        target: "anthropic".into(),
    };
    s.put_alias(&alias).await.unwrap();
    s.put_alias(&AliasRow {
        name: "fast".into(),
        target: "openai/gpt-4o".into(),
    })
    .await
    .unwrap();
    s.put_alias(&AliasRow {
        name: "fast".into(),
        target: "gpt-new".into(),
    })
    .await
    .unwrap();
    assert_eq!(s.get_alias("fast").await.unwrap().target, "gpt-new");
    assert_eq!(s.list_aliases().await.unwrap().len(), 2);
    s.delete_alias("fast").await.unwrap();
    assert!(matches!(
        s.delete_alias("fast").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(s.list_aliases().await.unwrap(), [alias]);

    // The config file's settings: a model not listed yet gets a row that is not served.
    s.configure_models(
        "openai",
        &[(
            "gpt-future".into(),
            ProviderModelPatch {
                enabled: Some(false),
                ..Default::default()
            },
        )],
    )
    .await
    .unwrap();
    let future = s.get_provider_model("openai", "gpt-future").await.unwrap();
    assert!(future.configured && !future.enabled && !future.served());
    s.configure_models("openai", &[]).await.unwrap();
    assert!(matches!(
        s.get_provider_model("openai", "gpt-future").await,
        Err(StoreError::NotFound)
    ));
    assert!(
        !s.get_provider_model("openai", "gpt-new")
            .await
            .unwrap()
            .configured
    );

    // Deleting the provider deletes its models.
    s.delete_provider("openai").await.unwrap();
    assert!(s.list_provider_models().await.unwrap().is_empty());
}

/// What an admin allows a user: stored, read back, in the limits table and in every key row;
/// what users and keys with caps spent, from the log.
async fn users_limits_and_spend(s: Store) {
    s.put_api_key(&api_key("alice-key", "sk-alice-0123456789"), false)
        .await
        .unwrap();
    let defaults = s.get_user_limits("alice").await.unwrap();
    assert_eq!(defaults.models, vec!["*".to_string()]);
    assert_eq!((defaults.rpm, defaults.daily_budget_micros), (None, None));
    let limits = UserLimitsRow {
        user: "alice".into(),
        rpm: Some(10),
        tpm: None,
        models: vec!["gpt-4o-mini".into(), "claude-*".into()],
        daily_budget_micros: Some(7_000),
        monthly_budget_micros: Some(90_000),
    };
    s.set_user_limits(&limits).await.unwrap();
    assert_eq!(s.get_user_limits("alice").await.unwrap(), limits);
    assert!(matches!(
        s.set_user_limits(&UserLimitsRow {
            user: "nobody".into(),
            ..limits.clone()
        })
        .await,
        Err(StoreError::NotFound)
    ));
    let keys = s.list_api_keys().await.unwrap();
    assert_eq!(keys[0].user_models, limits.models);
    let table = s.limits_table().await.unwrap();
    let alice = &table.users["alice"];
    assert_eq!(
        (alice.rpm, alice.daily_micros, alice.monthly_micros),
        (Some(10), Some(7_000), Some(90_000))
    );

    s.ensure_user("bob").await.unwrap();
    let day = 86_400_000;
    let batch = vec![
        request("r1", "alice", Some(300), 10 * day + 5),
        request("r2", "alice", Some(200), 9 * day),
        request("r3", "alice", None, 10 * day + 6),
        request("r4", "bob", Some(50), 10 * day + 7),
    ];
    s.ingest(&batch).await.unwrap();
    assert_eq!(
        s.user_spend(10 * day, 9 * day).await.unwrap(),
        vec![("alice".to_string(), 300, 500)],
        "users without caps are not read"
    );
    assert_eq!(
        s.key_spend(10 * day, 9 * day).await.unwrap(),
        vec![("key_1".to_string(), 350, 550)]
    );
}

on_both_backends! {
    users_limits_and_spend_are_stored => |s: Store| async move {
        users_limits_and_spend(s).await;
    };

    catalog_is_kept => |s: Store| async move {
        catalog_follows_static_lists_and_discoveries(s).await;
    };

    identity_and_provider_access_are_stored => |s: Store| async move {
        identity_and_provider_access(s).await;
    };

    requests_logged_and_debited_once => |s: Store| async move {
        requests_are_logged_and_debited_once(s).await;
    };

    reports_group_the_log => |s: Store| async move {
        reports_add_up(s).await;
    };

    strategies_follow_the_stored_figures => |s: Store| async move {
        strategies_choose_from_known_figures(s).await;
    };

    providers_upsert_is_idempotent => |s: Store| async move {
        let models = vec!["gpt-4o".to_string()];
        let a = s.upsert_provider("openai", &def(ProviderKind::Openai, "https://api.openai.com/v1", &models)).await.unwrap();
        let b = s.upsert_provider("openai", &def(ProviderKind::Openai, "https://api.openai.com/v1", &models)).await.unwrap();
        assert_eq!(a, b);
        let all = s.list_providers().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].models, models);
        assert!(all[0].enabled);
        assert!(matches!(
            s.insert_provider("openai", &def(ProviderKind::Openai, "https://x/v1", &[])).await,
            Err(StoreError::Conflict(_))
        ));
    };

    provider_keys_are_replaced_by_digest => |s: Store| async move {
        let p = s.upsert_provider("p", &def(ProviderKind::OpenaiCompatible, "http://127.0.0.1:1/v1", &[])).await.unwrap();
        s.replace_provider_keys(&p, &[key("one", 1), key("two", 2)]).await.unwrap();
        let first = s.list_provider_keys().await.unwrap();
        assert_eq!(first.len(), 2);
        s.replace_provider_keys(&p, &[key("two", 3), key("three", 1)]).await.unwrap();
        let second = s.list_provider_keys().await.unwrap();
        assert_eq!(second.len(), 2);
        let two_before = first.iter().find(|k| k.digest == crate::crypto::digest("two")).unwrap();
        let two_after = second.iter().find(|k| k.digest == crate::crypto::digest("two")).unwrap();
        assert_eq!(two_before.id, two_after.id, "same key keeps its id");
        assert_eq!(two_after.weight, 3);
        assert!(second.iter().all(|k| k.digest != crate::crypto::digest("one")));
        s.delete_provider("p").await.unwrap();
        assert!(s.list_provider_keys().await.unwrap().is_empty());
        assert!(matches!(s.get_provider("p").await, Err(StoreError::NotFound)));
        assert!(matches!(s.delete_provider("p").await, Err(StoreError::NotFound)));
    };

    provider_update => |s: Store| async move {
        s.upsert_provider("p", &def(ProviderKind::Openai, "https://a/v1", &[])).await.unwrap();
        s.update_provider("p", &def(ProviderKind::OpenaiCompatible, "http://b/v1", &["m".into()]), false).await.unwrap();
        let p = s.get_provider("p").await.unwrap();
        assert_eq!(p.kind, ProviderKind::OpenaiCompatible);
        assert_eq!(p.base_url, "http://b/v1");
        assert!(!p.enabled);
        let mut azure = def(ProviderKind::AzureOpenai, "https://r.openai.azure.com", &[]);
        azure.settings.api_version = Some("2024-10-21".into());
        s.update_provider("p", &azure, true).await.unwrap();
        assert_eq!(s.get_provider("p").await.unwrap().settings, azure.settings);
        assert!(matches!(
            s.update_provider("ghost", &def(ProviderKind::Openai, "x", &[]), true).await,
            Err(StoreError::NotFound)
        ));
    };

    models_round_trip => |s: Store| async move {
        let m = ModelRow {
            name: "smart".into(),
            strategy: Strategy::Cost,
            targets: vec![TargetSpec { provider: "p".into(), model: "m".into(), weight: 2, priority: 1, capabilities: Some(vec![switchyard_contract::config::Capability::Vision]) }],
        };
        s.upsert_model(&m).await.unwrap();
        s.upsert_model(&m).await.unwrap();
        assert_eq!(s.list_models().await.unwrap(), vec![m.clone()]);
        assert_eq!(s.get_model("smart").await.unwrap(), m);
        s.delete_model("smart").await.unwrap();
        assert!(matches!(s.get_model("smart").await, Err(StoreError::NotFound)));
    };

    api_key_digests_are_keyed_once => |s: Store| async move {
        let key = crate::crypto::DigestKey::random();
        s.put_api_key(&api_key("old", "sk-from-before"), false).await.unwrap();
        let mut keyed = api_key("new", "sk-made-now");
        keyed.digest = key.digest("sk-made-now");
        s.put_api_key(&keyed, false).await.unwrap();
        assert_eq!(s.rekey_api_key_digests(|d| key.rekey(d)).await.unwrap(), 1);
        assert_eq!(s.rekey_api_key_digests(|d| key.rekey(d)).await.unwrap(), 0, "once");
        let keys = s.list_api_keys().await.unwrap();
        for (name, secret) in [("old", "sk-from-before"), ("new", "sk-made-now")] {
            let k = keys.iter().find(|k| k.name == name).unwrap();
            assert_eq!(k.digest, key.digest(secret), "{name}");
        }
    };

    api_keys_store_digests_only => |s: Store| async move {
        let id = s.put_api_key(&api_key("demo", "sk-demo-secret"), true).await.unwrap();
        let again = s.put_api_key(&api_key("demo", "sk-demo-secret"), true).await.unwrap();
        assert_eq!(id, again);
        let k = s.get_api_key(&id).await.unwrap();
        assert_eq!(k.user, "alice");
        assert_eq!(k.credits, Some(12.5));
        assert_eq!(k.rpm, Some(60));
        assert_eq!(k.digest, crate::crypto::digest("sk-demo-secret"));
        assert!(matches!(
            s.put_api_key(&api_key("demo", "sk-other-secret"), false).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(s.list_api_keys().await.unwrap().len(), 1);
        s.delete_api_key(&id).await.unwrap();
        assert!(matches!(s.delete_api_key(&id).await, Err(StoreError::NotFound)));
    };

    // The ingest first tries every row as new; when the log takes a row but its debit is
    // already in the ledger (the log row was pruned, then the record came again), that try is
    // rolled back whole and the batch written again exactly: nothing twice, nothing lost.
    ingest_falls_back_when_a_debit_was_made_before => |s: Store| async move {
        s.ensure_user("carol").await.unwrap();
        s.open_account_with("carol", 1_000).await.unwrap();
        let first = s.ingest(&[request("p1", "carol", Some(100), 1_000)]).await.unwrap();
        assert_eq!(first.inserted, [true]);
        assert_eq!(first.balances, [("carol".to_string(), 900)]);
        assert_eq!(first.debited, [("p1".to_string(), "carol".to_string(), 100)]);
        // The log row goes with retention; the ledger entry stays.
        assert_eq!(s.prune_request_log(2_000).await.unwrap().log_rows, 1);
        let again = s
            .ingest(&[
                request("p1", "carol", Some(100), 1_000),
                request("p2", "carol", Some(7), 3_000),
            ])
            .await
            .unwrap();
        assert_eq!(again.inserted, [true, true], "both new to the log");
        assert_eq!(again.debited, [("p2".to_string(), "carol".to_string(), 7)], "p1 once");
        assert_eq!(again.balances, [("carol".to_string(), 893)]);
        assert_eq!(s.get_account("carol").await.unwrap().balance_micros, 893);
        let all = RequestQuery { limit: 10, ..Default::default() };
        let logged: Vec<String> =
            s.list_requests(&all).await.unwrap().into_iter().map(|r| r.request_id).collect();
        assert_eq!(logged, ["p2", "p1"], "nothing of the first try left twice");
    };

    settings_are_set_once => |s: Store| async move {
        assert_eq!(s.get_setting("admin").await.unwrap(), None);
        assert!(s.set_setting_if_absent("admin", "a").await.unwrap());
        assert!(!s.set_setting_if_absent("admin", "b").await.unwrap());
        assert_eq!(s.get_setting("admin").await.unwrap().as_deref(), Some("a"));
    };

    settings_are_replaced_only_from_the_expected_value => |s: Store| async move {
        assert!(!s.replace_setting("ca", "a", "b").await.unwrap(), "absent: nothing to replace");
        s.set_setting_if_absent("ca", "a").await.unwrap();
        assert!(!s.replace_setting("ca", "stale", "b").await.unwrap());
        assert_eq!(s.get_setting("ca").await.unwrap().as_deref(), Some("a"));
        assert!(s.replace_setting("ca", "a", "b").await.unwrap());
        assert_eq!(s.get_setting("ca").await.unwrap().as_deref(), Some("b"));
    };
}
