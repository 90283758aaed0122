"""The BiLSTM-CNN-Char tagger's parts: the CRF's IOB2 constraint and likelihood, casing categories, the vocabulary's
word keys and the padded batch."""

import pytest
import torch

from openmed_repro.data.iob import Sentence
from openmed_repro.models import bilstm_crf


def test_the_crf_never_decodes_an_invalid_iob2_transition():
    labels = ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]
    crf = bilstm_crf.CRF(labels)
    emissions = torch.zeros(1, 3, len(labels))
    emissions[0, 0, 0] = 5.0      # O
    emissions[0, 1, 4] = 5.0      # I-Disease right after O: invalid
    emissions[0, 2, 2] = 5.0      # I-Chemical after a disease: invalid
    path = [labels[i] for i in crf.decode(emissions, torch.ones(1, 3))[0]]
    for previous, tag in zip(["O", *path], path):
        assert not tag.startswith("I-") or previous[2:] == tag[2:]


def test_the_crf_likelihood_of_every_sequence_sums_to_one():
    labels = ["O", "B-X", "I-X"]
    crf = bilstm_crf.CRF(labels)
    torch.manual_seed(0)
    with torch.no_grad():
        crf.transitions.normal_()
        crf.start.normal_()
        crf.end.normal_()
    emissions = torch.randn(1, 3, 3)
    total = 0.0
    for a in range(3):
        for b in range(3):
            for c in range(3):
                tags = torch.tensor([[a, b, c]])
                total += torch.exp(-crf.neg_log_likelihood(emissions, tags, torch.ones(1, 3))).item()
    assert total == pytest.approx(1.0, abs=1e-3)   # invalid sequences carry ~exp(-1e4)


def test_casing_categories_follow_chiu_and_nichols():
    words = ["aspirin", "DNA", "Lung", "1995", "12a", "mRNA2", ",", "mRNA"]
    assert [bilstm_crf.CASINGS[bilstm_crf.casing(w)] for w in words] == \
        ["lower", "upper", "title", "numeric", "mainly_numeric", "has_digit", "punctuation", "other"]


def test_words_are_keyed_lower_case_with_digits_as_zero_and_rare_or_unseen_ones_are_unknown():
    train = [Sentence(["IL-2", "Aspirin", "aspirin"], ["B-X", "O", "O"]), Sentence(["IL-7", "rare"], ["B-X", "O"])]
    vocabulary = bilstm_crf.build_vocabulary(train, ["O", "B-X", "I-X"], min_word_count=2)
    assert vocabulary.words == [bilstm_crf.PAD, bilstm_crf.UNK, "aspirin", "il-0"]
    assert vocabulary.word_id("ASPIRIN") == 2 and vocabulary.word_id("IL-9") == 3
    assert vocabulary.word_id("rare") == vocabulary.word_id("zebrafish") == 1
    assert vocabulary.char_ids("Az", limit=5) == [vocabulary.chars.index("A"), 1]


def test_a_batch_pads_words_and_characters_and_masks_the_padding():
    vocabulary = bilstm_crf.Vocabulary(words=[bilstm_crf.PAD, bilstm_crf.UNK, "a"], chars=[bilstm_crf.PAD,
                                       bilstm_crf.UNK, "a", "b"], labels=["O", "B-X"])
    items = bilstm_crf.encode([["a"], ["b", "ab", "abab"]], vocabulary, max_word_chars=3, tags=[["B-X"], ["O"] * 3])
    batch = bilstm_crf.collate(items)
    assert batch["words"].tolist() == [[2, 0, 0], [1, 1, 1]]
    assert batch["mask"].tolist() == [[1, 0, 0], [1, 1, 1]] and batch["tags"].tolist() == [[1, 0, 0], [0, 0, 0]]
    assert batch["chars"].shape == (2, 3, 3) and batch["chars"][1, 2].tolist() == [2, 3, 2]   # cut at 3 characters
