//! Pure routing: the config turned into O(1) lookups, model resolution and target choice.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{Capability, FilterConfig, ModelRoute, Provider, ProviderKey, Target};
use crate::cooldown::{self, Cooldowns};
use crate::gateway_key::{DigestKey, KeyEntry};
use crate::rank::{self, BalanceWeights, Rankable, Strategy, TargetStats};

/// The filter's configuration, indexed once per `on_configure`, shared by all requests.
#[derive(Debug)]
pub struct Index {
    pub version: String,
    pub max_body_bytes: usize,
    pub max_response_bytes: usize,
    /// Keys gateway key digests are made with (`None`: plain SHA-256).
    pub digest_key: Option<DigestKey>,
    keys: Vec<KeyEntry>,
    key_by_digest: HashMap<[u8; 32], usize, BuildHasherDefault<DigestHasher>>,
    providers: Vec<Provider>,
    models: HashMap<String, ModelEntry>,
    balance: BalanceWeights,
    /// Model names in config order, for `/v1/models`.
    model_names: Vec<String>,
    /// Round-robin cursor for weighted choices (per wasm VM, i.e. per Envoy worker; per Envoy
    /// for the native filter, whose workers share one index).
    cursor: AtomicU64,
    /// The same for provider keys (a cursor of its own, so that target and key choices do not
    /// move in lockstep).
    key_cursor: AtomicU64,
    /// Every header some provider's requests carry (credentials, versions, signatures): a
    /// failover attempt removes those its own target does not set.
    provider_headers: Vec<String>,
    /// Where request records go (see [`FilterConfig::records`]).
    pub records: Option<crate::config::RecordSink>,
    /// Whether records are also published as filter state.
    pub record_state: bool,
    /// How long a request waits for its key's lease ask.
    pub lease_timeout_ms: u32,
}

/// A model's targets and how to rank them.
#[derive(Debug)]
pub struct ModelEntry {
    pub strategy: Strategy,
    pub targets: Vec<ResolvedTarget>,
    /// Per target, the failover cluster that starts with it (empty: no failover).
    pub failover: Vec<String>,
    /// The same per set of needs, over the capable targets only.
    pub failover_capable: Vec<(u8, Vec<String>)>,
    /// Only these users' keys may use it (empty: every key).
    pub users: Vec<String>,
    /// What `/v1/models` shows of it.
    pub card: crate::config::ModelCard,
}

impl ModelEntry {
    /// Whether keys of `user` may use this model.
    pub fn serves(&self, user: &str) -> bool {
        self.users.is_empty() || self.users.iter().any(|u| u == user)
    }

    /// The cluster for a request with `needs` whose first choice is `position`: the failover
    /// cluster over the targets able to serve it, or `None` for the target's provider cluster.
    pub fn failover_cluster(&self, position: usize, needs: u8) -> Option<&str> {
        let list = self
            .failover_capable
            .iter()
            .find(|(n, _)| *n == needs)
            .map_or(&self.failover, |(_, l)| l);
        list.get(position)
            .map(String::as_str)
            .filter(|c| !c.is_empty())
    }
}

/// A target with its provider resolved to an index into `providers`.
#[derive(Debug, Clone)]
pub struct ResolvedTarget {
    pub provider: usize,
    pub model: String,
    pub weight: u32,
    pub priority: u32,
    pub stats: TargetStats,
    /// [`Capability`] bits.
    pub capabilities: u8,
}

impl Rankable for ResolvedTarget {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn priority(&self) -> u32 {
        self.priority
    }
    fn stats(&self) -> &TargetStats {
        &self.stats
    }
}

