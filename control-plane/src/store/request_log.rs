//! The request log: every request's record as stored (see [`super::ingest`] for how records
//! are written), queried newest first.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::{Backend, Result, Store};

/// One request as the log keeps it. Times are Unix milliseconds, money micro-USD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestRow {
    pub request_id: String,
    pub at_ms: i64,
    /// The client API (`chat.completions`, `messages`, `embeddings`, ...).
    pub api: String,
    pub status: i64,
    /// The gateway's error code when the gateway refused the request.
    pub error: String,
    pub key_id: String,
    pub user: String,
    pub model: String,
    pub provider: String,
    pub upstream_model: String,
    pub attempts: i64,
    /// Targets tried before the one that answered (`provider/model`).
    pub failed: Vec<String>,
    pub stream: bool,
    pub complete: bool,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    /// `None`: no price known for the model.
    pub cost_micros: Option<i64>,
    pub duration_ms: Option<i64>,
    /// Time to the provider's first byte.
    pub upstream_ms: Option<i64>,
    /// Time to the first streamed bytes.
    pub ttft_ms: Option<i64>,
}

pub(super) const REQUEST_COLUMNS: &str = "request_id, at_ms, api, status, error, key_id, user_name, model, provider, \
     upstream_model, attempts, failed, stream, complete, prompt_tokens, completion_tokens, \
     cached_tokens, cache_write_tokens, reasoning_tokens, cost_micros, duration_ms, upstream_ms, ttft_ms";
pub(super) const REQUEST_COLUMN_COUNT: usize = 23;
/// The head of a multi-row INSERT of [`REQUEST_COLUMNS`] (see [`multi_row_sql`]).
pub(super) const INSERT_REQUESTS: &str =
    "INSERT INTO request_log (request_id, at_ms, api, status, \
     error, key_id, user_name, model, provider, upstream_model, attempts, failed, stream, \
     complete, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, \
     reasoning_tokens, cost_micros, duration_ms, upstream_ms, ttft_ms) VALUES";
/// Filters of a request log query; rows come newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestQuery {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    /// An exact status, or a class: `(lowest, highest)`.
    pub status: Option<(i64, i64)>,
    /// Rows strictly older than this (at_ms, request_id): the previous page's last row.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

/// `$from, $from+1, ...`: `count` numbered placeholders.
pub(super) fn placeholders(from: usize, count: usize) -> String {
    let mut out = String::with_capacity(count * 5);
    for i in from..from + count {
        if i > from {
            out.push_str(", ");
        }
        out.push('$');
        out.push_str(itoa(i).as_str());
    }
    out
}

fn itoa(i: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(6);
    let _ = write!(s, "{i}");
    s
}

/// A multi-row INSERT: `head` (up to `VALUES`), `rows` tuples of `columns` placeholders, then
/// `tail`. Built once per shape and kept (the statements of a batch repeat): building it took
/// a fifth of the ingest's CPU on PostgreSQL. On SQLite the placeholders are plain `?`, bound
/// in order: SQLite looks a numbered one up by its name, in time that grows with the number of
/// parameters (with 20-row statements that lookup was 28 % of the ingest's CPU).
pub(super) fn multi_row_sql(
    backend: Backend,
    head: &'static str,
    tail: &'static str,
    rows: usize,
    columns: usize,
) -> std::sync::Arc<str> {
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, Mutex};
    // The tail is part of the shape: one head may end in several ways (with and without
    // `RETURNING`).
    type Key = (Backend, &'static str, &'static str, usize);
    static BUILT: LazyLock<Mutex<HashMap<Key, Arc<str>>>> = LazyLock::new(Mutex::default);
    let key = (backend, head, tail, rows);
    if let Some(sql) = BUILT.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return sql;
    }
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * columns * 5);
    sql.push_str(head);
    for i in 0..rows {
        sql.push_str(if i == 0 { " (" } else { ", (" });
        match backend {
            Backend::Sqlite => {
                for c in 0..columns {
                    sql.push_str(if c == 0 { "?" } else { ", ?" });
                }
            }
            Backend::Postgres => sql.push_str(&placeholders(i * columns + 1, columns)),
        }
        sql.push(')');
    }
    sql.push_str(tail);
    let sql: Arc<str> = sql.into();
    if let Ok(mut m) = BUILT.lock() {
        // Shapes are bounded (a few statements, rows up to their chunk size); a safety cap.
        if m.len() < 4_096 {
            m.insert(key, sql.clone());
        }
    }
    sql
}

