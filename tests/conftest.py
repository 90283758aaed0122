"""Shared fixtures: a tiny WordPiece tokenizer built in memory and a writer for small IOB corpora."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest
from transformers import BertTokenizer
from openmed_repro.infra import layout, run_provenance

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


DISEASES = [["lung", "cancer"], ["breast", "cancer"], ["diabetes"], ["asthma"], ["colon", "tumor"]]
FILLER = ["patients", "with", "were", "treated", "in", "the", "study", "of", "and", "cells", "many", "often"]


def synthetic_sentences(count: int, seed: int) -> list[list[tuple[str, str]]]:
    """Short sentences with one or two Disease mentions among filler words: learnable in a few steps."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        words = [(w, "O") for w in rng.sample(FILLER, rng.randint(3, 7))]
        for _ in range(rng.randint(1, 2)):
            mention = rng.choice(DISEASES)
            at = rng.randint(0, len(words))
            words[at:at] = [(w, ("B-" if i == 0 else "I-") + "Disease") for i, w in enumerate(mention)]
        sentences.append(words)
    return sentences


@pytest.fixture(scope="session")
def synthetic_corpus(tmp_path_factory) -> Path:
    """A corpus directory big enough for the smoke profile (48 train, 24 dev/test sentences used)."""
    directory = tmp_path_factory.mktemp("corpus") / "synthetic"
    for offset, split in enumerate(("train", "devel", "test")):
        write_split(directory / f"{split}.tsv", synthetic_sentences(60, seed=offset))
    return directory


DAPT_SOURCE_FILES = ["pubmed_genia_jnlpba_train.txt", "pubmed_s800_train.txt", "pubmedqa_pqal.txt",
                     "medical_abstracts_tc_test.txt", "clinicaltrials_sample.txt"]


def write_dapt_text(directory: Path, planted: dict[str, str] | None = None) -> Path:
    """30 random passages of corpus words in each DAPT source file; `planted` adds a line to a file."""
    rng = random.Random(0)
    words = FILLER + [w for mention in DISEASES for w in mention]
    for name in DAPT_SOURCE_FILES:
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 30))) for _ in range(30)]
        if planted and name in planted:
            lines.append(planted[name])
        (directory / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="session", autouse=True)
def committed_code():
    """Runs made by the tests name a clean commit, whatever the working tree holds while someone develops (the
    record refuses runs of uncommitted code); tests/test_runs.py checks the real reading of the repository."""

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_provenance, "code_state", lambda: {"commit": "0" * 40, "dirty": False})
        yield


def _record_state() -> dict[str, int]:
    """The modification time of every folder of the repository's record: every write of the project is a rename
    into its folder (atomic_files), which changes the folder's time."""
    record = layout.LAYOUT.repository_record
    return {str(path.relative_to(record)): path.stat().st_mtime_ns
            for path in (record, *record.rglob("*")) if path.is_dir()}


@pytest.fixture(autouse=True)
def the_repository_record_is_never_written(request):
    """A test records into its own folder ($OPENMED_RECORD_DIR), never into the repository's results/."""
    before = _record_state()
    yield
    after = _record_state()
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"{request.node.name} wrote into the repository's record: {changed[:5]}"
