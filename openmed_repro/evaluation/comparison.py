"""Comparing two or more runs on one corpus from their saved test predictions, in run directories or in the
record: strict scores with bootstrap intervals, an approximate randomization p-value for every pair, per-type
F1, error categories and examples of each. Runs are compared only when they scored the very same gold data
(checked by checksum)."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from openmed_repro.data import saved_predictions
from openmed_repro.evaluation import metrics
from openmed_repro.infra import atomic_files, runs
from openmed_repro.evaluation import significance
from openmed_repro.errors import OpenMedError


@dataclass(frozen=True)
class RunPredictions:
    name: str
    run_dir: Path
    tokens: list[list[str]]
    gold: list[list[str]]
    predicted: list[list[str]]

    @cached_property
    def score(self) -> metrics.Scores:
        """seqeval's strict scores, per-type scores and error counts, computed once per run."""
        return metrics.score(self.gold, self.predicted)

    @cached_property
    def sentence_counts(self) -> "np.ndarray":
        """Per-sentence true/predicted/gold entity counts: what the bootstrap and the AR test resample."""
        return metrics.sentence_counts(self.gold, self.predicted)

    @cached_property
    def gold_checksum(self) -> str:
        """sha256 of the tokens and gold tags: equal exactly when two runs were scored on the same data."""
        digest = hashlib.sha256()
        for tokens, tags in zip(self.tokens, self.gold):
            digest.update(("\n".join(f"{t}\t{g}" for t, g in zip(tokens, tags)) + "\n\n").encode("utf-8"))
        return digest.hexdigest()


def load(run_dirs: list[str | Path], split: str = "test", names: list[str] | None = None,
         data_dir: str | Path | None = None) -> list[RunPredictions]:
    """The saved predictions of each run, from its run directory or its record (saved_predictions.read; a
    record's gold comes from its corpus, looked for in `data_dir` when given); refuses runs whose gold data
    differ, naming them."""
    if len(run_dirs) < 2:
        raise OpenMedError(f"parameter runs: give at least two run or record directories to compare, "
                           f"got {len(run_dirs)}")
    loaded = []
    for index, run_dir in enumerate(run_dirs):
        tokens, gold, predicted = saved_predictions.read(run_dir, split, data_dir=data_dir)
        loaded.append(RunPredictions(names[index] if names else _name(Path(run_dir)), Path(run_dir),
                                     tokens, gold, predicted))
    reference = loaded[0]
    for other in loaded[1:]:
        if other.gold_checksum != reference.gold_checksum:
            raise OpenMedError(
                f"{other.run_dir} and {reference.run_dir} were scored on different gold data ({split} split: "
                f"{len(other.gold)} vs {len(reference.gold)} sentences, gold checksums {other.gold_checksum[:12]} vs "
                f"{reference.gold_checksum[:12]}); compare only runs on the same corpus and the same test sentences")
    return loaded


def _name(run_dir: Path) -> str:
    recorded = run_dir / runs.METRICS
    if recorded.is_file():
        m = atomic_files.read_json(recorded)
        if {"backbone", "method", "profile"} <= set(m):
            return f"{run_dir.name} ({m['backbone']}, {m['method']}, {m['profile']})"
    return run_dir.name


