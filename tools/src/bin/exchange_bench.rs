//! The filter's engine alone, natively: one request through `switchyard_core::exchange` as the
//! Envoy filter drives it (headers, a 1 KB chat body, the provider's answer, the outcome with its
//! record and metric samples), repeated, timed per request. What the filter computes, without
//! V8 or the host calls around it: run it under `perf record` to see where the engine's time
//! goes (`cargo build --release -p switchyard-tools --bin switchyard-exchange-bench`).
//!
//! `switchyard-exchange-bench [chat|stream] [requests]`; `switchyard-exchange-bench config <keys>`
//! times what each Envoy worker does when a configuration arrives (parse it, open its sealed
//! provider keys, index it) for a gateway with that many keys.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use switchyard_core::cooldown::Cooldowns;
use switchyard_core::exchange::shared::{SetError, Unavailable};
use switchyard_core::exchange::{Exchange, Outgoing, Shared, Step};
use switchyard_core::headers::HeaderBlock;
use switchyard_core::route::Index;

/// Shared data in a map, and a clock that moves 1 µs per reading.
#[derive(Default)]
struct Local {
    values: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    now: Cell<u64>,
}

impl Shared for Local {
    fn get(&self, name: &str) -> Result<(Option<Vec<u8>>, Option<u32>), Unavailable> {
        Ok(match self.values.borrow().get(name) {
            Some((v, n)) => (Some(v.clone()), Some(*n)),
            None => (None, None),
        })
    }

    fn set(&self, name: &str, value: &[u8], _cas: Option<u32>) -> Result<(), SetError> {
        let mut values = self.values.borrow_mut();
        let n = values.get(name).map_or(1, |(_, n)| n + 1);
        values.insert(name.to_owned(), (value.to_vec(), n));
        Ok(())
    }

    fn now_ns(&self) -> u64 {
        self.now.set(self.now.get() + 1_000);
        1_800_000_000_000_000_000 + self.now.get()
    }
}

/// Where the exchange writes the request: kept, as the host would hand it to Envoy.
#[derive(Default)]
struct Written {
    body: usize,
    headers: usize,
}

impl Outgoing for Written {
    fn set_body(&mut self, body: &[u8]) {
        self.body += body.len();
    }

    fn set_header(&mut self, _name: &str, value: Option<&[u8]>) {
        self.headers += value.map_or(0, <[u8]>::len);
    }
}

fn index(stream: bool) -> Index {
    let digest = hex::encode(Sha256::digest(b"sk-bench-key-0123456789"));
    let path = if stream { "/stream/v1" } else { "/v1" };
    let config = format!(
        r#"{{"version":"1","max_body_bytes":1048576,"record_state":true,
        "records":{{"cluster":"switchyard_xds","authority":"cp","path":"/switchyard.v1/records"}},
        "keys":[{{"id":"gk","digest":"{digest}","user":"u","models":["*"]}}],
        "providers":[{{"name":"upstream","kind":"openai_compatible","cluster":"provider-upstream",
           "authority":"127.0.0.1:9","path_prefix":"{path}","auth_header":"authorization",
           "auth_prefix":"Bearer ","keys":[{{"id":"k1","secret":"sk-upstream"}}]}}],
        "models":[{{"name":"fast","targets":[{{"provider":"upstream","model":"gpt-4o-mini"}}]}}]}}"#
    );
    Index::from_json(config.as_bytes(), None).unwrap_or_else(|e| panic!("config: {e}"))
}

fn fixture(path: &str) -> Vec<u8> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/");
    std::fs::read(format!("{root}{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A configuration the size a large gateway's can reach: `keys` gateway keys, a provider per
/// 20 keys with two sealed keys each, a model per 5 keys with two targets.
fn big_config(keys: usize, dataplane_key: &[u8; 32]) -> String {
    let providers = (keys / 20).max(1);
    let models = (keys / 5).max(1);
    let key_list: Vec<String> = (0..keys)
        .map(|i| {
            let digest = hex::encode(Sha256::digest(format!("sk-key-{i}").as_bytes()));
            format!(
                r#"{{"id":"gk{i}","digest":"{digest}","user":"u{}","models":["*"]}}"#,
                i % 300
            )
        })
        .collect();
    let provider_list: Vec<String> = (0..providers)
        .map(|p| {
            let secret = |n: usize| {
                switchyard_contract::sealed::seal(dataplane_key, &format!("sk-provider-{p}-{n}"))
            };
            format!(
                r#"{{"name":"p{p}","kind":"openai_compatible","cluster":"provider-p{p}",
                "authority":"p{p}.test","path_prefix":"/v1","auth_header":"authorization",
                "auth_prefix":"Bearer ","keys":[{{"id":"p{p}k0","secret":"{}"}},{{"id":"p{p}k1","secret":"{}"}}]}}"#,
                secret(0),
                secret(1)
            )
        })
        .collect();
    let model_list: Vec<String> = (0..models)
        .map(|m| {
            format!(
                r#"{{"name":"m{m}","targets":[{{"provider":"p{}","model":"up{m}"}},{{"provider":"p{}","model":"up{m}"}}]}}"#,
                m % providers,
                (m + 1) % providers
            )
        })
        .collect();
    format!(
        r#"{{"version":"1","max_body_bytes":1048576,"keys":[{}],"providers":[{}],"models":[{}]}}"#,
        key_list.join(","),
        provider_list.join(","),
        model_list.join(",")
    )
}

