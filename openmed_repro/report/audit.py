"""The audit of the record: is results/ what `record` wrote, and does every figure it states follow from the
recorded predictions and the gold corpora? No training: minutes on a laptop.

  1. The manifest (results/SHA256SUMS, `sha256sum -c` reads it too), rewritten by every `record`: a changed,
     missing or unlisted file is named.
  2. Every recorded run that predicted tags: each split's strict and default precision, recall and F1, per entity
     type and the error counts, recomputed from predictions.json.gz and the corpus split file the record names by
     sha256, must equal its metrics.json. The book's tables and the scorecard are computed from these files
     when the book is built, so a record that passes gives them from its predictions.
  3. Every recorded search confirmation (hpo/*/confirmation.json): each seed's dev and test F1 must be those of
     the records it names, and its randomization p-value, recomputed from their predictions, must lie within
     P_TOLERANCE (three Monte-Carlo standard errors of its trials, and the 4-decimal rounding).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from openmed_repro.data import saved_predictions
from openmed_repro.errors import OpenMedError
from openmed_repro.evaluation import metrics
from openmed_repro.infra import atomic_files, layout, runs

MANIFEST = "SHA256SUMS"
TOLERANCE = 1e-9   # the same predictions give the same counts: any difference is a changed file
AR_TRIALS = 10_000   # the confirmation's randomization trials (search/confirmation.py)


def p_tolerance(p_value: float, trials: int = AR_TRIALS) -> float:
    """How far a recomputed randomization p-value may lie from the stated one: three Monte-Carlo standard errors
    (another RNG stream, another numpy) plus the stated value's rounding to 4 decimals."""
    return 3 * math.sqrt(max(p_value * (1 - p_value), 1 / trials) / trials) + 5e-5


@dataclass
class Report:
    """What the audit found: the problems (each naming a file), and how much it checked."""

    problems: list[str] = field(default_factory=list)
    files: int = 0
    runs: int = 0
    figures: int = 0

    @property
    def passed(self) -> bool:
        return not self.problems

    def verdict(self) -> str:
        if self.passed:
            return (f"passed: {self.files} files match the manifest; {self.figures:,} figures of {self.runs} runs "
                    "recomputed from their predictions and the gold corpora")
        return f"failed: {len(self.problems)} problem(s), the first: {self.problems[0]}"


def write_manifest(results: Path | None = None) -> Path:
    """results/SHA256SUMS: the sha256 of every file of the record but itself, one `HASH  PATH` line each."""
    results = layout.LAYOUT.record if results is None else Path(results)
    lines = [f"{_sha256(path)}  {path.relative_to(results).as_posix()}" for path in _files(results)]
    manifest = results / MANIFEST
    atomic_files.write_text(manifest, "\n".join(lines) + "\n")
    return manifest


def audit(results: Path | None = None, data_dir: str | Path | None = None,
          record_dirs: list[Path] | None = None) -> Report:
    """The manifest, then the figures of every recorded run (or of `record_dirs` alone) against its predictions
    (see the module's docstring)."""
    results = layout.LAYOUT.record if results is None else Path(results)
    results = Path(results)
    report = Report()
    _check_manifest(results, report)
    chosen = record_dirs if record_dirs is not None else [p.parent for p in results.rglob(saved_predictions.RECORD_FILE)]
    for record_dir in sorted(chosen):
        if (Path(record_dir) / saved_predictions.RECORD_FILE).is_file():
            _check_run(Path(record_dir), results, data_dir, report)
    if record_dirs is None:
        for path in sorted(results.glob(f"hpo/*/{layout.LAYOUT.confirmation}")):
            _check_confirmation(path, results, data_dir, report)
    return report


