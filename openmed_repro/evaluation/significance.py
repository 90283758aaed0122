"""Is one system's micro-F1 better than another's on the same gold data, and how sure is one figure?

Both work on per-sentence (tp, fp, fn) counts (see `metrics.sentence_counts`) and are vectorised with
numpy: each random trial is one row of a matrix, processed in chunks to bound memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openmed_repro.errors import OpenMedError

_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class RandomizationResult:
    f1_a: float
    f1_b: float
    difference: float
    p_value: float
    trials: int
    seed: int


@dataclass(frozen=True)
class Interval:
    f1: float
    low: float
    high: float
    confidence: float
    samples: int
    seed: int


def micro_f1(counts: np.ndarray) -> np.ndarray:
    """F1 = 2tp / (2tp + fp + fn) over the last axis (tp, fp, fn); 0 where there is nothing to count."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(np.shape(tp), dtype=float), where=denominator > 0)


def approximate_randomization(counts_a: np.ndarray, counts_b: np.ndarray, trials: int = 10_000,
                              seed: int = 0) -> RandomizationResult:
    """Two-sided approximate randomization test (Dror et al. 2018) of the micro-F1 difference: each trial
    swaps the two systems' counts per sentence with probability 0.5; p = (c + 1) / (trials + 1), c the
    number of trials whose absolute difference is at least the observed one."""
    a, b = _counts(counts_a, "counts_a"), _counts(counts_b, "counts_b")
    if a.shape != b.shape:
        raise OpenMedError(f"counts_a has {len(a)} sentences, counts_b {len(b)}: they must score the same gold data")
    if trials < 1:
        raise OpenMedError(f"trials={trials} must be at least 1")
    rng = np.random.default_rng(seed)
    total_a, total_b = a.sum(axis=0), b.sum(axis=0)
    observed = abs(float(micro_f1(total_a) - micro_f1(total_b)))
    delta = (b - a).astype(float)
    at_least = 0
    chunk = max(1, _CHUNK_CELLS // max(1, len(a)))
    for start in range(0, trials, chunk):
        swaps = rng.random((min(chunk, trials - start), len(a))) < 0.5
        moved = swaps.astype(float) @ delta
        differences = np.abs(micro_f1(total_a + moved) - micro_f1(total_b - moved))
        at_least += int(np.count_nonzero(differences >= observed - 1e-12))
    return RandomizationResult(
        f1_a=float(micro_f1(total_a)), f1_b=float(micro_f1(total_b)),
        difference=float(micro_f1(total_a) - micro_f1(total_b)),
        p_value=(at_least + 1) / (trials + 1), trials=trials, seed=seed,
    )


def bootstrap_interval(counts: np.ndarray, samples: int = 10_000, confidence: float = 0.95,
                       seed: int = 0) -> Interval:
    """Percentile bootstrap interval of micro-F1, resampling sentences with replacement."""
    c = _counts(counts, "counts")
    if not 0 < confidence < 1:
        raise OpenMedError(f"confidence={confidence} must lie strictly between 0 and 1")
    if samples < 1:
        raise OpenMedError(f"samples={samples} must be at least 1")
    scores = np.concatenate([micro_f1(times_drawn @ c.astype(float))
                             for times_drawn in _resamples(len(c), samples, seed)])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(scores, [tail, 100 - tail])
    return Interval(f1=float(micro_f1(c.sum(axis=0))), low=float(low), high=float(high),
                    confidence=confidence, samples=samples, seed=seed)


@dataclass(frozen=True)
class ReductionInterval:
    """How much lower held-out perplexity is after than before, in percent, with a percentile interval."""

    percent: float
    low: float
    high: float
    confidence: float
    samples: int
    seed: int


def perplexity_reduction_interval(loss_before, loss_after, masked_tokens, samples: int = 10_000,
                                  confidence: float = 0.95, seed: int = 0) -> ReductionInterval:
    """Percentile bootstrap of 100 (1 - ppl_after / ppl_before), resampling held-out passages with replacement;
    each passage brings its summed masked-token loss before and after and its number of masked tokens, so
    every resample is token-weighted like the perplexity itself."""
    before, after, tokens = (np.asarray(x, dtype=float) for x in (loss_before, loss_after, masked_tokens))
    if not (before.shape == after.shape == tokens.shape) or before.ndim != 1 or len(before) == 0:
        raise OpenMedError("loss_before, loss_after and masked_tokens must be equally long, non-empty lists")
    if tokens.sum() <= 0:
        raise OpenMedError("masked_tokens: no masked token to measure perplexity on")
    if not 0 < confidence < 1:
        raise OpenMedError(f"confidence={confidence} must lie strictly between 0 and 1")
    per_passage = np.stack([before, after, tokens], axis=1)
    reductions = []
    for times_drawn in _resamples(len(before), samples, seed):
        sums = times_drawn @ per_passage
        reductions.append(_reduction(sums[:, 0], sums[:, 1], sums[:, 2]))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(reductions), [tail, 100 - tail])
    return ReductionInterval(percent=float(_reduction(before.sum(), after.sum(), tokens.sum())),
                             low=float(low), high=float(high), confidence=confidence, samples=samples, seed=seed)


def _resamples(items: int, samples: int, seed: int):
    """Bootstrap resamples of `items` units, in chunks: each row counts how often every unit was drawn."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // max(1, items))
    for start in range(0, samples, chunk):
        size = min(chunk, samples - start)
        drawn = rng.integers(0, items, (size, items)) + np.arange(size)[:, None] * items
        yield np.bincount(drawn.ravel(), minlength=size * items).reshape(size, items).astype(float)


def _reduction(loss_before, loss_after, tokens):
    """100 (1 - exp(after / n) / exp(before / n)), with the same n before and after."""
    return 100 * (1 - np.exp((np.asarray(loss_after) - np.asarray(loss_before)) / np.maximum(tokens, 1)))


def _counts(counts: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(counts)
    if array.ndim != 2 or array.shape[1] != 3 or len(array) == 0:
        raise OpenMedError(f"{name} must be a non-empty (sentences, 3) array of tp, fp, fn; got shape {array.shape}")
    if (array < 0).any():
        raise OpenMedError(f"{name} holds negative counts")
    return array
