//! The admission policy, pure: what admitting a request checks, reserves and counts; what its
//! reported end charges; and the refusal a client gets from what the counters found.

use switchyard_contract::limits::RefusalCode;

use super::calendar::calendar;
use super::counters::{Ask, Cap, Counters, Credit, End, Settle, Verdict, Window, WindowState};
use super::table::{KeyLimits, UserLimits};
use super::{Admit, MAX_CHARGE_MICROS};

/// How long past its period a spend total is kept (a late end still finds it).
const TOTAL_MARGIN_SECS: i64 = 3_600;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Error code (also the reason header the filter reads).
    pub code: RefusalCode,
    pub message: String,
    pub retry_after: Option<i64>,
}

/// What admission found: a refusal, or the windows for the `x-ratelimit-*` headers.
#[derive(Debug, Default)]
pub struct Admission {
    pub refusal: Option<Refusal>,
    /// (limit, state) of the tightest request and token windows.
    pub requests: Option<(i64, WindowState)>,
    pub tokens: Option<(i64, WindowState)>,
}

impl Admission {
    fn refused(code: RefusalCode, message: String, retry_after: Option<i64>) -> Admission {
        Admission {
            refusal: Some(Refusal {
                code,
                message,
                retry_after,
            }),
            ..Admission::default()
        }
    }
}

/// The spend totals a key and its owner count, with their caps: (cap, total's name, seconds
/// the period has left, period, the owner's).
fn spend_totals(
    counters: &dyn Counters,
    key: &str,
    limits: &KeyLimits,
    user: &UserLimits,
    now: i64,
) -> [(Option<i64>, String, i64, &'static str, bool); 4] {
    let (day, day_left, month, month_left) = calendar(now);
    let owner = limits.user.as_str();
    [
        (
            limits.daily_micros,
            counters.name(&["spend", key, &day]),
            day_left,
            "day",
            false,
        ),
        (
            limits.monthly_micros,
            counters.name(&["spend", key, &month]),
            month_left,
            "month",
            false,
        ),
        (
            user.daily_micros,
            counters.name(&["spend-user", owner, &day]),
            day_left,
            "day",
            true,
        ),
        (
            user.monthly_micros,
            counters.name(&["spend-user", owner, &month]),
            month_left,
            "month",
            true,
        ),
    ]
}

/// What admitting a request of `admit.key` checks and counts: its owner's credits (holding
/// its reservation until `now + reserve_ttl` at most), the spend caps, then the per-minute
/// windows (requests counted now, tokens only checked).
pub(super) fn ask<'a>(
    counters: &dyn Counters,
    admit: &Admit<'a>,
    limits: &'a KeyLimits,
    user: &UserLimits,
    now: i64,
    reserve_ttl: i64,
) -> Ask<'a> {
    let key = admit.key;
    let credit = user.metered.then(|| Credit {
        user: &limits.user,
        request: admit.request,
        reserve: i64::try_from(admit.reserve)
            .unwrap_or(MAX_CHARGE_MICROS)
            .min(MAX_CHARGE_MICROS),
        expires: now.saturating_add(reserve_ttl),
        upto: false,
    });
    let caps = spend_totals(counters, key, limits, user, now)
        .into_iter()
        .filter_map(|(cap, total, left, period, of_user)| {
            Some(Cap {
                total,
                cap: cap?,
                left,
                period,
                user: of_user,
            })
        })
        .collect();
    let mut windows = Vec::new();
    for (who, id, rpm, tpm) in [
        ("key", key, limits.rpm, limits.tpm),
        ("user", limits.user.as_str(), user.rpm, user.tpm),
    ] {
        if let Some(rpm) = rpm {
            windows.push(Window {
                counter: counters.name(&["rpm", who, id]),
                limit: rpm,
                hits: 1,
                requests: true,
            });
        }
        if let Some(tpm) = tpm {
            windows.push(Window {
                counter: counters.name(&["tpm", who, id]),
                limit: tpm,
                hits: 0,
                requests: false,
            });
        }
    }
    Ask {
        now,
        credit,
        caps,
        windows,
        partial: false,
    }
}

