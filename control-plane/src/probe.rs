//! Active health probes: each enabled provider key is asked for the provider's model list (the
//! cheapest authenticated request every API has) every `probes.interval_secs`. A key the
//! provider refuses (401/403) is taken out of the configuration Envoy gets until a probe passes
//! again; a provider that cannot answer (5xx, connection failure, timeout) has its targets
//! cooled down until its next probe; a provider that answers again ends every cooldown of its
//! targets, the filter's own included.
//!
//! What a probe asks for is its kind's answer ([`crate::providers`]); kinds whose model lists
//! live on other hosts than their inference APIs (Bedrock, Vertex) are not probed, traffic
//! alone measures them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::providers;
use crate::store::ProviderRow;

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The provider refused the key (401/403).
    Refused(u16),
    /// The key is rate limited (429): says nothing against the provider.
    Limited,
    /// No usable answer: 5xx, connection failure, timeout.
    Down(String),
}

/// The probe request for a provider (its kind's [`providers::ProviderSpec::probe_url`], with
/// the key in the kind's header), or `None` for kinds not probed.
pub fn request(
    http: &reqwest::Client,
    provider: &ProviderRow,
    secret: &str,
) -> Option<reqwest::RequestBuilder> {
    let spec = providers::spec(provider.kind);
    let base = provider.base_url.trim_end_matches('/');
    let url = spec.probe_url(base, &provider.settings)?;
    Some(providers::authorize(spec, http.get(url), secret))
}

/// Sends a probe and reads its answer: the status alone, the same for every kind.
pub async fn probe(req: reqwest::RequestBuilder) -> (Outcome, Duration) {
    let started = Instant::now();
    let outcome = match req.send().await {
        Ok(resp) => match resp.status().as_u16() {
            200..=299 => Outcome::Ok,
            s @ (401 | 403) => Outcome::Refused(s),
            429 => Outcome::Limited,
            s if s >= 500 => Outcome::Down(format!("status {s}")),
            // Another 4xx: the provider answered (its model list may live elsewhere).
            _ => Outcome::Ok,
        },
        Err(e) if e.is_timeout() => Outcome::Down("timeout".into()),
        Err(e) if e.is_connect() => Outcome::Down("connection failed".into()),
        Err(_) => Outcome::Down("no answer".into()),
    };
    (outcome, started.elapsed())
}

/// One key's latest probe, as the admin API reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyState {
    pub provider: String,
    /// `ok`, `refused`, `limited` or `down`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Unix seconds of the probe.
    pub at: i64,
    pub latency_ms: u64,
}

/// What the probes know, per key id; and per provider, since when it answers again after its
/// probes had all failed (set once, at the recovery, so that cooldowns from later failures of
/// real traffic still count).
#[derive(Default)]
pub struct Probes {
    keys: Mutex<BTreeMap<String, KeyState>>,
    recovered: Mutex<BTreeMap<String, (bool, i64)>>,
}

/// The probes' effect on the configuration: keys left out, providers cooling down, providers
/// that answered again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    pub refused_keys: BTreeSet<String>,
    /// Provider name -> Unix seconds until which its targets cool down.
    pub down_until: BTreeMap<String, u64>,
    /// Provider name -> Unix seconds of its latest successful probe.
    pub up_since: BTreeMap<String, u64>,
}