/// Why a config could not be indexed.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Index {
    /// Parses and indexes a JSON configuration; an error leaves the caller's last good index.
    /// Parses a configuration and opens its sealed provider keys with `dataplane_key` (see
    /// [`crate::sealed`]): a sealed key without the data plane key, or that it does not open,
    /// rejects the configuration.
    pub fn from_json(bytes: &[u8], dataplane_key: Option<&[u8; 32]>) -> Result<Index, ConfigError> {
        let mut cfg: FilterConfig = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError(format!("invalid filter config: {e}")))?;
        let open = |what: &str, sealed: &str| -> Result<String, ConfigError> {
            let key = dataplane_key.ok_or_else(|| {
                ConfigError(format!(
                    "{what} is sealed, and {} is not in Envoy's environment",
                    crate::sealed::KEY_ENV
                ))
            })?;
            crate::sealed::open(key, sealed).ok_or_else(|| {
                ConfigError(format!(
                    "{what} does not open with {}: is it the control plane's?",
                    crate::sealed::KEY_ENV
                ))
            })
        };
        for p in &mut cfg.providers {
            for k in p
                .keys
                .iter_mut()
                .filter(|k| crate::sealed::is_sealed(&k.secret))
            {
                k.secret = open(&format!("provider key {}", k.id), &k.secret)?;
            }
        }
        if let Some(k) = cfg
            .key_digest_key
            .as_mut()
            .filter(|k| crate::sealed::is_sealed(k))
        {
            *k = open("the key digest key", k)?;
        }
        Index::new(cfg)
    }

    pub fn new(cfg: FilterConfig) -> Result<Index, ConfigError> {
        let digest_key = cfg
            .key_digest_key
            .as_deref()
            .map(|k| {
                crate::sealed::parse_key(k)
                    .map(|k| DigestKey::new(&k))
                    .ok_or_else(|| ConfigError("the key digest key is not 64 hex digits".into()))
            })
            .transpose()?;
        let mut keys = Vec::with_capacity(cfg.keys.len());
        let mut key_by_digest =
            HashMap::with_capacity_and_hasher(cfg.keys.len(), Default::default());
        for key in cfg.keys {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(&key.digest, &mut digest)
                .map_err(|_| ConfigError(format!("key {}: digest is not 64 hex digits", key.id)))?;
            key_by_digest.insert(digest, keys.len());
            keys.push(KeyEntry::new(key));
        }
        let provider_pos: HashMap<&str, usize> = cfg
            .providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let mut models = HashMap::with_capacity(cfg.models.len());
        let mut model_names = Vec::with_capacity(cfg.models.len());
        for ModelRoute {
            name,
            targets,
            strategy,
            failover,
            failover_capable,
            users,
            card,
        } in cfg.models
        {
            let mut resolved = Vec::with_capacity(targets.len());
            for Target {
                provider,
                model,
                weight,
                priority,
                stats,
                capabilities,
            } in targets
            {
                let Some(&pos) = provider_pos.get(provider.as_str()) else {
                    return Err(ConfigError(format!(
                        "model {name}: unknown provider {provider}"
                    )));
                };
                resolved.push(ResolvedTarget {
                    provider: pos,
                    model,
                    weight,
                    priority,
                    stats,
                    capabilities: Capability::mask(capabilities.as_deref()),
                });
            }
            if resolved.is_empty() {
                return Err(ConfigError(format!("model {name}: no targets")));
            }
            let lists = std::iter::once(&failover).chain(failover_capable.iter().map(|(_, l)| l));
            if lists
                .into_iter()
                .any(|l| !l.is_empty() && l.len() != resolved.len())
            {
                return Err(ConfigError(format!(
                    "model {name}: a list of failover clusters does not match its {} targets",
                    resolved.len()
                )));
            }
            model_names.push(name.clone());
            models.insert(
                name,
                ModelEntry {
                    strategy,
                    targets: resolved,
                    failover,
                    failover_capable,
                    users,
                    card,
                },
            );
        }
        let mut provider_headers: Vec<String> = cfg
            .providers
            .iter()
            .flat_map(|p| {
                std::iter::once(p.auth_header.clone())
                    .chain(p.headers.iter().map(|(k, _)| k.clone()))
            })
            .chain(["x-amz-date".into(), "x-amz-security-token".into()])
            .collect();
        provider_headers.sort_unstable();
        provider_headers.dedup();
        Ok(Index {
            version: cfg.version,
            max_body_bytes: cfg.max_body_bytes,
            max_response_bytes: cfg.max_response_bytes,
            digest_key,
            keys,
            key_by_digest,
            providers: cfg.providers,
            models,
            balance: cfg.balance,
            model_names,
            cursor: AtomicU64::new(0),
            key_cursor: AtomicU64::new(0),
            provider_headers,
            records: cfg.records,
            record_state: cfg.record_state,
            lease_timeout_ms: cfg.lease_timeout_ms,
        })
    }

    /// Position of the gateway key with this SHA-256 digest.
    pub fn key_position(&self, digest: &[u8; 32]) -> Option<usize> {
        self.key_by_digest.get(digest).copied()
    }

    pub fn key(&self, position: usize) -> &KeyEntry {
        &self.keys[position]
    }

    pub fn model_names(&self) -> &[String] {
        &self.model_names
    }

    /// Every header name some provider's requests carry.
    pub fn provider_headers(&self) -> &[String] {
        &self.provider_headers
    }

    pub fn provider(&self, i: usize) -> &Provider {
        &self.providers[i]
    }

    pub fn targets(&self, model: &str) -> Option<&ModelEntry> {
        self.models.get(model)
    }

    fn next_tick(&self) -> u64 {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }

    /// Chooses the target for a request at `now` (Unix seconds), skipping targets this Envoy
    /// has seen fail (`cooldowns`): see [`crate::rank::choose`].
    pub fn choose_target<'a>(
        &self,
        entry: &'a ModelEntry,
        now: u64,
        cooldowns: &Cooldowns,
    ) -> Option<&'a ResolvedTarget> {
        self.choose_position(entry, now, cooldowns)
            .map(|i| &entry.targets[i])
    }

    /// [`Index::choose_target`]'s choice as a position in `entry.targets`.
    pub fn choose_position(
        &self,
        entry: &ModelEntry,
        now: u64,
        cooldowns: &Cooldowns,
    ) -> Option<usize> {
        self.choose_position_except(entry, now, cooldowns, &[])
    }

    /// [`Index::choose_position`], treating the targets at `skip` as cooling down.
    pub fn choose_position_except(
        &self,
        entry: &ModelEntry,
        now: u64,
        cooldowns: &Cooldowns,
        skip: &[usize],
    ) -> Option<usize> {
        let tick = self.next_tick();
        let local = |t: &ResolvedTarget| {
            if skip.iter().any(|&i| std::ptr::eq(&entry.targets[i], t)) {
                return Some(u64::MAX);
            }
            if cooldowns.is_empty() {
                return None;
            }
            let since = t.stats.recovered_at.unwrap_or(0);
            cooldowns.until_since(self.target_key(t), now, since)
        };
        rank::choose(
            &entry.targets,
            entry.strategy,
            self.balance,
            now,
            tick,
            local,
        )
    }

    /// The position in `entry.targets` of the target an endpoint's metadata names
    /// (`provider/model`, or just `provider` for a provider's own cluster).
    pub fn find_target(&self, entry: &ModelEntry, name: &[u8]) -> Option<usize> {
        if !name.contains(&b'/') {
            return entry
                .targets
                .iter()
                .position(|t| self.providers[t.provider].name.as_bytes() == name);
        }
        entry.targets.iter().position(|t| {
            let provider = self.providers[t.provider].name.as_bytes();
            name.len() == provider.len() + 1 + t.model.len()
                && name.starts_with(provider)
                && name[provider.len()] == b'/'
                && name.ends_with(t.model.as_bytes())
        })
    }

    /// A target's identity for cooldowns (provider name and upstream model).
    pub fn target_key(&self, t: &ResolvedTarget) -> u64 {
        self.key_of(t.provider, &t.model)
    }

    /// The cooldown identity of a provider (by position) and upstream model.
    pub fn key_of(&self, provider: usize, model: &str) -> u64 {
        cooldown::target_key(&self.providers[provider].name, model)
    }

    /// Every (provider name, upstream model) pair the targets name, once each, in order.
    pub fn provider_models(&self) -> std::collections::BTreeSet<(&str, &str)> {
        self.models
            .values()
            .flat_map(|m| m.targets.iter())
            .map(|t| (self.providers[t.provider].name.as_str(), t.model.as_str()))
            .collect()
    }

    /// Every target of every model, once each (for sharing cooldowns between workers).
    pub fn all_target_keys(&self) -> Vec<u64> {
        let mut keys: Vec<u64> = self
            .models
            .values()
            .flat_map(|m| m.targets.iter().map(|t| self.target_key(t)))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Chooses the provider key for one request, weighted round robin.
    pub fn choose_key<'a>(&self, provider: &'a Provider) -> Option<&'a ProviderKey> {
        let tick = self.key_cursor.fetch_add(1, Ordering::Relaxed);
        weighted_pick(provider.keys.iter(), |k| k.weight, tick)
    }

    /// The provider's keys in the order to try them for one request: the weighted round robin's
    /// choice first, then the others in configuration order (weight 0 never). Lazy: the common
    /// case takes the first and allocates nothing.
    pub fn key_candidates<'a>(
        &self,
        provider: &'a Provider,
    ) -> impl Iterator<Item = &'a ProviderKey> + Clone + 'a {
        let first = self.choose_key(provider);
        first.into_iter().chain(
            provider
                .keys
                .iter()
                .filter(move |k| first.is_some_and(|f| k.weight > 0 && !std::ptr::eq(*k, f))),
        )
    }

    /// Every provider key's cooldown identity and QPS limit.
    pub fn all_keys(&self) -> impl Iterator<Item = &ProviderKey> {
        self.providers.iter().flat_map(|p| p.keys.iter())
    }
}

