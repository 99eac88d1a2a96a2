# Two entry points: `make demo` and `make test`. Both build their own venv.
# `make test-fast`: only the pure and MockClock tests (see tests/README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint typecheck unit bench bench-cpu bench-peers bench-proxy bench-scale bench-soak clean test-openclaw incident-chain mutate mutate-modules mutate-ratchet

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m soak demo profiles/demo.toml --results-dir results
	$(BIN)/python -m soak report "$$(ls -td results/*-demo | head -n 1)"

lint: $(STAMP)
	$(BIN)/ruff check soak tests benchmarks
	$(BIN)/ruff format --check soak tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy --strict

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

# the tests marked neither `process` (child processes, real sockets, Chromium)
# nor `slow`: pure and MockClock tests, in seconds (tests/README.md)
test-fast: $(STAMP)
	$(BIN)/pytest -m "not process and not slow"

# The incident's chain on loopback: nginx (proxy_read_timeout 7s) in front of
# `soak gateway --bug ignore-max-missed`, soak run through it, then the report
# (needs Debian's nginx; docs/intermediaries.md)
incident-chain: $(STAMP)
	$(BIN)/python examples/incident_chain.py --results-dir results

# Mutation testing of the modules that decide the numbers ([tool.mutmut] in
# pyproject.toml) against the fast tier, then the score per module
# (docs/testing.md). CPU-heavy: minutes on two cores. MUTATE_ARGS narrows it to
# some mutants, e.g. MUTATE_ARGS='soak.heartbeat.*'.
MUTATE_CHILDREN ?= 2
mutate: $(STAMP)
	rm -rf mutants
	nice -n 10 $(BIN)/mutmut run --max-children $(MUTATE_CHILDREN) $(MUTATE_ARGS)
	$(BIN)/python .ci/mutation_score.py

# The same, one module at a time against its own test files only
# (.ci/mutate_by_module.py: minutes where the whole tier takes hours), kept
# under mutants-by-module/; MUTATE_MODULES narrows it, e.g. soak/storm.py
MUTATE_MODULES ?= all
mutate-modules: $(STAMP)
	nice -n 10 $(BIN)/python .ci/mutate_by_module.py --children $(MUTATE_CHILDREN) \
		--keep mutants-by-module $(MUTATE_MODULES)

# CI's mutation ratchet: heartbeat.py and thresholds.py against their own
# tests, in a scratch directory; exits 1 under 90% (docs/testing.md)
mutate-ratchet: $(STAMP)
	$(BIN)/python .ci/mutate_by_module.py

# Against the real OpenClaw Gateway (downloads ~330 MB into a cache outside
# the repository once); not part of `make test`. See tests/openclaw/run.sh.
test-openclaw: $(STAMP)
	PYTHON=$(BIN)/python bash tests/openclaw/run.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/engine.py

# e.g. make bench-scale CLIENTS=100000, or ARGS="--clients 100000 --hold 300"
# (make itself takes no --clients: it would refuse the option)
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py $(if $(CLIENTS),--clients $(CLIENTS)) $(ARGS)

bench-cpu: $(STAMP)
	$(BIN)/python benchmarks/cpu.py

# soak next to Node's ws, one after the other against one pong server
# (npm ws into ~/.cache/soak once); e.g. make bench-peers ARGS="--server soak-gateway"
bench-peers: $(STAMP)
	$(BIN)/python benchmarks/peers.py $(ARGS)

bench-proxy: $(STAMP)
	$(BIN)/python benchmarks/proxy.py

# 10,000 clients for an hour (docs/benchmarks.md); e.g. make bench-soak ARGS="--duration 2h"
bench-soak: $(STAMP)
	$(BIN)/python benchmarks/bench_soak.py $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache mutants
