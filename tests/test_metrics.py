import random

import numpy as np
import pytest
from seqeval.metrics import f1_score
from seqeval.scheme import IOB2

from openmed_repro.errors import OpenMedError
from openmed_repro.evaluation.metrics import error_examples, score, sentence_counts
from openmed_repro.evaluation.significance import micro_f1

GOLD = [
    ["B-Dis", "I-Dis", "O", "B-Chem"],
    ["O", "B-Dis", "I-Dis", "O"],
    ["B-Chem", "O", "O"],
    ["B-Dis", "I-Dis", "I-Dis"],
]
PREDICTED = [
    ["B-Dis", "I-Dis", "O", "B-Dis"],   # one right, one wrong type
    ["O", "I-Dis", "I-Dis", "O"],       # opens with I-: no entity in strict mode, a hit in default mode
    ["O", "O", "B-Chem"],               # a miss and a spurious entity
    ["O", "B-Dis", "I-Dis"],            # wrong boundary
]


def test_strict_micro_scores_by_hand():
    # strict: tp 1; predicted 4 entities, gold 5
    scores = score(GOLD, PREDICTED)
    assert scores.strict.precision == pytest.approx(1 / 4)
    assert scores.strict.recall == pytest.approx(1 / 5)
    assert scores.strict.f1 == pytest.approx(2 / 9)
    assert scores.strict.support == 5


def test_default_mode_counts_an_entity_opened_by_inside_tag():
    # default: the I-Dis I-Dis span is an entity and matches gold: tp 2 of 5 predicted, 5 gold
    scores = score(GOLD, PREDICTED)
    assert scores.default.precision == pytest.approx(2 / 5)
    assert scores.default.recall == pytest.approx(2 / 5)
    assert scores.default.f1 == pytest.approx(2 / 5)


def test_per_type_strict_scores_by_hand():
    per_type = score(GOLD, PREDICTED).per_type
    assert per_type["Dis"].precision == pytest.approx(1 / 3)
    assert per_type["Dis"].recall == pytest.approx(1 / 3)
    assert per_type["Dis"].support == 3
    assert per_type["Chem"].f1 == 0.0
    assert per_type["Chem"].support == 2


def test_error_categories_by_hand():
    assert score(GOLD, PREDICTED).errors == {
        "false_positive": 1, "false_negative": 2, "wrong_boundary": 1, "wrong_type": 1,
        "wrong_boundary_and_type": 0,
    }


def test_a_prediction_off_in_both_boundary_and_type_is_one_error_not_two():
    examples = error_examples([["B-Chem", "I-Chem", "O"]], [["O", "B-Dis", "I-Dis"]])
    assert [(e.category, e.gold, e.predicted) for e in examples] == [
        ("wrong_boundary_and_type", (0, 2, "Chem"), (1, 3, "Dis"))]


def test_error_examples_say_where_each_error_is():
    examples = error_examples(GOLD, PREDICTED)
    wrong_type = next(e for e in examples if e.category == "wrong_type")
    assert (wrong_type.sentence, wrong_type.gold, wrong_type.predicted) == (0, (3, 4, "Chem"), (3, 4, "Dis"))


def test_perfect_prediction_scores_one_and_has_no_errors():
    scores = score(GOLD, GOLD)
    assert scores.strict.f1 == scores.default.f1 == 1.0
    assert sum(scores.errors.values()) == 0


def test_sentence_counts_are_strict_true_false_positives_and_negatives():
    assert sentence_counts(GOLD, PREDICTED).tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1], [0, 1, 1]]


def test_summed_sentence_counts_give_seqeval_strict_f1_on_random_tags():
    rng = random.Random(7)
    tags = ["O", "O", "O", "B-A", "I-A", "B-B", "I-B"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    gold = [[("B" + t[1:]) if t.startswith("I") and (i == 0 or s[i - 1][2:] != t[2:]) else t
             for i, t in enumerate(s)] for s in gold]
    predicted = [[rng.choice(tags) for _ in s] for s in gold]
    counts = sentence_counts(gold, predicted)
    expected = f1_score(gold, predicted, mode="strict", scheme=IOB2)
    assert micro_f1(counts.sum(axis=0)) == pytest.approx(expected)
    assert score(gold, predicted).strict.f1 == pytest.approx(expected)


def test_mismatched_lengths_are_errors_naming_the_sentence():
    with pytest.raises(OpenMedError, match="sentence 1: 2 gold tags but 1 predicted"):
        score([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(OpenMedError, match="2 gold sentences but 1 predicted"):
        sentence_counts([["O"], ["O"]], [["O"]])


def test_no_entities_anywhere_scores_zero_without_crashing():
    scores = score([["O", "O"]], [["O", "O"]])
    assert scores.strict.f1 == 0.0 and scores.strict.support == 0
    assert np.array_equal(sentence_counts([["O"]], [["O"]]), [[0, 0, 0]])