/// Hashes a SHA-256 digest by its first 8 bytes: digests are already uniform, so SipHash over
/// 32 bytes per request buys nothing. Not a flooding risk: the map holds only our own keys, and
/// a lookup of an attacker's digest costs one probe sequence like any other.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(8);
        let mut word = [0u8; 8];
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(word);
    }

    fn write_usize(&mut self, _length_prefix: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Deterministic weighted pick: position `tick` in the cycle where item i appears weight(i) times.
/// Items of weight 0 are never picked.
fn weighted_pick<'a, T>(
    items: impl Iterator<Item = &'a T> + Clone,
    weight: impl Fn(&T) -> u32,
    tick: u64,
) -> Option<&'a T> {
    let total: u64 = items.clone().map(|i| u64::from(weight(i))).sum();
    if total == 0 {
        return None;
    }
    let mut slot = tick % total;
    for item in items {
        let w = u64::from(weight(item));
        if slot < w {
            return Some(item);
        }
        slot -= w;
    }
    None
}

/// Why a model name from a client was refused before any lookup (the contract's rule: the
/// control plane holds configured names to it too).
pub use switchyard_contract::names::check_model_name;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ProviderKind, Target};

    fn provider(name: &str, keys: &[(&str, u32)]) -> Provider {
        Provider {
            name: name.into(),
            kind: ProviderKind::Openai,
            cluster: format!("provider-{name}"),
            authority: "api.example.com".into(),
            path_prefix: "/v1".into(),
            auth_header: "authorization".into(),
            auth_prefix: "Bearer ".into(),
            keys: keys
                .iter()
                .map(|(id, w)| ProviderKey {
                    id: (*id).into(),
                    secret: format!("secret-{id}"),
                    weight: *w,
                    qps: None,
                })
                .collect(),
            headers: Vec::new(),
            path_style: Default::default(),
            query: String::new(),
            region: String::new(),
            quirks: Default::default(),
            prices: Default::default(),
        }
    }

    fn target(provider: &str, model: &str, weight: u32, priority: u32) -> Target {
        Target {
            provider: provider.into(),
            model: model.into(),
            weight,
            priority,
            stats: Default::default(),
            capabilities: None,
        }
    }

    fn index(models: Vec<ModelRoute>) -> Index {
        Index::new(FilterConfig {
            version: "1".into(),
            max_body_bytes: 1024,
            keys: vec![],
            providers: vec![provider("a", &[("a1", 1)]), provider("b", &[("b1", 1)])],
            models,
            ..FilterConfig::default()
        })
        .expect("valid")
    }

    #[test]
    fn lowest_priority_tier_wins_and_weights_are_honoured() {
        let idx = index(vec![ModelRoute {
            name: "smart".into(),
            targets: vec![
                target("a", "m-a", 3, 0),
                target("b", "m-b", 1, 0),
                target("b", "fallback", 100, 1),
            ],
            strategy: Strategy::Weighted,
            failover: vec![],
            failover_capable: vec![],
            users: vec![],
            card: Default::default(),
        }]);
        let targets = idx.targets("smart").expect("known");
        let mut counts = HashMap::new();
        for _ in 0..400 {
            let t = idx
                .choose_target(targets, 0, &Cooldowns::default())
                .expect("some");
            *counts.entry(t.model.clone()).or_insert(0) += 1;
        }
        assert_eq!(counts.get("m-a"), Some(&300));
        assert_eq!(counts.get("m-b"), Some(&100));
        assert_eq!(counts.get("fallback"), None);
    }

    #[test]
    fn the_model_strategy_ranks_with_the_pushed_figures() {
        let mut fast = target("b", "fast", 1, 0);
        fast.stats.latency_ms = Some(120.0);
        let mut slow = target("a", "slow", 5, 0);
        slow.stats.latency_ms = Some(900.0);
        let idx = index(vec![ModelRoute {
            name: "quick".into(),
            targets: vec![slow, fast],
            strategy: Strategy::Latency,
            failover: vec![],
            failover_capable: vec![],
            users: vec![],
            card: Default::default(),
        }]);
        let entry = idx.targets("quick").expect("known");
        for now in 0..10 {
            assert_eq!(
                idx.choose_target(entry, now, &Cooldowns::default())
                    .expect("some")
                    .model,
                "fast"
            );
        }
    }

    #[test]
    fn zero_weight_keys_are_never_chosen() {
        let idx = index(vec![]);
        let p = provider("z", &[("off", 0), ("on", 2)]);
        for _ in 0..10 {
            assert_eq!(idx.choose_key(&p).map(|k| k.id.as_str()), Some("on"));
        }
        let none = provider("n", &[("off", 0)]);
        assert!(idx.choose_key(&none).is_none());
    }

    #[test]
    fn unknown_provider_in_a_route_is_a_config_error() {
        let err = Index::new(FilterConfig {
            models: vec![ModelRoute {
                name: "m".into(),
                targets: vec![target("ghost", "x", 1, 0)],
                strategy: Strategy::Weighted,
                failover: vec![],
                failover_capable: vec![],
                users: vec![],
                card: Default::default(),
            }],
            ..FilterConfig::default()
        })
        .expect_err("rejected");
        assert!(err.0.contains("ghost"));
    }

    #[test]
    fn bad_digest_is_a_config_error() {
        let bad = r#"{"version":"1","max_body_bytes":1,"keys":[{"id":"k","digest":"zz"}]}"#;
        assert!(Index::from_json(bad.as_bytes(), None).is_err());
        assert!(Index::from_json(b"{not json", None).is_err());
    }

    #[test]
    fn sealed_provider_keys_open_with_the_data_plane_key_only() {
        let key = [7u8; 32];
        let config = |secret: &str| {
            format!(
                r#"{{"version":"1","max_body_bytes":1,"providers":[{{"name":"p","kind":"openai",
                "cluster":"provider-p","authority":"p.test","auth_header":"authorization",
                "keys":[{{"id":"k1","secret":"{secret}"}}]}}]}}"#
            )
        };
        let sealed = config(&crate::sealed::seal(&key, "sk-upstream"));
        let index = Index::from_json(sealed.as_bytes(), Some(&key)).expect("opens");
        assert_eq!(index.provider(0).keys[0].secret, "sk-upstream");
        let err = Index::from_json(sealed.as_bytes(), None).expect_err("no key");
        assert!(err.0.contains(crate::sealed::KEY_ENV), "{}", err.0);
        let err = Index::from_json(sealed.as_bytes(), Some(&[8u8; 32])).expect_err("wrong key");
        assert!(err.0.contains("k1"), "{}", err.0);
        // Plain keys still load (a control plane that does not seal).
        assert!(Index::from_json(config("sk-plain").as_bytes(), None).is_ok());
    }

    #[test]
    fn endpoint_metadata_names_a_target_by_provider_and_model() {
        let idx = index(vec![ModelRoute {
            name: "duo".into(),
            targets: vec![target("a", "m/1", 1, 0), target("b", "m/1", 1, 0)],
            strategy: Strategy::Weighted,
            failover: vec!["f0".into(), "f1".into()],
            failover_capable: vec![],
            users: vec![],
            card: Default::default(),
        }]);
        let entry = idx.targets("duo").unwrap();
        assert_eq!(idx.find_target(entry, b"a/m/1"), Some(0));
        assert_eq!(idx.find_target(entry, b"b/m/1"), Some(1));
        assert_eq!(idx.find_target(entry, b"b/m/2"), None);
        assert_eq!(idx.find_target(entry, b"a/m/1x"), None);
        assert_eq!(idx.find_target(entry, b""), None);
        assert_eq!(
            idx.find_target(entry, b"b"),
            Some(1),
            "a provider's own cluster"
        );
    }

    #[test]
    fn failover_clusters_must_match_the_targets() {
        let err = Index::new(FilterConfig {
            version: "1".into(),
            max_body_bytes: 1,
            providers: vec![provider("a", &[("k", 1)])],
            models: vec![ModelRoute {
                name: "duo".into(),
                targets: vec![target("a", "m1", 1, 0), target("a", "m2", 1, 0)],
                strategy: Strategy::Weighted,
                failover: vec!["only-one".into()],
                failover_capable: vec![],
                users: vec![],
                card: Default::default(),
            }],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.0.contains("failover"), "{err}");
    }
}
