//! `/admin/v1/requests`, `/admin/v1/prices` and `/admin/v1/credits`: the request log, the
//! pricing table and credit accounts. Money is integer micro-USD (`*_micros`); prices are
//! micro-USD per million tokens, and may be written in USD per million tokens as in the config.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use switchyard_contract::pricing::Price;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AdminOnly, ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, Errors};
use crate::auth::Principal;
use crate::health::Reports;
use crate::limits::Limits;
use crate::reconcile::Publisher;
use crate::store::{AccountRules, PriceRow, ReportGroup, RequestQuery, Store};

/// What the usage, prices and credits routes use: the store, Envoy's reports (prices move the
/// figures), the publisher and the credit accounts.
#[derive(Clone)]
pub(super) struct Usage {
    pub(super) store: Store,
    pub(super) reports: Reports,
    pub(super) publisher: Publisher,
    pub(super) credits: Credits,
}

impl FromRef<AppState> for Usage {
    fn from_ref(app: &AppState) -> Usage {
        Usage {
            store: app.store.clone(),
            reports: app.reports.clone(),
            publisher: app.publisher.clone(),
            credits: Credits::from_ref(app),
        }
    }
}

/// The credit accounts, as the limits service and Envoy see them.
#[derive(Clone)]
pub(super) struct Credits {
    pub(super) store: Store,
    pub(super) limits: Arc<Limits>,
    pub(super) publisher: Publisher,
}

impl FromRef<AppState> for Credits {
    fn from_ref(app: &AppState) -> Credits {
        Credits {
            store: app.store.clone(),
            limits: app.limits.clone(),
            publisher: app.publisher.clone(),
        }
    }
}

impl Credits {
    /// After a credit account changed: its balance to the limits service, and the keys it
    /// meters to Envoy.
    pub(super) async fn changed(&self, user: &str) -> Result<(), ApiError> {
        let account = self.store.get_account(user).await?;
        self.limits
            .balances_changed(&[(account.user, account.balance_micros)])
            .await;
        self.publisher.publish().await?;
        Ok(())
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(requests))
        .routes(routes!(prices))
        .routes(routes!(put_price, delete_price))
        .routes(routes!(accounts))
        .routes(routes!(account))
        .routes(routes!(ledger))
        .routes(routes!(add_entry))
        .routes(routes!(set_rules))
        .routes(routes!(usage_report))
        .routes(routes!(provider_series))
}

/// Query parameters, all optional; parsed here so that a bad one is a JSON error.
type Params = ApiQuery<std::collections::HashMap<String, String>>;

/// A user may read their own account and usage; admins anyone's.
fn may_read(p: &Principal, user: &str) -> Result<(), ApiError> {
    if p.may_act_for(user) {
        Ok(())
    } else {
        Err(ApiError::NotFound("not found".into()))
    }
}

fn int_param(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("`{name}` must be an integer")))
        })
        .transpose()
}

/// A page boundary: the last row's (time, id), opaque to clients.
fn encode_cursor(at_ms: i64, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{at_ms}:{id}"))
}

fn decode_cursor(cursor: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::BadRequest("`cursor` is not a cursor this API returned".into());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    Ok((at.parse().map_err(|_| bad())?, id.to_owned()))
}

fn limit(params: &Params) -> Result<i64, ApiError> {
    let limit = int_param(params, "limit")?.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::BadRequest("`limit` must be 1 to 1000".into()));
    }
    Ok(limit)
}

/// The request log, newest first (users: their own requests).
#[utoipa::path(get, path = "/requests", tag = "usage",
    params(
        ("from" = Option<i64>, Query, description = "Unix milliseconds"),
        ("to" = Option<i64>, Query, description = "Unix milliseconds"),
        ("key" = Option<String>, Query, description = "Gateway key id"),
        ("user" = Option<String>, Query),
        ("model" = Option<String>, Query),
        ("provider" = Option<String>, Query),
        ("status" = Option<String>, Query, description = "A code (`429`) or a class (`5xx`)"),
        ("limit" = Option<i64>, Query, description = "1 to 1000 (100)"),
        ("cursor" = Option<String>, Query, description = "The previous page's `next_cursor`"),
    ),
    responses((status = 200, description = "`data` (request records) and `next_cursor`", body = Object), Errors))]
