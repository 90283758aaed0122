"""word2vec on the DAPT text, the baseline's pretrained word-vector start: words cut and keyed as the baseline
keys its embeddings, the same vectors from the same text and seed, trained once per text and settings."""

import numpy as np
import pytest

from conftest import write_dapt_text
from openmed_repro.errors import OpenMedError
from openmed_repro.training import word_vectors
from openmed_repro.training.word_vectors import Word2VecSettings

TINY = Word2VecSettings(dimension=8, seed=3, min_count=1, epochs=2)


@pytest.fixture
def dapt_dir(tmp_path):
    directory = tmp_path / "dapt"
    directory.mkdir()
    return write_dapt_text(directory)


def test_the_text_is_cut_into_sentences_and_words_as_the_corpora_are_and_keyed_as_the_baseline_keys_words():
    assert word_vectors.tokenised(["Aspirin 12 mg (daily) helps. Lung cancer-cells die."]) == [
        ["aspirin", "00", "mg", "(", "daily", ")", "helps", "."], ["lung", "cancer", "-", "cells", "die", "."]]


def test_the_dapt_text_is_every_passage_of_the_files_parameters_dapt_yaml_names_with_their_checksums(dapt_dir):
    text = word_vectors.dapt_text(str(dapt_dir))
    assert len(text.passages) == 5 * 30 and len(text.files) == 5 and len(text.sha256) == 64
    (dapt_dir / "notes.txt").write_text("a file dapt.yaml does not name\n")
    assert word_vectors.dapt_text(str(dapt_dir)).sha256 == text.sha256


def test_a_missing_dapt_text_directory_is_refused_naming_the_parameter(tmp_path):
    with pytest.raises(OpenMedError, match=r"parameter dapt_dir: .*nowhere is not a directory"):
        word_vectors.dapt_text(str(tmp_path / "nowhere"))


def test_word2vec_gives_the_same_vectors_from_the_same_text_and_seed(dapt_dir, tmp_path):
    text = word_vectors.dapt_text(str(dapt_dir))
    first = word_vectors.word2vec(text, TINY, tmp_path / "one")
    second = word_vectors.word2vec(text, TINY, tmp_path / "two")
    other_seed = word_vectors.word2vec(text, Word2VecSettings(dimension=8, seed=4, min_count=1, epochs=2),
                                       tmp_path / "two")
    assert not first.reused and not second.reused
    assert first.vectors.index_to_key == second.vectors.index_to_key
    assert np.array_equal(first.vectors.vectors, second.vectors.vectors)
    assert not np.array_equal(first.vectors.vectors, other_seed.vectors.vectors)
    assert first.vectors.vector_size == 8 and "cancer" in first.vectors.key_to_index


def test_word2vec_is_trained_once_per_text_and_settings_and_read_back_after(dapt_dir, tmp_path, monkeypatch):
    text = word_vectors.dapt_text(str(dapt_dir))
    trained = word_vectors.word2vec(text, TINY, tmp_path)
    assert trained.info["text_sha256"] == text.sha256 and trained.info["files"] == text.files
    assert (trained.directory / word_vectors.INFO).is_file()
    monkeypatch.setattr(word_vectors, "Word2Vec", lambda **kwargs: pytest.fail("cached vectors were trained again"))
    again = word_vectors.word2vec(text, TINY, tmp_path)
    assert again.reused and again.directory == trained.directory and again.info == trained.info
    assert np.array_equal(again.vectors.vectors, trained.vectors.vectors)
    monkeypatch.undo()
    with (dapt_dir / "pubmedqa_pqal.txt").open("a") as handle:
        handle.write("a passage added later\n")
    changed = word_vectors.word2vec(word_vectors.dapt_text(str(dapt_dir)), TINY, tmp_path)
    assert not changed.reused and changed.directory != trained.directory
    assert changed.info["text_sha256"] != text.sha256


def test_the_cache_directory_names_the_dimension_and_seed_and_changes_with_any_setting():
    name = word_vectors.cache_name(TINY, "a" * 64)
    assert name.startswith("word2vec-8d-seed3-")
    assert name != word_vectors.cache_name(Word2VecSettings(dimension=8, seed=3, min_count=1, epochs=3), "a" * 64)
    assert name != word_vectors.cache_name(TINY, "b" * 64)