def scores(loaded: list[RunPredictions], samples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Strict P/R/F1 per run with the bootstrap 95% interval of F1 (percent)."""
    rows = []
    for run in loaded:
        strict = run.score.strict
        interval = significance.bootstrap_interval(run.sentence_counts, samples, seed=seed)
        rows.append({"run": run.name, "precision": 100 * strict.precision, "recall": 100 * strict.recall,
                     "F1": 100 * strict.f1, "F1 95% low": 100 * interval.low, "F1 95% high": 100 * interval.high})
    return pd.DataFrame(rows).set_index("run").round(2)


def pairwise_tests(loaded: list[RunPredictions], trials: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """The approximate randomization test of the F1 difference for every pair of runs."""
    rows = []
    for a, b in itertools.combinations(loaded, 2):
        result = significance.approximate_randomization(a.sentence_counts, b.sentence_counts, trials, seed)
        rows.append({"run A": a.name, "run B": b.name, "F1 A": 100 * result.f1_a, "F1 B": 100 * result.f1_b,
                     "A - B": 100 * result.difference, "p (AR)": result.p_value, "trials": trials})
    return pd.DataFrame(rows).round({"F1 A": 2, "F1 B": 2, "A - B": 2, "p (AR)": 4})


def per_type(loaded: list[RunPredictions]) -> pd.DataFrame:
    """Strict F1 (percent) per entity type, one column per run, with the gold support."""
    columns, support = {}, {}
    for run in loaded:
        per_type_scores = run.score.per_type
        columns[run.name] = {kind: 100 * prf.f1 for kind, prf in per_type_scores.items()}
        support.update({kind: prf.support for kind, prf in per_type_scores.items()})
    table = pd.DataFrame(columns).round(2)
    table.insert(0, "support", pd.Series(support))
    return table.sort_index()


def error_counts(loaded: list[RunPredictions]) -> pd.DataFrame:
    """How many errors of each category each run makes."""
    return pd.DataFrame({run.name: run.score.errors for run in loaded}).reindex(
        list(metrics.ERROR_CATEGORIES))


def error_examples(run: RunPredictions, per_category: int = 3, context: int = 6) -> pd.DataFrame:
    """The first few errors of each category, with the tokens around them; gold spans in [brackets],
    predicted spans in {braces}."""
    rows, shown = [], dict.fromkeys(metrics.ERROR_CATEGORIES, 0)
    for example in metrics.error_examples(run.gold, run.predicted):
        if shown[example.category] >= per_category:
            continue
        shown[example.category] += 1
        tokens = run.tokens[example.sentence]
        spans = [span for span in (example.gold, example.predicted) if span]
        start = max(0, min(s[0] for s in spans) - context)
        end = min(len(tokens), max(s[1] for s in spans) + context)
        rows.append({"category": example.category, "sentence": example.sentence,
                     "gold": _span_text(tokens, example.gold), "predicted": _span_text(tokens, example.predicted),
                     "context": _marked(tokens, example.gold, example.predicted, start, end)})
    return pd.DataFrame(rows, columns=["category", "sentence", "gold", "predicted", "context"])


def _span_text(tokens: list[str], span: tuple[int, int, str] | None) -> str:
    return f"{' '.join(tokens[span[0]:span[1]])} ({span[2]})" if span else ""


def _marked(tokens: list[str], gold, predicted, start: int, end: int) -> str:
    words = []
    for index in range(start, end):
        word = tokens[index]
        if predicted and index == predicted[0]:
            word = "{" + word
        if gold and index == gold[0]:
            word = "[" + word
        if gold and index == gold[1] - 1:
            word += "]"
        if predicted and index == predicted[1] - 1:
            word += "}"
        words.append(word)
    return ("... " if start > 0 else "") + " ".join(words) + (" ..." if end < len(tokens) else "")


ALPHA = 0.05   # a seed's winner counts as significant below this approximate-randomization p-value


def paired_by_seed(root: str | Path, first: tuple = ("cpu", "lora"), second: tuple = ("cpu-fast", "full"),
                   split: str = "test", trials: int = 10_000, seed: int = 0,
                   data_dir: str | Path | None = None) -> pd.DataFrame:
    """Two systems run with the same seed on the same corpus, under `root` (runs/ or the record): one row per
    corpus and seed with both F1s, their difference, the approximate randomization p-value and the winner
    ("tie" when p >= ALPHA). A system is (profile, method) or (profile, method, from DAPT): a run started from a
    DAPT adapter is its own system, and only each profile's own recipe counts (not a tuned run)."""
    first, second = system(first), system(second)
    found: dict[tuple[str, str, int, tuple], Path] = {}
    for path in sorted(Path(root).rglob(runs.METRICS)):
        m = atomic_files.read_json(path)
        if "test" not in m or m.get("method") is None:
            continue
        kind = (m.get("profile"), m.get("method"), runs.started_from_dapt(path.parent))
        if kind in (first, second) and runs.follows_its_profile(path.parent):
            found.setdefault((Path(m["dataset"]).name, m["dataset"], m["seed"], kind), path.parent)
    a_name, b_name = system_name(first, second), system_name(second, first)
    rows = []
    for (corpus, dataset, run_seed, kind), a_dir in sorted(found.items(), key=lambda item: (item[0][0], item[0][2])):
        b_dir = found.get((corpus, dataset, run_seed, second))
        if kind != first or b_dir is None:
            continue
        a, b = load([a_dir, b_dir], split, data_dir=data_dir)
        result = significance.approximate_randomization(a.sentence_counts, b.sentence_counts, trials, seed)
        winner = "tie" if result.p_value >= ALPHA else (a_name if result.difference > 0 else b_name)
        rows.append({"corpus": corpus, "seed": run_seed, f"{a_name} F1": round(100 * result.f1_a, 2),
                     f"{b_name} F1": round(100 * result.f1_b, 2),
                     f"{a_name} - {b_name}": round(100 * result.difference, 2),
                     "p (AR)": round(result.p_value, 4), "winner": winner})
    return pd.DataFrame(rows, columns=["corpus", "seed", f"{a_name} F1", f"{b_name} F1",
                                       f"{a_name} - {b_name}", "p (AR)", "winner"])


def system(kind: tuple) -> tuple[str, str, bool]:
    """(profile, method) or (profile, method, from DAPT) as (profile, method, from DAPT)."""
    return (kind[0], kind[1], bool(kind[2]) if len(kind) > 2 else False)


def system_name(kind: tuple[str, str, bool], other: tuple[str, str, bool]) -> str:
    """What tells `kind` apart from `other` in a table's header: its method ("lora", "full"), or, for two runs
    of one method, whether it started from DAPT ("lora+DAPT"), or its profile."""
    profile, method, dapt = kind
    if method != other[1] or dapt != other[2]:
        return f"{method}+DAPT" if dapt and not other[2] else method
    return f"{method} ({profile})"


def wins(paired: pd.DataFrame) -> pd.DataFrame:
    """Per corpus, how often each method wins significantly across seeds, and by how much on average."""
    difference = next(column for column in paired.columns if " - " in column)
    first, second = difference.split(" - ")
    rows = []
    for corpus, group in paired.groupby("corpus", sort=False):
        rows.append({"corpus": corpus, "seeds": len(group),
                     f"{first} wins": int((group["winner"] == first).sum()),
                     f"{second} wins": int((group["winner"] == second).sum()),
                     "ties": int((group["winner"] == "tie").sum()),
                     f"mean {difference}": round(group[difference].mean(), 2),
                     f"largest |{difference}|": round(group[difference].abs().max(), 2)})
    return pd.DataFrame(rows).set_index("corpus") if rows else pd.DataFrame()
