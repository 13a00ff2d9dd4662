#!/usr/bin/env bash
# The summary line of a test run (`make unit`, `make test`) from its log: how many tests (or a
# test's backends) of the PostgreSQL and Redis tiers were skipped (each leaves a
# `SKIPPED <test> [postgres tier]` or `[redis tier]` line), so that a run without those services
# never reads like one with them.
set -euo pipefail
log=$1
for tier in postgres redis; do
  name=$([[ $tier == postgres ]] && echo PostgreSQL || echo Redis)
  skipped=$(grep -c "^SKIPPED .*\[$tier tier\]" "$log" || true)
  if [[ "$skipped" -eq 0 ]]; then
    echo "summary: $name tier: no test skipped"
  else
    echo "summary: $name tier SKIPPED: $skipped tests did not run (no $name; see the SKIPPED lines above)"
  fi
done
