//! Leases: an Envoy's bounded allowance for one key, taken from the global counters in the same
//! atomic step as an admission (see [`switchyard_contract::lease`]). A grant counts its
//! requests in the key's and owner's request windows at once (so requests per minute are never
//! overshot), holds its credit allowance from the owner's balance, and hands the filter what
//! is left of the token windows. The next ask reports the ends of the requests admitted under
//! it (charged one by one: their costs held until their records reach the ledger) and gives
//! back the requests it did not use. Each Envoy has one credit hold
//! per key, changed by each of its asks: it shrinks by the costs of the ends reported (now held
//! one by one) and by the credit an expired lease left, then grows by the new allowance. So
//! concurrent asks of one Envoy add up in any order, and what one lease left unspent is
//! spendable again at that Envoy's next ask (or return) rather than when a hold expires.

use switchyard_contract::lease::{
    LeaseAsk, LeaseGrant, LeaseRefusal, LeaseWindow, DEFAULT_TTL_MS, MAX_REQUESTS,
};

use super::counters::{Release, Verdict};
use super::{policy, Admit, Limits, LimitsError, Result};

/// A grant hands out at most this share of a per-minute request limit (at least one request):
/// a busy key asks about ten times a minute per Envoy, and Envoys that do not use theirs hold
/// little of the limit when it runs short.
const REQUEST_SHARE: i64 = 10;

/// Seconds an Envoy's credit hold for a key outlives its last ask's lease (the Envoy's next
/// ask or return keeps it longer, and releases what it no longer needs).
const HOLD_MARGIN_SECS: i64 = 5;

/// The id an Envoy's credit hold for a key is kept under (`:` is in no plain id, so no request
/// id and no other Envoy's or key's hold has it).
fn hold_id(ask: &LeaseAsk) -> String {
    format!("lease:{}:{}", ask.instance, ask.key)
}

impl Limits {
    /// Answers one Envoy's lease ask for `ask.key`: reports its ended requests, gives back
    /// what its last lease left, then grants a new allowance or says why not. The ask must be
    /// [`LeaseAsk::bounded`] (the endpoint checks it; this checks again).
    pub async fn lease(&self, ask: &LeaseAsk, now: i64) -> Result<LeaseGrant> {
        if !ask.bounded() {
            return Err(LimitsError::OutOfRange("lease ask"));
        }
        let key = ask.key.as_str();
        for end in &ask.ends {
            let tokens = i64::try_from(end.tokens).unwrap_or(i64::MAX);
            let cost = i64::try_from(end.cost).unwrap_or(i64::MAX);
            self.ended(key, &end.request, tokens, cost, now).await?;
        }
        crate::metrics::add(
            &crate::metrics::METRICS.limits_charges,
            u64::try_from(ask.ends.len()).unwrap_or(0),
        );
        let Some((limits, user)) = self.lookup(key)? else {
            // Not limited (any more): spend freely until the next configuration says so.
            return Ok(LeaseGrant {
                granted_at: now,
                ttl_ms: DEFAULT_TTL_MS,
                requests: MAX_REQUESTS,
                ..LeaseGrant::default()
            });
        };
        let counters = &*self.counters;
        if ask.tokens > 0 || ask.cost > 0 {
            // Summed ends: their tokens and cost count, nothing is held for them.
            let tokens = i64::try_from(ask.tokens).unwrap_or(i64::MAX);
            let cost = i64::try_from(ask.cost).unwrap_or(i64::MAX);
            if let Some(end) = policy::end(counters, key, "", &limits, &user, tokens, cost, now) {
                counters.ended(&end).await?;
            }
        }
        let request_windows: Vec<String> = [
            ("key", key, limits.rpm),
            ("user", limits.user.as_str(), user.rpm),
        ]
        .into_iter()
        .filter(|(_, _, rpm)| rpm.is_some())
        .map(|(who, id, _)| counters.name(&["rpm", who, id]))
        .collect();
        if ask.unused > 0 {
            counters
                .give_back(&request_windows, ask.granted_at, i64::from(ask.unused), now)
                .await?;
        }
        let share = [limits.rpm, user.rpm]
            .into_iter()
            .flatten()
            .map(|rpm| (rpm / REQUEST_SHARE).max(1))
            .min()
            .unwrap_or(i64::from(MAX_REQUESTS));
        let wanted = i64::from(ask.requests).min(share);
        let hold = hold_id(ask);
        let ttl_secs = i64::try_from(DEFAULT_TTL_MS / 1_000).unwrap_or(2);
        let hold_expires = now.saturating_add(ttl_secs + HOLD_MARGIN_SECS);
        if user.metered {
            // What the Envoy no longer needs held (the costs of its leased requests' ends, now
            // held one by one, and what its expired lease left) leaves its hold before the
            // hold may grow again.
            let ended = ask.ends.iter().filter(|e| e.held).map(|e| e.cost);
            let release = ended.fold(ask.release, u64::saturating_add);
            let release = i64::try_from(release).unwrap_or(i64::MAX);
            counters
                .release(&Release {
                    user: &limits.user,
                    hold: &hold,
                    micros: release,
                    expires: hold_expires,
                })
                .await?;
        }
        let per_request = i64::try_from(ask.reserve).unwrap_or(i64::MAX);
        let admit = Admit {
            key,
            request: &hold,
            reserve: 0,
        };
        let mut q = policy::ask(counters, &admit, &limits, &user, now, self.reserve_ttl);
        q.partial = true;
        for w in q.windows.iter_mut().filter(|w| w.hits > 0) {
            w.hits = wanted.max(0);
        }
        if let Some(credit) = &mut q.credit {
            credit.upto = true;
            credit.reserve = per_request.saturating_mul(wanted.max(1));
            credit.expires = hold_expires;
        }
        if ask.requests == 0 {
            // Only a return: the unused requests and credit went back above.
            return Ok(LeaseGrant {
                granted_at: now,
                ttl_ms: DEFAULT_TTL_MS,
                ..LeaseGrant::default()
            });
        }
        let mut verdict = counters.admit(&q).await?;
        if verdict == Verdict::NoBalance {
            self.load_balance(&limits.user).await?;
            verdict = counters.admit(&q).await?;
            if verdict == Verdict::NoBalance {
                verdict = Verdict::NoCredits;
            }
        }
        let metered = q.credit.is_some();
        if verdict == Verdict::NoCredits && ask.credit > 0 {
            // Nothing more to hold, but the Envoy's lease has credit left (refunds of its
            // requests, within its hold): it may have requests to spend it on.
            q.credit = None;
            verdict = counters.admit(&q).await?;
        }
        let (hits, held, caps_left) = match &verdict {
            Verdict::Windows {
                hits,
                held,
                caps_left,
                ..
            } => (*hits, *held, *caps_left),
            _ => (0, 0, None),
        };
        let has_request_window = q.windows.iter().any(|w| w.hits > 0);
        let admission = policy::admission(&q, verdict);
        let window = |w: Option<(i64, super::WindowState)>, taken: i64| {
            w.map(|(limit, s)| LeaseWindow {
                limit,
                used: s.used.saturating_sub(taken).max(0),
                reset_secs: s.reset_secs.max(0),
            })
        };
        let mut grant = LeaseGrant {
            granted_at: now,
            ttl_ms: DEFAULT_TTL_MS,
            itemize: user.metered,
            request_window: window(admission.requests, hits),
            token_window: window(admission.tokens, 0),
            ..LeaseGrant::default()
        };
        if let Some(r) = admission.refusal {
            crate::metrics::refused(r.code);
            grant.refusal = Some(LeaseRefusal {
                code: r.code.as_str().into(),
                message: r.message,
                retry_after: r.retry_after,
            });
            return Ok(grant);
        }
        crate::metrics::add(
            &crate::metrics::METRICS.limits_admitted,
            u64::try_from(hits.max(1)).unwrap_or(0),
        );
        grant.requests = if has_request_window {
            u32::try_from(hits).unwrap_or(0)
        } else {
            u32::try_from(wanted.max(1)).unwrap_or(MAX_REQUESTS)
        };
        // What may be reserved: the credit allowance (added to what the Envoy has), and no
        // more than the spend caps have left (each Envoy's lease may pass a cap by its last
        // request, as an admission may).
        grant.credit = metered.then(|| u64::try_from(held).unwrap_or(0));
        grant.cap = caps_left.map(|c| u64::try_from(c).unwrap_or(0));
        grant.tokens = grant
            .token_window
            .map(|w| u64::try_from(w.limit.saturating_sub(w.used)).unwrap_or(0));
        Ok(grant)
    }
}

