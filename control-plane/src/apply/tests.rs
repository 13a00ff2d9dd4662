//! `apply_config` over config texts: what reaches the store, and what is refused where.

use super::*;
use crate::crypto;

async fn apply(text: &str) -> (Store, Result<(), ApplyError>) {
    let store = Store::connect(&crate::test_support::sqlite_url())
        .await
        .unwrap();
    let master = MasterKey::from_bytes(&[1; 32]);
    let config = Config::parse(text, &|_| None).unwrap().config;
    let result = apply_config(&store, &master, &crypto::DigestKey::random(), &config).await;
    (store, result)
}

#[tokio::test]
async fn model_settings_in_the_config_hold_before_and_after_discovery() {
    use crate::discovery::Tag;
    let text = "providers:\n  - name: p\n    kind: openai\n    keys: [{secret: sk-p}]\n    models: [a]\n    model_settings:\n      - {model: a, tags: [chat], context_window: 4096}\n      - {model: later, enabled: false}\n";
    let (store, result) = apply(text).await;
    result.unwrap();
    let a = store.get_provider_model("p", "a").await.unwrap();
    assert_eq!(
        (a.tags(), a.context_window()),
        (&[Tag::Chat][..], Some(4096))
    );
    let later = store.get_provider_model("p", "later").await.unwrap();
    assert!(!later.enabled && !later.served(), "not listed yet");
    // Discovery finds it (new models enabled): the config's decision holds.
    let id = store.get_provider("p").await.unwrap().id;
    let found = crate::discovery::parse_page(
        crate::domain::ProviderKind::Openai,
        false,
        br#"{"object":"list","data":[{"id":"later","object":"model","created":1,"owned_by":"x"}]}"#,
    )
    .unwrap()
    .models;
    store.apply_discovery(&id, &found, true).await.unwrap();
    let later = store.get_provider_model("p", "later").await.unwrap();
    assert!(later.discovered && !later.enabled);
    // Applying again changes nothing; a setting taken out of the config leaves the model
    // (discovered) as it was, and a configured-only model goes.
    let again = "providers:\n  - name: p\n    kind: openai\n    keys: [{secret: sk-p}]\n    models: [a]\n    model_settings:\n      - {model: ghost, enabled: false}\n";
    let config = Config::parse(again, &|_| None).unwrap().config;
    let master = MasterKey::from_bytes(&[1; 32]);
    apply_config(&store, &master, &crypto::DigestKey::random(), &config)
        .await
        .unwrap();
    assert!(store.get_provider_model("p", "ghost").await.is_ok());
    let config = Config::parse(text.split("    model_settings").next().unwrap(), &|_| None)
        .unwrap()
        .config;
    apply_config(&store, &master, &crypto::DigestKey::random(), &config)
        .await
        .unwrap();
    assert!(store.get_provider_model("p", "ghost").await.is_err());
    assert!(
        !store
            .get_provider_model("p", "later")
            .await
            .unwrap()
            .enabled
    );
    let bad = "providers:\n  - name: p\n    kind: openai\n    model_settings: [{model: a, context_window: 0}]\n";
    let err = apply(bad).await.1.expect_err("refused").to_string();
    assert!(err.contains("providers[0].model_settings[0]"), "{err}");
}

#[tokio::test]
async fn users_limits_from_the_config_are_applied_and_checked() {
    let text = "users:\n  - {name: intern, rpm: 5, models: [gpt-4o-mini, \"claude-*\"], daily_budget: 2.5}\n  - {name: free}\n";
    let (store, result) = apply(text).await;
    result.unwrap();
    let intern = store.get_user_limits("intern").await.unwrap();
    assert_eq!(intern.models, vec!["gpt-4o-mini", "claude-*"]);
    assert_eq!(
        (
            intern.rpm,
            intern.daily_budget_micros,
            intern.monthly_budget_micros
        ),
        (Some(5), Some(2_500_000), None)
    );
    assert_eq!(
        store.get_user_limits("free").await.unwrap().models,
        vec!["*"]
    );
    for (bad, why) in [
        ("users:\n  - {name: u, models: [\"bad model\"]}\n", "spaces"),
        ("users:\n  - {name: u, daily_budget: 0}\n", "daily_budget"),
    ] {
        let err = apply(bad).await.1.expect_err("refused").to_string();
        assert!(err.contains("users[0]") && err.contains(why), "{err}");
    }
}

#[tokio::test]
async fn provider_keys_from_config_must_be_printable() {
    let text = "providers:\n  - {name: p, kind: openai, keys: [{secret: \"sk-a\\nb\"}]}\n";
    let (_, result) = apply(text).await;
    let err = result.expect_err("refused").to_string();
    assert!(err.contains("providers[0].keys[0]"), "{err}");
    assert!(err.contains("printable"), "{err}");
}

#[tokio::test]
async fn unset_keys_skip_the_provider_and_applying_twice_changes_nothing() {
    let text = "providers:\n  - {name: gone, kind: openai, keys: [{secret: \"${UNSET}\"}]}\n  - {name: here, kind: openai, keys: [{secret: sk-here}]}\n";
    let (store, result) = apply(text).await;
    result.unwrap();
    let names: Vec<String> = store
        .list_providers()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, vec!["here".to_string()]);
    let keys = store.list_provider_keys().await.unwrap();
    let master = MasterKey::from_bytes(&[1; 32]);
    let config = Config::parse(text, &|_| None).unwrap().config;
    apply_config(&store, &master, &crypto::DigestKey::random(), &config)
        .await
        .unwrap();
    let again = store.list_provider_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        again.iter().map(|k| &k.id).collect::<Vec<_>>(),
        keys.iter().map(|k| &k.id).collect::<Vec<_>>()
    );
}