impl Store {
    /// Requests matching `q`, newest first.
    pub async fn list_requests(&self, q: &RequestQuery) -> Result<Vec<RequestRow>> {
        enum Bind {
            Int(i64),
            Text(String),
        }
        let mut sql = format!("SELECT {REQUEST_COLUMNS} FROM request_log WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        // `?` in a clause is the next placeholder.
        let mut clause = |sql: &mut String, text: &str, values: Vec<Bind>| {
            let mut out = String::with_capacity(text.len() + 8);
            let mut values = values.into_iter();
            for part in text.split_inclusive('?') {
                match part.strip_suffix('?') {
                    Some(head) => {
                        out.push_str(head);
                        binds.extend(values.next());
                        out.push_str(&format!("${}", binds.len()));
                    }
                    None => out.push_str(part),
                }
            }
            sql.push_str(&out);
        };
        if let Some(v) = q.from_ms {
            clause(&mut sql, " AND at_ms >= ?", vec![Bind::Int(v)]);
        }
        if let Some(v) = q.to_ms {
            clause(&mut sql, " AND at_ms < ?", vec![Bind::Int(v)]);
        }
        if let Some((lo, hi)) = q.status {
            clause(
                &mut sql,
                " AND status >= ? AND status <= ?",
                vec![Bind::Int(lo), Bind::Int(hi)],
            );
        }
        for (column, value) in [
            ("key_id", &q.key_id),
            ("user_name", &q.user),
            ("model", &q.model),
            ("provider", &q.provider),
        ] {
            if let Some(v) = value {
                clause(
                    &mut sql,
                    &format!(" AND {column} = ?"),
                    vec![Bind::Text(v.clone())],
                );
            }
        }
        if let Some((at, id)) = &q.before {
            clause(
                &mut sql,
                " AND (at_ms < ? OR (at_ms = ? AND request_id < ?))",
                vec![Bind::Int(*at), Bind::Int(*at), Bind::Text(id.clone())],
            );
        }
        clause(
            &mut sql,
            " ORDER BY at_ms DESC, request_id DESC LIMIT ?",
            vec![Bind::Int(q.limit.clamp(1, 1000))],
        );
        let mut query = sqlx::query(&sql);
        for b in binds {
            query = match b {
                Bind::Int(v) => query.bind(v),
                Bind::Text(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(request_from).collect()
    }
}

fn request_from(r: &AnyRow) -> Result<RequestRow> {
    Ok(RequestRow {
        request_id: r.try_get("request_id")?,
        at_ms: r.try_get("at_ms")?,
        api: r.try_get("api")?,
        status: r.try_get("status")?,
        error: r.try_get("error")?,
        key_id: r.try_get("key_id")?,
        user: r.try_get("user_name")?,
        model: r.try_get("model")?,
        provider: r.try_get("provider")?,
        upstream_model: r.try_get("upstream_model")?,
        attempts: r.try_get("attempts")?,
        failed: {
            let text: String = r.try_get("failed")?;
            if text.is_empty() {
                Vec::new()
            } else {
                super::parse_json("failed targets", &text)?
            }
        },
        stream: r.try_get::<i64, _>("stream")? != 0,
        complete: r.try_get::<i64, _>("complete")? != 0,
        prompt_tokens: r.try_get("prompt_tokens")?,
        completion_tokens: r.try_get("completion_tokens")?,
        cached_tokens: r.try_get("cached_tokens")?,
        cache_write_tokens: r.try_get("cache_write_tokens")?,
        reasoning_tokens: r.try_get("reasoning_tokens")?,
        cost_micros: r.try_get("cost_micros")?,
        duration_ms: r.try_get("duration_ms")?,
        upstream_ms: r.try_get("upstream_ms")?,
        ttft_ms: r.try_get("ttft_ms")?,
    })
}

/// Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
