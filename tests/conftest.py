"""Shared fixtures: a tiny WordPiece tokenizer built in memory and a writer for small IOB corpora."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from transformers import BertTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WHOLE_WORDS = ["the", "of", "in", "cancer", "aspirin", "lung", "cells", "patients", "with", "and"]


@pytest.fixture(scope="session")
def tokenizer():
    """Whole words above are one sub-word each; any other lower-case word is one sub-word per letter
    (a + ##b + ##c), so a test controls sub-word counts exactly. Characters outside the vocabulary are [UNK]."""
    vocab = SPECIALS + WHOLE_WORDS + list(string.ascii_lowercase) + ["##" + c for c in string.ascii_lowercase]
    vocab += list(string.digits) + list(".,;:()-")
    return BertTokenizer(vocab={token: index for index, token in enumerate(vocab)})


def write_split(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join("\n".join(f"{t}\t{g}" for t, g in s) for s in sentences) + "\n", encoding="utf-8")
    return path


SMALL_SPLIT = [
    [("Aspirin", "B-Chemical"), ("reduces", "O"), ("pain", "O"), (".", "O")],
    [("Lung", "B-Disease"), ("cancer", "I-Disease"), ("kills", "O")],
]


@pytest.fixture
def corpus_dir(tmp_path) -> Path:
    """A three-split corpus directory in the registry's layout."""
    directory = tmp_path / "mycorpus"
    for split in ("train", "devel", "test"):
        write_split(directory / f"{split}.tsv", SMALL_SPLIT)
    return directory
