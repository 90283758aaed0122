"""Words to sub-word windows and back.

Only the first sub-word of each word carries a label (the others get -100, ignored by the loss). A
sentence longer than `max_length` sub-words is split into windows that overlap by up to `overlap`
sub-words and never cut a word, so no word is dropped and an entity of up to `overlap` sub-words cut
by one window's edge is whole in the next. When merging back, each word takes the prediction of the
window in which it lies farthest from a cut edge (the sentence's own start and end are not cuts)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openmed_repro.errors import OpenMedError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Window:
    """Words [word_start, word_end) of sentence `sentence`, as model inputs with aligned labels."""

    sentence: int
    word_start: int
    word_end: int
    input_ids: list[int]
    labels: list[int]
    word_ids: list[int | None]

    def features(self) -> dict[str, list[int]]:
        """What a transformers collator expects."""
        return {"input_ids": self.input_ids, "attention_mask": [1] * len(self.input_ids), "labels": self.labels}


def encode(sentences: Sequence[Sequence[str]], tokenizer, label2id: Mapping[str, int] | None = None,
           tags: Sequence[Sequence[str]] | None = None, max_length: int = 256, overlap: int = 50) -> list[Window]:
    """Tokenize word lists with the backbone's fast tokenizer into windows of at most `max_length`
    sub-words (special tokens included). With `tags` and `label2id`, first sub-words are labelled."""
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if budget < 1:
        raise OpenMedError(f"max_length={max_length} leaves no room for words after the special tokens")
    if not 0 <= overlap < budget:
        raise OpenMedError(f"overlap={overlap} must be at least 0 and below max_length minus special tokens ({budget})")
    if tags is not None and (label2id is None or len(tags) != len(sentences)):
        raise OpenMedError("tags need a label2id mapping and one tag list per sentence")
    words = [_visible_words(list(s), counts, tokenizer)
             for s, counts in zip(sentences, _subword_counts(sentences, tokenizer))]
    plans = [(index, start, end)
             for index, (sentence_words, counts) in enumerate(words)
             for start, end in plan_windows([min(c, budget) for c in counts], budget, overlap)]
    if not plans:
        return []
    encoded = tokenizer([words[i][0][start:end] for i, start, end in plans], is_split_into_words=True,
                        truncation=True, max_length=max_length)
    windows = []
    for row, (index, start, end) in enumerate(plans):
        local_ids = encoded.word_ids(row)
        word_ids = [None if w is None else w + start for w in local_ids]
        labels = [IGNORE_INDEX] * len(word_ids)
        if tags is not None:
            sentence_tags = tags[index]
            if len(sentence_tags) != len(sentences[index]):
                raise OpenMedError(f"sentence {index}: {len(sentences[index])} words but {len(sentence_tags)} tags")
            previous = None
            for position, word in enumerate(word_ids):
                if word is not None and word != previous:
                    tag = sentence_tags[word]
                    if tag not in label2id:
                        raise OpenMedError(f"sentence {index}, word {word}: tag {tag!r} not in the label set")
                    labels[position] = label2id[tag]
                previous = word
        windows.append(Window(index, start, end, list(encoded["input_ids"][row]), labels, word_ids))
    return windows


def plan_windows(counts: Sequence[int], budget: int, overlap: int) -> list[tuple[int, int]]:
    """Word ranges [start, end) of at most `budget` sub-words (given each word's count) that cover every
    word; each window starts at the first word lying within the previous window's last `overlap` sub-words."""
    offsets = [0]
    for count in counts:
        offsets.append(offsets[-1] + count)
    ranges, start, n = [], 0, len(counts)
    while start < n:
        end = start
        while end < n and offsets[end + 1] - offsets[start] <= budget:
            end += 1
        end = max(end, start + 1)
        ranges.append((start, end))
        if end == n:
            break
        boundary = offsets[end] - overlap
        start = next(i for i in range(start + 1, end + 1) if offsets[i] >= boundary)
    return ranges


def merge_predictions(windows: Sequence[Window], predictions: Sequence[Sequence[int]],
                      sentence_lengths: Sequence[int]) -> list[list[int]]:
    """One predicted label id per word of every sentence, read at each word's first sub-word in the
    window where that word lies farthest from a cut edge. Raises if any word is left without one."""
    if len(windows) != len(predictions):
        raise OpenMedError(f"{len(windows)} windows but {len(predictions)} prediction rows")
    merged: list[list[int | None]] = [[None] * length for length in sentence_lengths]
    best: list[list[float]] = [[-1.0] * length for length in sentence_lengths]
    for window, row in zip(windows, predictions):
        length = sentence_lengths[window.sentence]
        first_positions = {}
        for position, word in enumerate(window.word_ids):
            if word is not None and word not in first_positions:
                first_positions[word] = position
        for word, position in first_positions.items():
            left = word - window.word_start if window.word_start > 0 else math.inf
            right = window.word_end - 1 - word if window.word_end < length else math.inf
            distance = min(left, right)
            if distance > best[window.sentence][word]:
                best[window.sentence][word] = distance
                merged[window.sentence][word] = int(row[position])
    for index, labels in enumerate(merged):
        if None in labels:
            raise OpenMedError(f"sentence {index}: word {labels.index(None)} received no prediction")
    return merged  # type: ignore[return-value]


def _subword_counts(sentences: Sequence[Sequence[str]], tokenizer) -> list[list[int]]:
    if not sentences:
        return []
    # whole documents may be longer than the model takes: they are only counted here, and windows cut them later
    encoded = tokenizer([list(s) for s in sentences], is_split_into_words=True, add_special_tokens=False,
                        verbose=False)
    counts = []
    for row, sentence in enumerate(sentences):
        per_word = [0] * len(sentence)
        for word in encoded.word_ids(row):
            if word is not None:
                per_word[word] += 1
        counts.append(per_word)
    return counts


def _visible_words(words: list[str], counts: list[int], tokenizer) -> tuple[list[str], list[int]]:
    """Words the tokenizer turns into nothing (empty, zero-width, control characters) become its unknown
    token, so every word owns at least one sub-word and gets a prediction."""
    if all(counts):
        return words, counts
    return [w if c else tokenizer.unk_token for w, c in zip(words, counts)], [c or 1 for c in counts]
