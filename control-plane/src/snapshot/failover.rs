//! Routes -> failover: a model with several targets gets a cluster per target and, per target,
//! an aggregate of it followed by the others in fallback order (priority tier, then weight); a
//! single target whose provider has several keys gets an aggregate retrying on another key.

use std::collections::{BTreeMap, HashMap};

use switchyard_contract::config::{Capability, Provider as FilterProvider, Target};

use super::routes::Table;
use super::{content_version, FailoverCluster, ProviderCluster};
use crate::names::{cluster_name, failover_prefix};

/// The failover clusters, the target clusters they aggregate, and each route's names of them.
#[derive(Default)]
pub(super) struct Failover {
    pub clusters: Vec<FailoverCluster>,
    /// One cluster per (provider, model) target of a model with several targets.
    pub targets: Vec<ProviderCluster>,
    /// By route, per target: the failover cluster starting with it (empty: none).
    pub names: HashMap<String, Vec<String>>,
    /// By route, per set of needs not every target meets: the names over capable targets.
    pub capable: HashMap<String, Vec<(u8, Vec<String>)>>,
}

pub(super) fn failover(
    table: &Table,
    provider_clusters: &[ProviderCluster],
    providers: &[FilterProvider],
) -> Failover {
    let mut out = Failover::default();
    across_targets(table, provider_clusters, &mut out);
    across_keys(table, providers, &mut out);
    out
}

/// Models with several targets.
fn across_targets(table: &Table, provider_clusters: &[ProviderCluster], out: &mut Failover) {
    let mut target_clusters: BTreeMap<(String, String), String> = BTreeMap::new();
    for (name, (_, targets)) in table.iter().filter(|(_, (_, t))| t.len() > 1) {
        let members: Vec<String> = targets
            .iter()
            .map(|t| {
                target_clusters
                    .entry((t.provider.clone(), t.model.clone()))
                    .or_insert_with(|| target_cluster_name(t))
                    .clone()
            })
            .collect();
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by_key(|&i| (targets[i].priority, std::cmp::Reverse(targets[i].weight), i));
        // One family of failover clusters for every request, and one per set of needs (tools,
        // images) that not every target meets, over the targets that meet it.
        let caps: Vec<u8> = targets
            .iter()
            .map(|t| Capability::mask(t.capabilities.as_deref()))
            .collect();
        let mut family = |needs: u8, tag: &str| {
            family(name, &members, &order, &caps, needs, tag, &mut out.clusters)
        };
        let names = family(0, "").unwrap_or_default();
        let capable: Vec<(u8, Vec<String>)> = (1..=Capability::ALL)
            .filter_map(|needs| Some((needs, family(needs, &format!("n{needs}-"))?)))
            .collect();
        out.names.insert(name.clone(), names);
        if !capable.is_empty() {
            out.capable.insert(name.clone(), capable);
        }
    }
    let upstreams: HashMap<&str, &ProviderCluster> = provider_clusters
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    for ((provider, model), name) in target_clusters {
        if let Some(c) = upstreams.get(cluster_name(&provider).as_str()) {
            out.targets.push(ProviderCluster {
                name,
                upstream: c.upstream.clone(),
                target: Some(format!("{provider}/{model}")),
                proxies: c.proxies.clone(),
                pinned: c.pinned.clone(),
            });
        }
    }
}

/// The failover clusters of route `name` for requests with `needs` (0: every request), over
/// the targets (`members`, in fallback `order`) whose capabilities `caps` meet them: per target,
/// the name of the cluster that starts with it. None when every target or none meets them (the
/// family for every request serves).
fn family(
    name: &str,
    members: &[String],
    order: &[usize],
    caps: &[u8],
    needs: u8,
    tag: &str,
    clusters: &mut Vec<FailoverCluster>,
) -> Option<Vec<String>> {
    let n = members.len();
    let capable: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| caps[i] & needs == needs)
        .collect();
    if needs != 0 && (capable.len() == n || capable.is_empty()) {
        return None;
    }
    let k = capable.len();
    let mut names = vec![String::new(); n];
    if k < 2 {
        return Some(names); // one capable target: its own cluster, nothing to fail over to
    }
    for &first in &capable {
        let cluster = format!("{}{first}-{tag}{}", failover_prefix(k), slug(name));
        let members = std::iter::once(first)
            .chain(capable.iter().copied().filter(|&i| i != first))
            .map(|i| members[i].clone())
            .collect();
        clusters.push(FailoverCluster {
            name: cluster.clone(),
            clusters: members,
            attempts: k,
        });
        names[first] = cluster;
    }
    Some(names)
}

