"""The baseline's sweeps: one BiLSTM-CNN-Char run per corpus beside the Spark NLP paper's figures (`run_all`),
and one run per corpus and word-vector start with the start chosen on dev strict F1 (`choose_word_embeddings`).
Each run is training/baseline.py's; a finished one is read back, not trained again.

    openmed-repro baseline --profile cpu --corpora ncbi_disease bc5cdr_chem s800 --out runs/baseline
    openmed-repro baseline --profile cpu --corpora ncbi_disease --word-embeddings learned minilm-l6 word2vec-dapt

A module of its own, not training/sweep.py: that one sweeps fine-tuning configurations (seeds, a Ray placement,
a table beside Table 4); this one sweeps a different chapter's runs, with its own tables and the start choice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from openmed_repro.infra import atomic_files, job_settings, layout
from openmed_repro.infra.job_settings import BaselineConfig
from openmed_repro.training import baseline


def run_in(out: Path, settings: BaselineConfig, after_each: Callable[[Path], None] | None = None,
           recorded: Callable[[Path], dict | None] | None = None) -> dict:
    """One run in `out`/<its default directory's name> (a finished one read back); its metrics. `after_each`
    sees the finished run's directory; a run for which `recorded` returns metrics (the record holds it) is not
    trained again."""
    run_dir = out / layout.default_directory(settings).name
    kept = recorded(run_dir) if recorded else None
    if kept is not None:
        return kept
    metrics = baseline.run(settings, run_dir).metrics
    if after_each:
        after_each(run_dir)
    return metrics


def run_all(profile: str, overrides: dict, keys: Sequence[str], out: Path,
            after_each: Callable[[Path], None] | None = None,
            recorded: Callable[[Path], dict | None] | None = None) -> list[dict]:
    """One baseline run per corpus under `out` (finished ones read back, recorded ones not trained again), the
    comparison table printed after each, and every run's metrics in results-<profile>.json; `after_each` sees
    each finished run's directory."""
    results = []
    for key in keys:
        settings = job_settings.load_baseline_config(profile, {**overrides, "dataset": key})
        results.append(run_in(out, settings, after_each, recorded))
        table = baseline.comparison(results)
        print(table.to_string(), flush=True)
    atomic_files.write_json(out / f"results-{profile}.json", results)
    return results


def start_choice(results: Sequence[dict]) -> pd.DataFrame:
    """Dev and test strict F1 of each corpus's run per word-vector start, and per corpus the start chosen: the
    best dev strict F1 (test F1 is shown, never used to choose; a tie goes to the start run first)."""
    table = pd.DataFrame([{"corpus": Path(m["dataset"]).name, "word_embeddings": m["word_embeddings"],
                           "dev strict F1": 100 * m["devel"]["strict"]["f1"],
                           "test strict F1": 100 * m["test"]["strict"]["f1"]} for m in results])
    table["chosen"] = table.index.isin(table.groupby("corpus", sort=False)["dev strict F1"].idxmax())
    return table.set_index(["corpus", "word_embeddings"]).round(2)


def choose_word_embeddings(profile: str, overrides: dict, keys: Sequence[str], starts: Sequence[str], out: Path,
                           after_each: Callable[[Path], None] | None = None) -> pd.DataFrame:
    """One run per corpus and word-vector start under `out` (each start its own run directory; finished ones
    read back), the start table printed after each run, and the table with the chosen start of each corpus in
    word-embeddings-<profile>.json. Every start is checked before anything trains."""
    plans = [job_settings.load_baseline_config(profile, {**overrides, "dataset": key, "word_embeddings": start})
             for key in keys for start in dict.fromkeys(starts)]
    for settings in plans:
        baseline.check_start(settings)
    results = []
    for settings in plans:
        results.append(run_in(out, settings, after_each))
        print(start_choice(results).to_string(), flush=True)
    table = start_choice(results)
    chosen = {corpus: start for corpus, start in table.index[table["chosen"]]}
    atomic_files.write_json(out / f"word-embeddings-{profile}.json",
                    {"rule": "per corpus, the start with the best dev strict F1", "chosen": chosen,
                     "runs": table.reset_index().to_dict(orient="records")})
    for corpus, start in chosen.items():
        print(f"{corpus}: word_embeddings {start} (best dev strict F1 {table.loc[(corpus, start), 'dev strict F1']})",
              flush=True)
    return table
