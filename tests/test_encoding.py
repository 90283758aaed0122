import pytest

from openmed_repro.data.encoding import IGNORE_INDEX, encode, merge_predictions, plan_windows
from openmed_repro.errors import OpenMedError

LABELS = ["O", "B-Disease", "I-Disease"]
LABEL2ID = {label: index for index, label in enumerate(LABELS)}


def oracle(windows):
    """Predictions equal to the gold labels where labelled (first sub-words), 0 elsewhere."""
    return [[label if label != IGNORE_INDEX else 0 for label in w.labels] for w in windows]


def decode(merged):
    return [[LABELS[i] for i in sentence] for sentence in merged]


def test_only_the_first_subword_of_each_word_carries_its_label(tokenizer):
    [window] = encode([["lung", "xyz", "cancer"]], tokenizer, LABEL2ID, tags=[["B-Disease", "I-Disease", "I-Disease"]])
    tokens = tokenizer.convert_ids_to_tokens(window.input_ids)
    assert tokens == ["[CLS]", "lung", "x", "##y", "##z", "cancer", "[SEP]"]
    assert window.labels == [IGNORE_INDEX, 1, 2, IGNORE_INDEX, IGNORE_INDEX, 2, IGNORE_INDEX]
    assert window.word_ids == [None, 0, 1, 1, 1, 2, None]
    assert window.features()["attention_mask"] == [1] * 7


def test_a_sentence_that_fits_is_one_window(tokenizer):
    windows = encode([["the", "cancer"], ["of"]], tokenizer, max_length=16, overlap=4)
    assert [(w.sentence, w.word_start, w.word_end) for w in windows] == [(0, 0, 2), (1, 0, 1)]


def test_a_sentence_of_one_word_round_trips(tokenizer):
    windows = encode([["cancer"]], tokenizer, LABEL2ID, tags=[["B-Disease"]])
    assert decode(merge_predictions(windows, oracle(windows), [1])) == [["B-Disease"]]


def test_windows_overlap_and_cover_every_word():
    assert plan_windows([1] * 10, budget=6, overlap=2) == [(0, 6), (4, 10)]
    assert plan_windows([2, 2, 2, 2, 2], budget=5, overlap=2) == [(0, 2), (1, 3), (2, 4), (3, 5)]
    assert plan_windows([1] * 10, budget=6, overlap=0) == [(0, 6), (6, 10)]


def test_a_word_longer_than_the_budget_gets_a_window_of_its_own():
    assert plan_windows([1, 50, 1], budget=6, overlap=2) == [(0, 1), (1, 2), (2, 3)]


def test_an_entity_cut_by_a_window_edge_is_whole_in_the_next_window(tokenizer):
    words = ["the"] * 5 + ["lung", "cancer"] + ["of"] * 5
    tags = ["O"] * 5 + ["B-Disease", "I-Disease"] + ["O"] * 5
    windows = encode([words], tokenizer, LABEL2ID, tags=[tags], max_length=8, overlap=3)  # 6 words a window
    first = windows[0]
    assert (first.word_start, first.word_end) == (0, 6)  # "lung" is inside, "cancer" is cut off
    assert any(w.word_start <= 5 and w.word_end >= 7 for w in windows[1:])
    assert decode(merge_predictions(windows, oracle(windows), [len(words)])) == [tags]


def test_a_2000_word_sentence_is_split_into_windows_and_merged_back_without_loss(tokenizer):
    words = [("cancer" if i % 7 == 0 else "abc" if i % 3 == 0 else "the") for i in range(2000)]
    tags = [("B-Disease" if w == "cancer" else "O") for w in words]
    windows = encode([words], tokenizer, LABEL2ID, tags=[tags], max_length=256, overlap=50)
    assert len(windows) > 8
    assert all(len(w.input_ids) <= 256 for w in windows)
    assert windows[0].word_start == 0 and windows[-1].word_end == 2000
    for before, after in zip(windows, windows[1:]):
        assert after.word_start < before.word_end  # consecutive windows overlap
    merged = merge_predictions(windows, oracle(windows), [2000])
    assert decode(merged) == [tags]


def test_each_word_takes_the_prediction_of_the_window_where_it_is_farthest_from_a_cut(tokenizer):
    words = ["the"] * 10
    windows = encode([words], tokenizer, max_length=8, overlap=2)
    assert [(w.word_start, w.word_end) for w in windows] == [(0, 6), (4, 10)]
    # Window k predicts label k everywhere: the merge shows which window each word was read from.
    merged = merge_predictions(windows, [[k] * len(w.input_ids) for k, w in enumerate(windows)], [10])
    # word 4: 1 word from window 0's cut edge, 0 from window 1's; word 5: 0 vs 1.
    assert merged == [[0, 0, 0, 0, 0, 1, 1, 1, 1, 1]]


def test_unicode_and_empty_tokens_each_get_exactly_one_prediction(tokenizer):
    words = ["", "\u200b", "α-synuclein", "é", "癌症", "\x00", "lung"]
    tags = ["O", "O", "B-Disease", "I-Disease", "O", "O", "B-Disease"]
    windows = encode([words], tokenizer, LABEL2ID, tags=[tags], max_length=6, overlap=1)
    labelled = [label for w in windows for label in w.labels if label != IGNORE_INDEX]
    assert len(labelled) >= len(words)
    assert decode(merge_predictions(windows, oracle(windows), [len(words)])) == [tags]


def test_a_word_of_more_subwords_than_fit_is_truncated_but_keeps_its_label(tokenizer):
    words = ["the", "a" + "b" * 30, "cancer"]
    tags = ["O", "B-Disease", "B-Disease"]
    windows = encode([words], tokenizer, LABEL2ID, tags=[tags], max_length=10, overlap=2)
    assert all(len(w.input_ids) <= 10 for w in windows)
    assert decode(merge_predictions(windows, oracle(windows), [3])) == [tags]


def test_overlap_must_leave_room_to_advance(tokenizer):
    with pytest.raises(OpenMedError, match="overlap=6"):
        encode([["the"]], tokenizer, max_length=8, overlap=6)


def test_tags_of_the_wrong_length_or_unknown_labels_are_errors(tokenizer):
    with pytest.raises(OpenMedError, match="sentence 0: 2 words but 1 tags"):
        encode([["the", "lung"]], tokenizer, LABEL2ID, tags=[["O"]])
    with pytest.raises(OpenMedError, match="tag 'B-Chemical' not in the label set"):
        encode([["the"]], tokenizer, LABEL2ID, tags=[["B-Chemical"]])


def test_merge_refuses_a_word_without_prediction(tokenizer):
    windows = encode([["the", "of"]], tokenizer)
    with pytest.raises(OpenMedError, match="sentence 1: word 0 received no prediction"):
        merge_predictions(windows, oracle(windows), [2, 1])


def test_a_document_longer_than_the_model_takes_is_windowed_without_a_length_warning(caplog):
    from openmed_repro.models import backbones

    tokenizer = backbones.load_tokenizer(backbones.resolve("minilm-l6"))
    words = ["word"] * 2000
    with caplog.at_level("WARNING"):
        windows = encode([words], tokenizer, {"O": 0}, max_length=128, overlap=16)
    assert len(windows) > 10
    assert not [r for r in caplog.records if "longer than the specified maximum" in r.getMessage()]
