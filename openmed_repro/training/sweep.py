"""Fine-tune one configuration on every corpus that loads here, one run directory each, and gather test
strict F1, epochs and wall time into one table beside the paper's Table 4.

    openmed-repro sweep --profile cpu --max-train-sentences 5000 --epochs 2 --out runs/all-corpora

A rerun reads back the corpora already finished and trains only the rest."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from openmed_repro.infra import config
from openmed_repro.training import finetune
from openmed_repro.data import paper
from openmed_repro.infra import runs


def run_all(profile: str, overrides: dict, out: Path, keys: list[str]) -> pd.DataFrame:
    rows = []
    for key in keys:
        run_config = config.load_run_config(profile, {**overrides, "dataset": key})
        started = time.perf_counter()
        result = finetune.run(run_config, out / Path(key).name)
        rows.append(table_row(result.metrics, None if result.reused else time.perf_counter() - started))
        table = pd.DataFrame(rows)
        runs.write_text(out / "results.md", markdown_table(table))
        runs.write_json(out / "results.json", rows)
        print(table.to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def table_row(metrics: dict, wall_seconds: float | None) -> dict:
    reported = paper.table4().get(metrics["dataset"], {})
    return {
        "corpus": Path(metrics["dataset"]).name,
        "train sentences": metrics["sentences"]["train"],
        "epochs run (best)": f"{metrics['epochs_run']:g} ({metrics['best_epoch']:g})",
        "test strict F1": round(100 * metrics["test"]["strict"]["f1"], 1),
        "test default F1": round(100 * metrics["test"]["default"]["f1"], 1),
        "paper F1": reported.get("f1"),
        "train s": round(metrics["train_seconds"]),
        "wall s": round(wall_seconds) if wall_seconds is not None else "(read back)",
    }