def _files(results: Path) -> list[Path]:
    return [path for path in sorted(results.rglob("*")) if path.is_file() and path.name != MANIFEST
            and not any(part.startswith(".") for part in path.relative_to(results).parts)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_manifest(results: Path, report: Report) -> None:
    manifest = results / MANIFEST
    if not manifest.is_file():
        report.problems.append(f"{manifest}: no manifest; `openmed-repro record` writes it")
        return
    listed = {}
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        digest, separator, name = line.partition("  ")
        if not separator or len(digest) != 64:
            report.problems.append(f"{manifest}, line {number}: not `SHA256  PATH`")
            continue
        listed[name] = digest
    present = {path.relative_to(results).as_posix(): path for path in _files(results)}
    for name, digest in listed.items():
        if name not in present:
            report.problems.append(f"{results / name}: listed in {MANIFEST} but missing")
        elif _sha256(present[name]) != digest:
            report.problems.append(f"{results / name}: changed since it was recorded (its sha256 differs from "
                                   f"{MANIFEST}'s)")
    for name in sorted(present.keys() - listed.keys()):
        report.problems.append(f"{results / name}: not listed in {MANIFEST} (not written by `record`)")
    report.files = len(present)


def _check_run(record_dir: Path, results: Path, data_dir: str | Path | None, report: Report) -> None:
    metrics_path = record_dir / runs.METRICS
    if not metrics_path.is_file():
        report.problems.append(f"{record_dir}: predictions without {runs.METRICS}")
        return
    recorded = atomic_files.read_json(metrics_path)
    report.runs += 1
    for split in saved_predictions.SPLITS:
        if not saved_predictions.exists(record_dir, split) or split not in recorded:
            continue
        try:
            _, gold, predicted = saved_predictions.read(record_dir, split, data_dir=data_dir)
        except OpenMedError as error:
            report.problems.append(str(error))
            continue
        except (OSError, ValueError, KeyError) as error:   # a damaged gzip or JSON: the file is named
            report.problems.append(f"{record_dir / saved_predictions.RECORD_FILE}: unreadable ({error})")
            continue
        recomputed = metrics.score(gold, predicted).to_dict()
        for figure, stated, given in _figures(recorded[split], recomputed):
            report.figures += 1
            if not _same(stated, given):
                report.problems.append(f"{metrics_path}: {split} {figure} is {stated} but its predictions give "
                                       f"{given}")


def _figures(stated: dict, recomputed: dict, prefix: str = ""):
    """(name, stated value, recomputed value) of every number of `recomputed`, walking nested mappings."""
    for key, value in recomputed.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _figures(stated.get(key) or {} if isinstance(stated, dict) else {}, value, name + " ")
        else:
            yield name, stated.get(key) if isinstance(stated, dict) else None, value


def _same(stated, given) -> bool:
    if isinstance(stated, (int, float)) and isinstance(given, (int, float)):
        return math.isclose(stated, given, rel_tol=0, abs_tol=TOLERANCE)
    return stated == given


def _check_confirmation(path: Path, results: Path, data_dir: str | Path | None, report: Report) -> None:
    """A search confirmation's figures against the records it names (see the module's docstring)."""
    from openmed_repro.evaluation import comparison, significance

    try:
        rows = atomic_files.read_json(path)["per_seed"]
    except (OpenMedError, KeyError, TypeError) as error:
        report.problems.append(f"{path}: unreadable confirmation ({error})")
        return
    for row in rows:
        named = {side: row.get(f"{side} run") for side in ("tuned", "default")}
        dirs = {side: results / name for side, name in named.items() if name}
        missing = [f"{side} run {named[side]!r}" for side in named
                   if side not in dirs or not (dirs[side] / runs.METRICS).is_file()]
        if missing:
            report.problems.append(f"{path}: seed {row.get('seed')}: {', '.join(missing)} names no record in "
                                   f"{results}")
            continue
        for side, directory in dirs.items():
            scored = atomic_files.read_json(directory / runs.METRICS)
            for split, label in (("devel", "dev"), ("test", "test")):
                report.figures += 1
                given = round(100 * scored[split]["strict"]["f1"], 2)
                if not math.isclose(row[f"{side} {label} F1"], given, abs_tol=0.005 + TOLERANCE):
                    report.problems.append(f"{path}: seed {row['seed']}: {side} {label} F1 is "
                                           f"{row[f'{side} {label} F1']} but {directory} gives {given}")
        pair = comparison.load([dirs["tuned"], dirs["default"]], data_dir=data_dir)
        test = significance.approximate_randomization(pair[0].sentence_counts, pair[1].sentence_counts, AR_TRIALS,
                                                      seed=0)
        report.figures += 1
        if abs(test.p_value - row["p (AR)"]) > p_tolerance(test.p_value):
            report.problems.append(f"{path}: seed {row['seed']}: p (AR) is {row['p (AR)']} but the named records' "
                                   f"predictions give {test.p_value:.4f}")
