"""Read and validate IOB2 files: one token a line (first column token, last column tag), blank lines
between sentences. Anything malformed is an error naming the file and line; nothing is guessed."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from seqeval.metrics.sequence_labeling import get_entities

from openmed_repro.errors import OpenMedError

DOCSTART = "-DOCSTART-"
OUTSIDE = "O"
_TAG = re.compile(r"^(?P<prefix>[BI])-(?P<type>\S+)$")


class Sentence(NamedTuple):
    """One sentence: its tokens and their IOB2 tags, position by position."""

    tokens: list[str]
    tags: list[str]


@dataclass(frozen=True)
class IobFile:
    """A validated file: its sentences, how many invalid I- starts were repaired, how many -DOCSTART- lines."""

    path: Path
    sentences: list[Sentence]
    repaired: int
    docstarts: int


def entity_type(tag: str) -> str | None:
    """The entity type of a B-/I- tag, None for O."""
    return None if tag == OUTSIDE else tag[2:]


def spans_of(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """The entities of one sentence's IOB2 tags as (first word, end word exclusive, type), in order. Read
    leniently, as seqeval's default mode and the transformers pipeline do: an I-X that does not continue an X
    entity (after O, at the start, or after another type) opens one, so no predicted word is lost."""
    return [(start, end + 1, kind) for kind, start, end in get_entities(list(tags))]


def read_iob(path: str | Path, repair: bool = False) -> IobFile:
    """Read one IOB2 split. An I-X that does not continue an X entity is an error unless `repair`,
    which turns it into B-X and counts it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise OpenMedError(f"{path}: cannot read ({error.strerror})") from error
    text = _decode(raw, path)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    repaired = docstarts = 0

    def close_sentence() -> None:
        nonlocal tokens, tags
        if tokens:
            sentences.append(Sentence(tokens, tags))
            tokens, tags = [], []

    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip(" \t\r")
        if not line.strip():
            close_sentence()
            continue
        if "\r" in line:   # a line break to an editor, none here: the token after it would be lost unseen
            raise OpenMedError(f"{path}:{number}: a carriage return inside the line (old Mac line endings, or a "
                               "stray \\r); convert the file to \\n line endings")
        columns = line.split("\t") if "\t" in line else line.split()
        if columns[0] == DOCSTART:
            docstarts += 1
            close_sentence()
            continue
        if len(columns) < 2:
            raise OpenMedError(
                f"{path}:{number}: one column {line!r}; expected a token and a tag separated by a tab"
            )
        token, tag = columns[0], columns[-1]
        if not token.strip():
            raise OpenMedError(f"{path}:{number}: empty token before the tag {tag!r}; expected a token and a tag "
                               "separated by a tab")
        if tag != OUTSIDE:
            match = _TAG.match(tag)
            if match is None:
                raise OpenMedError(
                    f"{path}:{number}: unknown tag {tag!r}; valid tags are O, B-<type> and I-<type> (IOB2)"
                )
            if match["prefix"] == "I" and not (tags and entity_type(tags[-1]) == match["type"]):
                if not repair:
                    previous = tags[-1] if tags else "the sentence start"
                    raise OpenMedError(
                        f"{path}:{number}: {tag} follows {previous} and does not continue a "
                        f"{match['type']} entity; fix the file or load it with repair=True (turns it into B-)"
                    )
                tag = "B-" + match["type"]
                repaired += 1
        tokens.append(token)
        tags.append(tag)
    close_sentence()
    if not sentences:
        raise OpenMedError(f"{path}:1: empty split (no token line in the whole file)")
    return IobFile(path=path, sentences=sentences, repaired=repaired, docstarts=docstarts)


def _decode(raw: bytes, path: Path) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise OpenMedError(
            f"{path}:{line}: not UTF-8 (byte {raw[error.start]:#04x} at offset {error.start}); "
            "convert the file to UTF-8"
        ) from error
    return text.removeprefix("\ufeff")
