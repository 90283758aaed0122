# The only entry points. `make` builds .venv itself with pip (torch 2.13.0 pinned with the rest).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv reproduce test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Main job on the offline default: the corpus statistics table beside the paper's split sizes.
reproduce: venv
	$(BIN)/python -m openmed_repro.corpora

## Unit tests (tiny models and synthetic corpora; no network).
test: venv
	$(BIN)/python -m pytest -q

## Speed measurements, each against a peer in the same run; JSON into runs/bench/.
bench: venv
	$(BIN)/python benchmarks/significance_speed.py --out runs/bench

clean:
	rm -rf $(VENV) .pytest_cache