/// A single target whose provider has several keys: a failed key (refused, rate limited) is
/// retried on another, through an aggregate over the provider's own cluster.
fn across_keys(table: &Table, providers: &[FilterProvider], out: &mut Failover) {
    let key_counts: HashMap<&str, usize> = providers
        .iter()
        .map(|p| (p.name.as_str(), p.keys.len()))
        .collect();
    for (name, (_, targets)) in table.iter().filter(|(_, (_, t))| t.len() == 1) {
        let provider = targets[0].provider.as_str();
        let keys = key_counts.get(provider).copied().unwrap_or(0);
        if keys < 2 {
            continue;
        }
        let cluster = format!("{}provider-{provider}", failover_prefix(keys));
        if !out.clusters.iter().any(|f| f.name == cluster) {
            out.clusters.push(FailoverCluster {
                name: cluster.clone(),
                clusters: vec![cluster_name(provider)],
                attempts: keys,
            });
        }
        out.names.insert(name.clone(), vec![cluster]);
    }
}

/// The cluster of one target: its endpoint names the target, so that the upstream filter knows
/// whom an attempt reached.
fn target_cluster_name(t: &Target) -> String {
    format!("target-{}-{}", t.provider, slug(&t.model))
}

/// `s` as a cluster-name part: letters, digits, `.`, `_`, `-` kept, anything else `_`; a
/// short hash of `s` follows when that changed it (or cut it), so names stay distinct.
fn slug(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(48)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out != s {
        out.push('-');
        out.push_str(&content_version(s.as_bytes())[..6]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_keep_safe_names_and_tell_changed_ones_apart() {
        let long = "m".repeat(60);
        // (name, expected prefix, whether a hash follows)
        let cases = [
            ("gpt-4o", "gpt-4o", false),
            ("claude_3.5", "claude_3.5", false),
            ("vendor/m:3", "vendor_m_3-", true),
            ("vendor_m_3", "vendor_m_3", false),
            (long.as_str(), &long[..48], true),
        ];
        for (name, prefix, hashed) in cases {
            let s = slug(name);
            assert!(s.starts_with(prefix), "{name}: {s}");
            assert_eq!(s.len() > prefix.len(), hashed, "{name}: {s}");
        }
        assert_ne!(slug("a/b"), slug("a:b"), "distinct names, distinct slugs");
    }

    #[test]
    fn a_family_starts_each_capable_target_once_in_fallback_order() {
        let members: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
        let order = [2, 0, 1];
        let caps = [0b01, 0b11, 0b11];
        // (needs, per-target names are set, clusters made)
        let cases: [(u8, Option<[bool; 3]>, usize); 4] = [
            (0, Some([true, true, true]), 3),
            (0b10, Some([false, true, true]), 2),
            (0b01, None, 0),
            (0b100, None, 0),
        ];
        for (needs, expected, made) in cases {
            let mut clusters = Vec::new();
            let names = family("m", &members, &order, &caps, needs, "t-", &mut clusters);
            assert_eq!(
                names.map(|n| [0, 1, 2].map(|i| !n[i].is_empty())),
                expected,
                "needs {needs}"
            );
            assert_eq!(clusters.len(), made, "needs {needs}");
        }
        let mut clusters = Vec::new();
        let names = family("m", &members, &order, &caps, 0, "", &mut clusters).unwrap();
        assert_eq!(names[2], "failover-3-2-m");
        assert_eq!(
            clusters[0].clusters,
            ["z", "x", "y"],
            "z first, then by order"
        );
        assert_eq!(clusters[0].attempts, 3);
    }
}
