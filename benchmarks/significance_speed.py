"""How long the approximate randomization test takes on the largest test split (linnaeus, 7,142
sentences): the vectorised test against the plain per-sentence loop, measured in the same run.

    .venv/bin/python benchmarks/significance_speed.py [--trials 10000] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from openmed_repro.data import corpora
from openmed_repro.evaluation.metrics import sentence_counts
from openmed_repro.evaluation.significance import approximate_randomization, bootstrap_interval


def degraded(tags: list[list[str]], miss: float, rng: np.random.Generator) -> list[list[str]]:
    """A plausible system output: gold with a fraction of entities dropped and one spurious entity in 5%."""
    out = []
    for sentence in tags:
        sentence = list(sentence)
        for i, tag in enumerate(sentence):
            if tag.startswith("B-") and rng.random() < miss:
                j = i
                while j < len(sentence) and (j == i or sentence[j].startswith("I-")):
                    sentence[j] = "O"
                    j += 1
        if rng.random() < 0.05 and sentence[0] == "O":
            sentence[0] = "B-Species"
        out.append(sentence)
    return out


def slow_loop(a: np.ndarray, b: np.ndarray, trials: int, seed: int) -> None:
    """The per-trial, per-sentence loop that the vectorised code replaces (timed, result unused)."""
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        swap = rng.random(len(a)) < 0.5
        total_a, total_b = np.zeros(3), np.zeros(3)
        for i in range(len(a)):
            total_a += b[i] if swap[i] else a[i]
            total_b += a[i] if swap[i] else b[i]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--slow-trials", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()

    gold = [s.tags for s in corpora.load("linnaeus").test]
    rng = np.random.default_rng(0)
    a = sentence_counts(gold, degraded(gold, 0.10, rng))
    b = sentence_counts(gold, degraded(gold, 0.15, rng))

    start = time.perf_counter()
    result = approximate_randomization(a, b, trials=args.trials, seed=0)
    fast_seconds = time.perf_counter() - start

    start = time.perf_counter()
    interval = bootstrap_interval(a, samples=args.trials, seed=0)
    bootstrap_seconds = time.perf_counter() - start

    start = time.perf_counter()
    slow_loop(a, b, args.slow_trials, seed=0)
    slow_per_trial = (time.perf_counter() - start) / args.slow_trials

    record = {
        "corpus": "linnaeus", "split": "test", "sentences": len(gold), "trials": args.trials,
        "randomization_seconds": round(fast_seconds, 3),
        "bootstrap_seconds": round(bootstrap_seconds, 3),
        "slow_loop_seconds_per_trial": round(slow_per_trial, 4),
        "speedup_vs_slow_loop": round(slow_per_trial * args.trials / fast_seconds, 1),
        "p_value": result.p_value, "f1_a": round(result.f1_a, 4), "f1_b": round(result.f1_b, 4),
        "bootstrap_95": [round(interval.low, 4), round(interval.high, 4)],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "significance_speed.json").write_text(json.dumps(record, indent=2) + "\n")
    json.dump(record, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
