import math

import numpy as np
import pytest

from openmed_repro.errors import OpenMedError
from openmed_repro.evaluation import significance
from openmed_repro.evaluation.significance import approximate_randomization, bootstrap_interval, micro_f1


def system(rng, sentences, hit_rate):
    """Per-sentence (tp, fp, fn) of a system finding each of 2 gold entities with probability `hit_rate`."""
    tp = rng.binomial(2, hit_rate, sentences)
    fp = rng.binomial(1, 1 - hit_rate, sentences)
    return np.stack([tp, fp, 2 - tp], axis=1)


def slow_randomization_p(a, b, trials, seed):
    """The test written as a plain loop, drawing the same random numbers in the same order."""
    def f1(tp, fp, fn):
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0

    rng = np.random.default_rng(seed)
    observed = abs(f1(*a.sum(axis=0)) - f1(*b.sum(axis=0)))
    at_least = 0
    for _ in range(trials):
        swap = rng.random(len(a)) < 0.5
        total_a, total_b = [0, 0, 0], [0, 0, 0]
        for i in range(len(a)):
            first, second = (b[i], a[i]) if swap[i] else (a[i], b[i])
            total_a = [x + y for x, y in zip(total_a, first)]
            total_b = [x + y for x, y in zip(total_b, second)]
        if abs(f1(*total_a) - f1(*total_b)) >= observed - 1e-12:
            at_least += 1
    return (at_least + 1) / (trials + 1)


def test_identical_systems_give_p_equal_to_one():
    counts = system(np.random.default_rng(0), 200, 0.7)
    result = approximate_randomization(counts, counts, trials=500)
    assert result.p_value == 1.0
    assert result.difference == 0.0


def test_a_clearly_better_system_gives_p_below_one_percent():
    rng = np.random.default_rng(1)
    better, worse = system(rng, 500, 0.9), system(rng, 500, 0.6)
    result = approximate_randomization(better, worse, trials=2000)
    assert result.p_value < 0.01
    assert result.f1_a > result.f1_b


def test_similar_systems_are_not_called_different():
    rng = np.random.default_rng(2)
    result = approximate_randomization(system(rng, 300, 0.8), system(rng, 300, 0.8), trials=2000)
    assert result.p_value > 0.05


def test_the_same_seed_gives_the_same_p_value():
    rng = np.random.default_rng(3)
    a, b = system(rng, 300, 0.8), system(rng, 300, 0.75)
    assert approximate_randomization(a, b, trials=1000, seed=5) == approximate_randomization(a, b, trials=1000, seed=5)


def test_p_value_matches_a_slow_loop_implementation():
    rng = np.random.default_rng(4)
    a, b = system(rng, 40, 0.8), system(rng, 40, 0.7)
    fast = approximate_randomization(a, b, trials=300, seed=11)
    assert fast.p_value == slow_randomization_p(a, b, trials=300, seed=11)
    assert 0.0 < fast.p_value < 1.0


def test_p_value_is_the_same_whatever_the_chunking(monkeypatch):
    rng = np.random.default_rng(5)
    a, b = system(rng, 100, 0.8), system(rng, 100, 0.7)
    whole = approximate_randomization(a, b, trials=700, seed=1)
    monkeypatch.setattr("openmed_repro.evaluation.significance._CHUNK_CELLS", 100 * 64)
    assert approximate_randomization(a, b, trials=700, seed=1) == whole


def test_systems_scored_on_different_gold_data_are_refused():
    with pytest.raises(OpenMedError, match="counts_a has 3 sentences, counts_b 2"):
        approximate_randomization(np.ones((3, 3)), np.ones((2, 3)))
    with pytest.raises(OpenMedError, match=r"counts_a must be a non-empty \(sentences, 3\) array"):
        approximate_randomization(np.ones((3, 2)), np.ones((3, 2)))


def test_bootstrap_interval_brackets_the_figure_and_is_reproducible():
    counts = system(np.random.default_rng(6), 400, 0.8)
    interval = bootstrap_interval(counts, samples=2000, seed=3)
    assert interval.low < interval.f1 < interval.high
    assert interval.f1 == pytest.approx(micro_f1(counts.sum(axis=0)))
    assert bootstrap_interval(counts, samples=2000, seed=3) == interval


def test_bootstrap_interval_narrows_with_more_sentences():
    rng = np.random.default_rng(7)
    small = bootstrap_interval(system(rng, 100, 0.8), samples=2000)
    large = bootstrap_interval(system(rng, 3000, 0.8), samples=2000)
    assert large.high - large.low < (small.high - small.low) / 3


def test_bootstrap_of_identical_sentences_has_no_spread():
    interval = bootstrap_interval(np.tile([[2, 1, 1]], (50, 1)), samples=200)
    assert interval.low == interval.high == pytest.approx(2 / 3)


def test_bootstrap_refuses_a_confidence_outside_zero_and_one():
    with pytest.raises(OpenMedError, match="confidence=95"):
        bootstrap_interval(np.ones((3, 3)), confidence=95)


def test_the_perplexity_reduction_is_exact_on_all_passages_and_its_interval_widens_with_fewer_passages():
    rng = np.random.default_rng(3)
    tokens = rng.integers(5, 40, 400)
    before = tokens * rng.normal(3.0, 0.3, 400)
    after = before - tokens * rng.normal(0.2, 0.3, 400)
    many = significance.perplexity_reduction_interval(before, after, tokens, samples=2000, seed=1)
    expected = 100 * (1 - math.exp((after.sum() - before.sum()) / tokens.sum()))
    assert many.percent == pytest.approx(expected)
    assert many.low < many.percent < many.high
    few = significance.perplexity_reduction_interval(before[:40], after[:40], tokens[:40], samples=2000, seed=1)
    assert few.high - few.low > many.high - many.low


def test_a_perplexity_reduction_of_unequal_lists_is_refused():
    with pytest.raises(OpenMedError, match="equally long"):
        significance.perplexity_reduction_interval([1.0, 2.0], [1.0], [3, 4])
