"""The BiLSTM-CNN-Char tagger (Chiu & Nichols 2016; the Spark NLP paper's architecture, Kocaman & Talby 2020)
and its CRF: how a sentence becomes ids (the vocabulary, casing categories, encode, collate) and the network that
scores and decodes its tags. Training, saving and scoring it is the baseline chapter's job (training/baseline.py).

Each word is represented by a word embedding (keyed by `normalise`: lower-cased, digits mapped to 0), a character
CNN max-pooled over the word, and a casing category; a BiLSTM reads the sentence and a linear layer scores the tags,
decoded by a CRF that forbids invalid IOB2 transitions (I-X after anything but B-X/I-X) or by a per-word softmax.
The saved tagger is its state_dict (tensors only), so moving this code never breaks a saved run."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from openmed_repro.data.iob import Sentence
from openmed_repro.errors import OpenMedError
from openmed_repro.infra.job_settings import BaselineConfig

PAD, UNK = "<pad>", "<unk>"
CASINGS = ("pad", "lower", "upper", "title", "numeric", "mainly_numeric", "has_digit", "punctuation", "other")
_DIGIT = re.compile(r"\d")


def normalise(word: str) -> str:
    """The key of a word's vector, in the tagger's embeddings and in word2vec (training/word_vectors.py) alike:
    lower case, every digit 0."""
    return _DIGIT.sub("0", word.lower())


def casing(word: str) -> int:
    """Chiu & Nichols' casing category of a word (index into CASINGS)."""
    digits = sum(c.isdigit() for c in word)
    if word.isdigit():
        kind = "numeric"
    elif digits / max(len(word), 1) > 0.5:
        kind = "mainly_numeric"
    elif word.islower():
        kind = "lower"
    elif word.isupper():
        kind = "upper"
    elif word[:1].isupper() and word[1:].islower():
        kind = "title"
    elif digits:
        kind = "has_digit"
    elif not any(c.isalnum() for c in word):
        kind = "punctuation"
    else:
        kind = "other"
    return CASINGS.index(kind)


@dataclass(frozen=True)
class Vocabulary:
    """Index 0 is padding and 1 the unknown word/character in `words` and `chars`."""

    words: list[str]
    chars: list[str]
    labels: list[str]

    def __post_init__(self):
        object.__setattr__(self, "_word_ids", {w: i for i, w in enumerate(self.words)})
        object.__setattr__(self, "_char_ids", {c: i for i, c in enumerate(self.chars)})

    def word_id(self, word: str) -> int:
        return self._word_ids.get(normalise(word), 1)

    def char_ids(self, word: str, limit: int) -> list[int]:
        return [self._char_ids.get(c, 1) for c in word[:limit]] or [1]

    def to_dict(self) -> dict:
        return {"words": self.words, "chars": self.chars, "labels": self.labels}


def build_vocabulary(sentences: Sequence[Sentence], labels: list[str], min_word_count: int) -> Vocabulary:
    """Training words seen at least `min_word_count` times (the rest train the unknown vector) and every
    training character."""
    words = Counter(normalise(t) for s in sentences for t in s.tokens)
    chars = Counter(c for s in sentences for t in s.tokens for c in t)
    return Vocabulary(words=[PAD, UNK] + sorted(w for w, n in words.items() if n >= min_word_count),
                      chars=[PAD, UNK] + sorted(chars), labels=list(labels))


