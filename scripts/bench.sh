#!/usr/bin/env bash
# `make bench`: bounded load test (about three and a half minutes, loopback only).
# One fast upstream (an Envoy answering provider fixtures with direct responses: an OpenAI chat
# completion, an OpenAI stream, an Anthropic message), then the same 1 KB chat request through
# (a) bare Envoy proxying to it and (b) Switchyard's full path (auth, body parse, routing, model
# rewrite, provider key, usage extraction, request record), in four cases: OpenAI pass-through,
# translated to Anthropic Messages and back, streamed (SSE, usage taken out on the way), and a
# model with a fallback target (aggregate cluster, the filter's upstream role on each attempt).
# Both gateways run one Envoy worker, then two (pass-through and streamed). Prints requests/s, p50
# and p99, and the CPU time each gateway process spent per request (from /proc; Switchyard's
# control plane included, which stores the request records), which does not depend on how the 2
# cores are shared between wrk, the upstream and the gateway; the requests per CPU-core-second
# against bare Envoy's; each budget of issue 18 with PASS or FAIL (a benchmark: it does not fail);
# then the time to first byte of a stream, sequential requests, through each.
#
# Knobs: BENCH_DURATION (s per run, 10), BENCH_CONNECTIONS (32), BENCH_ROUNDS (2),
# BENCH_FILTER (native: the filter as an Envoy dynamic module, the default; wasm: the proxy-wasm
# build in V8), BENCH_WASM (another build of the filter, .wasm or .so, to compare),
# BENCH_ACCESS_LOG (true|false),
# BENCH_SEAL (true|false: provider keys sealed and request records signed, as by default),
# BENCH_CASES_2_WORKERS (the cases run again with two workers, "chat stream"; empty: none),
# BENCH_PROFILE (a directory: `perf record` of Switchyard's Envoy and control plane during each
# measured run, one file per case; `perf report -i <file> --sort comm,dso` reads them),
# BENCH_CASES (a subset of "chat anthropic stream failover limited"; `limited` is pass-through
# with a key that has limits, whose requests spend leases the control plane grants), BENCH_INGEST (true|false: then the
# control plane's request-record ingest, on SQLite and PostgreSQL), BENCH_ACK (true|false: then
# write-to-acknowledgement time of the admin API, 200 key creations with 1 and with 4 Envoys),
# BENCH_CALLGRIND (1: instructions per request under callgrind instead of timing; see below).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10}   # seconds per measured run
CONNECTIONS=${BENCH_CONNECTIONS:-32}
ROUNDS=${BENCH_ROUNDS:-2}
ENVOY=.venv/bin/envoy
BIN=target/release/switchyard
case "${BENCH_FILTER:-native}" in
  native) WASM=${BENCH_WASM:-$PWD/target/release/libswitchyard_native.so} ;;
  wasm) WASM=${BENCH_WASM:-$PWD/target/wasm32-wasip1/release/switchyard_filter.wasm} ;;
  *) echo "bench: BENCH_FILTER is native or wasm" >&2; exit 1 ;;
esac

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
LIMITED_KEY=sk-bench-limited-0123456789   # with (unreachable) limits: spends leases from the control plane

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
SWITCHYARD_ADMIN_TOKEN=bench SWITCHYARD_LOG=warn "$BIN" serve --config "$work/switchyard.yaml" > "$work/cp.log" 2>&1 & pids+=($!); CP_PID=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$ADMIN/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
"$BIN" bootstrap --config "$work/switchyard.yaml" --certs-dir "$work/certs" > "$work/bootstrap.yaml"
DATAPLANE_KEY=$("$BIN" dataplane-key --config "$work/switchyard.yaml")

