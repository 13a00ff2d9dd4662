//! The whole computation over small stores: which names are served, by whom, with which
//! clusters.

use switchyard_contract::config::{Capability, ModelCard, Tag};

use super::*;
use crate::config::TargetSpec;
use crate::domain::{ProviderKind, Strategy};
use crate::store::{AliasRow, ProviderModelRow};

fn provider(name: &str, base: &str, models: &[&str], enabled: bool) -> ProviderRow {
    ProviderRow {
        id: format!("id-{name}"),
        name: name.into(),
        kind: ProviderKind::OpenaiCompatible,
        base_url: base.into(),
        models: models.iter().map(|m| (*m).to_string()).collect(),
        settings: Default::default(),
        enabled,
        access: crate::store::ProviderAccess::public(),
    }
}

/// A discovered model of `provider`.
fn row(provider: &str, model: &str, tags: &[Tag]) -> ProviderModelRow {
    ProviderModelRow {
        provider_id: format!("id-{provider}"),
        provider: provider.into(),
        model: model.into(),
        static_listed: false,
        discovered: true,
        vanished_at: None,
        configured: false,
        enabled: true,
        detected_tags: tags.to_vec(),
        tags_from_metadata: true,
        tags_override: None,
        display_name: Some(format!("{model} by {provider}")),
        context_window: Some(200_000),
        context_window_override: None,
        base_model: None,
        created: 1_700_000_000,
        first_seen: 1_700_000_000,
        seen_at: Some(1_700_000_000),
    }
}