async fn requests(
    Caller(p): Caller,
    State(state): State<Usage>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = match params.0.get("user") {
        Some(u) if !p.may_act_for(u) => {
            return Err(ApiError::Forbidden("users see their own requests".into()))
        }
        Some(u) => Some(u.clone()),
        None if p.is_admin() => None,
        None => Some(p.name.clone()),
    };
    let status = match params.get("status").map(String::as_str) {
        None => None,
        Some(s) if s.len() == 3 && s.ends_with("xx") => {
            let class = s[..1]
                .parse::<i64>()
                .ok()
                .filter(|c| (1..=5).contains(c))
                .ok_or_else(|| ApiError::BadRequest("`status` class must be 1xx to 5xx".into()))?;
            Some((class * 100, class * 100 + 99))
        }
        Some(s) => {
            let code = s.parse::<i64>().map_err(|_| {
                ApiError::BadRequest("`status` must be a code or a class like 5xx".into())
            })?;
            Some((code, code))
        }
    };
    let query = RequestQuery {
        from_ms: int_param(&params, "from")?,
        to_ms: int_param(&params, "to")?,
        key_id: params.get("key").cloned(),
        user,
        model: params.get("model").cloned(),
        provider: params.get("provider").cloned(),
        status,
        before: params.get("cursor").map(|c| decode_cursor(c)).transpose()?,
        limit: limit(&params)?,
    };
    let rows = state.store.list_requests(&query).await?;
    let next = (rows.len() as i64 == query.limit)
        .then(|| rows.last().map(|r| encode_cursor(r.at_ms, &r.request_id)))
        .flatten();
    Ok(Json(json!({"data": rows, "next_cursor": next})))
}

pub(super) fn price_json(
    provider: &str,
    model: &str,
    p: &Price,
    source: &str,
) -> serde_json::Value {
    let usd = |m: u64| m as f64 / 1e6;
    json!({
        "provider": provider,
        "model": model,
        "source": source,
        "input_micros": p.input,
        "output_micros": p.output,
        "cache_read_micros": p.cache_read,
        "cache_write_micros": p.cache_write,
        "reasoning_micros": p.reasoning,
        "input": usd(p.input),
        "output": usd(p.output),
    })
}

/// Every served (provider, model) with the price it is charged at: set by an administrator
/// (`source: "table"`), a well-known model's list price (`"default"`), or none (`"unpriced"`:
/// its requests carry no cost). Prices set for models not served are listed too.
#[utoipa::path(get, path = "/prices", tag = "usage",
    responses((status = 200, description = "`data`: prices in micro-USD per million tokens", body = Object), Errors))]
async fn prices(
    _: Caller,
    State(state): State<Usage>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let table = state.store.list_prices().await?;
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for row in &table {
        seen.insert((row.provider.clone(), row.model.clone()));
        out.push(price_json(&row.provider, &row.model, &row.price, "table"));
    }
    let served = state.publisher.served_models().await?;
    for (provider, model) in served {
        if seen.contains(&(provider.clone(), model.clone())) {
            continue;
        }
        match crate::pricing::default_price(&model) {
            Some(p) => out.push(price_json(&provider, &model, &p, "default")),
            None => out.push(json!({"provider": provider, "model": model, "source": "unpriced"})),
        }
    }
    Ok(Json(json!({ "data": out })))
}

/// A price in USD per million tokens (as in the config file).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PriceInput {
    input: f64,
    output: f64,
    #[serde(default)]
    cache_read: Option<f64>,
    #[serde(default)]
    cache_write: Option<f64>,
    #[serde(default)]
    reasoning: Option<f64>,
}

fn price_micros(name: &str, usd: f64) -> Result<u64, ApiError> {
    crate::domain::usd_to_micros(usd)
        .filter(|m| (0..1_000_000_000_000).contains(m))
        .and_then(|m| u64::try_from(m).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "`{name}` must be between 0 and 1,000,000 USD per million tokens"
            ))
        })
}

/// Sets the price of a provider's model.
#[utoipa::path(put, path = "/prices/{provider}/{model}", tag = "usage",
    params(("provider" = String, Path), ("model" = String, Path, description = "May contain `/`")),
    request_body = PriceInput, responses((status = 200, body = Object), Errors))]
async fn put_price(
    _: AdminOnly,
    State(state): State<Usage>,
    ApiPath((provider, model)): ApiPath<(String, String)>,
    ApiJson(input): ApiJson<PriceInput>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let optional = |name: &str, v: Option<f64>| v.map(|v| price_micros(name, v)).transpose();
    let price = Price {
        input: price_micros("input", input.input)?,
        output: price_micros("output", input.output)?,
        cache_read: optional("cache_read", input.cache_read)?,
        cache_write: optional("cache_write", input.cache_write)?,
        reasoning: optional("reasoning", input.reasoning)?,
    };
    if provider.is_empty() || model.is_empty() {
        return Err(ApiError::BadRequest(
            "provider and model are required".into(),
        ));
    }
    state
        .store
        .put_price(&PriceRow {
            provider: provider.clone(),
            model: model.clone(),
            price,
        })
        .await?;
    prices_changed(&state).await?;
    Ok(Json(price_json(&provider, &model, &price, "table")))
}