fn config_swap(keys: usize) {
    let dataplane_key = [7u8; 32];
    let config = big_config(keys, &dataplane_key);
    let runs = 20;
    let start = Instant::now();
    for _ in 0..runs {
        let index = Index::from_json(config.as_bytes(), Some(&dataplane_key))
            .unwrap_or_else(|e| panic!("config: {e}"));
        std::hint::black_box(index);
    }
    println!(
        "configuration of {keys} keys ({} KiB): {:.0} µs per worker to parse, open and index",
        config.len() / 1024,
        start.elapsed().as_secs_f64() * 1e6 / f64::from(runs)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "config") {
        config_swap(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1_000));
        return;
    }
    let stream = args.get(1).is_some_and(|a| a == "stream");
    let requests: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(200_000);
    let index = Arc::new(index(stream));
    let content = "Summarise the following text in one sentence. ".repeat(19);
    let body = format!(
        r#"{{"model":"fast","messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"{content}"}}],"temperature":0.2{}}}"#,
        if stream { r#","stream":true"# } else { "" }
    );
    let (answer, content_type) = if stream {
        (
            fixture("openai/chat_stream_usage.sse"),
            &b"text/event-stream"[..],
        )
    } else {
        (
            fixture("openai/chat_completion.json"),
            &b"application/json"[..],
        )
    };
    let shared = Local::default();
    let cooldowns = Cooldowns::default();
    let mut bytes = 0usize;
    let start = Instant::now();
    for i in 0..requests {
        let mut ex = Exchange::new(Some(index.clone()));
        let head = HeaderBlock::from_pairs(&[
            (":method", b"POST"),
            (":path", b"/v1/chat/completions"),
            (":authority", b"127.0.0.1"),
            ("content-type", b"application/json"),
            ("authorization", b"Bearer sk-bench-key-0123456789"),
            ("user-agent", b"wrk"),
        ]);
        let step = ex.request_headers(shared.now_ns(), format!("{i:032x}"), head, false);
        assert_eq!(step, Step::Pause);
        let mut out = Written::default();
        let step = ex.request_body(
            body.len(),
            true,
            || body.as_bytes().to_vec(),
            &cooldowns,
            &shared,
            &mut out,
        );
        assert_eq!(step, Step::Continue, "routed");
        let head = HeaderBlock::from_pairs(&[
            (":status", b"200"),
            ("content-type", content_type),
            ("content-length", b"400"),
            ("date", b"Fri, 04 Dec 2026 12:00:00 GMT"),
            ("server", b"envoy"),
        ]);
        let h = ex.response_headers(&head, || Some(b"via_upstream".to_vec()), &shared);
        bytes += h.map(&head).map_or(0, |m| m.len());
        // The answer in 4 KiB chunks, as Envoy hands it over.
        let chunks: Vec<&[u8]> = answer.chunks(4096).collect();
        for (n, chunk) in chunks.iter().enumerate() {
            let last = n + 1 == chunks.len();
            let c = ex.response_body(chunk.to_vec(), chunk.len(), last, &shared);
            bytes += c.headers.len();
        }
        let outcome = ex.finish(|| 200, &shared);
        bytes += outcome.record.as_ref().map_or(0, String::len);
        ex.samples(outcome.status, outcome.end_ns, |_, labels, v| {
            bytes += labels.len() + v as usize;
        });
        bytes += out.body + out.headers;
    }
    let elapsed = start.elapsed();
    println!(
        "{} requests ({}): {:.2} µs each ({bytes} bytes produced)",
        requests,
        if stream { "stream" } else { "chat" },
        elapsed.as_secs_f64() * 1e6 / requests as f64
    );
}
