//! Gateway keys -> what the filter checks of each: the live keys of active users, each held to
//! its owner's models, marked when its requests spend from leases.

use switchyard_contract::config::GatewayKey;

use crate::limits::Table;
use crate::store::ApiKeyRow;

/// The keys not expired at `now` (Unix seconds) whose owner is active.
pub(super) fn gateway_keys(api_keys: &[ApiKeyRow], limits: &Table, now: i64) -> Vec<GatewayKey> {
    api_keys
        .iter()
        .filter(|k| k.expires_at.is_none_or(|t| t > now) && k.user_active)
        .map(|k| GatewayKey {
            id: k.id.clone(),
            digest: crate::crypto::filter_digest(&k.digest).to_owned(),
            user: k.user.clone(),
            // Narrowing a user narrows every key of theirs at the next snapshot.
            models: crate::scope::intersect(&k.models, &k.user_models),
            expires_at: k.expires_at.and_then(|t| u64::try_from(t).ok()),
            limited: limits.limited(&k.id),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::KeyLimits;

    fn key(id: &str, expires_at: Option<i64>, user_active: bool) -> ApiKeyRow {
        ApiKeyRow {
            id: id.into(),
            name: id.into(),
            user: "u".into(),
            prefix: "sk".into(),
            digest: "0".repeat(64),
            models: vec!["*".into()],
            rpm: None,
            tpm: None,
            credits: None,
            expires_at,
            created_at: 0,
            daily_budget_micros: None,
            monthly_budget_micros: None,
            user_active,
            user_models: vec!["*".into()],
        }
    }

    #[test]
    fn a_key_is_pushed_until_it_expires_and_while_its_owner_is_active() {
        // (expires_at, owner active, now, pushed)
        let cases = [
            (None, true, 1_000, true),
            (Some(1_001), true, 1_000, true),
            (Some(1_000), true, 1_000, false),
            (Some(999), true, 1_000, false),
            (Some(999), true, 998, true),
            (None, false, 1_000, false),
        ];
        for (expires_at, active, now, pushed) in cases {
            let keys = gateway_keys(&[key("k", expires_at, active)], &Table::default(), now);
            assert_eq!(keys.len() == 1, pushed, "{expires_at:?} {active} {now}");
        }
    }

    #[test]
    fn a_key_serves_only_what_its_owner_may() {
        let narrowed = ApiKeyRow {
            models: vec!["gpt-*".into(), "claude-*".into()],
            user_models: vec!["gpt-4o-mini".into()],
            ..key("narrowed", None, true)
        };
        let keys = gateway_keys(&[narrowed], &Table::default(), 0);
        assert_eq!(keys[0].models, vec!["gpt-4o-mini".to_string()]);
    }

    #[test]
    fn a_key_with_limits_asks_the_rate_limit_service() {
        let mut limits = Table::default();
        limits.keys.insert(
            "limited".into(),
            KeyLimits {
                user: "u".into(),
                rpm: Some(10),
                ..Default::default()
            },
        );
        let keys = gateway_keys(
            &[key("limited", None, true), key("free", None, true)],
            &limits,
            0,
        );
        let limited: Vec<(&str, bool)> = keys.iter().map(|k| (k.id.as_str(), k.limited)).collect();
        assert_eq!(limited, [("limited", true), ("free", false)]);
    }
}
