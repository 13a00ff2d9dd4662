//! A whole exchange run natively: request in, forward or reply out, answer back, outcome.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::failover::FailoverAttempt;
use super::health::Subject;
use super::shared::Memory;
use super::*;
use crate::translate::ChunkOutcome;

fn index() -> Arc<Index> {
    let digest = hex::encode(Sha256::digest(b"sk-gw"));
    let config = format!(
        r#"{{"version":"1","max_body_bytes":65536,"record_state":true,
        "keys":[{{"id":"gk","digest":"{digest}","user":"u","models":["*"]}}],
        "providers":[
          {{"name":"oa","kind":"openai_compatible","cluster":"provider-oa","authority":"oa.test",
           "path_prefix":"/v1","auth_header":"authorization","auth_prefix":"Bearer ",
           "keys":[{{"id":"k1","secret":"sk-oa"}}]}},
          {{"name":"an","kind":"anthropic","cluster":"provider-an","authority":"an.test",
           "auth_header":"x-api-key","keys":[{{"id":"k2","secret":"sk-an"}}],
           "headers":[["anthropic-version","2023-06-01"]]}}],
        "models":[{{"name":"solo","targets":[{{"provider":"oa","model":"gpt-x"}}]}},
                  {{"name":"duo","targets":[{{"provider":"oa","model":"gpt-x"}},
                                           {{"provider":"an","model":"claude-x"}}],
                   "failover":["failover-2-0-duo","failover-2-1-duo"]}}]}}"#
    );
    Arc::new(Index::from_json(config.as_bytes(), None).expect("config"))
}

/// A configuration of one provider `p` with these keys (JSON objects) serving model `m` as `up`.
pub(super) fn one_provider(keys: &str) -> Index {
    let config = format!(
        r#"{{"version":"1","max_body_bytes":1,"providers":[{{"name":"p","kind":"openai_compatible",
        "cluster":"provider-p","authority":"p.test","auth_header":"authorization",
        "keys":[{keys}]}}],"models":[{{"name":"m","targets":[{{"provider":"p","model":"up"}}]}}]}}"#
    );
    Index::from_json(config.as_bytes(), None).expect("config")
}

/// What the exchange wrote into the request.
#[derive(Default)]
struct Written {
    body: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Outgoing for Written {
    fn set_body(&mut self, body: &[u8]) {
        self.body = Some(body.to_vec());
    }

    fn set_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.headers
            .push((name.to_owned(), value.map(<[u8]>::to_vec)));
    }
}

