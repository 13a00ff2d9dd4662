//! No server-side request forgery through the gateway: a provider whose base URL a non-admin
//! chose may only reach public addresses.
//!
//! Checked when the provider is created or changed (the host, or every address its name
//! resolves to), and again at connect time: the control plane resolves the name itself and
//! gives Envoy the vetted addresses (a static cluster, re-resolved when the configuration is
//! recomputed), so a name that later resolves inside the network (DNS rebinding) reaches nothing;
//! the control plane's own requests to such providers (probes) go through a resolver that
//! refuses the same addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an address may not be reached, or `None` when it is public.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (127, _, _) => "loopback",
        (0, _, _) => "the unspecified network",
        (10, _, _) | (192, 168, _) => "a private network",
        (172, b, _) if (16..32).contains(&b) => "a private network",
        // Cloud metadata services live here (169.254.169.254).
        (169, 254, _) => "link-local (cloud metadata)",
        (100, b, _) if (64..128).contains(&b) => "shared address space (carrier-grade NAT)",
        (192, 0, 0) => "IETF protocol assignments",
        (198, b, _) if b == 18 || b == 19 => "a benchmarking network",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation network",
        (a, _, _) if a >= 224 => "multicast or reserved",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("the unspecified address");
    }
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64 (64:ff9b::/96)
    // and 6to4 (2002:aabb:ccdd::/48) reach the IPv4 address they carry.
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    if s[..6] == [0; 6] {
        return forbidden_v4(embedded(s[6], s[7])).or(Some("an IPv4-compatible address"));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return forbidden_v4(embedded(s[1], s[2]));
    }
    // Local-use NAT64 (RFC 8215): the operator chooses where the IPv4 address sits, so none of
    // it can be told public. Teredo carries an (obfuscated) IPv4 address too.
    if s[..3] == [0x64, 0xff9b, 1] {
        return Some("a local-use NAT64 network");
    }
    if s[..2] == [0x2001, 0] {
        return Some("Teredo (IPv4 carried in IPv6)");
    }
    if s[..4] == [0x100, 0, 0, 0] {
        return Some("the discard-only network");
    }
    if s[..3] == [0x2001, 2, 0] {
        return Some("a benchmarking network");
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "a unique local network",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        0x2001 if s[1] == 0x0db8 => "a documentation network",
        _ => return None,
    })
}

/// A network written `address/bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    bits: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Cidr { addr, bits })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, width) = match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(i)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        if self.bits == 0 {
            return true;
        }
        let shift = width - u32::from(self.bits);
        (net >> shift) == (ip >> shift)
    }
}

/// Resolves host names (the system's resolver; tests give their own).
pub trait Resolver: Send + Sync {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures::future::BoxFuture<'a, std::io::Result<Vec<SocketAddr>>>;
}

pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures::future::BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// Where providers of non-admins may point: public addresses, plus networks an admin allows.
#[derive(Clone)]
pub struct Guard {
    allowed: Vec<Cidr>,
    resolver: Arc<dyn Resolver>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("allowed", &self.allowed)
            .finish()
    }
}

impl Default for Guard {
    fn default() -> Self {
        Guard::new(Vec::new(), Arc::new(SystemResolver))
    }
}

impl Guard {
    pub fn new(allowed: Vec<Cidr>, resolver: Arc<dyn Resolver>) -> Guard {
        Guard { allowed, resolver }
    }

