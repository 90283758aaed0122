"""Entity-level scores with seqeval. The headline is strict IOB2 (an entity must open with B- and match
boundaries and type exactly, as the paper says); seqeval's default mode, which also accepts entities
opened by a stray I-, is reported beside it for comparison with papers that used it."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, Entities

from openmed_repro.errors import OpenMedError

ERROR_CATEGORIES = ("false_positive", "false_negative", "wrong_boundary", "wrong_type", "wrong_boundary_and_type")


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Scores:
    strict: PRF
    default: PRF
    per_type: dict[str, PRF]
    errors: dict[str, int]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ErrorExample:
    """One error: where it is and the gold and predicted spans (token offsets, end exclusive)."""

    category: str
    sentence: int
    gold: tuple[int, int, str] | None
    predicted: tuple[int, int, str] | None


def score(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> Scores:
    """Micro P/R/F1 in strict and default mode, strict per-type figures and error category counts."""
    gold, predicted = _checked(gold, predicted)
    with warnings.catch_warnings():  # seqeval averages empty arrays when no entity exists at all
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(gold, predicted, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    per_type = {kind: _prf(values) for kind, values in report.items() if not kind.endswith(" avg")}
    strict = _prf(report["micro avg"]) if "micro avg" in report else PRF(0.0, 0.0, 0.0, 0)
    default = PRF(
        precision=float(precision_score(gold, predicted, zero_division=0)),
        recall=float(recall_score(gold, predicted, zero_division=0)),
        f1=float(f1_score(gold, predicted, zero_division=0)),
        support=strict.support,
    )
    counts: dict[str, int] = dict.fromkeys(ERROR_CATEGORIES, 0)
    for example in error_examples(gold, predicted):
        counts[example.category] += 1
    return Scores(strict=strict, default=default, per_type=per_type, errors=counts)


def strict_entities(sentences: Sequence[Sequence[str]]) -> list[set[tuple[int, int, str]]]:
    """Each sentence's entities as (start, end, type), extracted exactly as seqeval's strict IOB2 mode does."""
    return [{(e.start, e.end, e.tag) for e in entities} for entities in Entities([list(s) for s in sentences], IOB2).entities]


def sentence_counts(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> np.ndarray:
    """Per sentence (tp, fp, fn) under strict matching: what significance tests resample."""
    gold, predicted = _checked(gold, predicted)
    counts = np.zeros((len(gold), 3), dtype=np.int64)
    for row, (g, p) in enumerate(zip(strict_entities(gold), strict_entities(predicted))):
        tp = len(g & p)
        counts[row] = (tp, len(p) - tp, len(g) - tp)
    return counts


def error_examples(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> list[ErrorExample]:
    """Every strict-mode error, categorised. A predicted entity that overlaps an unmatched gold entity is a
    wrong type (same span), a wrong boundary (same type) or both; one that overlaps none is a false
    positive; a gold entity no prediction touched is a false negative."""
    examples = []
    for index, (g, p) in enumerate(zip(strict_entities(gold), strict_entities(predicted))):
        unmatched_gold = sorted(g - p)
        for entity in sorted(p - g):
            overlapping = [x for x in unmatched_gold if x[0] < entity[1] and entity[0] < x[1]]
            if not overlapping:
                examples.append(ErrorExample("false_positive", index, None, entity))
                continue
            partner = _closest(entity, overlapping)
            unmatched_gold.remove(partner)
            same_span, same_type = partner[:2] == entity[:2], partner[2] == entity[2]
            category = "wrong_type" if same_span else "wrong_boundary" if same_type else "wrong_boundary_and_type"
            examples.append(ErrorExample(category, index, partner, entity))
        examples.extend(ErrorExample("false_negative", index, x, None) for x in unmatched_gold)
    return examples


def _closest(entity: tuple[int, int, str], candidates: list[tuple[int, int, str]]) -> tuple[int, int, str]:
    """The gold entity a prediction most likely meant: same span first, then same type, then largest overlap."""
    def rank(x):
        overlap = min(x[1], entity[1]) - max(x[0], entity[0])
        return (x[:2] == entity[:2], x[2] == entity[2], overlap)
    return max(candidates, key=rank)


def _prf(values: dict) -> PRF:
    return PRF(float(values["precision"]), float(values["recall"]), float(values["f1-score"]), int(values["support"]))


def _checked(gold, predicted) -> tuple[list[list[str]], list[list[str]]]:
    if len(gold) != len(predicted):
        raise OpenMedError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    for index, (g, p) in enumerate(zip(gold, predicted)):
        if len(g) != len(p):
            raise OpenMedError(f"sentence {index}: {len(g)} gold tags but {len(p)} predicted")
    return [list(s) for s in gold], [list(s) for s in predicted]
