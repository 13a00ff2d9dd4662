//! Request records from the data plane. Each Envoy worker's filter sends its records in
//! batches of JSON lines (`POST /switchyard.v1/records` on the xDS port, over the cluster
//! Envoy already has to the control plane) and keeps each batch until it is answered 200.
//! Here batches from all Envoys are written together (group commit): the answer goes out
//! only once the rows are committed, and a request id already stored is skipped, so a batch
//! sent twice (the answer was lost, the control plane restarted) counts once.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use switchyard_contract::record::{self, RequestRecord};
use switchyard_contract::{ids, sealed};
use tokio::sync::{mpsc, oneshot};

use crate::health::Health;
use crate::limits::Limits;
use crate::metrics::{add, METRICS};
use crate::store::{RequestRow, Store};

/// Most rows written in one transaction.
const MAX_ROWS_PER_COMMIT: usize = 5_000;
/// Batches waiting for the writer, beyond which senders wait (and Envoy keeps its records).
const QUEUE: usize = 64;
/// Largest batch accepted (the filter sends at most 4 MiB).
const MAX_BODY: usize = 16 << 20;

/// A record as a row, or `None` when it cannot be one (an id that is not plain, a time the
/// store cannot hold).
fn into_row(r: RequestRecord) -> Option<RequestRow> {
    if r.id.is_empty() || !ids::is_plain(&r.id) {
        return None;
    }
    let at_ms = i64::try_from(r.at).ok()?;
    // Counts read from a record are at most `i64::MAX` (see `RequestRecord`).
    let count = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Some(RequestRow {
        request_id: r.id,
        at_ms,
        api: r.api,
        status: i64::from(r.status),
        error: r.error,
        key_id: r.key,
        user: r.user,
        model: r.model,
        provider: r.provider,
        upstream_model: r.upstream_model,
        attempts: count(r.attempts),
        failed: r.failed,
        stream: r.stream,
        complete: r.complete,
        prompt_tokens: count(r.prompt_tokens),
        completion_tokens: count(r.completion_tokens),
        cached_tokens: count(r.cached_tokens),
        cache_write_tokens: count(r.cache_write_tokens),
        reasoning_tokens: count(r.reasoning_tokens),
        cost_micros: r.cost_micros.map(count),
        duration_ms: r.duration_ms.map(count),
        upstream_ms: r.upstream_ms.map(count),
        ttft_ms: r.ttft_ms.map(count),
    })
}

/// The rows of a batch, and how many lines were not records (logged and left out: sending
/// them again would not make them records).
pub fn parse(body: &[u8]) -> (Vec<RequestRow>, usize) {
    // One record a line: room for them all at once (not moved again as the vector grows).
    let mut rows = Vec::with_capacity(record::batch_lines(body));
    let mut bad = 0;
    for record in record::read_batch(body) {
        match record.ok().and_then(into_row) {
            Some(row) => rows.push(row),
            None => bad += 1,
        }
    }
    (rows, bad)
}

struct Job {
    rows: Vec<RequestRow>,
    done: oneshot::Sender<Result<usize, ()>>,
}

/// The writer of request records (see the module documentation).
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
}

impl Ingest {
    /// Starts the writer (on the current Tokio runtime).
    pub fn start(store: Store, health: Arc<Health>, limits: Arc<Limits>) -> Ingest {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(rx, store, health, limits));
        Ingest { tx }
    }

    /// Stores rows; returns how many were new, once they are committed.
    pub async fn submit(&self, rows: Vec<RequestRow>) -> Result<usize, ()> {
        let (done, answer) = oneshot::channel();
        self.tx.send(Job { rows, done }).await.map_err(|_| ())?;
        answer.await.map_err(|_| ())?
    }
}

