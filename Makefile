# Rotor: `make run` starts everything locally; `make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat constraints.txt pyproject.toml | sha1sum | cut -c1-12)
DEVENV ?= .devenv
export ROTOR_TESTBIN_CACHE ?= $(HOME)/.cache/rotor/testbin

.PHONY: help deps venv testbin crds run test unit integration lint bench e2e image clean peers bench-peers

help:
	@echo "make run      start etcd, kube-apiserver, Vault, PostgreSQL; apply CRDs + samples; run Rotor"
	@echo "make test     install deps, build/reuse the testbin, run unit + integration tests"
	@echo "make lint     ruff, mypy (strict) and import-linter layer contracts"
	@echo "make bench    N=1000 SecretSources against the local control plane; prints a table"
	@echo "make bench-memory     Rotor under a 512 MiB limit: 600 x 0.9 MiB sources, 500 forged 1 MiB Secrets, a restart"
	@echo "make bench-fairness   a quiet tenant beside a noisy one: scheduler alone, then the whole stack"
	@echo "make bench-peers N=1000   the same secrets through Rotor, External Secrets Operator, Vault Secrets Operator"
	@echo "make crds     regenerate crds/ from the pydantic models"

# Debian packages the local control plane needs (PostgreSQL server); a no-op when present.
deps:
	@if ! command -v initdb >/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing PostgreSQL from Debian packages"; \
	  $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
	  $(if $(filter 0,$(shell id -u)),,sudo) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[test]'
	touch $@

venv: $(STAMP)

testbin:
	bash hack/testbin.sh

crds: venv
	$(PY) -m rotor crds -o crds
	$(PY) hack/gen_reference.py

# DEMO=0: start everything and apply the samples, without the story. The start time is taken when
# make reads this file, so the demo's "first secret delivered after" counts from `make run` itself.
run: RUN_STARTED := $(shell date +%s.%N)
run: deps venv testbin
	$(PY) hack/run.py --state $(DEVENV) --started-at $(RUN_STARTED) $(if $(filter 0,$(DEMO)),--no-demo)

unit: venv
	$(PY) -m pytest tests/unit -q

integration: deps venv testbin
	$(PY) -m pytest tests/integration -q

test: deps venv testbin
	$(PY) -m pytest tests -q --durations=15

lint: venv
	$(VENV)/bin/ruff check operator tests e2e hack
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: deps venv testbin
	$(PY) hack/bench.py --sources $${N:-1000}

.PHONY: bench-memory bench-fairness
# Issue 14's benchmarks (docs/benchmarks.md): Rotor under a 512 MiB memory cgroup with 600 sources of
# 0.9 MiB + 500 forged-label 1 MiB Secrets, and a restart; a quiet tenant beside a noisy one, whole stack.
bench-memory: deps venv testbin
	nice -n 10 $(PY) hack/bench_memory.py

bench-fairness: deps venv testbin
	nice -n 10 $(PY) hack/bench_fairness.py
	nice -n 10 $(PY) hack/bench_fairness_stack.py

# Peer operators for bench-peers, built once per machine (never in CI). VSO builds from a checkout or a
# bare git dir of hashicorp/vault-secrets-operator: make peers VSO_SOURCE=/path/to/it
peers:
	nice -n 15 bash hack/peers.sh

# Rotor side by side with External Secrets Operator and Vault Secrets Operator (each one built by
# `make peers`; a missing one is skipped, saying so); prints one table, writes bench-results/peers-N.json.
bench-peers: deps venv testbin
	-nice -n 15 bash hack/peers.sh
	nice -n 10 $(PY) hack/bench_peers.py --sources $${N:-1000}

# Needs E2E_KUBECONFIG (+ E2E_VAULT_ADDR, E2E_VAULT_TOKEN) or Docker + kind; skips saying so otherwise.
e2e: venv testbin
	$(PY) -m pytest e2e -q -rs

image:
	v=$$($(PY) -m rotor version | cut -d' ' -f2) && docker build --build-arg VERSION=$$v -t rotor:$$v .

clean:
	rm -rf $(VENV) $(DEVENV) .pytest_cache .mypy_cache .ruff_cache
