# The two commands a new user needs: `make repro` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements.stamp
# Stages call `python -m stages.<step>`: the venv's python must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export HF_HUB_OFFLINE := 1

.PHONY: venv repro test test-fast lint format bench hooks clean-venv pr-report promote check-repro

venv: $(STAMP)

# (Re)install only when requirements.txt or pyproject.toml changes. The pins come from
# requirements.txt; the project itself is installed editable on top, without its deps.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# params.yaml is checked whole before DVC touches anything: `dvc repro` deletes a stage's
# outputs before running it, so a bad value found by the stage itself would cost them. A venv
# named with VENV=... that exists (another clone's) is used as it is, never reinstalled.
repro: $(if $(and $(filter command line,$(origin VENV)),$(wildcard $(BIN)/python)),,venv)
	$(BIN)/python -c 'import sys; from reprolab.core.config import check_params; sys.exit(check_params())'
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

# Pull requests and releases (reprolab/release). Like `repro`, they keep this clone's venv up
# to date, but use a venv named with VENV=... that exists (another clone's) as it is.
RELEASE_ENV := $(if $(and $(filter command line,$(origin VENV)),$(wildcard $(BIN)/python)),,venv)
BASE ?= main
REV ?= HEAD

# pr-report.md (and the plots in pr-report-plots/): params, metrics (timing apart), gates.
pr-report: $(RELEASE_ENV)
	$(BIN)/python -m reprolab.release.report --base $(BASE)

# Register MODEL at REV with GTO and assign STAGE, only if its validate gates passed there.
promote: $(RELEASE_ENV)
	@test -n "$(MODEL)" -a -n "$(STAGE)" || { echo 'error: make promote needs MODEL=<mamba|pinn|cet> STAGE=<stage, e.g. prod>' >&2; exit 2; }
	$(BIN)/python -m reprolab.release.promote $(MODEL) $(STAGE) --rev $(REV) $(if $(VERSION),--version $(VERSION))

# After a rerun (dvc repro): fail if a non-timing metric or dvc.lock hash differs from REV's.
check-repro: $(RELEASE_ENV)
	$(BIN)/python -m reprolab.release.check --rev $(REV)
