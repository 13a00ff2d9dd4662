#!/usr/bin/env bash
# `make bench`: bounded load test (about three and a half minutes, loopback only).
# One fast upstream (an Envoy answering provider fixtures with direct responses: an OpenAI chat
# completion, an OpenAI stream, an Anthropic message), then the same 1 KB chat request through
# (a) bare Envoy proxying to it and (b) Switchyard's full path (auth, body parse, routing, model
# rewrite, provider key, usage extraction, request record), in four cases: OpenAI pass-through,
# translated to Anthropic Messages and back, streamed (SSE, usage taken out on the way), and a
# model with a fallback target (aggregate cluster, the filter's upstream role on each attempt).
# Both gateways run one Envoy worker. Prints requests/s, p50 and p99, the ratio, and the CPU time
# each gateway process spent per request (from /proc), which does not depend on how the 2 cores
# are shared between wrk, the upstream and the gateway; then the time to first byte of a stream,
# sequential requests, through each.
#
# Knobs: BENCH_DURATION (s per run, 10), BENCH_CONNECTIONS (32), BENCH_ROUNDS (2),
# BENCH_WASM (another build of the filter, to compare), BENCH_ACCESS_LOG (true|false),
# BENCH_SEAL (true|false: provider keys sealed and request records signed, as by default),
# BENCH_CASES (a subset of "chat anthropic stream failover limited"; `limited` is pass-through
# with a key that has limits, so that each request asks the control plane's rate limit service), BENCH_INGEST (true|false: then the
# control plane's request-record ingest, on SQLite and PostgreSQL), BENCH_ACK (true|false: then
# write-to-acknowledgement time of the admin API, 200 key creations with 1 and with 4 Envoys).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10}   # seconds per measured run
CONNECTIONS=${BENCH_CONNECTIONS:-32}
ROUNDS=${BENCH_ROUNDS:-2}
ENVOY=.venv/bin/envoy
BIN=target/release/switchyard
WASM=${BENCH_WASM:-$PWD/target/wasm32-wasip1/release/switchyard_filter.wasm}

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian package)" >&2
  if [[ $(id -u) -eq 0 ]]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi

work=$(mktemp -d /tmp/switchyard-bench.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url expected-code
  for _ in $(seq 200); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' -X POST "$1" || true) == "$2" ]] && return 0
    sleep 0.05
  done
  echo "bench: $1 did not answer $2" >&2; exit 1
}

UP=$(free_port); BARE=$(free_port); GW=$(free_port); GW_ADMIN=$(free_port); ADMIN=$(free_port); XDS=$(free_port)
KEY=sk-bench-key-0123456789
LIMITED_KEY=sk-bench-limited-0123456789   # with (unreachable) limits: asks the rate limit service

# Upstream: a direct response with the fixture; the buffer filter keeps POST connections alive.
cat > "$work/upstream.yaml" <<YAML
static_resources:
  listeners:
  - name: upstream
    address: {socket_address: {address: 127.0.0.1, port_value: $UP}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream
          route_config:
            virtual_hosts:
            - name: upstream
              domains: ["*"]
              routes:
              - match: {prefix: "/stream/"}
                direct_response: {status: 200, body: {filename: "$PWD/tests/fixtures/openai/chat_stream_usage.sse"}}
                response_headers_to_add: [{header: {key: content-type, value: text/event-stream}}]
              - match: {path: "/v1/messages"}
                direct_response: {status: 200, body: {filename: "$PWD/tests/fixtures/openai_anthropic/simple/upstream_response.json"}}
                response_headers_to_add: [{header: {key: content-type, value: application/json}}]
              - match: {prefix: "/"}
                direct_response: {status: 200, body: {filename: "$PWD/tests/fixtures/openai/chat_completion.json"}}
                response_headers_to_add: [{header: {key: content-type, value: application/json}}]
          http_filters:
          - name: envoy.filters.http.buffer
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer, max_request_bytes: 1048576}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
YAML

# Bare Envoy: the same listener shape, router only, straight to the upstream.
cat > "$work/bare.yaml" <<YAML
static_resources:
  listeners:
  - name: bare
    address: {socket_address: {address: 127.0.0.1, port_value: $BARE}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bare
          route_config:
            virtual_hosts:
            - name: bare
              domains: ["*"]
              routes: [{match: {prefix: "/"}, route: {cluster: upstream}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: upstream
    type: STATIC
    load_assignment:
      cluster_name: upstream
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $UP}}}}]}]
YAML

cat > "$work/switchyard.yaml" <<YAML
listen: {admin: "127.0.0.1:$ADMIN", xds: "127.0.0.1:$XDS"}
gateway: {listen: "127.0.0.1:$GW", admin: "127.0.0.1:$GW_ADMIN", wasm: "$WASM", access_log: ${BENCH_ACCESS_LOG:-true}, seal_provider_keys: ${BENCH_SEAL:-true}}
database: "sqlite://$work/bench.db"
master_key_file: "$work/master.key"
providers:
  - {name: upstream, kind: openai_compatible, base_url: "http://127.0.0.1:$UP/v1", keys: [{secret: sk-upstream}], models: [gpt-4o-mini]}
  - {name: streamer, kind: openai_compatible, base_url: "http://127.0.0.1:$UP/stream/v1", keys: [{secret: sk-upstream}], models: [gpt-4o-mini]}
  - {name: claude, kind: anthropic, base_url: "http://127.0.0.1:$UP", keys: [{secret: sk-upstream}], models: [claude-sonnet-4-5]}
  - {name: backup, kind: openai_compatible, base_url: "http://127.0.0.1:$UP/v1", keys: [{secret: sk-upstream}], models: [gpt-4o]}
