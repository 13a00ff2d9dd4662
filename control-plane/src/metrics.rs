//! The control plane's own metrics, in Prometheus' text format at `GET /metrics` (admin port):
//! request records stored, rate limit decisions, configurations published. Process-wide
//! counters (atomics); Envoy's and the filter's metrics are at Envoy's `/stats/prometheus`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_contract::limits::RefusalCode;

/// Counters, by the name they are exported under.
pub struct Metrics {
    pub records_stored: AtomicU64,
    pub records_duplicate: AtomicU64,
    pub records_rejected: AtomicU64,
    /// Batches refused for a missing or wrong signature.
    pub records_unsigned: AtomicU64,
    pub ingest_commits: AtomicU64,
    pub ingest_failures: AtomicU64,
    /// Microseconds spent committing, summed.
    pub ingest_micros: AtomicU64,
    pub limits_admitted: AtomicU64,
    pub limits_errors: AtomicU64,
    /// Refusals by reason, in the order of [`RefusalCode::ALL`].
    pub limits_refused: [AtomicU64; RefusalCode::ALL.len()],
    /// Requests whose end (tokens, cost) was charged.
    pub limits_charges: AtomicU64,
    pub snapshots_published: AtomicU64,
    /// Model discoveries that changed what clients see, and that failed.
    pub discoveries_changed: AtomicU64,
    pub discoveries_failed: AtomicU64,
    /// Connections to the xDS port refused in the TLS handshake (no or a foreign client
    /// certificate, too slow, too many at once), and ADS streams refused (caps, node id).
    pub xds_refused_handshakes: AtomicU64,
    pub xds_refused_streams: AtomicU64,
    /// Admin API requests refused before any work, by reason, in the order of [`ADMIN_REFUSALS`].
    pub admin_refused: [AtomicU64; 3],
    /// Sign-ins by outcome, in the order of [`SIGN_INS`].
    pub sign_ins: [AtomicU64; 4],
    /// Password hashes and verifications run, and refused for want of a slot.
    pub password_hashes: AtomicU64,
    pub password_hashes_busy: AtomicU64,
    /// Admin API calls answered 503 because the session store (Redis) was unreachable.
    pub session_store_unavailable: AtomicU64,
    /// Admin API connections closed as they arrived: too many open at once.
    pub admin_connections_refused: AtomicU64,
}

/// Why the admin API refused a request before any work: no valid credentials on a route that
/// needs them, a wrong token (counted against the client's address), too many wrong tokens
/// from that address.
pub const ADMIN_REFUSALS: [&str; 3] = ["unauthenticated", "bad_credentials", "throttled"];
/// Outcomes of `POST /admin/v1/auth/login`.
pub const SIGN_INS: [&str; 4] = ["ok", "failed", "throttled", "busy"];

pub static METRICS: Metrics = Metrics {
    records_stored: AtomicU64::new(0),
    records_duplicate: AtomicU64::new(0),
    records_rejected: AtomicU64::new(0),
    records_unsigned: AtomicU64::new(0),
    ingest_commits: AtomicU64::new(0),
    ingest_failures: AtomicU64::new(0),
    ingest_micros: AtomicU64::new(0),
    limits_admitted: AtomicU64::new(0),
    limits_errors: AtomicU64::new(0),
    limits_refused: [
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ],
    limits_charges: AtomicU64::new(0),
    snapshots_published: AtomicU64::new(0),
    discoveries_changed: AtomicU64::new(0),
    discoveries_failed: AtomicU64::new(0),
    xds_refused_handshakes: AtomicU64::new(0),
    xds_refused_streams: AtomicU64::new(0),
    admin_refused: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
    sign_ins: [
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ],
    password_hashes: AtomicU64::new(0),
    password_hashes_busy: AtomicU64::new(0),
    session_store_unavailable: AtomicU64::new(0),
    admin_connections_refused: AtomicU64::new(0),
};

pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A refusal of the limits service, counted by its code.
pub fn refused(code: RefusalCode) {
    if let Some(i) = RefusalCode::ALL.iter().position(|c| *c == code) {
        add(&METRICS.limits_refused[i], 1);
    }
}

/// Counts one event of a labelled family (`labels` names the counters of `counters`).
pub fn count(counters: &[AtomicU64], labels: &[&str], label: &str) {
    if let Some(i) = labels.iter().position(|l| *l == label) {
        add(&counters[i], 1);
    }
}

