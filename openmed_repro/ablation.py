"""The paper's ablation: test strict F1 of {LoRA, full fine-tuning} x {with DAPT, without DAPT} per corpus,
every cell trained with the same profile, seed and training-sentence cap.

    python -m openmed_repro.ablation --dapt-adapter runs/dapt/minilm-l6-cpu-seed42/adapter \
        --corpora ncbi_disease s800 --max-train-sentences 2000 --out runs/ablation

A rerun reads finished cells back and trains only the missing ones."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from openmed_repro import config, finetune, runs

METHODS = ("lora", "full")


def cells(corpora: list[str], dapt_adapter: str) -> list[tuple[str, str, str | None]]:
    return [(corpus, method, adapter) for corpus in corpora for method in METHODS for adapter in (None, dapt_adapter)]


def run_all(profile: str, overrides: dict, corpora: list[str], dapt_adapter: str, out: Path) -> pd.DataFrame:
    rows = []
    for corpus, method, adapter in cells(corpora, dapt_adapter):
        run_config = config.load_run_config(profile, {**overrides, "dataset": corpus, "method": method,
                                                      "dapt_adapter": adapter})
        name = f"{Path(corpus).name}-{method}-{'dapt' if adapter else 'base'}"
        metrics = finetune.run(run_config, out / name).metrics
        rows.append({"corpus": Path(corpus).name, "method": method, "DAPT": "with" if adapter else "without",
                     "test strict F1": round(100 * metrics["test"]["strict"]["f1"], 1),
                     "epochs run": metrics["epochs_run"], "train s": round(metrics["train_seconds"])})
        runs.write_json(out / "ablation.json", rows)
    return pd.DataFrame(rows)


def table(rows: pd.DataFrame) -> pd.DataFrame:
    """Corpus x method rows, F1 without and with DAPT and the difference."""
    wide = rows.pivot_table(index=["corpus", "method"], columns="DAPT", values="test strict F1").reset_index()
    wide["DAPT gain"] = (wide["with"] - wide["without"]).round(1)
    return wide[["corpus", "method", "without", "with", "DAPT gain"]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dapt-adapter", required=True, help="adapter/ directory of a finished DAPT run")
    parser.add_argument("--corpora", nargs="+", default=["ncbi_disease", "s800"])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--max-train-sentences", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/ablation"))
    args = parser.parse_args(argv)
    overrides = {"max_train_sentences": args.max_train_sentences}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    result = table(run_all(args.profile, overrides, args.corpora, args.dapt_adapter, args.out))
    print(result.to_string(index=False))


if __name__ == "__main__":
    main()