models:
  - {name: fast, targets: [{provider: upstream, model: gpt-4o-mini}]}
  - {name: fast-stream, targets: [{provider: streamer, model: gpt-4o-mini}]}
  - {name: fast-claude, targets: [{provider: claude, model: claude-sonnet-4-5}]}
  - {name: fast-failover, targets: [{provider: upstream, model: gpt-4o-mini}, {provider: backup, model: gpt-4o, priority: 1}]}
api_keys:
  - {name: bench, key: "$KEY"}
  - {name: bench-limited, key: "$LIMITED_KEY", rpm: 100000000, tpm: 4000000000}
YAML

"$ENVOY" -c "$work/upstream.yaml" --concurrency 1 --use-dynamic-base-id -l error > "$work/upstream.log" 2>&1 & pids+=($!)
"$ENVOY" -c "$work/bare.yaml" --concurrency 1 --use-dynamic-base-id -l error > "$work/bare.log" 2>&1 & pids+=($!); BARE_PID=$!
SWITCHYARD_ADMIN_TOKEN=bench SWITCHYARD_LOG=warn "$BIN" serve --config "$work/switchyard.yaml" > "$work/cp.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$ADMIN/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
"$BIN" bootstrap --config "$work/switchyard.yaml" --certs-dir "$work/certs" > "$work/bootstrap.yaml"
# The access log (with the usage record) is written, to /dev/null: its formatting is part of the path.
SWITCHYARD_DATAPLANE_KEY=$("$BIN" dataplane-key --config "$work/switchyard.yaml") \
  "$ENVOY" -c "$work/bootstrap.yaml" --concurrency 1 --use-dynamic-base-id -l error > /dev/null 2>&1 & pids+=($!); GW_PID=$!

wait_http "http://127.0.0.1:$UP/v1/chat/completions" 200
wait_http "http://127.0.0.1:$BARE/v1/chat/completions" 200
wait_http "http://127.0.0.1:$GW/v1/chat/completions" 401

# A 1 KB chat request, per case: the logical model and whether it streams.
content=$(python3 -c 'print("Summarise the following text in one sentence. " * 19)')
request() { # model extra-fields
  printf '{"model":"%s","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"%s"}],"temperature":0.2%s}' "$1" "$content" "$2"
}
declare -A MODEL=([chat]=fast [anthropic]=fast-claude [stream]=fast-stream [failover]=fast-failover [limited]=fast)
declare -A EXTRA=([chat]="" [anthropic]="" [stream]=',"stream":true' [failover]="" [limited]="")
declare -A CASE_KEY=([chat]=$KEY [anthropic]=$KEY [stream]=$KEY [failover]=$KEY [limited]=$LIMITED_KEY)
# Bare Envoy proxies the same request to the same upstream response (pass-through baseline).
declare -A BARE_PATH=([chat]=/v1/chat/completions [anthropic]=/v1/chat/completions [stream]=/stream/v1/chat/completions [failover]=/v1/chat/completions [limited]=/v1/chat/completions)
read -r -a CASES <<< "${BENCH_CASES:-chat anthropic stream failover limited}"
request "${MODEL[stream]}" "${EXTRA[stream]}" > "$work/stream.json"   # for the time to first byte
for c in "${CASES[@]}"; do
  body=$(request "${MODEL[$c]}" "${EXTRA[$c]}")
  cat > "$work/$c.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer ${CASE_KEY[$c]}"
wrk.body = '$body'
LUA
  echo "$body" > "$work/$c.json"
  check=$(curl -s -w '\n%{http_code}' "http://127.0.0.1:$GW/v1/chat/completions" -H "Authorization: Bearer ${CASE_KEY[$c]}" -H 'Content-Type: application/json' -d "$body")
  [[ "${check##*$'\n'}" == 200 ]] || { echo "bench: Switchyard did not answer 200 for $c: $check" >&2; exit 1; }
done
echo "bench: request body ${#body} bytes, $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds, one Envoy worker" >&2

# CPU time (user + system, in clock ticks) the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

run() { # name port pid case path -> "rps p50_ms p99_ms cpu_us_per_request"
  wrk -t1 -c"$CONNECTIONS" -d2s -s "$work/$4.lua" "http://127.0.0.1:$2$5" > /dev/null
  local out before after
  before=$(cpu_ticks "$3")
  out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/$4.lua" "http://127.0.0.1:$2$5")
  after=$(cpu_ticks "$3")
  if grep -q "Non-2xx" <<<"$out"; then echo "bench: $1 had non-2xx responses:" >&2; echo "$out" >&2; exit 1; fi
  local rps p50 p99 requests
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $(python3 -c "print(($after - $before) / $TICK / $requests * 1e6)")"
}
to_ms() { python3 -c 'import sys,re; v,u=re.match(r"([\d.]+)(\w+)",sys.argv[1]).groups(); print(round(float(v)*{"us":0.001,"ms":1,"s":1000}[u],3))' "$1"; }