/// Everything, in Prometheus' text exposition format; `gauges` are added as they are.
pub fn render(gauges: &[(&str, &str, u64)]) -> String {
    let m = &METRICS;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
    let mut out = String::with_capacity(2048);
    let mut counter = |name: &str, help: &str, series: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, v) in series {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    let series = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(l, v)| ((*l).to_owned(), v.clone()))
            .collect()
    };
    counter(
        "switchyard_cp_records_total",
        "Request records received from Envoy, by outcome.",
        &series(&[
            ("{outcome=\"stored\"}", get(&m.records_stored)),
            ("{outcome=\"duplicate\"}", get(&m.records_duplicate)),
            ("{outcome=\"rejected\"}", get(&m.records_rejected)),
            ("{outcome=\"unsigned_batch\"}", get(&m.records_unsigned)),
        ]),
    );
    counter(
        "switchyard_cp_ingest_commits_total",
        "Transactions that stored request records, by outcome.",
        &series(&[
            ("{outcome=\"ok\"}", get(&m.ingest_commits)),
            ("{outcome=\"failed\"}", get(&m.ingest_failures)),
        ]),
    );
    let micros = m.ingest_micros.load(Ordering::Relaxed);
    counter(
        "switchyard_cp_ingest_seconds_total",
        "Time spent in those transactions.",
        &series(&[(
            "",
            format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000),
        )]),
    );
    let mut decisions = series(&[
        ("{decision=\"admitted\"}", get(&m.limits_admitted)),
        ("{decision=\"error\"}", get(&m.limits_errors)),
    ]);
    decisions.extend(
        RefusalCode::ALL
            .iter()
            .zip(&m.limits_refused)
            .map(|(code, c)| (format!("{{decision=\"refused\",code=\"{code}\"}}"), get(c))),
    );
    counter(
        "switchyard_cp_rate_limit_decisions_total",
        "Admission decisions of the limits service (requests granted to leases, refusals).",
        &decisions,
    );
    counter(
        "switchyard_cp_rate_limit_charges_total",
        "Ends of limited keys' requests charged (tokens, cost).",
        &series(&[("", get(&m.limits_charges))]),
    );
    counter(
        "switchyard_cp_snapshots_published_total",
        "Configurations published to Envoy.",
        &series(&[("", get(&m.snapshots_published))]),
    );
    counter(
        "switchyard_cp_model_discoveries_total",
        "Listings of providers' models that changed the catalog, and that failed.",
        &series(&[
            ("{outcome=\"changed\"}", get(&m.discoveries_changed)),
            ("{outcome=\"failed\"}", get(&m.discoveries_failed)),
        ]),
    );
    counter(
        "switchyard_cp_xds_refused_total",
        "Peers of the xDS port refused: TLS handshakes, and ADS streams.",
        &series(&[
            ("{stage=\"handshake\"}", get(&m.xds_refused_handshakes)),
            ("{stage=\"stream\"}", get(&m.xds_refused_streams)),
        ]),
    );
    let labelled = |key: &str, labels: &[&str], counters: &[AtomicU64]| -> Vec<(String, String)> {
        labels
            .iter()
            .zip(counters)
            .map(|(l, c)| (format!("{{{key}=\"{l}\"}}"), get(c)))
            .collect()
    };
    counter(
        "switchyard_cp_admin_refused_total",
        "Admin API requests refused before any work, by reason.",
        &labelled("reason", &ADMIN_REFUSALS, &m.admin_refused),
    );
    counter(
        "switchyard_cp_sign_ins_total",
        "Sign-ins by outcome (throttled: too many failures; busy: no hashing slot).",
        &labelled("outcome", &SIGN_INS, &m.sign_ins),
    );
    counter(
        "switchyard_cp_password_hashes_total",
        "Password hashes and verifications, run and refused for want of a slot.",
        &series(&[
            ("{outcome=\"done\"}", get(&m.password_hashes)),
            ("{outcome=\"busy\"}", get(&m.password_hashes_busy)),
        ]),
    );
    counter(
        "switchyard_cp_admin_connections_refused_total",
        "Admin API connections closed as they arrived: too many open at once.",
        &series(&[("", get(&m.admin_connections_refused))]),
    );
    counter(
        "switchyard_cp_session_store_unavailable_total",
        "Admin API calls answered 503 because the session store (Redis) was unreachable.",
        &series(&[("", get(&m.session_store_unavailable))]),
    );
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        add(&METRICS.records_stored, 3);
        add(&METRICS.ingest_micros, 1_500_000);
        refused(RefusalCode::BudgetExceeded);
        let text = render(&[("switchyard_cp_envoy_nodes", "Envoy nodes.", 2)]);
        assert!(text.contains("# TYPE switchyard_cp_records_total counter\n"));
        let stored = text
            .lines()
            .find(|l| l.starts_with("switchyard_cp_records_total{outcome=\"stored\"}"))
            .unwrap();
        assert!(stored.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 3);
        assert!(text.contains("switchyard_cp_ingest_seconds_total "));
        assert!(!text.contains("switchyard_cp_ingest_seconds_total 0\n"));
        assert!(text.contains(
            "switchyard_cp_rate_limit_decisions_total{decision=\"refused\",code=\"budget_exceeded\"}"
        ));
        assert!(
            text.contains("# TYPE switchyard_cp_envoy_nodes gauge\nswitchyard_cp_envoy_nodes 2\n")
        );
    }
}
