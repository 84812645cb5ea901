# The two commands a new user needs: `make run` and `make test`.
# Both build .venv from nothing but Python (>= 3.11) the first time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench bench-sim bench-sched calibrate-report clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/tokenfactory cost --gpu H100-SXM --gpus 8 --tokens-per-s-per-gpu 3000 \
		--model llama-3.1-70b --tier standard --scenarios

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

# Benchmarks measure speed and money side by side; they are not part of `make test`.
bench: bench-sim bench-sched

bench-sim: $(STAMP)
	$(BIN)/python benchmarks/sim_speed.py

bench-sched: $(STAMP)
	$(BIN)/python benchmarks/sched_policies.py

calibrate-report: $(STAMP)
	$(BIN)/tokenfactory calibrate --report

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