impl Written {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

fn request(path: &str, extra: &[(&str, &[u8])]) -> HeaderBlock {
    let mut pairs: Vec<(&str, &[u8])> = vec![
        (":method", b"POST"),
        (":path", path.as_bytes()),
        ("authorization", b"Bearer sk-gw"),
    ];
    pairs.extend_from_slice(extra);
    HeaderBlock::from_pairs(&pairs)
}

/// Runs a request through the exchange to its forward or reply.
fn send(ex: &mut Exchange, path: &str, body: &[u8], shared: &Memory) -> (Step, Written) {
    let step = ex.request_headers(shared.now_ns(), "id-1".into(), request(path, &[]), false);
    assert_eq!(step, Step::Pause, "waits for the body");
    let mut out = Written::default();
    let step = ex.request_body(
        body.len(),
        true,
        || body.to_vec(),
        &Cooldowns::default(),
        shared,
        &mut out,
    );
    (step, out)
}

#[test]
fn a_request_is_routed_written_out_and_its_usage_recorded() {
    let shared = Memory::at(1_000);
    let mut ex = Exchange::new(Some(index()));
    let body = br#"{"model":"solo","messages":[{"role":"user","content":"Hi"}]}"#;
    let (step, out) = send(&mut ex, "/v1/chat/completions", body, &shared);
    assert_eq!(step, Step::Continue);
    assert!(ex.plan().is_none(), "one target: no failover");
    assert_eq!(
        out.header("x-switchyard-cluster"),
        Some(&b"provider-oa"[..])
    );
    assert_eq!(out.header("authorization"), Some(&b"Bearer sk-oa"[..]));
    let sent: serde_json::Value = serde_json::from_slice(out.body.as_ref().unwrap()).unwrap();
    assert_eq!(sent["model"], "gpt-x");

    let head = HeaderBlock::from_pairs(&[
        (":status", b"200"),
        ("content-type", b"application/json"),
        ("set-cookie", b"x"),
    ]);
    let h = ex.response_headers(&head, || Some(b"via_upstream".to_vec()), &shared);
    assert!(!h.pause);
    let map = h.map(&head).expect("headers change");
    assert!(map.contains(&("x-request-id", &b"id-1"[..])));
    assert!(!map.iter().any(|(n, _)| *n == "set-cookie"));

    assert!(ex.reads_chunks());
    let answer =
        br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
    let chunk = ex.response_body(answer.to_vec(), answer.len(), true, &shared);
    assert_eq!(chunk.body, ChunkOutcome::Unchanged);
    assert!(chunk.headers.is_empty() && !chunk.pause);

    let outcome = ex.finish(|| 200, &shared);
    assert_eq!(outcome.status, 200);
    assert_eq!(outcome.counts.prompt_tokens, 3);
    assert!(outcome.lease_end.is_none(), "the key is not limited");
    let record: serde_json::Value =
        serde_json::from_str(outcome.record.as_deref().unwrap()).unwrap();
    assert_eq!(record["model"], "solo");
    assert_eq!(record["provider"], "oa");
    assert_eq!(record["total_tokens"], 7);
    assert!(outcome.record_to_state && !outcome.record_to_outbox);
    let index = index();
    assert!(outcome
        .observations
        .iter()
        .any(|o| o.subject == Subject::Target(index.key_of(0, "gpt-x")) && o.status == 200));

    // Each histogram sample is one of the series the configuration defines up front.
    let mut defined = std::collections::HashSet::new();
    let mut name = String::new();
    histogram::every_series(&index, |n, labels| {
        histogram::full_name(&mut name, n, labels);
        defined.insert(name.clone());
    });
    assert_eq!(
        defined.len(),
        2 * 10 + 1,
        "two targets' series and the overhead"
    );
    let mut samples = Vec::new();
    ex.samples(outcome.status, outcome.end_ns, |n, labels, _| {
        histogram::full_name(&mut name, n, labels);
        samples.push(name.clone());
    });
    assert!(samples.contains(
        &"gen_ai_client_operation_duration_ms;provider=oa;model=gpt-x;status=2xx".to_string()
    ));
    for sample in &samples {
        assert!(defined.contains(sample), "{sample} is not defined up front");
    }
    // A separator inside a value cannot start a label of its own.
    histogram::full_name(&mut name, "m", &[("provider", "a;b=c"), ("model", "gpt")]);
    assert_eq!(name, "m;provider=a_b_c;model=gpt");
}

#[test]
fn refusals_answer_in_the_clients_shape() {
    let shared = Memory::at(1_000);
    for (path, anthropic) in [("/v1/chat/completions", false), ("/v1/messages", true)] {
        let mut ex = Exchange::new(Some(index()));
        let body = br#"{"model":"nope","max_tokens":5,"messages":[]}"#;
        let (step, out) = send(&mut ex, path, body, &shared);
        let Step::Reply(reply) = step else {
            panic!("refused: {step:?}")
        };
        assert!(out.headers.is_empty() && out.body.is_none(), "nothing sent");
        assert_eq!(reply.status, 404);
        let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(v["type"] == "error", anthropic, "{v}");
        let outcome = ex.finish(|| unreachable!("a local reply's status is known"), &shared);
        assert_eq!(outcome.status, 404);
        assert!(outcome.counts.gateway_error);
        assert!(outcome.observations.is_empty());
    }
}

#[test]
fn an_anthropic_client_of_a_failover_attempt_gets_anthropic_errors() {
    let shared = Memory::at(1_000);
    let mut ex = Exchange::new(Some(index()));
    let body = br#"{"model":"duo","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}"#;
    let (step, out) = send(&mut ex, "/v1/messages", body, &shared);
    assert_eq!(step, Step::Continue);
    let plan = ex.plan().expect("several targets: a plan").clone();
    let cluster = out.header("x-switchyard-cluster").unwrap();
    assert!(cluster.starts_with(b"failover-2-"));
    // The attempt at the target the downstream role did not choose is prepared again.
    let other = if plan.primary == 0 {
        &b"an/claude-x"[..]
    } else {
        &b"oa/gpt-x"[..]
    };
    let (mut attempt, step) = FailoverAttempt::start(plan.clone(), other).expect("known target");
    assert_eq!(step, Step::Pause);
    let reply = attempt.request_trailers().expect("refused unprepared");
    assert_eq!(reply.status, 400);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // Its answer counts towards its target, and the downstream role sees the attempt.
    let seen = attempt.answered(503);
    assert!(!seen.is_empty());
    assert_eq!(plan.attempts().len(), 1);
}

#[test]
fn a_failover_attempt_to_another_provider_is_rewritten_for_it() {
    let shared = Memory::at(1_000);
    let mut ex = Exchange::new(Some(index()));
    let body = br#"{"model":"duo","messages":[{"role":"user","content":"Hi"}]}"#;
    let (_, _) = send(&mut ex, "/v1/chat/completions", body, &shared);
    let plan = ex.plan().expect("a plan").clone();
    let (other, provider_auth) = if plan.primary == 0 {
        (&b"an/claude-x"[..], "x-api-key")
    } else {
        (&b"oa/gpt-x"[..], "authorization")
    };
    let (mut attempt, _) = FailoverAttempt::start(plan.clone(), other).expect("known target");
    let mut out = Written::default();
    let current = || request("/v1/chat/completions", &[("x-api-key", b"stale")]);
    let step = attempt
        .request_body(true, current, &Cooldowns::default(), &shared, &mut out)
        .expect("prepared");
    assert_eq!(step, Step::Continue);
    assert!(out.header(provider_auth).is_some());
    assert!(out.body.is_some());
    // The downstream role takes the switched attempt's target when the answer comes.
    let head =
        HeaderBlock::from_pairs(&[(":status", b"200"), ("content-type", b"application/json")]);
    ex.response_headers(&head, || Some(b"via_upstream".to_vec()), &shared);
    let outcome = ex.finish(|| 200, &shared);
    let record: serde_json::Value =
        serde_json::from_str(outcome.record.as_deref().unwrap()).unwrap();
    assert_ne!(
        record["provider"],
        if plan.primary == 0 { "oa" } else { "an" }
    );
}

/// An answer the gateway cannot pass on is the provider's fault whatever its status said: the
/// client gets the gateway's 502, the record says 502, and the target's health hears a failure.
#[test]
fn a_provider_fault_counts_against_its_target() {
    let shared = Memory::at(1_000);
    let mut ex = Exchange::new(Some(index()));
    let body = br#"{"model":"solo","messages":[{"role":"user","content":"Hi"}]}"#;
    let (step, _) = send(&mut ex, "/v1/chat/completions", body, &shared);
    assert_eq!(step, Step::Continue);
    let head = HeaderBlock::from_pairs(&[
        (":status", b"200"),
        ("content-type", b"application/json"),
        ("content-encoding", b"gzip"),
    ]);
    let h = ex.response_headers(&head, || Some(b"via_upstream".to_vec()), &shared);
    let map = h.map(&head).expect("headers change");
    assert!(map.contains(&(":status", &b"502"[..])), "{map:?}");
    let chunk = ex.response_body(b"\x1f\x8b".to_vec(), 2, true, &shared);
    let ChunkOutcome::Replace(sent) = chunk.body else {
        panic!("the compressed bytes must not pass")
    };
    let v: serde_json::Value = serde_json::from_slice(&sent).unwrap();
    assert_eq!(v["error"]["code"], "provider_encoding");

    // Envoy saw the provider's 200; the outcome goes by the fault.
    let outcome = ex.finish(|| 200, &shared);
    assert_eq!(outcome.status, 502);
    let target = Subject::Target(index().key_of(0, "gpt-x"));
    assert!(
        outcome
            .observations
            .iter()
            .any(|o| o.subject == target && o.status == 502),
        "{:?}",
        outcome.observations
    );
    // A client's mistake never does (see refusals_answer_in_the_clients_shape).
}

/// The response's code comes from the headers this filter passed when the whole answer went
/// through it; Envoy is asked only when it did not (a reset, or an answer with no body).
#[test]
fn the_status_sent_is_known_without_asking_envoy_once_the_answer_ended() {
    let shared = Memory::at(1_000);
    let answered = |ended: bool, status: &[u8], envoy_says: u32| {
        let mut ex = Exchange::new(Some(index()));
        let body = br#"{"model":"solo","messages":[{"role":"user","content":"Hi"}]}"#;
        let (step, _) = send(&mut ex, "/v1/chat/completions", body, &shared);
        assert_eq!(step, Step::Continue);
        let head =
            HeaderBlock::from_pairs(&[(":status", status), ("content-type", b"application/json")]);
        ex.response_headers(&head, || Some(b"via_upstream".to_vec()), &shared);
        let answer = br#"{"id":"x"}"#;
        ex.response_body(answer.to_vec(), answer.len(), ended, &shared);
        let asked = std::cell::Cell::new(false);
        let outcome = ex.finish(
            || {
                asked.set(true);
                envoy_says
            },
            &shared,
        );
        (outcome.status, asked.get())
    };
    assert_eq!(answered(true, b"200", 999), (200, false));
    assert_eq!(answered(true, b"429", 999), (429, false));
    // Reset before its end: what Envoy sent may differ (its own error reply).
    assert_eq!(answered(false, b"200", 503), (503, true));

    // A status the filter writes itself (the 502 of an answer it cannot pass on) is the one
    // sent.
    let mut ex = Exchange::new(Some(index()));
    let body = br#"{"model":"solo","messages":[{"role":"user","content":"Hi"}]}"#;
    send(&mut ex, "/v1/chat/completions", body, &shared);
    let head = HeaderBlock::from_pairs(&[
        (":status", b"200"),
        ("content-type", b"application/json"),
        ("content-encoding", b"br"),
    ]);
    ex.response_headers(&head, || Some(b"via_upstream".to_vec()), &shared);
    assert_eq!(ex.sent_status, 502);
}

/// The index with its key limited (its requests spend from the key's lease).
fn limited_index() -> Arc<Index> {
    let digest = hex::encode(Sha256::digest(b"sk-gw"));
    let config = format!(
        r#"{{"version":"1","max_body_bytes":65536,
        "keys":[{{"id":"gk","digest":"{digest}","user":"u","models":["*"],"limited":true}}],
        "providers":[
          {{"name":"oa","kind":"openai_compatible","cluster":"provider-oa","authority":"oa.test",
           "path_prefix":"/v1","auth_header":"authorization","auth_prefix":"Bearer ",
           "keys":[{{"id":"k1","secret":"sk-oa"}}]}}],
        "models":[{{"name":"solo","targets":[{{"provider":"oa","model":"gpt-x"}}]}}]}}"#
    );
    Arc::new(Index::from_json(config.as_bytes(), None).expect("config"))
}