    /// Why `ip` may not be reached, unless an allowed network holds it.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        forbidden(ip).filter(|_| !self.allowed.iter().any(|n| n.contains(ip)))
    }

    /// The addresses `host` (a name or an address) stands for, each one allowed; an error
    /// saying why not otherwise. Every address must pass: a name that resolves to one public
    /// and one private address is refused.
    pub async fn vet(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                let resolved = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    self.resolver.resolve(bare, port),
                )
                .await
                .map_err(|_| format!("{host} did not resolve in time"))?
                .map_err(|_| format!("{host} does not resolve"))?;
                if resolved.is_empty() {
                    return Err(format!("{host} does not resolve"));
                }
                resolved
            }
        };
        for a in &addrs {
            if let Some(why) = self.refuses(a.ip()) {
                return Err(if bare.parse::<IpAddr>().is_ok() {
                    format!("{host} is {why}: providers may only reach public addresses")
                } else {
                    format!(
                        "{host} resolves to {} ({why}): providers may only reach public addresses",
                        a.ip()
                    )
                });
            }
        }
        let mut addrs = addrs;
        addrs.sort();
        addrs.dedup();
        Ok(addrs)
    }

    /// [`Guard::vet`] for the host and port of a provider's base URL.
    pub async fn vet_url(&self, base_url: &str) -> Result<Vec<SocketAddr>, String> {
        let upstream = crate::domain::Upstream::parse(base_url)?;
        self.vet(&upstream.host, upstream.port).await
    }

    /// A resolver for reqwest that refuses what [`Guard::vet`] refuses (for the control plane's
    /// own requests to such providers; IP literals in URLs bypass resolvers, so check those with
    /// `vet` first).
    pub fn reqwest_resolver(&self) -> Arc<Guard> {
        Arc::new(self.clone())
    }

    /// An HTTP client for the control plane's own requests to providers a non-admin chose:
    /// names resolved through this guard, no redirects (one to an address literal would pass
    /// by the resolver), and no proxy from the environment (`HTTP(S)_PROXY`: the proxy would
    /// resolve the name itself, past the guard).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .dns_resolver(self.reqwest_resolver())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
    }
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let addrs = guard
                .vet(name.as_str(), 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Names a test decides (a rebinding attacker's DNS): change them at any time.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Fixed(pub std::sync::Mutex<std::collections::HashMap<String, Vec<IpAddr>>>);

#[cfg(test)]
impl Fixed {
    pub fn set(&self, host: &str, ips: &[&str]) {
        let ips = ips.iter().map(|i| i.parse().expect("an address")).collect();
        self.0.lock().expect("names").insert(host.into(), ips);
    }
}

#[cfg(test)]
impl Resolver for Fixed {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures::future::BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        let out = self.0.lock().ok().and_then(|names| {
            names
                .get(host)
                .map(|ips| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
        });
        Box::pin(async move {
            out.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "nxdomain"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allowed: &[&str]) -> Guard {
        let names = Fixed::default();
        names.set("metadata.internal", &["169.254.169.254"]);
        names.set("intranet.example", &["10.1.2.3"]);
        names.set("v6-loop.example", &["::1"]);
        names.set("mixed.example", &["93.184.216.34", "192.168.0.1"]);
        names.set("api.example", &["93.184.216.34", "2606:2800:220:1::1"]);
        names.set("mapped.example", &["::ffff:127.0.0.1"]);
        Guard::new(
            allowed.iter().map(|a| a.parse().unwrap()).collect(),
            Arc::new(names),
        )
    }

    #[tokio::test]
    async fn inside_addresses_and_names_resolving_to_them_are_refused() {
        let g = guard(&[]);
        for host in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "[::1]",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:a9fe:a9fe::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "100::1",
            "2001:2::1",
            "2002:7f00:1::",
            "::127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "metadata.internal",
            "intranet.example",
            "v6-loop.example",
            "mixed.example",
            "mapped.example",
            "nowhere.example",
        ] {
            let err = g.vet(host, 443).await.expect_err(host);
            assert!(
                err.contains("public addresses") || err.contains("resolve"),
                "{host}: {err}"
            );
        }
        let err = g.vet("metadata.internal", 80).await.unwrap_err();
        assert!(
            err.contains("169.254.169.254") && err.contains("metadata"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn public_addresses_pass_and_allowed_networks_open_exceptions() {
        let g = guard(&[]);
        assert_eq!(
            g.vet("api.example", 443).await.unwrap().len(),
            2,
            "every address of the name"
        );
        assert!(g.vet("8.8.8.8", 443).await.is_ok());
        assert!(g.vet("[2606:4700::1111]", 443).await.is_ok());
        assert!(
            g.vet("172.32.0.1", 443).await.is_ok(),
            "just outside 172.16/12"
        );
        let g = guard(&["127.0.0.1/32", "10.1.0.0/16"]);
        assert!(g.vet("127.0.0.1", 80).await.is_ok());
        assert!(g.vet("intranet.example", 80).await.is_ok());
        assert!(g.vet("127.0.0.2", 80).await.is_err());
        assert!(g.vet("metadata.internal", 80).await.is_err());
    }

    #[tokio::test]
    async fn localhost_is_refused_through_the_system_resolver() {
        let g = Guard::default();
        let err = g.vet("localhost", 80).await.unwrap_err();
        assert!(err.contains("loopback") || err.contains("resolve"), "{err}");
    }

    /// The control plane's own requests to users' providers: a name resolving inside is
    /// refused by the resolver, before any connection.
    #[tokio::test]
    async fn the_guarded_http_client_does_not_connect_inside() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let guard = guard(&[]);
        let client = guard.client_builder().build().unwrap();
        for host in ["localhost", "metadata.internal"] {
            let err = client
                .get(format!("http://{host}:{port}/"))
                .send()
                .await
                .expect_err(host);
            assert!(err.is_connect() || err.is_request(), "{host}: {err}");
        }
        let allowed = super::Guard::new(
            vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()],
            Arc::new(SystemResolver),
        );
        let client = reqwest::Client::builder()
            .dns_resolver(allowed.reqwest_resolver())
            .timeout(std::time::Duration::from_millis(300))
            .build()
            .unwrap();
        let accept = tokio::spawn(async move { listener.accept().await.is_ok() });
        let _ = client.get(format!("http://localhost:{port}/")).send().await;
        let reached = tokio::time::timeout(std::time::Duration::from_secs(5), accept).await;
        assert!(
            reached.is_ok_and(|r| r.unwrap_or(false)),
            "an allowed network is reached"
        );
    }

    /// `HTTP_PROXY` in the control plane's environment must not carry requests to users'
    /// providers past the guard (the proxy would resolve the name itself).
    #[tokio::test]
    async fn the_guarded_client_ignores_proxies_from_the_environment() {
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
        // Set for this process only, for as long as one client is built; tests that build
        // clients meanwhile reach loopback addresses, which NO_PROXY keeps direct.
        std::env::set_var("NO_PROXY", "127.0.0.1,localhost,::1");
        std::env::set_var("HTTP_PROXY", &proxy_url);
        std::env::set_var("http_proxy", &proxy_url);
        let client = guard(&[])
            .client_builder()
            .timeout(std::time::Duration::from_millis(500))
            .build()
            .unwrap();
        std::env::remove_var("HTTP_PROXY");
        std::env::remove_var("http_proxy");
        let asked = tokio::spawn(async move {
            tokio::time::timeout(std::time::Duration::from_secs(2), proxy.accept())
                .await
                .is_ok()
        });
        let err = client
            .get("http://metadata.internal/latest/meta-data/")
            .send()
            .await
            .expect_err("refused");
        assert!(err.is_connect() || err.is_request(), "{err}");
        assert!(!asked.await.unwrap(), "the proxy was never asked");
    }

    #[test]
    fn networks_parse_and_match() {
        let n: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.200.1.1".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let one: Cidr = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        for bad in ["10.0.0.0/33", "x/8", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
