"""Fuzzing the readers of what users hand in, corpus files (IOB) and annotation input, with Hypothesis: random
bytes, random text (lone surrogates and control characters included) and random line endings. The property:
nothing raises but OpenMedError, every rejection names the file and the line, and a rejected input writes
nothing. Bounded: a few hundred examples, seconds in all."""

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openmed_repro.annotation import annotate
from openmed_repro.data import corpora, iob
from openmed_repro.errors import OpenMedError

FUZZ = settings(max_examples=150, deadline=None)

ANY_CHARACTER = st.characters(exclude_categories=())          # lone surrogates and control characters too
AWKWARD = st.sampled_from(["\t", " ", "\r", "\n", "\x00", "\x0b", "\x1c", "\x85", "\u00a0", "\u2028",
                           "\u3000", "\ufeff", "\ud800", "\udfff"])
LINE_ENDINGS = st.sampled_from(["\n", "\r\n", "\r", ""])
TEXT = st.lists(st.one_of(ANY_CHARACTER, AWKWARD), max_size=12).map("".join)   # st.text would drop surrogates


def as_bytes(text: str) -> bytes:
    """A text as a file holds it: UTF-8, a lone surrogate as the three bytes a careless encoder writes."""
    return text.encode("utf-8", "surrogatepass")


def joined(lines: list[bytes], endings: list[str]) -> bytes:
    return b"".join(line + as_bytes(ending) for line, ending in zip(lines, endings + ["\n"] * len(lines)))


def files(line: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Whole files: random bytes, or lines of `line` with random line endings."""
    lines = st.builds(joined, st.lists(line, max_size=8), st.lists(LINE_ENDINGS, max_size=8))
    return st.one_of(lines, lines, st.binary(max_size=200))


# Mostly lines a corpus file could hold, so that whole files often pass and what they hide is checked.
TAGS = st.one_of(st.sampled_from(["O", "B-Disease", "I-Disease", "B-Chemical", "I-Chemical"]),
                 st.sampled_from(["B-", "I-", "Disease", "b-Disease", iob.DOCSTART]), TEXT)
TOKENS = st.one_of(st.sampled_from(["Lung", "cancer", "aspirin", iob.DOCSTART]), TEXT)
SEPARATORS = st.one_of(st.sampled_from(["\t", " "]), st.sampled_from(["\t\t", "\tNN\t", "\x0b", "\u3000"]))
IOB_LINE = st.builds(lambda token, separator, tag, ending: as_bytes(f"{token}{separator}{tag}{ending}"),
                     TOKENS, SEPARATORS, TAGS, st.sampled_from(["", "", " ", "\t", "\r"]))
IOB_LINES = st.one_of(IOB_LINE, IOB_LINE, IOB_LINE, st.just(b""), TEXT.map(as_bytes), st.binary(max_size=20))

JSON_VALUES = st.one_of(TEXT, st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))
DOCUMENT = st.builds(lambda record, ascii_only: as_bytes(json.dumps(record, ensure_ascii=ascii_only)),
                     st.fixed_dictionaries({"id": st.one_of(TEXT, st.integers()), "text": TEXT}), st.booleans())
MALFORMED = st.builds(lambda record, ascii_only: as_bytes(json.dumps(record, ensure_ascii=ascii_only)),
                      st.fixed_dictionaries({}, optional={"id": JSON_VALUES, "text": JSON_VALUES}), st.booleans())
ANNOTATION_LINES = st.one_of(DOCUMENT, DOCUMENT, MALFORMED, TEXT.map(as_bytes), st.binary(max_size=30), st.just(b""))


def named_a_line(error: OpenMedError, path: Path) -> bool:
    return re.match(rf"{re.escape(str(path))}:[1-9]\d*: \S", str(error)) is not None


@FUZZ
@given(content=files(IOB_LINES), repair=st.booleans())
def test_a_corpus_file_of_any_content_is_read_valid_or_rejected_naming_its_line(content, repair):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "train.tsv"
        path.write_bytes(content)
        try:
            parsed = iob.read_iob(path, repair=repair)
        except OpenMedError as error:
            assert named_a_line(error, path), str(error)
            return
    text = content.decode("utf-8")
    assert all("\r" not in line.rstrip(" \t\r") for line in text.split("\n")), "a bare CR hides what follows it"
    for sentence in parsed.sentences:
        assert sentence.tokens and len(sentence.tokens) == len(sentence.tags)
        assert all(token.strip() and not set(token) & {"\t", "\r", "\n"} for token in sentence.tokens), sentence
        for previous, tag in zip(["O", *sentence.tags], sentence.tags):
            assert tag == "O" or re.fullmatch(r"[BI]-\S+", tag), tag
            assert not tag.startswith("I-") or previous[2:] == tag[2:], sentence


@settings(max_examples=40, deadline=None)
@given(content=files(IOB_LINES))
def test_a_corpus_directory_with_a_file_of_any_content_loads_or_is_rejected_naming_its_line(content):
    good = b"Lung\tB-Disease\ncancer\tI-Disease\n"
    with tempfile.TemporaryDirectory() as directory:
        for split, data in (("train", good), ("devel", content), ("test", good)):
            (Path(directory) / f"{split}.tsv").write_bytes(data)
        try:
            corpus = corpora.load(directory)
        except OpenMedError as error:
            assert named_a_line(error, Path(directory) / "devel.tsv"), str(error)
            return
    assert corpus.devel and corpus.labels[0] == "O"


@FUZZ
@given(content=files(ANNOTATION_LINES), fmt=st.sampled_from(["jsonl", "text"]))
def test_annotation_input_of_any_content_is_read_line_by_line_or_its_lines_reported(content, fmt):
    lines = len(content.split(b"\n")) - (content.endswith(b"\n") or not content)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "in.jsonl"
        path.write_bytes(content)
        documents, problems = annotate.read_documents(path, fmt)
        assert sorted([d.line for d in documents] + [p.line for p in problems]) == list(range(1, lines + 1))
        for document in documents:   # text the tokenizer takes and the output can hold (no lone surrogate)
            document.text.encode("utf-8"), document.id.encode("utf-8")
        output = Path(directory) / "entities.jsonl"
        with pytest.raises(OpenMedError) as stopped:
            annotate.annotate_file(Path(directory) / "no-run", path, output, fmt=fmt, on_error="fail", progress=False)
        if problems:
            assert str(stopped.value).startswith(f"{path}:{problems[0].line}: {problems[0].reason}")
        else:
            assert "holds no model/" in str(stopped.value)   # read whole; it is the missing run that stops it
        assert sorted(p.name for p in Path(directory).iterdir()) == ["in.jsonl"]


@FUZZ
@given(line=ANNOTATION_LINES.map(lambda line: line.replace(b"\n", b" ")), number=st.integers(1, 10**6))
def test_one_line_reads_the_same_with_or_without_its_line_break(line, number):
    """Spark hands the reader lines without their "\\n", a file with it: the same Document or Problem."""
    kept = annotate.document_of_line(line + b"\n", number, "jsonl")
    assert kept == annotate.document_of_line(line, number, "jsonl")
    assert isinstance(kept, annotate.Document | annotate.Problem) and kept.line == number