#[test]
fn a_limited_key_asks_for_a_lease_once_spends_it_across_workers_and_is_refused_in_its_shape() {
    use switchyard_contract::lease::{LeaseGrant, LeaseRefusal, LeaseWindow};
    let shared = Memory::at(1_000);
    let body = br#"{"model":"solo","messages":[{"role":"user","content":"Hi"}]}"#;
    let window = Some(LeaseWindow {
        limit: 60,
        used: 0,
        reset_secs: 60,
    });
    // The first request finds no lease: it is written out, then waits for the answer.
    let mut first = Exchange::new(Some(limited_index()));
    let (step, _) = send(&mut first, "/v1/chat/completions", body, &shared);
    let Step::Lease(ask) = step else {
        panic!("{step:?}")
    };
    assert_eq!(ask.key, "gk");
    assert!(!ask.instance.is_empty() && ask.bounded());
    let grant = LeaseGrant {
        granted_at: 1_000,
        ttl_ms: 2_000,
        requests: 2,
        request_window: window,
        ..LeaseGrant::default()
    };
    assert_eq!(
        first.lease_answered(Some(grant), true, &shared),
        Step::Continue
    );
    let head =
        HeaderBlock::from_pairs(&[(":status", b"200"), ("content-type", b"application/json")]);
    let h = first.response_headers(&head, || Some(b"via_upstream".to_vec()), &shared);
    let map = h.map(&head).expect("headers change");
    assert!(map.contains(&("x-ratelimit-remaining-requests", &b"59"[..])));
    assert!(map.contains(&("x-ratelimit-limit-requests", &b"60"[..])));
    let outcome = first.finish(|| 200, &shared);
    let end = outcome.lease_end.expect("its end goes back to the lease");
    assert_eq!((end.key.as_str(), end.request.as_str()), ("gk", "id-1"));

    // Another worker's request (same shared data) spends the rest without asking.
    let mut second = Exchange::new(Some(limited_index()));
    assert_eq!(
        send(&mut second, "/v1/chat/completions", body, &shared).0,
        Step::Continue
    );
    // Nothing left: the next asks once, and is refused as the control plane refused.
    let mut third = Exchange::new(Some(limited_index()));
    let (step, _) = send(&mut third, "/v1/chat/completions", body, &shared);
    assert!(matches!(step, Step::Lease(_)), "{step:?}");
    let refusal = LeaseGrant {
        request_window: Some(LeaseWindow {
            limit: 60,
            used: 60,
            reset_secs: 7,
        }),
        refusal: Some(LeaseRefusal {
            code: "rate_limit_exceeded".into(),
            message: "Too many requests per minute for this key.".into(),
            retry_after: Some(7),
        }),
        ..LeaseGrant::default()
    };
    let Step::Reply(reply) = third.lease_answered(Some(refusal), true, &shared) else {
        panic!("refused")
    };
    assert_eq!(reply.status, 429);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let headers = reply.headers(Some("id-1"));
    assert!(headers.contains(&("retry-after", "7")));
    assert!(headers.contains(&("x-ratelimit-remaining-requests", "0")));
    assert!(headers.contains(&("x-ratelimit-reset-requests", "7s")));
    let outcome = third.finish(|| 0, &shared);
    assert!(
        outcome.lease_end.is_none(),
        "a refused request takes nothing"
    );
    assert_eq!(outcome.status, 429);

    // Remembered for a moment: an Anthropic client is refused at once, in its own shape.
    let mut fourth = Exchange::new(Some(limited_index()));
    let messages =
        br#"{"model":"solo","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}"#;
    let (step, _) = send(&mut fourth, "/v1/messages", messages, &shared);
    let Step::Reply(reply) = step else {
        panic!("{step:?}")
    };
    assert_eq!(reply.status, 429);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("rate_limit_error"))
    );
}