impl Probes {
    pub fn record(&self, key_id: &str, provider: &str, outcome: &Outcome, latency: Duration) {
        let (state, detail) = match outcome {
            Outcome::Ok => ("ok", None),
            Outcome::Refused(s) => ("refused", Some(format!("status {s}"))),
            Outcome::Limited => ("limited", None),
            Outcome::Down(why) => ("down", Some(why.clone())),
        };
        let now = crate::store::now();
        if let Ok(mut recovered) = self.recovered.lock() {
            let entry = recovered.entry(provider.to_owned()).or_insert((false, 0));
            match outcome {
                Outcome::Down(_) => entry.0 = true,
                Outcome::Ok if entry.0 => *entry = (false, now),
                _ => {}
            }
        }
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(
                key_id.to_owned(),
                KeyState {
                    provider: provider.to_owned(),
                    state,
                    detail,
                    at: now,
                    latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                },
            );
        }
    }

    pub fn states(&self) -> BTreeMap<String, KeyState> {
        self.keys.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// Forgets keys that no longer exist.
    pub fn retain(&self, key_ids: &BTreeSet<String>) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.retain(|id, _| key_ids.contains(id));
        }
    }

    /// The verdict: a provider is down when its latest probes all failed to get an answer (a
    /// refused key says nothing about the provider); it cools down until `interval` after its
    /// latest probe. One that answered again after being down is up since then.
    pub fn verdict(&self, interval: Duration) -> Verdict {
        let mut v = Verdict::default();
        let mut by_provider: HashMap<&str, Vec<&KeyState>> = HashMap::new();
        let keys = self.states();
        for (id, k) in &keys {
            if k.state == "refused" {
                v.refused_keys.insert(id.clone());
            }
            by_provider.entry(k.provider.as_str()).or_default().push(k);
        }
        for (provider, states) in by_provider {
            let latest = states.iter().map(|k| k.at).max().unwrap_or(0);
            if states.iter().all(|k| k.state == "down") {
                // Past the next probe, rounded up to a whole minute: the configuration does not
                // change with every probe of a provider that stays down.
                let next = latest + i64::try_from(interval.as_secs()).unwrap_or(0) + 1;
                let until = (next / 60 + 1) * 60;
                v.down_until
                    .insert(provider.to_owned(), u64::try_from(until).unwrap_or(0));
            }
        }
        if let Ok(recovered) = self.recovered.lock() {
            for (provider, &(down, since)) in recovered.iter() {
                if !down && since > 0 && !v.down_until.contains_key(provider) {
                    v.up_since
                        .insert(provider.clone(), u64::try_from(since).unwrap_or(0));
                }
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProviderKind;

    #[test]
    fn a_provider_is_down_only_when_no_key_got_an_answer() {
        let p = Probes::default();
        let ms = Duration::from_millis(5);
        p.record("k1", "a", &Outcome::Down("timeout".into()), ms);
        p.record("k2", "a", &Outcome::Down("status 503".into()), ms);
        p.record("k3", "b", &Outcome::Refused(401), ms);
        p.record("k4", "b", &Outcome::Ok, ms);
        let v = p.verdict(Duration::from_secs(30));
        assert!(v.down_until.contains_key("a"));
        assert!(v.down_until["a"] >= crate::store::now() as u64 + 30);
        assert!(!v.down_until.contains_key("b"));
        assert!(v.up_since.is_empty(), "never down: nothing to recover from");
        assert_eq!(v.refused_keys, BTreeSet::from(["k3".to_string()]));
        // a answers again: up.
        p.record("k1", "a", &Outcome::Ok, ms);
        let v = p.verdict(Duration::from_secs(30));
        assert!(v.up_since.contains_key("a") && !v.down_until.contains_key("a"));
        p.retain(&BTreeSet::from(["k4".to_string()]));
        assert_eq!(p.states().len(), 1);
    }

    #[test]
    fn each_kind_is_asked_for_its_model_list() {
        let http = reqwest::Client::new();
        let row = |kind, base: &str| ProviderRow {
            id: "p".into(),
            name: "p".into(),
            kind,
            base_url: base.into(),
            models: vec![],
            settings: Default::default(),
            enabled: true,
            access: crate::store::ProviderAccess::public(),
        };
        let url = |kind, base: &str| {
            request(&http, &row(kind, base), "sk").map(|r| r.build().unwrap().url().to_string())
        };
        assert_eq!(
            url(ProviderKind::OpenaiCompatible, "http://h/v1").as_deref(),
            Some("http://h/v1/models")
        );
        assert_eq!(
            url(ProviderKind::Anthropic, "https://api.anthropic.com").as_deref(),
            Some("https://api.anthropic.com/v1/models")
        );
        assert_eq!(
            url(ProviderKind::Gemini, "https://g").as_deref(),
            Some("https://g/v1beta/models")
        );
        assert!(url(ProviderKind::AzureOpenai, "https://r")
            .unwrap()
            .ends_with("/openai/models?api-version=2024-10-21"));
        assert_eq!(url(ProviderKind::Bedrock, "https://b"), None);
        let anthropic = request(&http, &row(ProviderKind::Anthropic, "https://a"), "sk")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(anthropic.headers()["x-api-key"], "sk");
        assert_eq!(anthropic.headers()["anthropic-version"], "2023-06-01");
    }
}
