//! Where the control plane listens: its admin API and its internal port for Envoy.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    #[serde(default = "default_xds")]
    pub xds: XdsAddress,
}

/// Where the control plane serves Envoy (ADS, limit leases, request records): a TCP
/// address, where clients must present a certificate from the control plane's CA (mutual TLS),
/// or `unix:PATH`, a socket only its owner may open (Envoy on the same host, same user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdsAddress {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for XdsAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix("unix:") {
            Some("") => Err("unix: needs the socket's path".into()),
            // Linux refuses longer socket paths (sun_path is 108 bytes with its NUL).
            Some(path) if path.len() > 100 => Err("a socket path is at most 100 bytes long".into()),
            Some(path) => Ok(XdsAddress::Unix(PathBuf::from(path))),
            None => s
                .parse()
                .map(XdsAddress::Tcp)
                .map_err(|_| format!("{s:?} is neither ip:port nor unix:/path/to/socket")),
        }
    }
}

impl std::fmt::Display for XdsAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            XdsAddress::Tcp(a) => write!(f, "{a}"),
            XdsAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl<'de> Deserialize<'de> for XdsAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            admin: default_admin(),
            xds: default_xds(),
        }
    }
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

fn default_xds() -> XdsAddress {
    XdsAddress::Tcp(SocketAddr::from(([127, 0, 0, 1], 18000)))
}
