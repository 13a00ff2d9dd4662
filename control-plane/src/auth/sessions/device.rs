//! The device list: what a session (a signed-in device) shows its owner, and what makes a
//! refresh from it suspicious (another fingerprint or IP range than the sign-in's).

use serde::{Deserialize, Serialize};

/// A family's state: the sign-in's facts plus what changes at each use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    /// The name the client gave its device at sign-in.
    pub device: String,
    pub user_agent: String,
    pub ip: String,
    pub created_at: i64,
    pub last_seen: i64,
    pub last_ip: String,
    pub last_user_agent: String,
    /// Refreshes from another fingerprint or IP range than the sign-in's, newest first.
    pub suspicious: Vec<Suspicious>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Suspicious {
    pub at: i64,
    /// `new_device` (another user agent) or `new_ip_range` (another /24, or /48 for IPv6).
    pub reason: String,
    pub ip: String,
    pub user_agent: String,
}

/// What a sign-in tells about the client.
#[derive(Debug, Clone)]
pub struct Client {
    pub device: String,
    pub user_agent: String,
    pub ip: String,
}

/// Most suspicious refreshes kept per family.
pub(super) const EVENTS_KEPT: usize = 20;

/// The network a client address belongs to, for noticing a move: /24 for IPv4, /48 for IPv6.
pub fn ip_range(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        Err(_) => ip.to_owned(),
    }
}

/// How a refresh differs from the family's sign-in.
pub(super) fn suspicious(
    session: &Session,
    ip: &str,
    user_agent: &str,
    now: i64,
) -> Vec<Suspicious> {
    let mut out = Vec::new();
    let event = |reason: &str| Suspicious {
        at: now,
        reason: reason.into(),
        ip: ip.into(),
        user_agent: user_agent.into(),
    };
    if session.user_agent != user_agent {
        out.push(event("new_device"));
    }
    if ip_range(&session.ip) != ip_range(ip) {
        out.push(event("new_ip_range"));
    }
    out
}

/// Sorts a device list as its owner sees it: most recently seen first.
pub(super) fn most_recent_first(sessions: &mut [Session]) {
    sessions.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.id.cmp(&b.id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(ip_range("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(ip_range("2001:db8:1:2::5"), "2001:db8:1::/48");
        assert_eq!(ip_range("not an ip"), "not an ip");
    }
}