#[test]
fn the_catalog_decides_what_is_served_and_aliases_add_names() {
    let providers = vec![
        provider(
            "anthropic",
            "http://127.0.0.1:9001",
            &["claude-static"],
            true,
        ),
        provider("other", "http://127.0.0.1:9002/v1", &[], true),
        provider("openai", "http://127.0.0.1:9003/v1", &["gpt-4o"], true),
    ];
    let chat = [Tag::Chat, Tag::Vision, Tag::FunctionCalling];
    let mut catalog = Catalog {
        models: vec![
            row("anthropic", "claude-sonnet-4-5", &chat),
            ProviderModelRow {
                vanished_at: Some(1_700_000_100),
                ..row("anthropic", "claude-old", &chat)
            },
            ProviderModelRow {
                enabled: false,
                ..row("anthropic", "claude-off", &chat)
            },
            ProviderModelRow {
                tags_override: Some(vec![Tag::Chat]),
                context_window_override: Some(8_000),
                ..row("anthropic", "claude-small", &chat)
            },
            row("other", "claude-sonnet-4-5", &[Tag::Chat]),
            row("other", "gpt-4o", &[Tag::Chat]),
            ProviderModelRow {
                tags_from_metadata: false,
                ..row("other", "guessed", &[Tag::Chat])
            },
        ],
        aliases: vec![],
    };
    let smart = ModelRow {
        name: "smart".into(),
        strategy: Strategy::Balanced,
        targets: ["anthropic/claude-sonnet-4-5", "anthropic/claude-small"]
            .iter()
            .map(|t| {
                let (p, m) = t.split_once('/').unwrap();
                TargetSpec {
                    provider: p.into(),
                    model: m.into(),
                    weight: 1,
                    priority: 0,
                    capabilities: None,
                }
            })
            .collect(),
    };
    let run = |catalog: &Catalog| {
        compute(&Input {
            providers: providers.clone(),
            models: vec![smart.clone()],
            max_body_bytes: 1024,
            catalog: catalog.clone(),
            ..Default::default()
        })
        .filter
        .models
    };
    let models = run(&catalog);
    let get = |name: &str| models.iter().find(|m| m.name == name);
    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "anthropic/claude-small",
            "anthropic/claude-sonnet-4-5",
            "anthropic/claude-static",
            "claude-small",
            "claude-static",
            "gpt-4o",
            "guessed",
            "openai/gpt-4o",
            "other/claude-sonnet-4-5",
            "other/gpt-4o",
            "other/guessed",
            "smart",
        ],
        "vanished and disabled models are not served; an ambiguous plain name is not either"
    );
    assert_eq!(
        get("gpt-4o").unwrap().targets[0].provider,
        "openai",
        "a static list beats a discovery for a plain name"
    );
    let sonnet = get("anthropic/claude-sonnet-4-5").unwrap();
    assert_eq!(sonnet.card.owned_by, "anthropic");
    assert_eq!(sonnet.card.created, 1_700_000_000);
    assert_eq!(sonnet.card.context_window, Some(200_000));
    assert_eq!(sonnet.card.tags, chat);
    assert_eq!(
        Capability::mask(sonnet.targets[0].capabilities.as_deref()),
        Capability::ALL
    );
    let small = get("claude-small").unwrap();
    assert_eq!(
        Capability::mask(small.targets[0].capabilities.as_deref()),
        0,
        "the admin's tags say: no tools, no images"
    );
    assert_eq!(small.card.context_window, Some(8_000));
    assert_eq!(
        get("other/guessed").unwrap().targets[0].capabilities,
        None,
        "a guess by name does not keep requests away"
    );
    assert_eq!(
        get("anthropic/claude-static").unwrap().card,
        ModelCard {
            owned_by: "anthropic".into(),
            ..Default::default()
        },
        "a static model without a row"
    );
    let logical = get("smart").unwrap();
    assert_eq!(logical.card.owned_by, "switchyard");
    assert_eq!(
        logical.card.context_window,
        Some(8_000),
        "its smallest target"
    );
    assert_eq!(logical.card.tags, chat, "what some target can do");
    assert_eq!(
        Capability::mask(logical.targets[1].capabilities.as_deref()),
        0,
        "a logical model's target takes its capabilities from the catalog"
    );
    assert!(!logical.failover_capable.is_empty());

    catalog.aliases = vec![
        AliasRow {
            name: "claude-*".into(),
            target: "anthropic".into(),
        },
        AliasRow {
            name: "claude-sonnet-*".into(),
            target: "other".into(),
        },
        AliasRow {
            name: "fast".into(),
            target: "openai/gpt-4o".into(),
        },
        AliasRow {
            name: "clever".into(),
            target: "smart".into(),
        },
        AliasRow {
            name: "smart".into(),
            target: "gpt-4o".into(),
        },
        AliasRow {
            name: "broken".into(),
            target: "nope".into(),
        },
        AliasRow {
            name: "gpt-*".into(),
            target: "missing-provider".into(),
        },
    ];
    let models = run(&catalog);
    let get = |name: &str| models.iter().find(|m| m.name == name);
    let target = |name: &str| {
        get(name).map(|m| {
            m.targets
                .iter()
                .map(|t| format!("{}/{}", t.provider, t.model))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(
        target("claude-sonnet-4-5").unwrap(),
        ["other/claude-sonnet-4-5"],
        "the more specific glob wins"
    );
    assert_eq!(target("claude-small").unwrap(), ["anthropic/claude-small"]);
    assert_eq!(
        target("claude-static").unwrap(),
        ["anthropic/claude-static"]
    );
    assert!(get("claude-old").is_none(), "globs give served models only");
    assert_eq!(target("fast").unwrap(), ["openai/gpt-4o"]);
    let clever = get("clever").unwrap();
    let smart_route = get("smart").unwrap();
    assert_eq!(clever.targets, smart_route.targets);
    assert_eq!(
        clever.failover, smart_route.failover,
        "an alias shares its target's clusters"
    );
    assert_eq!(
        target("smart").unwrap(),
        ["anthropic/claude-sonnet-4-5", "anthropic/claude-small"],
        "an alias never takes a logical model's name"
    );
    assert!(get("broken").is_none());
    assert_eq!(target("gpt-4o").unwrap(), ["openai/gpt-4o"]);

    // Discovery turned off: the provider serves its static list only.
    let mut providers = providers.clone();
    providers[1].settings.discover = Some(false);
    let models = compute(&Input {
        providers: providers.clone(),
        max_body_bytes: 1024,
        catalog: catalog.clone(),
        ..Default::default()
    })
    .filter
    .models;
    assert!(models.iter().all(|m| m.targets[0].provider != "other"));
}

#[test]
fn routes_cover_logical_prefixed_and_unique_plain_names() {
    let providers = vec![
        provider("a", "http://127.0.0.1:9001/v1", &["m1", "shared"], true),
        provider("b", "https://api.b.com/v1", &["m2", "shared"], true),
        provider("off", "http://127.0.0.1:9003/v1", &["m3"], false),
    ];
    let keys = vec![(
        ProviderKeyRow {
            id: "pk".into(),
            provider_id: "id-a".into(),
            digest: "d".into(),
            secret_sealed: "s".into(),
            weight: 2,
            qps: None,
        },
        "secret-a".to_string(),
    )];
    let models = vec![
        ModelRow {
            name: "smart".into(),
            strategy: Strategy::Balanced,
            targets: vec![
                TargetSpec {
                    provider: "a".into(),
                    model: "m1".into(),
                    weight: 1,
                    priority: 0,
                    capabilities: None,
                },
                TargetSpec {
                    provider: "off".into(),
                    model: "m3".into(),
                    weight: 1,
                    priority: 0,
                    capabilities: None,
                },
            ],
        },
        ModelRow {
            name: "dead".into(),
            strategy: Strategy::Balanced,
            targets: vec![TargetSpec {
                provider: "off".into(),
                model: "m3".into(),
                weight: 1,
                priority: 0,
                capabilities: None,
            }],
        },
    ];
    let state = compute(&Input {
        providers: providers.clone(),
        keys: keys.clone(),
        models: models.clone(),
        max_body_bytes: 1024,
        ..Default::default()
    });
    let names: Vec<&str> = state
        .filter
        .models
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(
        names,
        vec!["a/m1", "a/shared", "b/m2", "b/shared", "m1", "m2", "smart"]
    );
    let smart = state
        .filter
        .models
        .iter()
        .find(|m| m.name == "smart")
        .unwrap();
    assert_eq!(smart.targets.len(), 1, "disabled provider's target dropped");
    assert_eq!(
        smart.strategy,
        Strategy::Balanced,
        "the model's strategy reaches the filter"
    );
    let direct = state
        .filter
        .models
        .iter()
        .find(|m| m.name == "a/m1")
        .unwrap();
    assert_eq!(direct.strategy, Strategy::Weighted);
    assert_eq!(state.clusters.len(), 2);
    assert!(state.clusters[1].upstream.tls);
    let a = &state.filter.providers[0];
    assert_eq!(a.cluster, "provider-a");
    assert_eq!(a.authority, "127.0.0.1:9001");
    assert_eq!(a.keys[0].secret, "secret-a");
    assert_eq!(a.auth_header, "authorization");
    assert!(!state.filter.version.is_empty());
    let again = compute(&Input {
        providers: providers.clone(),
        keys: keys.clone(),
        models: models.clone(),
        max_body_bytes: 1024,
        ..Default::default()
    });
    assert_eq!(
        again.filter.version, state.filter.version,
        "stable for same content"
    );
}

/// What the limits service enforces passes through; a configuration with vetted addresses
/// (or providers refused at vetting) is worth recomputing now and then.
#[test]
fn limits_pass_through_and_vetting_is_remembered() {
    let mut limits = crate::limits::Table::default();
    limits.keys.insert("k".into(), Default::default());
    let pinned: Pins = [("p".to_string(), vec!["192.0.2.1:443".parse().unwrap()])].into();
    // (pins, providers refused, vetted)
    let cases = [
        (Pins::new(), 0, false),
        (pinned.clone(), 0, true),
        (Pins::new(), 1, true),
        (pinned, 2, true),
    ];
    for (pins, refused, vetted) in cases {
        let state = compute(&Input {
            limits: limits.clone(),
            pins,
            refused,
            ..Default::default()
        });
        assert_eq!(state.vetted, vetted, "refused {refused}");
        assert_eq!(state.limits, limits);
    }
}

#[test]
fn models_with_several_targets_get_target_and_failover_clusters() {
    let providers = vec![
        provider("a", "http://127.0.0.1:9001/v1", &["m1"], true),
        provider("b", "https://api.b.com/v1", &["m2", "vendor/m:3"], true),
    ];
    let spec = |provider: &str, model: &str, weight, priority| TargetSpec {
        provider: provider.into(),
        model: model.into(),
        weight,
        priority,
        capabilities: None,
    };
    let models = vec![
        ModelRow {
            name: "trio".into(),
            strategy: Strategy::Balanced,
            targets: vec![
                spec("b", "vendor/m:3", 1, 1),
                spec("a", "m1", 1, 0),
                spec("b", "m2", 5, 0),
            ],
        },
        ModelRow {
            name: "solo".into(),
            strategy: Strategy::Weighted,
            targets: vec![spec("a", "m1", 1, 0)],
        },
    ];
    let state = compute(&Input {
        providers: providers.clone(),
        models: models.clone(),
        max_body_bytes: 1024,
        ..Default::default()
    });
    let route = |name: &str| {
        state
            .filter
            .models
            .iter()
            .find(|m| m.name == name)
            .unwrap()
            .clone()
    };
    assert!(route("solo").failover.is_empty(), "one target: no failover");
    let trio = route("trio");
    assert_eq!(trio.failover.len(), 3);
    assert!(trio.failover.iter().all(|f| f.starts_with("failover-3-")));
    // One target cluster per (provider, model), named safely, its endpoint naming the target.
    let targets: Vec<(&str, &str)> = state
        .clusters
        .iter()
        .filter_map(|c| Some((c.name.as_str(), c.target.as_deref()?)))
        .collect();
    assert_eq!(targets.len(), 3);
    let odd = targets.iter().find(|(_, t)| *t == "b/vendor/m:3").unwrap();
    assert!(odd.0.starts_with("target-b-vendor_m_3-"), "{}", odd.0);
    let cluster_of = |t: &str| targets.iter().find(|(_, x)| *x == t).unwrap().0;
    // Each failover cluster starts with its target, then the rest by tier, then weight.
    let members = |i: usize| {
        state
            .failover
            .iter()
            .find(|f| f.name == trio.failover[i])
            .unwrap()
            .clusters
            .clone()
    };
    assert_eq!(
        members(0),
        vec![
            cluster_of("b/vendor/m:3"),
            cluster_of("b/m2"),
            cluster_of("a/m1")
        ]
    );
    assert_eq!(
        members(1),
        vec![
            cluster_of("a/m1"),
            cluster_of("b/m2"),
            cluster_of("b/vendor/m:3")
        ]
    );
    assert_eq!(
        members(2),
        vec![
            cluster_of("b/m2"),
            cluster_of("a/m1"),
            cluster_of("b/vendor/m:3")
        ]
    );
    // Target clusters reach the provider's endpoint.
    let b = state
        .clusters
        .iter()
        .find(|c| c.name == "provider-b")
        .unwrap();
    let b_target = state
        .clusters
        .iter()
        .find(|c| c.target.as_deref() == Some("b/m2"))
        .unwrap();
    assert_eq!(b.upstream, b_target.upstream);
}

#[test]
fn requests_that_need_tools_or_images_get_clusters_of_capable_targets_only() {
    use switchyard_contract::config::Capability;
    let providers = vec![
        provider("a", "http://127.0.0.1:9001/v1", &["m"], true),
        provider("b", "http://127.0.0.1:9002/v1", &["m"], true),
        provider("c", "http://127.0.0.1:9003/v1", &["m"], true),
    ];
    let spec = |p: &str, caps: Option<Vec<Capability>>| TargetSpec {
        provider: p.into(),
        model: "m".into(),
        weight: 1,
        priority: 0,
        capabilities: caps,
    };
    let models = vec![ModelRow {
        name: "mixed".into(),
        strategy: Strategy::Weighted,
        targets: vec![
            spec("a", Some(vec![])),                            // plain chat only
            spec("b", Some(vec![Capability::FunctionCalling])), // tools, no images
            spec("c", None),                                    // everything
        ],
    }];
    let state = compute(&Input {
        providers: providers.clone(),
        models: models.clone(),
        max_body_bytes: 1024,
        ..Default::default()
    });
    let route = state
        .filter
        .models
        .iter()
        .find(|m| m.name == "mixed")
        .unwrap();
    assert_eq!(route.failover.len(), 3);
    let family = |needs: u8| {
        route
            .failover_capable
            .iter()
            .find(|(n, _)| *n == needs)
            .map(|(_, l)| l.clone())
            .unwrap()
    };
    let tools = family(Capability::FunctionCalling.bit());
    assert!(tools[0].is_empty(), "a takes no tools");
    assert!(tools[1].starts_with("failover-2-1-n1-"));
    let members = |name: &str| {
        state
            .failover
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .clusters
            .clone()
    };
    assert_eq!(members(&tools[1]).len(), 2, "b then c");
    // Images: only c; no failover cluster, its own.
    let images = family(Capability::Vision.bit());
    assert!(images.iter().all(String::is_empty));
    assert_eq!(family(Capability::ALL), images);
    // The filter takes it.
    let index = switchyard_core::route::Index::new(state.filter.clone()).unwrap();
    let entry = index.targets("mixed").unwrap();
    assert_eq!(
        entry.failover_cluster(1, Capability::FunctionCalling.bit()),
        Some(tools[1].as_str())
    );
    assert_eq!(entry.failover_cluster(2, Capability::Vision.bit()), None);
    assert_eq!(
        entry.failover_cluster(0, 0),
        Some(route.failover[0].as_str())
    );
}