/// What a request's end charges: its tokens to the token windows, its cost to the capped
/// spend totals, and (metered) its owner's hold becomes its cost. `None`: nothing to count.
#[allow(clippy::too_many_arguments)]
pub(super) fn end<'a>(
    counters: &dyn Counters,
    key: &str,
    request: &'a str,
    limits: &'a KeyLimits,
    user: &UserLimits,
    tokens: i64,
    cost: i64,
    now: i64,
) -> Option<End<'a>> {
    let mut windows = Vec::new();
    if tokens > 0 {
        if limits.tpm.is_some() {
            windows.push(counters.name(&["tpm", "key", key]));
        }
        if user.tpm.is_some() {
            windows.push(counters.name(&["tpm", "user", &limits.user]));
        }
    }
    let mut totals = Vec::new();
    if cost > 0 {
        for (cap, total, left, _, _) in spend_totals(counters, key, limits, user, now) {
            if cap.is_some() {
                totals.push((total, left + TOTAL_MARGIN_SECS));
            }
        }
    }
    let hold = (user.metered && !request.is_empty()).then_some(Settle {
        user: &limits.user,
        request,
    });
    if windows.is_empty() && totals.is_empty() && hold.is_none() {
        return None;
    }
    Some(End {
        now,
        windows,
        tokens,
        totals,
        cost,
        hold,
    })
}

/// The totals spend restored at start adds to: `kind` is `spend` (a key) or `spend-user`;
/// (name, ttl, amount) for today and this month, the amounts bounded.
pub(super) fn restored_totals(
    counters: &dyn Counters,
    kind: &str,
    who: &str,
    today: i64,
    this_month: i64,
    now: i64,
) -> Vec<(String, i64, i64)> {
    let (day, day_left, month, month_left) = calendar(now);
    [(today, &day, day_left), (this_month, &month, month_left)]
        .into_iter()
        .filter(|(amount, _, _)| *amount > 0)
        .map(|(amount, period, left)| {
            (
                counters.name(&[kind, who, period]),
                left + TOTAL_MARGIN_SECS,
                amount.min(MAX_CHARGE_MICROS),
            )
        })
        .collect()
}

/// The answer to an admission from what the counters found.
pub(super) fn admission(ask: &Ask<'_>, verdict: Verdict) -> Admission {
    match verdict {
        Verdict::NoBalance | Verdict::NoCredits => Admission::refused(
            RefusalCode::InsufficientCredits,
            "The credit balance of this key's owner is used up; add credits to continue.".into(),
            None,
        ),
        Verdict::TooManyHolds => Admission::refused(
            RefusalCode::RateLimitExceeded,
            "Too many requests of this key's owner are in flight.".into(),
            Some(1),
        ),
        Verdict::OverCap(i) => {
            let Some(cap) = ask.caps.get(i) else {
                return Admission::refused(
                    RefusalCode::BudgetExceeded,
                    "Budget spent.".into(),
                    None,
                );
            };
            let whose = if cap.user {
                "This key's owner"
            } else {
                "This key"
            };
            Admission::refused(
                RefusalCode::BudgetExceeded,
                format!(
                    "{whose} has spent its budget for the {} ({} USD).",
                    cap.period,
                    crate::domain::micros_to_usd(cap.cap)
                ),
                Some(cap.left),
            )
        }
        Verdict::Windows { ok, states, .. } => {
            let mut admission = Admission::default();
            // The tightest window of each kind: the one with the least left.
            for (w, state) in ask.windows.iter().zip(&states) {
                let slot = if w.requests {
                    &mut admission.requests
                } else {
                    &mut admission.tokens
                };
                let left = w.limit.saturating_sub(state.used);
                if slot.is_none_or(|(l, s)| l.saturating_sub(s.used) > left) {
                    *slot = Some((w.limit, *state));
                }
            }
            if !ok {
                // The first window that is full says why.
                let full = ask.windows.iter().zip(&states).find(|(w, state)| {
                    if w.hits > 0 {
                        state.used.saturating_add(w.hits) > w.limit
                    } else {
                        state.used >= w.limit
                    }
                });
                let (requests, reset) = full.map_or((true, 1), |(w, s)| (w.requests, s.reset_secs));
                admission.refusal = Some(if requests {
                    Refusal {
                        code: RefusalCode::RateLimitExceeded,
                        message: "Too many requests per minute for this key.".into(),
                        retry_after: Some(reset.max(1)),
                    }
                } else {
                    Refusal {
                        code: RefusalCode::TokensPerMinuteExceeded,
                        message: "Too many tokens per minute for this key.".into(),
                        retry_after: Some(reset.max(1)),
                    }
                });
            }
            admission
        }
    }
}