def allowed_transitions(labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """IOB2: I-X may only follow B-X or I-X, and a sentence may not open with I-X."""
    n = len(labels)
    pair = torch.ones(n, n, dtype=torch.bool)
    start = torch.ones(n, dtype=torch.bool)
    for j, label in enumerate(labels):
        if label.startswith("I-"):
            start[j] = False
            for i, previous in enumerate(labels):
                pair[i, j] = previous in {"B-" + label[2:], label}
    return pair, start


class CRF(nn.Module):
    """Linear-chain CRF over left-aligned, masked sequences; invalid IOB2 transitions are excluded."""

    def __init__(self, labels: Sequence[str]):
        super().__init__()
        n = len(labels)
        self.transitions = nn.Parameter(torch.zeros(n, n))
        self.start = nn.Parameter(torch.zeros(n))
        self.end = nn.Parameter(torch.zeros(n))
        pair, start = allowed_transitions(labels)
        self.register_buffer("pair_penalty", (~pair).float() * -1e4)
        self.register_buffer("start_penalty", (~start).float() * -1e4)

    def _scores(self):
        return self.transitions + self.pair_penalty, self.start + self.start_penalty

    def neg_log_likelihood(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of -log p(tags | words)."""
        transitions, start = self._scores()
        batch = torch.arange(emissions.size(0))
        gold = start[tags[:, 0]] + emissions[batch, 0, tags[:, 0]]
        alpha = start + emissions[:, 0]
        for t in range(1, emissions.size(1)):
            step = mask[:, t]
            gold = gold + step * (transitions[tags[:, t - 1], tags[:, t]] + emissions[batch, t, tags[:, t]])
            moved = torch.logsumexp(alpha.unsqueeze(2) + transitions + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(step.unsqueeze(1).bool(), moved, alpha)
        last = tags.gather(1, (mask.sum(1).long() - 1).unsqueeze(1)).squeeze(1)
        gold = gold + self.end[last]
        return (torch.logsumexp(alpha + self.end, dim=1) - gold).mean()

    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi: the best tag sequence of each sentence."""
        transitions, start = self._scores()
        score = start + emissions[:, 0]
        pointers = []
        for t in range(1, emissions.size(1)):
            best, previous = (score.unsqueeze(2) + transitions).max(dim=1)
            pointers.append(previous)
            score = torch.where(mask[:, t].unsqueeze(1).bool(), best + emissions[:, t], score)
        score = score + self.end
        paths = []
        for row, length in enumerate(mask.sum(1).long().tolist()):
            tag = int(score[row].argmax())
            path = [tag]
            for t in range(length - 1, 0, -1):
                tag = int(pointers[t - 1][row, tag])
                path.append(tag)
            paths.append(path[::-1])
        return paths


class Tagger(nn.Module):
    """Word embedding + character CNN + casing embedding -> BiLSTM -> tag scores (CRF or softmax)."""

    def __init__(self, settings: BaselineConfig, vocabulary: Vocabulary, word_vectors: torch.Tensor | None = None):
        super().__init__()
        word_dim = settings.word_dim if word_vectors is None else word_vectors.size(1)
        self.words = nn.Embedding(len(vocabulary.words), word_dim, padding_idx=0)
        if word_vectors is not None:
            self.words.weight.data.copy_(word_vectors)
        self.chars = nn.Embedding(len(vocabulary.chars), settings.char_dim, padding_idx=0)
        self.char_cnn = nn.Conv1d(settings.char_dim, settings.char_filters, settings.char_kernel,
                                  padding=settings.char_kernel // 2)
        self.casing = nn.Embedding(len(CASINGS), settings.casing_dim, padding_idx=0)
        self.dropout = nn.Dropout(settings.dropout)
        self.lstm = nn.LSTM(word_dim + settings.char_filters + settings.casing_dim, settings.hidden_size,
                            num_layers=settings.lstm_layers, batch_first=True, bidirectional=True,
                            dropout=settings.dropout if settings.lstm_layers > 1 else 0.0)
        self.scores = nn.Linear(2 * settings.hidden_size, len(vocabulary.labels))
        self.crf = CRF(vocabulary.labels) if settings.output == "crf" else None

    def emissions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        b, t, c = batch["chars"].shape
        chars = self.chars(batch["chars"].view(b * t, c)).transpose(1, 2)
        char_features = self.char_cnn(chars).max(dim=2).values.view(b, t, -1)
        features = torch.cat([self.words(batch["words"]), char_features, self.casing(batch["casing"])], dim=2)
        lengths = batch["mask"].sum(1).long().cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(features), lengths, batch_first=True,
                                                   enforce_sorted=False)
        hidden, _ = self.lstm(packed)
        hidden, _ = nn.utils.rnn.pad_packed_sequence(hidden, batch_first=True, total_length=t)
        return self.scores(self.dropout(hidden))

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        emissions = self.emissions(batch)
        if self.crf is not None:
            return self.crf.neg_log_likelihood(emissions, batch["tags"], batch["mask"])
        mask = batch["mask"].bool()
        return nn.functional.cross_entropy(emissions[mask], batch["tags"][mask])

    def decode(self, batch: dict[str, torch.Tensor]) -> list[list[int]]:
        emissions = self.emissions(batch)
        if self.crf is not None:
            return self.crf.decode(emissions, batch["mask"])
        best = emissions.argmax(dim=2).tolist()
        return [row[:length] for row, length in zip(best, batch["mask"].sum(1).long().tolist())]


def encode(tokens: Sequence[Sequence[str]], vocabulary: Vocabulary, max_word_chars: int,
           tags: Sequence[Sequence[str]] | None = None) -> list[dict]:
    """One item per sentence: word ids, character ids per word, casing ids and (with `tags`) label ids."""
    label_ids = {label: i for i, label in enumerate(vocabulary.labels)}
    items = []
    for index, words in enumerate(tokens):
        if not words:
            raise OpenMedError(f"sentence {index} has no words")
        item = {"words": [vocabulary.word_id(w) for w in words],
                "chars": [vocabulary.char_ids(w, max_word_chars) for w in words],
                "casing": [casing(w) for w in words]}
        if tags is not None:
            unknown = sorted(set(tags[index]) - label_ids.keys())
            if unknown:
                raise OpenMedError(f"sentence {index}: tags {unknown} are not in the label set {vocabulary.labels}")
            item["tags"] = [label_ids[t] for t in tags[index]]
        items.append(item)
    return items


def collate(items: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Pad a batch: words, casing, tags and mask (batch, words); chars (batch, words, characters)."""
    length = max(len(i["words"]) for i in items)
    width = max(len(c) for i in items for c in i["chars"])
    batch = {name: torch.zeros(len(items), length, dtype=torch.long) for name in ("words", "casing", "tags", "mask")}
    batch["chars"] = torch.zeros(len(items), length, width, dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item["words"])
        batch["words"][row, :n] = torch.tensor(item["words"])
        batch["casing"][row, :n] = torch.tensor(item["casing"])
        batch["mask"][row, :n] = 1
        if "tags" in item:
            batch["tags"][row, :n] = torch.tensor(item["tags"])
        for position, chars in enumerate(item["chars"]):
            batch["chars"][row, position, :len(chars)] = torch.tensor(chars)
    return batch
