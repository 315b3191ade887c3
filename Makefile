# caftm — two set-up commands: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned: this exact CPU build is on the build machines' disk; a looser pin downloads CUDA.
TORCH_PIN := torch==2.13.0
# `make demo` needs only torch; `make test` installs every extra its tests exercise.
DEMO_EXTRAS := torch
EXTRAS := torch,lightning,huggingface,s3,dashboard,ray,skypilot,dev
B ?=

# Tests run on parallel workers (pytest-xdist): most of the suite waits on processes, not CPU.
# Tests sharing one Ray cluster or one browser are grouped onto one worker (xdist_group).
PYTEST_WORKERS ?= 3
PYTEST := bash .ci/isolated $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup

.PHONY: demo test check lint bench venv clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed-demo: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH_PIN)
	$(BIN)/pip install -q -e ".[$(DEMO_EXTRAS)]" $(TORCH_PIN)
	touch $@

$(VENV)/.installed: $(VENV)/.installed-demo
	$(BIN)/pip install -q -e ".[$(EXTRAS)]" $(TORCH_PIN)
	touch $@

venv: $(VENV)/.installed

DEMO_DIR := .caftm/demo

# The main job on the embedded defaults: intensities and forecasts, then small CNN jobs run
# through the supervisor (local executor, simulated GPU unless an NVIDIA GPU is present, an
# accelerated clock: a second of training or pause is half a grid hour, start-ups and moves
# count at 1x): one moves, one pauses under a deadline, both against carbon-agnostic twins; a
# table, the pause's saving and deadline, a PNG, a JSON.
demo: $(VENV)/.installed-demo
	$(BIN)/caftm demo --workdir $(DEMO_DIR) --json $(DEMO_DIR)/demo.json

lint: venv
	$(BIN)/ruff check src tests bench scripts examples
	$(BIN)/mypy

# Tests run in a network namespace with only loopback where the machine allows it.
# Every test; the twenty slowest are listed at the end.
test: venv lint
	$(PYTEST) --durations=20 $(PYTEST_ARGS)

# The inner loop: ruff, mypy and every test not marked slow (under two minutes).
check: venv lint
	$(PYTEST) -q -m "not slow" $(PYTEST_ARGS)

# Benchmarks run in a loopback-only network namespace too (the Ray figures start a cluster).
bench: venv
	bash .ci/isolated $(BIN)/python bench/run.py $(B)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