/// Removes a price from the table (a well-known model falls back to its list price).
#[utoipa::path(delete, path = "/prices/{provider}/{model}", tag = "usage",
    params(("provider" = String, Path), ("model" = String, Path, description = "May contain `/`")),
    responses((status = 204, description = "Removed"), Errors))]
async fn delete_price(
    _: AdminOnly,
    State(state): State<Usage>,
    ApiPath((provider, model)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_price(&provider, &model).await?;
    prices_changed(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Prices reach the filter (each request's cost) and the cost figures routing ranks by.
async fn prices_changed(state: &Usage) -> Result<(), ApiError> {
    state.publisher.set_figures(state.reports.figures().await?);
    state.publisher.publish().await?;
    Ok(())
}

/// Every credit account.
#[utoipa::path(get, path = "/credits", tag = "credits",
    responses((status = 200, description = "`data`: accounts", body = Object), Errors))]
async fn accounts(
    _: AdminOnly,
    State(state): State<Usage>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(json!({ "data": state.store.list_accounts().await? })))
}

/// A user's credit account (users: their own).
#[utoipa::path(get, path = "/credits/{user}", tag = "credits", params(("user" = String, Path)),
    responses((status = 200, description = "The account", body = Object), Errors))]
async fn account(
    Caller(p): Caller,
    State(state): State<Usage>,
    ApiPath(user): ApiPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    may_read(&p, &user)?;
    Ok(Json(json!(state.store.get_account(&user).await?)))
}

/// A credit account's ledger, newest first (users: their own).
#[utoipa::path(get, path = "/credits/{user}/ledger", tag = "credits",
    params(("user" = String, Path),
        ("limit" = Option<i64>, Query, description = "1 to 1000 (100)"),
        ("cursor" = Option<String>, Query, description = "The previous page's `next_cursor`")),
    responses((status = 200, description = "`data` (entries) and `next_cursor`", body = Object), Errors))]
async fn ledger(
    Caller(p): Caller,
    State(state): State<Usage>,
    ApiPath(user): ApiPath<String>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    may_read(&p, &user)?;
    let limit = limit(&params)?;
    let before = params.get("cursor").map(|c| decode_cursor(c)).transpose()?;
    state.store.get_account(&user).await?;
    let entries = state.store.ledger(&user, before, limit).await?;
    let next = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| encode_cursor(e.at_ms, &e.id)))
        .flatten();
    Ok(Json(json!({"data": entries, "next_cursor": next})))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EntryInput {
    amount_micros: i64,
    /// `topup` (positive) or `adjustment` (either sign).
    kind: String,
    #[serde(default)]
    note: String,
}

/// A top-up or an adjustment; opens the account if needed.
#[utoipa::path(post, path = "/credits/{user}/entries", tag = "credits", params(("user" = String, Path)),
    request_body = EntryInput, responses((status = 201, description = "The account after the entry", body = Object), Errors))]
async fn add_entry(
    _: AdminOnly,
    State(state): State<Usage>,
    ApiPath(user): ApiPath<String>,
    ApiJson(input): ApiJson<EntryInput>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    match input.kind.as_str() {
        "topup" if input.amount_micros <= 0 => {
            return Err(ApiError::BadRequest("a top-up must be positive".into()))
        }
        "topup" | "adjustment" => {}
        _ => {
            return Err(ApiError::BadRequest(
                "`kind` must be `topup` or `adjustment`".into(),
            ))
        }
    }
    if input.amount_micros == 0 || input.amount_micros.unsigned_abs() > 1_000_000_000_000_000 {
        return Err(ApiError::BadRequest(
            "`amount_micros` must be non-zero and at most a billion USD".into(),
        ));
    }
    if input.note.len() > 500 {
        return Err(ApiError::BadRequest("`note` is at most 500 bytes".into()));
    }
    let account = state
        .store
        .credit(&user, input.amount_micros, &input.kind, &input.note)
        .await?;
    state.credits.changed(&user).await?;
    Ok((StatusCode::CREATED, Json(json!(account))))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RulesInput {
    #[serde(default)]
    low_balance_micros: Option<i64>,
    #[serde(default)]
    topup_below_micros: Option<i64>,
    #[serde(default)]
    topup_amount_micros: Option<i64>,
}

/// Low-balance threshold and automatic top-up (both or neither of `topup_below_micros` and
/// `topup_amount_micros`).
#[utoipa::path(put, path = "/credits/{user}/rules", tag = "credits", params(("user" = String, Path)),
    request_body = RulesInput, responses((status = 200, description = "The account", body = Object), Errors))]
