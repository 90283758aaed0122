"""The Performance chapter's tables, read from the JSON that `make bench` (benchmarks/performance.py) writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from openmed_repro.infra import layout, paths
from openmed_repro.errors import OpenMedError


def measurement(name: str, path: str | Path | None = None) -> Path:
    """A benchmark's JSON file: `path`, else runs/bench/<name>, where `make bench` writes it."""
    return Path(path) if path else layout.LAYOUT.folder(layout.LAYOUT.bench) / name


def load(path: str | Path) -> dict:
    """A benchmark record; a relative path is tried in the working directory, then in the project root."""
    path = Path(path)
    for candidate in (path, paths.PROJECT_ROOT / path):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    raise OpenMedError(f"{path}: no benchmark results here; run `make bench` first (it writes runs/bench/performance.json)")


def training(record: dict) -> pd.DataFrame:
    """Both recipes side by side: throughput, wall time, memory, dev curve, test F1, time to quality."""
    rows = {}
    for name, run in record["training"].items():
        rows[run["recipe"]] = {
            "learning rate": run["settings"]["learning_rate"],
            "epochs": run["epochs_run"],
            "train tokens/s": run["train_tokens_per_second"],
            "wall s (dev evaluations included)": run["wall_seconds"],
            "of which dev evaluation s": run["evaluation_seconds"],
            "process CPU s": run.get("cpu_seconds"),
            "peak RSS MB": run["peak_rss_mb"],
            "peak GPU memory MB": run.get("peak_gpu_memory_mb"),
            "precision": run["settings"].get("precision", "fp32"),
            "dev strict F1 per epoch": " / ".join(f"{100 * p['dev_strict_f1']:.1f}" for p in run["dev_curve"]),
            "test strict F1": round(100 * run["test"]["strict_f1"], 1),
            "test default-mode F1": round(100 * run["test"]["default_f1"], 1),
            "s to the standard recipe's final dev F1": run.get("time_to_standard_final_dev_f1",
                                                               run["wall_seconds"]),
            "CPU s to it": run.get("cpu_time_to_standard_final_dev_f1", run.get("cpu_seconds")),
            "trainable parameters": run["trainable_parameters"],
        }
    return pd.DataFrame(rows)


def inference(record: dict) -> pd.DataFrame:
    """Sentences per second of our predictor and of the pipeline, and whether their entities agree."""
    table = pd.DataFrame(record["inference"]["runners"]).T
    columns = ["sentences_per_second", "tokens_per_second", "seconds", "speedup_of_ours", "entities",
               "sentences_with_other_entities"]
    return table[[c for c in columns if c in table.columns]]


def disagreements(record: dict) -> pd.DataFrame:
    """Sentences whose entities differ between our predictor and a pipeline (at most 20 per pipeline)."""
    return pd.DataFrame(record["inference"]["disagreements"],
                        columns=["runner", "sentence", "text", "only_ours", "only_pipeline"])


def utilisation(record: dict) -> pd.DataFrame:
    """Achieved GFLOP/s and the fraction of the fp32 matmul peak measured in the same run."""
    rows = {name: {"GFLOP/s": round(row["flops"] / 1e9, 1), "% of peak": round(100 * row["fraction_of_peak"], 1)}
            for name, row in record["utilisation"]["rows"].items()}
    return pd.DataFrame(rows).T


def options(record: dict) -> pd.DataFrame:
    """Training options measured on the same sentences, relative to the standard recipe's batching."""
    table = pd.DataFrame(record.get("training_options", []))
    return table.set_index("option")[["threads", "tokens_per_second", "relative_to_standard", "error"]] \
        if len(table) else table


def search(record: dict) -> pd.DataFrame | None:
    """Pruned against unpruned search: trial time and best dev F1, or None when no search was given."""
    section = record.get("search", {})
    if "skipped" in section:
        return None
    return pd.DataFrame({name: section[name] for name in ("pruned", "unpruned")}).T


def search_summary(record: dict) -> str:
    """One sentence on what pruning saved, epochs first (a loaded machine stretches trial times, not epochs)."""
    section = record.get("search", {})
    if "skipped" in section:
        return f"Not measured in this run: {section['skipped']}"
    epochs = f"{section['epochs_saved']:.0%} of the epochs trained and " if section.get("epochs_saved") is not None else ""
    sentence = (f"Pruning saved {epochs}{section['trial_time_saved']:.0%} of the trial time; best dev strict F1 "
                f"{100 * section['best_dev_f1_difference']:+.1f} points against the unpruned search.")
    replay = section.get("pruner_replayed_on_unpruned")
    if replay and replay["epochs_saved"] is not None:
        kept = "kept its best trial" if replay["best_dev_strict_f1"] == replay["unpruned_best_dev_strict_f1"] else \
            f"kept a best dev F1 of {100 * (replay['best_dev_strict_f1'] or 0):.1f} (unpruned {100 * replay['unpruned_best_dev_strict_f1']:.1f})"
        pruner = replay["pruner"].replace("_", " ")
        sentence += (f" Replayed on the unpruned study's own {replay['trials']} trials, the {pruner} pruner would have "
                     f"pruned {replay['pruned_trials']}, saved {replay['epochs_saved']:.0%} of the epochs and {kept}.")
    return sentence


def targets(record: dict) -> pd.Series:
    """Each target and whether it is met, one row each; the low-precision training target's figures are
    prefixed with its precision."""
    rows = {}
    for name, value in record["targets"].items():
        if isinstance(value, dict):
            prefix = f"{value.get('precision', name)} training: "
            rows.update({prefix + key: v for key, v in value.items() if key != "precision"})
        else:
            rows[name] = value
    return pd.Series(rows)
