PYTHON ?= python3
PORT ?= 3000
API_PORT ?= 8765
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/rl-pipeline demo --port $(PORT) --api-port $(API_PORT)

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check rl_pipeline rl_pipeline_tests benchmarks
	$(BIN)/ruff format --check rl_pipeline rl_pipeline_tests benchmarks

bench: install
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/limiter_bench.py
	$(BIN)/python benchmarks/writer_bench.py
	$(BIN)/python benchmarks/growth_bench.py
	$(BIN)/python benchmarks/backfill_bench.py
	$(BIN)/python benchmarks/daemon_bench.py
	$(BIN)/python benchmarks/memory_bench.py
	$(BIN)/python benchmarks/peers_bench.py
	$(BIN)/python benchmarks/server_truth_bench.py
	$(BIN)/python benchmarks/pace_replay.py
	$(BIN)/python benchmarks/log_size_bench.py
	$(BIN)/python benchmarks/latency_bench.py

clean:
	rm -rf $(VENV) data/*.duckdb* data/*.sqlite* dagster_home/storage dagster_home/history dagster_home/logs dagster_home/schedules
