//! Reading what the gateway answered: bodies read to their end, SSE events, answers compared
//! with fixtures apart from the gateway's clock.

/// `created` is the gateway's clock; everything else of an answer must match its fixture.
pub fn without_created(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("created");
    }
    v
}

/// A response body read to its end (an error when the connection breaks first).
pub async fn read_all(resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    use futures::StreamExt as _;
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// The `data` of each SSE event, as text.
pub fn data_events(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: ").map(str::to_owned))
        .collect()
}

/// The `data` of each SSE event, parsed and without `created` (`[DONE]` kept as a string).
pub fn sse_events(body: &str) -> Vec<serde_json::Value> {
    body.split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .map(|d| {
            if d == "[DONE]" {
                serde_json::Value::String(d.into())
            } else {
                without_created(
                    serde_json::from_str(d).unwrap_or_else(|e| panic!("event {d:?}: {e}")),
                )
            }
        })
        .collect()
}