/// The largest lease ask body read: [`switchyard_contract::lease::MAX_ENDS`] ends and the rest.
const MAX_ASK_BYTES: usize = 64 << 10;

/// The lease endpoint, served beside the records endpoint over the cluster Envoy has to the
/// control plane. With a data plane key, each ask must carry its signature under that key
/// (see [`switchyard_contract::sealed::sign_lease`]): nobody else who reaches the port takes
/// allowances, reports ends or gives requests back.
pub fn router(limits: std::sync::Arc<Limits>, dataplane_key: Option<[u8; 32]>) -> axum::Router {
    axum::Router::new()
        .route(
            switchyard_contract::lease::PATH,
            axum::routing::post(receive),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_ASK_BYTES))
        .with_state((limits, dataplane_key))
}

type Answer = (axum::http::StatusCode, axum::Json<serde_json::Value>);

fn refused(status: axum::http::StatusCode, message: &str) -> Answer {
    (status, axum::Json(serde_json::json!({ "error": message })))
}

async fn receive(
    axum::extract::State((limits, key)): axum::extract::State<(
        std::sync::Arc<Limits>,
        Option<[u8; 32]>,
    )>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    use axum::http::StatusCode;
    if let Some(key) = &key {
        let signed = headers
            .get(switchyard_contract::sealed::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|sig| switchyard_contract::sealed::verify_lease(key, &body, sig));
        if !signed {
            crate::metrics::add(&crate::metrics::METRICS.records_unsigned, 1);
            tracing::warn!("a lease ask without a valid signature was refused");
            return refused(
                StatusCode::UNAUTHORIZED,
                "lease asks must be signed with the data plane key",
            );
        }
    }
    let Ok(ask) = serde_json::from_slice::<LeaseAsk>(&body) else {
        return refused(StatusCode::BAD_REQUEST, "malformed lease ask");
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if !ask.bounded() || !ask.fresh(now_ms) {
        tracing::warn!(key = %ask.key.escape_debug(), "a lease ask out of bounds was refused");
        return refused(StatusCode::BAD_REQUEST, "lease ask out of bounds");
    }
    match limits.lease(&ask, crate::store::now()).await {
        Ok(grant) => (
            StatusCode::OK,
            axum::Json(serde_json::to_value(grant).unwrap_or_default()),
        ),
        Err(e) => {
            crate::metrics::add(&crate::metrics::METRICS.limits_errors, 1);
            tracing::error!("lease not granted: {e}");
            refused(StatusCode::SERVICE_UNAVAILABLE, "limits unavailable")
        }
    }
}