rows=()
for c in "${CASES[@]}"; do
  for round in $(seq "$ROUNDS"); do
    b=$(run bare "$BARE" "$BARE_PID" "$c" "${BARE_PATH[$c]}")
    g=$(run switchyard "$GW" "$GW_PID" "$c" /v1/chat/completions)
    rows+=("$c bare $b" "$c switchyard $g")
    echo "bench: $c round $round: bare $b | switchyard $g" >&2
  done
done

# Time to first byte of a stream, 200 sequential requests each (no load).
ttfb() { # port path
  for _ in $(seq 200); do
    curl -s -o /dev/null -w '%{time_starttransfer}\n' "http://127.0.0.1:$1$2" \
      -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' --data-binary "@$work/stream.json"
  done | python3 -c 'import sys, statistics; print(statistics.median(float(l) for l in sys.stdin) * 1000)'
}
ttfb_up=$(ttfb "$UP" /stream/v1/chat/completions)
ttfb_bare=$(ttfb "$BARE" /stream/v1/chat/completions)
ttfb_gw=$(ttfb "$GW" /v1/chat/completions)

python3 - "$ttfb_up" "$ttfb_bare" "$ttfb_gw" "${rows[@]}" <<'PY'
import sys, statistics
up, bare_ttfb, gw_ttfb = (float(x) for x in sys.argv[1:4])
rows = {}
for r in sys.argv[4:]:
    case, gw, *vals = r.split()
    rows.setdefault((case, gw), []).append([float(v) for v in vals])
def med(case, gw): return [statistics.median(v[i] for v in rows[(case, gw)]) for i in range(4)]
names = {"chat": "OpenAI pass-through", "anthropic": "to Anthropic (translated)", "stream": "streamed (SSE)",
         "failover": "failover model (2 targets)", "limited": "key with limits (RLS calls)"}
print()
print(f"{'':36}{'requests/s':>12}{'p50 (ms)':>11}{'p99 (ms)':>11}{'CPU us/req':>12}")
summary = []
for case in [c for c in ("chat", "anthropic", "stream", "failover", "limited") if (c, "bare") in rows]:
    b, s = med(case, "bare"), med(case, "switchyard")
    print(f"{names[case] + ', bare Envoy':36}{b[0]:>12.0f}{b[1]:>11.3f}{b[2]:>11.3f}{b[3]:>12.1f}")
    print(f"{names[case] + ', Switchyard':36}{s[0]:>12.0f}{s[1]:>11.3f}{s[2]:>11.3f}{s[3]:>12.1f}")
    summary.append((names[case], s[0] / b[0], s[3] - b[3]))
print()
for name, ratio, added in summary:
    print(f"{name:28} {ratio:.2f}x of bare Envoy's requests/s, {added:.1f} us CPU added per request")
print("(targets: pass-through >= 0.70x; ~20 us added)")
print(f"\nstream time to first byte (median of 200): upstream {up:.3f} ms, bare Envoy {bare_ttfb:.3f} ms, "
      f"Switchyard {gw_ttfb:.3f} ms ({gw_ttfb - up:+.3f} ms over the upstream's own; budget 1 ms)")
PY

# Request records: how many per second the control plane stores (each a log row and a ledger
# debit), on a SQLite file and, when one answers, in a throwaway PostgreSQL schema.
if [[ "${BENCH_INGEST:-true}" == true ]]; then
  echo
  SWITCHYARD_BIN=$PWD/$BIN target/release/switchyard-ingest-bench \
    --database "sqlite://$work/ingest.db" --records 100000
  PG=${SWITCHYARD_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}
  schema="sy_test_$(date +%s)_bench"
  if psql "$PG" -qc "CREATE SCHEMA $schema" 2>/dev/null; then
    SWITCHYARD_BIN=$PWD/$BIN target/release/switchyard-ingest-bench \
      --database "$PG?options=-c%20search_path%3D$schema" --records 100000
    psql "$PG" -qc "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1 || true
  else
    echo "ingest PostgreSQL: skipped ($PG does not answer)"
  fi
fi

# Write-to-acknowledgement: an admin write answers once every connected Envoy ACKed the snapshot
# holding it. 200 key creations, each timed from the call to its answer (p50, p99), with 1 and
# then 4 Envoys on one control plane; each key is used at once through the listener and a
# refusal is counted (it must stay 0). Self-contained: builds its tool, starts its own processes.
if [[ "${BENCH_ACK:-true}" == true ]]; then
  echo
  cargo build -q --release -p switchyard-tools --bin switchyard-ack-bench
  SWITCHYARD_BIN=$PWD/$BIN target/release/switchyard-ack-bench --writes 200 --envoys 1,4
fi
