"""The paper's ablation: test strict F1 of {LoRA, full fine-tuning} x {with DAPT, without DAPT} per corpus,
every cell trained with the same profile, seed, epochs and training-sentence cap. Full fine-tuning takes its
own learning rate (the profile's LoRA rate would wreck every weight of the backbone).

    openmed-repro ablation --dapt-adapter runs/dapt/minilm-l6-cpu-seed42/adapter \
        --corpora ncbi_disease s800 --max-train-sentences 2000 --epochs 3 --out runs/ablation

A rerun reads finished cells back and trains only the missing ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from openmed_repro.infra import config
from openmed_repro.training import finetune
from openmed_repro.evaluation import metrics
from openmed_repro.infra import runs
from openmed_repro.evaluation import significance
from openmed_repro.errors import OpenMedError

METHODS = ("lora", "full")
FULL_FINE_TUNING_LEARNING_RATE = 5e-5   # the standard Hugging Face recipe's (run_ner.py)


def cells(corpora: list[str], dapt_adapter: str) -> list[tuple[str, str, str | None]]:
    return [(corpus, method, adapter) for corpus in corpora for method in METHODS for adapter in (None, dapt_adapter)]


def cell_name(corpus: str, method: str, adapter: str | None) -> str:
    return f"{Path(corpus).name}-{method}-{'dapt' if adapter else 'base'}"


def run_cell(profile: str, overrides: dict, corpus: str, method: str, adapter: str | None, out: Path,
             full_learning_rate: float = FULL_FINE_TUNING_LEARNING_RATE) -> dict:
    """Train (or read back) one cell and return its table row."""
    method_overrides = {"learning_rate": full_learning_rate} if method == "full" else {}
    run_config = config.load_run_config(profile, {**overrides, **method_overrides, "dataset": corpus,
                                                  "method": method, "dapt_adapter": adapter})
    metrics = finetune.run(run_config, out / cell_name(corpus, method, adapter)).metrics
    return {"corpus": Path(corpus).name, "method": method, "DAPT": "with" if adapter else "without",
            "run": str(out / cell_name(corpus, method, adapter)),
            "learning rate": run_config.learning_rate,
            "test strict F1": round(100 * metrics["test"]["strict"]["f1"], 1),
            "dev strict F1": round(100 * metrics["devel"]["strict"]["f1"], 1),
            "epochs run": metrics["epochs_run"], "train s": round(metrics["train_seconds"])}


def run_all(profile: str, overrides: dict, corpora: list[str], dapt_adapter: str, out: Path,
            full_learning_rate: float = FULL_FINE_TUNING_LEARNING_RATE) -> pd.DataFrame:
    rows = []
    for corpus, method, adapter in cells(corpora, dapt_adapter):
        rows.append(run_cell(profile, overrides, corpus, method, adapter, out, full_learning_rate))
        runs.write_json(out / "ablation.json", rows)
    return pd.DataFrame(rows)


def read(out: str | Path) -> pd.DataFrame | None:
    """The cells written so far by `run_all` into `out`, or None before the first one."""
    path = Path(out) / "ablation.json"
    return pd.DataFrame(runs.read_json(path)) if path.is_file() else None


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Corpus x method rows, test strict F1 without and with DAPT, the difference and, where the cells' run
    directories are known, the approximate randomization p-value of that difference (10,000 trials)."""
    wide = rows.pivot_table(index=["corpus", "method"], columns="DAPT", values="test strict F1").reset_index()
    wide["DAPT gain"] = (wide["with"] - wide["without"]).round(1)
    columns = ["corpus", "method", "without", "with", "DAPT gain"]
    if "run" in rows:
        directories = rows.set_index(["corpus", "method", "DAPT"])["run"]
        wide["p (AR)"] = [round(dapt_p_value(Path(directories[(c, m, "without")]), Path(directories[(c, m, "with")])), 4)
                          for c, m in zip(wide["corpus"], wide["method"])]
        columns.append("p (AR)")
    return wide[columns]


def dapt_p_value(without: Path, with_dapt: Path) -> float:
    """Two-sided approximate randomization p-value of the strict-F1 difference between two cells' test
    predictions (the same gold sentences, or an error)."""
    gold, predicted_without = _gold_and_predicted(without)
    gold_again, predicted_with = _gold_and_predicted(with_dapt)
    if gold != gold_again:
        raise OpenMedError(f"{without} and {with_dapt} were scored on different gold test data")
    return significance.approximate_randomization(metrics.sentence_counts(gold, predicted_without),
                                                  metrics.sentence_counts(gold, predicted_with)).p_value


def _gold_and_predicted(run_dir: Path) -> tuple[list[list[str]], list[list[str]]]:
    _, gold, predicted = runs.read_predictions(run_dir / "predictions_test.tsv")
    return gold, predicted