async fn writer(
    mut rx: mpsc::Receiver<Job>,
    store: Store,
    health: Arc<Health>,
    limits: Arc<Limits>,
) {
    while let Some(first) = rx.recv().await {
        // Everything waiting goes into one transaction.
        let mut jobs = vec![first];
        let mut count = jobs[0].rows.len();
        while count < MAX_ROWS_PER_COMMIT {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.rows.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let mut rows = Vec::with_capacity(count);
        let mut ends = Vec::with_capacity(jobs.len());
        let mut answers = Vec::with_capacity(jobs.len());
        for job in jobs {
            rows.extend(job.rows);
            ends.push(rows.len());
            answers.push(job.done);
        }
        let started = std::time::Instant::now();
        let result = store.ingest(&rows).await;
        add(
            &METRICS.ingest_micros,
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        );
        match result {
            Ok(outcome) => {
                let new = outcome.inserted.iter().filter(|n| **n).count() as u64;
                add(&METRICS.ingest_commits, 1);
                add(&METRICS.records_stored, new);
                add(&METRICS.records_duplicate, rows.len() as u64 - new);
                let now = crate::store::now();
                health.record_all(
                    rows.iter()
                        .zip(&outcome.inserted)
                        .filter(|(_, new)| **new)
                        .map(|(row, _)| row),
                    now,
                );
                let mut start = 0;
                for (end, answer) in ends.into_iter().zip(answers) {
                    let new = outcome.inserted[start..end].iter().filter(|n| **n).count();
                    let _ = answer.send(Ok(new));
                    start = end;
                }
                // Balances move, then the costs now in them stop counting as unsettled (in
                // this order a cost is counted twice for a moment, never not at all).
                limits.balances_changed(&outcome.balances).await;
                limits.settled(&outcome.debited, now).await;
            }
            Err(e) => {
                add(&METRICS.ingest_failures, 1);
                tracing::error!(rows = rows.len(), "request records not stored: {e}");
                for answer in answers {
                    let _ = answer.send(Err(()));
                }
            }
        }
    }
}

/// The records endpoint, served beside xDS. With a data plane key, each batch must carry its
/// signature under that key (see `switchyard_contract::sealed`): nobody else who
/// reaches the port writes records, and so debits.
pub fn router(ingest: Ingest, dataplane_key: Option<[u8; 32]>) -> Router {
    Router::new()
        .route(record::PATH, post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state((ingest, dataplane_key))
}

async fn receive(
    State((ingest, key)): State<(Ingest, Option<[u8; 32]>)>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    if let Some(key) = &key {
        let signed = headers
            .get(sealed::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|sig| sealed::verify_records(key, &body, sig));
        if !signed {
            add(&METRICS.records_unsigned, 1);
            tracing::warn!("a batch of request records without a valid signature was refused");
            return (
                StatusCode::UNAUTHORIZED,
                Json(
                    serde_json::json!({"error": "records must be signed with the data plane key"}),
                ),
            );
        }
    }
    let (rows, bad) = parse(&body);
    add(&METRICS.records_rejected, bad as u64);
    if bad > 0 {
        tracing::warn!(
            lines = bad,
            "request records that do not parse were left out"
        );
    }
    let total = rows.len();
    match ingest.submit(rows).await {
        Ok(new) => {
            if new < total {
                // Sent again after a lost answer or a restart: stored before, skipped now.
                tracing::info!(records = total - new, "request records already stored");
            }
            (
                StatusCode::OK,
                Json(
                    serde_json::json!({"stored": new, "duplicates": total - new, "rejected": bad}),
                ),
            )
        }
        Err(()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"error": "records not stored; send them again"})),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_bad_lines_are_counted() {
        let body = br#"{"id":"a1","at":1700000000000,"api":"chat.completions","status":200,"key":"key_1","user":"alice","model":"smart","provider":"p","upstream_model":"m","attempts":2,"failed":["q/n"],"stream":true,"complete":true,"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"cached_tokens":2,"cache_write_tokens":0,"reasoning_tokens":1,"cost_micros":42,"duration_ms":30,"upstream_ms":20,"ttft_ms":25}

not json
{"id":"has space","at":1}
{"id":"b2","at":1700000000001,"status":401,"error":"invalid_api_key"}
"#;
        let (rows, bad) = parse(body);
        assert_eq!(bad, 2);
        assert_eq!(rows.len(), 2);
        let a = &rows[0];
        assert_eq!(
            (a.request_id.as_str(), a.attempts, a.failed.as_slice()),
            ("a1", 2, ["q/n".to_string()].as_slice())
        );
        assert_eq!(
            (a.prompt_tokens, a.cost_micros, a.ttft_ms),
            (12, Some(42), Some(25))
        );
        assert_eq!(rows[1].error, "invalid_api_key");
        assert_eq!(rows[1].cost_micros, None);
    }

    /// With a data plane key, only batches signed with it are stored.
    #[tokio::test]
    async fn unsigned_or_forged_batches_are_refused() {
        use tower::ServiceExt as _;
        let store = Store::connect(&crate::test_support::sqlite_url())
            .await
            .unwrap();
        let limits = Arc::new(Limits::in_memory());
        let ingest = Ingest::start(store.clone(), Arc::default(), limits);
        let key = [9u8; 32];
        let app = router(ingest, Some(key));
        let body = br#"{"id":"r1","at":1700000000000,"status":200,"user":"u"}"#.to_vec();
        let post = |sig: Option<String>| {
            let mut req = axum::http::Request::builder()
                .method("POST")
                .uri(record::PATH);
            if let Some(sig) = sig {
                req = req.header(sealed::SIGNATURE_HEADER, sig);
            }
            req.body(axum::body::Body::from(body.clone())).unwrap()
        };
        let forged = sealed::sign_records(&[1u8; 32], &body);
        for req in [post(None), post(Some(forged)), post(Some("zz".into()))] {
            let resp = app.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        }
        let all = crate::store::RequestQuery {
            limit: 10,
            ..Default::default()
        };
        assert!(store.list_requests(&all).await.unwrap().is_empty());
        let signed = sealed::sign_records(&key, &body);
        let resp = app.clone().oneshot(post(Some(signed))).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
