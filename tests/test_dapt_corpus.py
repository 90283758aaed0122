"""Assembling the DAPT text: length filter, de-duplication, evaluation overlap, held-out split, the mix."""

import random

import pytest

from openmed_repro.data import dapt_corpus
from openmed_repro.data.dapt_corpus import Source
from openmed_repro.errors import OpenMedError

WORDS = "protein binding cells tumour gene expression patients treated dose response clinical trial".split()


def passage(rng: random.Random, words: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + f" {rng.random():.12f} ."


def write_source(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def word_count(text: str) -> int:
    return len(text.split())


def build(sources, evaluation=(), **kwargs):
    options = {"mix": {s.name: 1.0 for s in sources}, "min_tokens": 5, "max_tokens": 30,
               "held_out_sources": ("pubmed",), "held_out_fraction": 0.2, "seed": 1, **kwargs}
    return dapt_corpus.build(sources, word_count, evaluation, **options)


@pytest.fixture
def pubmed(tmp_path):
    rng = random.Random(0)
    return Source("pubmed", (write_source(tmp_path / "pubmed.txt", [passage(rng) for _ in range(50)]),))


def test_a_passage_holding_an_evaluation_sentence_is_dropped_whatever_its_spacing(tmp_path, pubmed):
    dev_sentence = "Mutations in the BRCA1 gene ( breast cancer 1 ) raise the risk"
    planted = "Background text first . Mutations in the BRCA1 gene (breast cancer 1) raise the risk of tumours ."
    trials = Source("trials", (write_source(tmp_path / "trials.txt", [planted, "A clean clinical trial passage "
                                                                               "about dose and response ."]),))
    corpus = build([pubmed, trials], evaluation=[dev_sentence])
    assert planted not in corpus.training + corpus.held_out
    row = {c.source: c for c in corpus.composition}["trials"]
    assert (row.evaluation_overlap, row.training) == (1, 1)


def test_short_headings_of_evaluation_splits_do_not_remove_text(pubmed):
    corpus = build([pubmed], evaluation=["Results", "Methods ."])
    assert sum(c.evaluation_overlap for c in corpus.composition) == 0


def test_passages_outside_the_token_limits_and_duplicates_are_counted_and_removed(tmp_path, pubmed):
    lines = ["too short .", " ".join(["long"] * 40), "Same text  repeated here for the test .",
             "same text repeated here for the test ."]
    other = Source("other", (write_source(tmp_path / "other.txt", lines),))
    row = {c.source: c for c in build([pubmed, other]).composition}["other"]
    assert (row.read, row.too_short, row.too_long, row.duplicates, row.available) == (4, 1, 1, 1, 1)


def test_the_held_out_set_is_disjoint_from_training_and_stable_for_a_seed(tmp_path, pubmed):
    first = build([pubmed])
    assert 5 <= len(first.held_out) <= 15 and not set(first.held_out) & set(first.training)
    assert build([pubmed]).held_out == first.held_out
    more = Source("pubmed", pubmed.files + (write_source(tmp_path / "more.txt", [passage(random.Random(5))] * 1),))
    assert set(first.held_out) <= set(build([more]).held_out)  # adding text never moves a passage out
    assert build([pubmed], seed=2).held_out != first.held_out


def test_the_mix_is_kept_and_a_short_source_gives_its_share_to_the_others():
    quota = dapt_corpus.allocate({"pubmed": 100, "arxiv": 100, "notes": 100, "trials": 50},
                                 {"pubmed": 1000, "arxiv": 0, "notes": 1000, "trials": 10}, total=350)
    assert quota == {"pubmed": 170, "arxiv": 0, "notes": 170, "trials": 10}
    assert dapt_corpus.allocate({"a": 2, "b": 1}, {"a": 1000, "b": 1000}, total=300) == {"a": 200, "b": 100}
    assert dapt_corpus.allocate({"a": 1, "b": 1}, {"a": 3, "b": 2}, total=100) == {"a": 3, "b": 2}


def test_a_capped_corpus_follows_the_mix(tmp_path, pubmed):
    rng = random.Random(3)
    trials = Source("trials", (write_source(tmp_path / "t.txt", [passage(rng) for _ in range(40)]),))
    corpus = build([pubmed, trials], mix={"pubmed": 3, "trials": 1}, passages=20)
    rows = {c.source: c for c in corpus.composition}
    assert (rows["pubmed"].training, rows["trials"].training, len(corpus.training)) == (15, 5, 20)


def test_an_unknown_source_in_the_mix_is_named(pubmed):
    with pytest.raises(OpenMedError, match="parameter mix: unknown source.*mimic.*sources: pubmed"):
        build([pubmed], mix={"mimic": 1})


def test_a_missing_or_binary_file_is_named(tmp_path):
    with pytest.raises(OpenMedError, match="nothing.txt: cannot read DAPT text"):
        build([Source("pubmed", (tmp_path / "nothing.txt",))])
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 au lait\n")
    with pytest.raises(OpenMedError, match=r"bad.txt: not UTF-8 text \(byte 3\)"):
        build([Source("pubmed", (tmp_path / "bad.txt",))])


def test_a_long_abstract_is_cut_at_sentence_ends_into_passages_that_fit():
    abstract = "First sentence has five words. Second one has five too. Third sentence, again five words."
    pieces = dapt_corpus.split_passage(abstract, word_count, max_tokens=11)
    assert pieces == [("First sentence has five words. Second one has five too.", 10),
                      ("Third sentence, again five words.", 5)]


def test_the_pieces_of_one_abstract_stay_on_one_side_of_the_held_out_split(tmp_path):
    rng = random.Random(7)
    abstracts = [" ".join(f"Sentence {i} {j} " + " ".join(rng.choice(WORDS) for _ in range(6)) + "." for j in range(4))
                 for i in range(60)]
    source = Source("pubmed", (write_source(tmp_path / "long.txt", abstracts),))
    corpus = build([source], max_tokens=20, min_tokens=5, held_out_fraction=0.3)
    row = corpus.composition[0]
    assert row.split_long == 60 and row.too_long == 0
    held_out_abstracts = {p.split()[1] for p in corpus.held_out}
    training_abstracts = {p.split()[1] for p in corpus.training}
    assert held_out_abstracts and not held_out_abstracts & training_abstracts


def test_without_splitting_long_lines_are_dropped(tmp_path, pubmed):
    long_line = " ".join(["word"] * 20) + ". " + " ".join(["more"] * 20) + "."
    other = Source("other", (write_source(tmp_path / "o.txt", [long_line]),))
    row = {c.source: c for c in build([pubmed, other], split_long=False).composition}["other"]
    assert (row.too_long, row.split_long) == (1, 0)
