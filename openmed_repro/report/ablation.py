"""The paper's DAPT ablation on full training splits: {LoRA, full fine-tuning} x {with, without DAPT}, each
cell a fine-tuning run of the record (or runs/) with its seed, each DAPT start paired with the plain start of the
same method, corpus and seed and tested by approximate randomization. The plain cells are Table 4's own runs;
`make ablation` trains the DAPT ones."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from openmed_repro.evaluation import comparison

CORPORA = ("ncbi_disease", "s800")
SYSTEMS = (("cpu", "lora"), ("cpu-fast", "full"))   # the laptop profiles of LoRA and of full fine-tuning


def by_seed(root: str | Path, corpora: tuple[str, ...] = CORPORA, systems: tuple = SYSTEMS, trials: int = 10_000,
            seed: int = 0, data_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per corpus, method and seed: test strict F1 without and with DAPT, the gain, its approximate
    randomization p-value and which start won ("tie" when p >= comparison.ALPHA)."""
    rows = []
    for profile, method in systems:
        paired = comparison.paired_by_seed(root, (profile, method, False), (profile, method, True), trials=trials,
                                           seed=seed, data_dir=data_dir)
        without, with_dapt = f"{method} F1", f"{method}+DAPT F1"
        for row in paired[paired["corpus"].isin(corpora)].to_dict("records"):
            winner = {"tie": "tie", method: "without DAPT"}.get(row["winner"], "with DAPT")
            rows.append({"corpus": row["corpus"], "method": method, "profile": profile, "seed": row["seed"],
                         "without": row[without], "with": row[with_dapt],
                         "DAPT gain": round(row[with_dapt] - row[without], 2), "p (AR)": row["p (AR)"],
                         "winner": winner})
    return pd.DataFrame(rows, columns=["corpus", "method", "profile", "seed", "without", "with", "DAPT gain",
                                       "p (AR)", "winner"])


def summary(seeds: pd.DataFrame) -> pd.DataFrame:
    """Per corpus and method: the seeds, mean test F1 without and with DAPT, the mean gain, and how many seeds
    DAPT won, lost or tied."""
    rows = []
    for (corpus, method), group in seeds.groupby(["corpus", "method"], sort=False):
        rows.append({"corpus": corpus, "method": method, "seeds": len(group),
                     "without": round(group["without"].mean(), 2), "with": round(group["with"].mean(), 2),
                     "DAPT gain": round(group["DAPT gain"].mean(), 2),
                     "DAPT wins": int((group["winner"] == "with DAPT").sum()),
                     "DAPT loses": int((group["winner"] == "without DAPT").sum()),
                     "ties": int((group["winner"] == "tie").sum())})
    return pd.DataFrame(rows, columns=["corpus", "method", "seeds", "without", "with", "DAPT gain", "DAPT wins",
                                       "DAPT loses", "ties"])