# Both gateways with `$1` Envoy workers (restarted when the worker count changes).
start_gateways() { # workers
  [[ -n "${BARE_PID:-}" ]] && kill -TERM "$BARE_PID" "$GW_PID" 2>/dev/null && wait "$BARE_PID" "$GW_PID" 2>/dev/null || true
  "$ENVOY" -c "$work/bare.yaml" --concurrency "$1" --use-dynamic-base-id -l error > "$work/bare.log" 2>&1 & pids+=($!); BARE_PID=$!
  # The access log (with the usage record) is written, to /dev/null: its formatting is part of the path.
  SWITCHYARD_DATAPLANE_KEY=$DATAPLANE_KEY \
    "$ENVOY" -c "$work/bootstrap.yaml" --concurrency "$1" --use-dynamic-base-id -l error > /dev/null 2>&1 & pids+=($!); GW_PID=$!
  wait_http "http://127.0.0.1:$BARE/v1/chat/completions" 200
  wait_http "http://127.0.0.1:$GW/v1/chat/completions" 401
}
start_gateways 1

wait_http "http://127.0.0.1:$UP/v1/chat/completions" 200

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
echo "bench: request body ${#body} bytes, $CONNECTIONS connections, ${DURATION}s per run, $ROUNDS rounds, 1 Envoy worker, then 2; filter: $WASM" >&2

# CPU time (user + system, in clock ticks) the process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# Request records the control plane has stored so far; `drain` waits until no more arrive (the
# gateway sends them in batches), so that a run's records are charged to that run.
stored() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^switchyard_cp_records_total\{outcome="stored"\}/ {print $2}'; }
drain() {
  local last=-1 now
  for _ in $(seq 60); do
    now=$(stored); [[ "$now" == "$last" ]] && return 0
    last=$now; sleep 0.6
  done
}