async fn set_rules(
    _: AdminOnly,
    State(state): State<Usage>,
    ApiPath(user): ApiPath<String>,
    ApiJson(input): ApiJson<RulesInput>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if input.topup_below_micros.is_some() != input.topup_amount_micros.is_some() {
        return Err(ApiError::BadRequest(
            "`topup_below_micros` and `topup_amount_micros` go together".into(),
        ));
    }
    if input.topup_amount_micros.is_some_and(|a| a <= 0) {
        return Err(ApiError::BadRequest(
            "`topup_amount_micros` must be positive".into(),
        ));
    }
    let rules = AccountRules {
        low_balance_micros: input.low_balance_micros,
        topup_below_micros: input.topup_below_micros,
        topup_amount_micros: input.topup_amount_micros,
    };
    let account = state.store.set_account_rules(&user, &rules).await?;
    state.credits.changed(&user).await?;
    Ok(Json(json!(account)))
}

/// Latest time a report may name: the year 9999, in Unix ms.
const MAX_TIME_MS: i64 = 253_402_300_800_000;

/// The report range: `from`/`to` in Unix ms, by default the last 24 hours.
fn range(params: &Params) -> Result<(i64, i64), ApiError> {
    let now = crate::store::now_ms();
    let to = int_param(params, "to")?.unwrap_or(now + 1);
    let day_before = to.saturating_sub(86_400_000).max(0);
    let from = int_param(params, "from")?.unwrap_or(day_before);
    if !(0..=MAX_TIME_MS).contains(&from) || !(0..=MAX_TIME_MS).contains(&to) {
        return Err(ApiError::BadRequest(
            "`from` and `to` are Unix milliseconds between 1970 and 9999".into(),
        ));
    }
    if from >= to {
        return Err(ApiError::BadRequest("`from` must be before `to`".into()));
    }
    Ok((from, to))
}

/// Requests, errors, tokens and cost per group (users: over their own requests).
#[utoipa::path(get, path = "/reports/usage", tag = "usage",
    params(("group_by" = Option<String>, Query, description = "day (default), key, user, model or provider"),
        ("from" = Option<i64>, Query, description = "Unix milliseconds (24 hours before `to`)"),
        ("to" = Option<i64>, Query, description = "Unix milliseconds (now)")),
    responses((status = 200, description = "`from`, `to` and `data`", body = Object), Errors))]
async fn usage_report(
    Caller(p): Caller,
    State(state): State<Usage>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let group = match params.get("group_by").map(String::as_str).unwrap_or("day") {
        "day" => ReportGroup::Day,
        "key" => ReportGroup::Key,
        "user" => ReportGroup::User,
        "model" => ReportGroup::Model,
        "provider" => ReportGroup::Provider,
        _ => {
            return Err(ApiError::BadRequest(
                "`group_by` is one of day, key, user, model, provider".into(),
            ))
        }
    };
    let (from, to) = range(&params)?;
    let only = (!p.is_admin()).then_some(p.name.as_str());
    let rows = state.store.usage_report(group, from, to, only).await?;
    Ok(Json(json!({"from": from, "to": to, "data": rows})))
}

/// Most requests a time series is computed from.
const SERIES_MAX_ROWS: i64 = 500_000;

/// Per provider and bucket: requests, errors, and p50/p95/p99 of latency, time to first token
/// and time to the provider's first byte.
#[utoipa::path(get, path = "/reports/providers", tag = "usage",
    params(("from" = Option<i64>, Query, description = "Unix milliseconds"),
        ("to" = Option<i64>, Query, description = "Unix milliseconds"),
        ("bucket_secs" = Option<i64>, Query, description = "1 to 86400 (60)")),
    responses((status = 200, description = "`data`: points", body = Object), Errors))]
async fn provider_series(
    _: AdminOnly,
    State(state): State<Usage>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (from, to) = range(&params)?;
    let bucket = int_param(&params, "bucket_secs")?.unwrap_or(60);
    if !(1..=86_400).contains(&bucket) || (to - from) / (bucket * 1_000) > 10_000 {
        return Err(ApiError::BadRequest(
            "`bucket_secs` must be 1 to 86400, at most 10,000 buckets in the range".into(),
        ));
    }
    match state
        .store
        .provider_series(from, to, bucket * 1_000, SERIES_MAX_ROWS)
        .await?
    {
        Some(points) => Ok(Json(
            json!({"from": from, "to": to, "bucket_secs": bucket, "data": points}),
        )),
        None => Err(ApiError::BadRequest(format!(
            "more than {SERIES_MAX_ROWS} requests in the range; narrow it"
        ))),
    }
}
