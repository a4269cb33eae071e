# make venv | demo | test | chaos | campaign | bench | lint | format | clean
# The venv is (re)built when it is missing or pyproject.toml changed since the last install.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test chaos campaign bench lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/chatgptes demo

# A redis-server of the tests' own on a free port (see .ci/with-redis), never the shared 6379;
# Debian's chromium for the console's browser tests (see .ci/need-chromium).
test: venv
	.ci/need-chromium
	.ci/with-redis $(BIN)/pytest -q -m "not chaos"

# What the queue survives: killed workers, a Redis restart, the site's faults, and three
# seeds of the fault campaign (tests/campaign), about a minute of faults each; first, the
# model test of the scripts draws five times the examples ``make test`` draws.
chaos: venv
	MODEL_EXAMPLES=400 .ci/with-redis $(BIN)/pytest -q tests/test_model_scripts.py
	.ci/with-redis $(BIN)/pytest -q -m chaos

# The fault campaign, longer: seed after seed from SEED, for MINUTES (each run prints its
# verdict; the first that fails stops it, naming its seed, which replays it).
SEED ?= 1
MINUTES ?= 30
campaign: venv
	$(BIN)/python -m tests.campaign --seed $(SEED) --minutes $(MINUTES)

# Every benchmark at small sizes (a few minutes); docs/benchmarks.md has the full-size runs.
bench: venv
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/bench_enqueue.py --count 20000 --arq-sample 2000
	$(BIN)/python bench/bench_throughput.py --scenarios zero,pool,cap --count 1000 --pool-runs 10:1000,100:1000
	$(BIN)/python bench/bench_latency.py --samples 20 --big 5000 --inflight 200
	$(BIN)/python bench/bench_simulator.py --count 2000
	$(BIN)/python bench/bench_recovery.py --prompts 300 --scenarios kill,freeze,renewal --frozen 5
	$(BIN)/python bench/bench_waiting.py --seconds 5
	$(BIN)/python bench/bench_api.py --runs 2 --upload-mb 5 --uploads 2
	$(BIN)/python bench/bench_console.py --identities 2000 --batches 40 --runs 5

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
