# The two commands a new user needs: `make repro` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements.stamp
# Stages call `python -m stages.<step>`: the venv's python must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE := 1

.PHONY: venv repro test test-fast lint format bench hooks clean-venv

venv: $(STAMP)

# (Re)install only when requirements.txt or pyproject.toml changes. The pins come from
# requirements.txt; the project itself is installed editable on top, without its deps.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

repro: venv
	$(BIN)/dvc repro

# The whole suite (what CI runs).
test: venv
	$(BIN)/python -m pytest

# Everything not marked slow: the inner loop while editing.
test-fast: venv
	$(BIN)/python -m pytest -m "not slow"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The benchmark stage alone (and whatever it needs that is out of date).
bench: venv
	$(BIN)/dvc repro benchmark

# Optional: git hooks for pre-commit and DVC (see README).
hooks: venv
	$(BIN)/pre-commit install
	$(BIN)/dvc install

clean-venv:
	rm -rf $(VENV)
