"""Splitting raw text into sentences and words, with character offsets: the one rule for annotating documents
and for cutting long DAPT abstracts into passages.

Words are runs of letters/digits or single punctuation characters (the corpora's tokenisation). A sentence
ends at . ! or ? followed by white space and an upper-case letter or a digit, except a . after a common
abbreviation ("e.g.", "et al.", "Fig.") or a single initial ("J. Doe")."""

from __future__ import annotations

import re

Span = tuple[int, int]

_WORD = re.compile(r"\w+|[^\w\s]")
_ENDS = {".", "!", "?"}
ABBREVIATIONS = frozenset({
    "al", "e.g", "i.e", "eg", "ie", "fig", "figs", "vs", "dr", "mr", "mrs", "ms", "no", "nos", "approx", "ca", "cf",
    "etc", "resp", "ref", "refs", "vol", "sp", "spp", "st", "inc", "ltd", "co", "jr", "sr"})


def words(text: str) -> list[Span]:
    """Character spans [start, end) of the words of `text`."""
    return [match.span() for match in _WORD.finditer(text)]


def sentence_words(text: str) -> list[list[Span]]:
    """The words of `text` (character spans) grouped into sentences; text without words has none."""
    spans = words(text)
    grouped, current = [], []
    for index, span in enumerate(spans):
        current.append(span)
        if index + 1 < len(spans) and _ends_sentence(text, spans, index):
            grouped.append(current)
            current = []
    if current:
        grouped.append(current)
    return grouped


def sentences(text: str) -> list[str]:
    """The sentences of `text`, each from its first word to its last (the white space between them dropped)."""
    return [text[spans[0][0]:spans[-1][1]] for spans in sentence_words(text)]


def _ends_sentence(text: str, spans: list[Span], index: int) -> bool:
    start, end = spans[index]
    if text[start:end] not in _ENDS:
        return False
    following = spans[index + 1][0]
    if following == end or not (text[following].isupper() or text[following].isdigit()):
        return False
    if text[start:end] != "." or index == 0:
        return True
    previous = text[spans[index - 1][0]:spans[index - 1][1]]
    joined = text[_abbreviation_start(spans, index):start].lower()
    single_initial = len(previous) == 1 and previous.isalpha() and previous.isupper()
    return not (joined in ABBREVIATIONS or previous.lower() in ABBREVIATIONS or single_initial)


def _abbreviation_start(spans: list[Span], index: int) -> int:
    """Start of the words written without spaces before spans[index] ("e.g" of "e.g.")."""
    position = index - 1
    while position > 0 and spans[position - 1][1] == spans[position][0]:
        position -= 1
    return spans[position][0]
