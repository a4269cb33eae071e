# make venv | demo | up | test | chaos | campaign | bench | lint | format | clean
# `demo` and `up` install only what the service needs (the [demo] extra); `test`, `chaos`,
# `lint` and `venv` add the rest (the [dev] extra: pytest, Playwright, the SDKs, ruff).
# Each is (re)installed when it is missing or pyproject.toml changed since.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SERVICE := $(VENV)/.installed-service
DEV := $(VENV)/.installed-dev
# The project's own modules, compiled once: this machine may set PYTHONDONTWRITEBYTECODE,
# and every command would compile them again (site-packages is compiled by pip).
PACKAGES := contract producer worker chatgptes simulator
# One test process per core, each with a redis-server of its own (tests/conftest.py); a
# test file runs whole in one process, so its module fixtures are set up once.
PARALLEL ?= -n auto --dist loadfile

.PHONY: venv demo up test chaos campaign bench lint format clean

venv: $(DEV)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(SERVICE): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	$(BIN)/python -m compileall -q $(PACKAGES)
	touch $@

$(DEV): pyproject.toml $(SERVICE)
	$(BIN)/pip install --quiet -e '.[demo,dev]'
	touch $@

demo: $(SERVICE)
	$(BIN)/chatgptes demo

# A local fleet for your own prompts: prints the environment to use it; Ctrl-C stops it.
up: $(SERVICE)
	$(BIN)/chatgptes up

# Debian's redis-server (each test process starts its own on a free port, never the shared
# 6379) and chromium (the console's browser tests) are installed where missing.
test: $(DEV)
	.ci/need-redis
	.ci/need-chromium
	$(BIN)/pytest -q $(PARALLEL) -m "not chaos"

# What the queue survives: killed workers, a Redis restart, the site's faults, and three
# seeds of the fault campaign (tests/campaign), about a minute of faults each; first, the
# model test of the scripts draws five times the examples ``make test`` draws.
chaos: $(DEV)
	.ci/need-redis
	MODEL_EXAMPLES=400 $(BIN)/pytest -q tests/test_model_scripts.py
	$(BIN)/pytest -q -m chaos

# The fault campaign, longer: seed after seed from SEED, for MINUTES (each run prints its
# verdict; the first that fails stops it, naming its seed, which replays it).
SEED ?= 1
MINUTES ?= 30
campaign: $(DEV)
	.ci/need-redis
	$(BIN)/python -m tests.campaign --seed $(SEED) --minutes $(MINUTES)

# Every benchmark at small sizes (a few minutes); docs/benchmarks.md has the full-size runs.
bench: $(DEV)
	$(BIN)/pip install --quiet -e '.[demo,dev,bench]'
	$(BIN)/python bench/bench_enqueue.py --count 20000 --arq-sample 2000
	$(BIN)/python bench/bench_cli.py --runs 5
	$(BIN)/python bench/bench_throughput.py --scenarios zero,pool,cap --count 1000 --pool-runs 10:1000,100:1000
	$(BIN)/python bench/bench_latency.py --samples 20 --big 5000 --inflight 200
	$(BIN)/python bench/bench_simulator.py --count 2000
	$(BIN)/python bench/bench_recovery.py --prompts 300 --scenarios kill,freeze,renewal --frozen 5
	$(BIN)/python bench/bench_waiting.py --seconds 5
	$(BIN)/python bench/bench_api.py --runs 2 --upload-mb 5 --uploads 2
	$(BIN)/python bench/bench_console.py --identities 2000 --batches 40 --runs 5

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
