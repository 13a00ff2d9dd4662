#!/usr/bin/env bash
# The summary line of a test run (`make unit`, `make test`) from its log: how many tests of the
# PostgreSQL tier were skipped (each leaves a `SKIPPED <test> [postgres tier]` line), so that a
# run without PostgreSQL never reads like one with it.
set -euo pipefail
log=$1
skipped=$(grep -c '^SKIPPED .*\[postgres tier\]' "$log" || true)
if [[ "$skipped" -eq 0 ]]; then
  echo "summary: PostgreSQL tier: no test skipped"
else
  echo "summary: PostgreSQL tier SKIPPED: $skipped tests did not run (no PostgreSQL; see the SKIPPED lines above)"
fi
