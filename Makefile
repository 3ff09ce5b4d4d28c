# `make run`: set up .venv if needed, then train MT-PPO on MiniGrid MT5 with 2 Ray runners.
# `make test`: set up .venv if needed, then run the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/make-run

.PHONY: setup run test lint bench clean

setup: $(VENV)/.installed

# torch==2.13.0 first: a local CPU build; an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

run: setup
	$(BIN)/mtrl train envs/minigrid-mt5.yaml agents/mtppo.yaml runners=2 total_steps=400000 \
		run_dir=$(RUN_DIR)-$$(date +%Y%m%d-%H%M%S)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/speed_runners.py

clean:
	rm -rf $(VENV) runs
