//! Names of Envoy resources that the snapshot chooses and the xDS builder renders: the control
//! plane's own cluster and the prefixes of provider and failover clusters.

/// Envoy's static cluster reaching the control plane's internal port (ADS, rate limit
/// service, request records).
pub const XDS_CLUSTER: &str = "switchyard_xds";

/// The cluster of a provider's endpoint; `cluster_name("")` is the prefix every provider
/// cluster shares.
pub fn cluster_name(provider: &str) -> String {
    format!("provider-{provider}")
}

/// Name prefix of failover clusters allowing `attempts` attempts; the route that retries
/// matches it.
pub fn failover_prefix(attempts: usize) -> String {
    format!("failover-{attempts}-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_and_failover_names_never_reach_the_control_plane_cluster() {
        for (name, prefix) in [
            (cluster_name("openai"), cluster_name("")),
            (failover_prefix(3), failover_prefix(3)),
        ] {
            assert!(name.starts_with(&prefix), "{name}");
            assert!(!XDS_CLUSTER.starts_with(&prefix), "{prefix}");
        }
        assert_eq!(cluster_name("a"), "provider-a");
        assert_eq!(failover_prefix(2), "failover-2-");
    }
}
