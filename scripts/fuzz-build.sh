#!/usr/bin/env bash
# Builds every fuzz target of the filter (`make fuzz-build`, run by CI): the parsers and
# translators that read what clients and providers send must at least build for fuzzing.
# cargo-fuzz wants a nightly compiler: the nightly toolchain when rustup has one, otherwise the
# pinned stable compiler with RUSTC_BOOTSTRAP (the sanitizer flags are nightly-only).
set -euo pipefail
cd "$(dirname "$0")/../core/fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  exec cargo +nightly fuzz build
fi
export RUSTC_BOOTSTRAP=1
exec cargo fuzz build
