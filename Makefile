# The only entry points. `make` builds .venv itself with pip (torch 2.13.0 pinned with the rest).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

KERNEL := openmed-repro
# The command a run's provenance names (a notebook's kernel cannot see it): the goals and the variables given.
export OPENMED_REPRO_COMMAND ?= make $(strip $(MAKECMDGOALS) $(MAKEOVERRIDES))
SWEEP_FLAGS ?= --profile cpu --max-train-sentences 5000 --epochs 2

# Run directories are named by the library (`openmed-repro run-dir CHAPTER KEY=VALUE ...`), expanded only in
# recipes, once .venv exists; give a variable on the command line to use another directory.
run_dir = $(or $(shell $(BIN)/openmed-repro run-dir $(1)),$(error openmed-repro run-dir $(1) failed))
HPO_DATASET ?= ncbi_disease
RUN_DIR ?= $(call run_dir,finetune dataset=ncbi_disease profile=cpu)
DAPT_RUN ?= $(call run_dir,dapt profile=cpu)
HPO_RUN ?= $(call run_dir,hpo dataset=$(HPO_DATASET) profile=cpu)

BASELINE_CORPORA ?= ncbi_disease bc5cdr_chem s800
ANNOTATE_RUN ?= $(RUN_DIR)
BENCH_FLAGS ?= --threads 2
# Two finished searches of one study, one pruned (make hpo twice, -p pruner none for one): the bench's
# search section compares them; without both it says it was skipped.
SEARCH_PRUNED ?=
SEARCH_UNPRUNED ?=

HPO_FLAGS ?= -p n_trials 20 -p max_train_sentences 500 -p epochs 3

.PHONY: venv reproduce tuned all-corpora dapt ablation hpo baseline record book test bench bench-annotate clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name $(KERNEL) --display-name "Python (openmed-repro)" > /dev/null
	touch $(STAMP)

## Main job: the fine-tuning chapter on the offline default (minilm-l6, profile cpu) for ncbi_disease.
## Rerunning resumes an interrupted run, or reads a finished one back.
reproduce: venv
	mkdir -p $(dir $(RUN_DIR))
	$(BIN)/papermill notebooks/finetune.ipynb $(RUN_DIR).ipynb -k $(KERNEL) --log-output \
		-p dataset ncbi_disease -p profile cpu -p output_dir $(RUN_DIR)
	$(BIN)/openmed-repro summary $(RUN_DIR) $(RUN_DIR).ipynb

## Every corpus found locally, training split capped (SWEEP_FLAGS); resumable.
all-corpora: venv
	$(BIN)/openmed-repro sweep $(SWEEP_FLAGS) --out runs/all-corpora

## The DAPT chapter on the offline default (profile cpu); resumable.
dapt: venv
	mkdir -p $(dir $(DAPT_RUN))
	$(BIN)/papermill notebooks/dapt.ipynb $(DAPT_RUN).ipynb -k $(KERNEL) --log-output -p profile cpu -p output_dir $(DAPT_RUN)

## The ablation {LoRA, full} x {with, without DAPT} on ncbi_disease and s800 (needs `make dapt`); resumable.
ablation: venv
	$(BIN)/openmed-repro ablation --dapt-adapter $(DAPT_RUN)/adapter --corpora ncbi_disease s800 \
		--max-train-sentences 2000 --epochs 3 --out runs/ablation

## The search chapter: a TPE study on one corpus (resumable; start it again elsewhere with -p storage
## postgresql://... to add workers).
hpo: venv
	mkdir -p $(dir $(HPO_RUN))
	$(BIN)/papermill notebooks/hpo.ipynb $(HPO_RUN).ipynb -k $(KERNEL) --log-output \
		-p dataset $(HPO_DATASET) -p profile cpu $(HPO_FLAGS) -p output_dir $(HPO_RUN)

## The search's best configuration (make hpo) trained like make reproduce, for the tuned-vs-default comparison.
tuned: venv
	$(BIN)/papermill notebooks/finetune.ipynb $(RUN_DIR)-tuned.ipynb -k $(KERNEL) --log-output \
		-f $(HPO_RUN)/best.yaml -p dataset ncbi_disease -p profile cpu -p output_dir $(RUN_DIR)-tuned
	$(BIN)/openmed-repro summary $(RUN_DIR)-tuned $(RUN_DIR)-tuned.ipynb

## The record: every finished run under runs/finetune, dapt, baseline, hpo and bench copied into results/ (small
## files, no weights; commit it) with its index results/README.md. Unchanged runs are skipped; REPLACE=1 overwrites
## records of runs that changed.
record: venv
	$(BIN)/openmed-repro record --all $(if $(REPLACE),--replace,)

## The Jupyter Book: execute every chapter on PROFILE (smoke|cpu|paper) into runs/book/PROFILE, then build
## HTML from those executed notebooks (runs/book/PROFILE/_build/html). NO_EXECUTE=1 rebuilds without rerunning.
PROFILE ?= cpu
book: venv
	$(BIN)/openmed-repro book --profile $(PROFILE) $(if $(NO_EXECUTE),--no-execute,)
## The BiLSTM-CNN-Char baseline (profile cpu) on BASELINE_CORPORA; resumable.
baseline: venv
	$(BIN)/openmed-repro baseline --profile cpu --corpora $(BASELINE_CORPORA) --out $(dir $(call run_dir,baseline profile=cpu))

## The architecture's contracts (import-linter, pyproject.toml), then the unit tests (tiny models and
## synthetic corpora; no network).
test: venv
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

## Speed measurements, each against a peer in the same run; JSON and figures into runs/bench/ (two 3-epoch
## trainings of ncbi_disease). The search section needs SEARCH_PRUNED and SEARCH_UNPRUNED.
bench: venv
	$(BIN)/python benchmarks/significance_speed.py --out runs/bench
	$(BIN)/python benchmarks/performance.py --out runs/bench $(BENCH_FLAGS) \
		$(if $(SEARCH_PRUNED),--search-pruned $(SEARCH_PRUNED) --search-unpruned $(SEARCH_UNPRUNED),)

## Annotation throughput on 1,000 PubMed abstracts, in-process and Spark local mode (needs a finished
## fine-tuning run: `make reproduce`, or ANNOTATE_RUN=DIR).
bench-annotate: venv
	$(BIN)/python benchmarks/annotate_throughput.py --run $(ANNOTATE_RUN) --out runs/bench

clean:
	rm -rf $(VENV) .pytest_cache
