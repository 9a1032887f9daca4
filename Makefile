# The two commands a new user needs: `make repro` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements.stamp
# Stages call `python -m stages.<step>`: the venv's python must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE := 1

.PHONY: venv repro test lint format bench hooks clean-venv

venv: $(STAMP)

# (Re)install only when requirements.txt changes.
$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $(STAMP)

repro: venv
	$(BIN)/dvc repro

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: venv
	$(BIN)/python -m reprolab.bench.features

# Optional: git hooks for pre-commit and DVC (see README).
hooks: venv
	$(BIN)/pre-commit install
	$(BIN)/dvc install

clean-venv:
	rm -rf $(VENV)
