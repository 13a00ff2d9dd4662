#!/usr/bin/env bash
# `make run`: the control plane and Envoy in the foreground (plus the mock provider for the
# example config). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

config=${1:-switchyard.example.yaml}
bin=target/release
mkdir -p .run
eval "$("$bin/switchyard" urls --config "$config")"

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "switchyard: stopped"
}
trap cleanup INT TERM EXIT

if [[ "$config" == "switchyard.example.yaml" ]]; then
  "$bin/switchyard-mock" --listen 127.0.0.1:8090 --key "${MOCK_API_KEY:-mock-key}" &
  pids+=($!)
fi

# Over TCP the xDS port takes only Envoys with a certificate from the control plane's CA:
# bootstrap writes this node's to .run/certs (over a unix: socket, nothing is written).
"$bin/switchyard" bootstrap --config "$config" --certs-dir .run/certs > .run/bootstrap.yaml
"$bin/switchyard" serve --config "$config" &
pids+=($!)
for _ in $(seq 100); do curl -fsS "$ADMIN_URL/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# Envoy opens the provider keys in its configuration with the data plane key, from its
# environment (never from its configuration).
SWITCHYARD_DATAPLANE_KEY=$("$bin/switchyard" dataplane-key --config "$config") \
  .venv/bin/envoy -c .run/bootstrap.yaml --concurrency 2 -l warning --file-flush-interval-msec 1000 &
pids+=($!)
for _ in $(seq 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$GATEWAY_URL/v1/models" || true)
  [[ "$code" == "401" ]] && break
  sleep 0.1
done

cat <<BANNER

  Switchyard is running.
    gateway (OpenAI API)  $GATEWAY_URL/v1
    admin API             $ADMIN_URL/admin/v1   (token: SWITCHYARD_ADMIN_TOKEN, or printed above at first start)
    Envoy admin           $ENVOY_ADMIN_URL
BANNER
if [[ "$config" == "switchyard.example.yaml" ]]; then
  cat <<BANNER
    demo key              ${SWITCHYARD_DEMO_KEY:-sk-demo-change-me}

  Try:
    curl $GATEWAY_URL/v1/chat/completions -H "Authorization: Bearer ${SWITCHYARD_DEMO_KEY:-sk-demo-change-me}" \\
      -H "Content-Type: application/json" -d '{"model":"demo","messages":[{"role":"user","content":"Hello"}]}'
BANNER
fi
echo
echo "  Ctrl-C stops everything."
wait -n "${pids[@]}"