run() { # name port pid case path -> "rps p50_ms p99_ms envoy_cpu_us_per_request cp_cpu_us_per_request"
  wrk -t1 -c"$CONNECTIONS" -d2s -s "$work/$4.lua" "http://127.0.0.1:$2$5" > /dev/null
  drain   # the warm-up's records reach the control plane before the measured run
  local out before after cp_before cp_after
  before=$(cpu_ticks "$3"); cp_before=$(cpu_ticks "$CP_PID")
  local perf_pid=""
  if [[ -n "${BENCH_PROFILE:-}" && "$1" == switchyard ]]; then
    mkdir -p "$BENCH_PROFILE"
    perf record -q -F 499 -g -p "$3,$CP_PID" -o "$BENCH_PROFILE/$4-${WORKERS}w.data" \
      > /dev/null 2>&1 & perf_pid=$!
  fi
  out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/$4.lua" "http://127.0.0.1:$2$5")
  [[ -n "$perf_pid" ]] && { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
  after=$(cpu_ticks "$3")
  [[ "$1" == switchyard ]] && drain
  cp_after=$(cpu_ticks "$CP_PID")
  if grep -q "Non-2xx" <<<"$out"; then echo "bench: $1 had non-2xx responses:" >&2; echo "$out" >&2; exit 1; fi
  local rps p50 p99 requests
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  # The control plane's CPU counts for Switchyard (request records arrive while it runs), not
  # for bare Envoy, which has none.
  local cp=0
  [[ "$1" == switchyard ]] && cp=$(python3 -c "print(($cp_after - $cp_before) / $TICK / $requests * 1e6)")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $(python3 -c "print(($after - $before) / $TICK / $requests * 1e6)") $cp"
}
to_ms() { python3 -c 'import sys,re; v,u=re.match(r"([\d.]+)(\w+)",sys.argv[1]).groups(); print(round(float(v)*{"us":0.001,"ms":1,"s":1000}[u],3))' "$1"; }

measure() { # workers case...
  local workers=$1; shift; WORKERS=$workers
  for c in "$@"; do
    for round in $(seq "$ROUNDS"); do
      b=$(run bare "$BARE" "$BARE_PID" "$c" "${BARE_PATH[$c]}")
      g=$(run switchyard "$GW" "$GW_PID" "$c" /v1/chat/completions)
      rows+=("$c $workers bare $b" "$c $workers switchyard $g")
      echo "bench: $c, $workers worker(s), round $round: bare $b | switchyard $g" >&2
    done
  done
}

# BENCH_CALLGRIND=1: instead of timing, the instructions each gateway's Envoy worker executes
# per request (valgrind's callgrind, 1 worker, 4 connections): counts, not time, so they compare
# across runs on a busy machine. Per case: a warm-up, then a run with instrumentation on.
if [[ -n "${BENCH_CALLGRIND:-}" ]]; then
  command -v valgrind >/dev/null || { echo "bench: BENCH_CALLGRIND needs valgrind" >&2; exit 1; }
  real_envoy=$(ls .venv/lib/python3*/site-packages/envoy/_bin/envoy)   # not the Python wrapper
  kill -TERM "$BARE_PID" "$GW_PID" 2>/dev/null; wait "$BARE_PID" "$GW_PID" 2>/dev/null || true
  declare -A IR
  for target in bare switchyard; do
    if [[ $target == bare ]]; then conf=$work/bare.yaml port=$BARE expect=200; else conf=$work/bootstrap.yaml port=$GW expect=401; fi
    SWITCHYARD_DATAPLANE_KEY=$DATAPLANE_KEY valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
      --callgrind-out-file="$work/cg-$target.out" "$real_envoy" -c "$conf" --concurrency 1 \
      --use-dynamic-base-id -l error > /dev/null 2>&1 & pids+=($!); cg_pid=$!
    for _ in $(seq 600); do
      [[ $(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/v1/chat/completions" || true) == "$expect" ]] && break
      sleep 0.2
    done
    for c in "${CASES[@]}"; do
      path=/v1/chat/completions; [[ $target == bare ]] && path=${BARE_PATH[$c]}
      wrk -t1 -c4 -d3s -s "$work/$c.lua" "http://127.0.0.1:$port$path" > /dev/null
      callgrind_control -z "$cg_pid" > /dev/null; callgrind_control -i on "$cg_pid" > /dev/null
      out=$(wrk -t1 -c4 -d"${DURATION}s" -s "$work/$c.lua" "http://127.0.0.1:$port$path")
      touch "$work/cg-mark"
      callgrind_control -i off "$cg_pid" > /dev/null; callgrind_control -d "$cg_pid" > /dev/null
      sleep 1
      n=$(awk '/requests in/ {print $1}' <<<"$out")
      # The worker thread's count (the busiest thread's file of this dump): the main thread's
      # work (configuration, stats flush, the records' tick) is per second, not per request.
      ir=$(find "$work" -name "cg-$target.out*" -newer "$work/cg-mark" -exec grep -h "^totals:" {} + |
        awk '$2 > m {m = $2} END {print m}')
      IR[$c,$target]=$((ir / n))
    done
    kill -TERM "$cg_pid"; wait "$cg_pid" 2>/dev/null || true
  done
  echo "instructions per request on Envoy's worker thread (callgrind; the filter's included):"
  for c in "${CASES[@]}"; do
    b=${IR[$c,bare]} g=${IR[$c,switchyard]}
    echo "  $c: bare Envoy $b, Switchyard $g ($(python3 -c "print(f'{$b / $g:.2f}')")x)"
  done
  exit 0
fi

rows=()
measure 1 "${CASES[@]}"

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

# Two workers: pass-through and streamed.
read -r -a CASES2 <<< "${BENCH_CASES_2_WORKERS-chat stream}"
if (( ${#CASES2[@]} )); then
  start_gateways 2
  measure 2 "${CASES2[@]}"
fi

python3 - "$ttfb_up" "$ttfb_bare" "$ttfb_gw" "${rows[@]}" <<'PY'
import sys, statistics
up, bare_ttfb, gw_ttfb = (float(x) for x in sys.argv[1:4])
rows = {}
for r in sys.argv[4:]:
    case, workers, gw, *vals = r.split()
    rows.setdefault((case, int(workers), gw), []).append([float(v) for v in vals])
def med(key): return [statistics.median(v[i] for v in rows[key]) for i in range(5)]
names = {"chat": "OpenAI pass-through", "anthropic": "to Anthropic (translated)", "stream": "streamed (SSE)",
         "failover": "failover model (2 targets)", "limited": "key with limits (leases)"}
order = [(c, w) for w in (1, 2) for c in ("chat", "anthropic", "stream", "failover", "limited") if (c, w, "bare") in rows]
print()
print(f"{'':44}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'Envoy us':>10}{'CP us':>8}{'req/s/core':>12}")
results = []
for case, w in order:
    b, s = med((case, w, "bare")), med((case, w, "switchyard"))
    for label, m in (("bare Envoy", b), ("Switchyard", s)):
        per_core = 1e6 / (m[3] + m[4])
        print(f"{names[case] + f', {w}w, ' + label:44}{m[0]:>9.0f}{m[1]:>9.3f}{m[2]:>9.3f}{m[3]:>10.1f}{m[4]:>8.1f}{per_core:>12.0f}")
    results.append((case, w, b, s))
print("\n(req/s/core: requests per CPU-second of every gateway process; Switchyard's includes its control plane)\n")
print("budgets (issue 18):")
for case, w, b, s in results:
    per_core = (b[3] + b[4]) / (s[3] + s[4])
    added = s[3] + s[4] - b[3]
    print(f"  {names[case]}, {w} worker(s): {s[0] / b[0]:.2f}x of bare Envoy's req/s, "
          f"{per_core:.2f}x per core, {added:+.1f} us CPU per request (Envoy {s[3] - b[3]:+.1f}, control plane {s[4]:.1f})")
    if case in ("chat", "stream"):
        print(f"    per core >= 0.60x of bare Envoy: {'PASS' if per_core >= 0.60 else 'FAIL'} ({per_core:.2f}x)")
    if case != "limited":
        ok = s[2] <= b[2] + 1.0
        print(f"    p99 <= bare Envoy's + 1 ms: {'PASS' if ok else 'FAIL'} ({s[2]:.2f} ms against {b[2]:.2f} + 1 ms)")
chat = {w: (b, s) for case, w, b, s in results if case == "chat"}
for case, w, b, s in results:
    if case == "limited" and w in chat:
        extra = (s[3] + s[4]) - (chat[w][1][3] + chat[w][1][4])
        print(f"  limits: a key with rpm/tpm costs {extra:+.1f} us per request over one without: "
              f"{'PASS' if extra <= 60 else 'FAIL'} (budget 60 us)")
print(f"\nstream time to first byte (median of 200): upstream {up:.3f} ms, bare Envoy {bare_ttfb:.3f} ms, "
      f"Switchyard {gw_ttfb:.3f} ms ({gw_ttfb - up:+.3f} ms over the upstream's own; budget 1 ms)")
PY

# Request records: how many per second the control plane stores (each a log row and a ledger
# debit), on a SQLite file and, when one answers, in a throwaway PostgreSQL schema; as fast as
# it goes, then paced at the budget's 10,000 records/s for 10 s (control plane CPU per record,
# budget 5 us). Each run on a new database.
if [[ "${BENCH_INGEST:-true}" == true ]]; then
  echo
  for pace in "--records 100000" "--rate 10000 --seconds 10"; do
    rm -f "$work"/ingest.db*
    # shellcheck disable=SC2086 # two words each
    SWITCHYARD_BIN=$PWD/$BIN target/release/switchyard-ingest-bench \
      --database "sqlite://$work/ingest.db" $pace
  done
  PG=${SWITCHYARD_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}
  for pace in "--records 100000" "--rate 10000 --seconds 10"; do
    schema="sy_test_$(date +%s)_bench"
    if psql "$PG" -qc "CREATE SCHEMA $schema" 2>/dev/null; then
      # shellcheck disable=SC2086 # two words each
      SWITCHYARD_BIN=$PWD/$BIN target/release/switchyard-ingest-bench \
        --database "$PG?options=-c%20search_path%3D$schema" $pace
      psql "$PG" -qc "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1 || true
    else
      echo "ingest PostgreSQL: skipped ($PG does not answer)"
      break
    fi
  done
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
