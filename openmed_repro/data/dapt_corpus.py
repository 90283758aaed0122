"""The DAPT text: passages (one a line) from named sources, filtered to 50-256 backbone tokens,
de-duplicated, cleaned of any evaluation sentence, split into a seeded held-out set for perplexity and a
training set drawn in the paper's mix as far as the sources here allow."""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from openmed_repro.data import sentences
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import paths

_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Source:
    name: str
    files: tuple[Path, ...]


@dataclass
class SourceCount:
    """One row of the composition table: what each filter removed from a source and what was kept."""

    source: str
    files: int = 0
    read: int = 0
    too_short: int = 0
    too_long: int = 0
    split_long: int = 0
    duplicates: int = 0
    evaluation_overlap: int = 0
    held_out: int = 0
    available: int = 0
    mix_weight: float = 0.0
    training: int = 0
    training_tokens: int = 0


@dataclass
class DaptCorpus:
    training: list[str]
    held_out: list[str]
    composition: list[SourceCount] = field(default_factory=list)


def configured_sources(directory: Path) -> list[Source]:
    """The named sources of parameters/dapt.yaml, their files looked up in `directory` (the DAPT text directory):
    the text DAPT adapts on and the baseline's word2vec vectors are trained on."""
    spec = paths.read_parameters("dapt.yaml")
    return [Source(name, tuple(directory / f for f in files or ())) for name, files in spec["sources"].items()]


def normalised(text: str) -> str:
    """Lower case, no whitespace: how a tokenised corpus sentence is found inside raw text."""
    return _SPACE.sub("", text).lower()


def read_passages(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise OpenMedError(f"{path}: not UTF-8 text (byte {error.start})") from error
    except OSError as error:
        raise OpenMedError(f"{path}: cannot read DAPT text ({error.strerror})") from error
    return [line.strip() for line in lines if line.strip()]


class SentenceFinder:
    """Finds whether any of many evaluation sentences occurs in a passage, ignoring whitespace and case.
    Sentences shorter than `min_chars` (headings such as "Results") are not distinguishing and are skipped."""

    def __init__(self, sentences: Iterable[str], min_chars: int = 30):
        self.key_length = min_chars
        self.by_prefix: dict[str, list[str]] = {}
        for sentence in sentences:
            text = normalised(sentence)
            if len(text) >= min_chars:
                self.by_prefix.setdefault(text[:min_chars], []).append(text)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_prefix.values())

    def occurs_in(self, passage: str) -> bool:
        text = normalised(passage)
        for start in range(len(text) - self.key_length + 1):
            candidates = self.by_prefix.get(text[start:start + self.key_length])
            if candidates and any(text.startswith(c, start) for c in candidates):
                return True
        return False


def split_passage(text: str, token_count, max_tokens: int) -> list[tuple[str, int]]:
    """Consecutive sentences (split as annotation splits them, data/sentences.py) packed greedily into pieces
    of at most `max_tokens` tokens; a single sentence longer than that stays a piece of its own (and the
    length filter drops it)."""
    pieces: list[tuple[str, int]] = []
    current: list[str] = []
    current_tokens = 0
    for sentence in sentences.sentences(text):
        tokens = token_count(sentence)  # sub-word tokenizers split at spaces: counts of sentences add up
        if current and current_tokens + tokens > max_tokens:
            pieces.append(" ".join(current))
            current, current_tokens = [], 0
        current.append(sentence)
        current_tokens += tokens
    if current:
        pieces.append(" ".join(current))
    return [(piece, token_count(piece)) for piece in pieces]


def held_out_rank(passage: str, seed: int) -> float:
    """A seeded position in [0, 1) from the passage's text alone: a passage is held out (rank below the
    fraction) or not whatever else is in the corpus, so the held-out set is stable when text is added."""
    digest = hashlib.sha256(f"{seed}\0{normalised(passage)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def allocate(weights: dict[str, float], available: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` training passages across sources in proportion to `weights`; a source that has too
    few gives all it has and the rest is shared among the others in the same proportions."""
    quota = {name: 0 for name in weights}
    open_sources = {name for name, weight in weights.items() if weight > 0 and available.get(name, 0) > 0}
    remaining = min(total, sum(available.get(name, 0) for name in open_sources))
    while remaining > 0 and open_sources:
        weight_sum = sum(weights[name] for name in open_sources)
        shares = {name: remaining * weights[name] / weight_sum for name in open_sources}
        capped = {name for name in open_sources if quota[name] + shares[name] >= available[name]}
        if not capped:
            floors = {name: int(share) for name, share in shares.items()}
            leftover = remaining - sum(floors.values())
            for name in sorted(open_sources, key=lambda n: shares[n] - floors[n], reverse=True)[:leftover]:
                floors[name] += 1
            for name, extra in floors.items():
                quota[name] += extra
            break
        for name in capped:
            remaining -= available[name] - quota[name]
            quota[name] = available[name]
        open_sources -= capped
    return quota


def build(sources: Sequence[Source], token_count, evaluation_sentences: Iterable[str], *,
          mix: dict[str, float], passages: int | None = None, min_tokens: int = 50, max_tokens: int = 256,
          held_out_sources: Sequence[str] = ("pubmed",), held_out_fraction: float = 0.1, seed: int = 42,
          min_overlap_chars: int = 30, split_long: bool = True) -> DaptCorpus:
    """The DAPT corpus. `token_count(text)` counts the backbone's tokens (no special tokens); `mix` weights
    sources by name; `passages` caps the training set (None: every passage the mix can use). A line longer
    than `max_tokens` (most PubMed abstracts) is cut at sentence ends into passages that fit, unless
    `split_long=False`, which drops it as the length filter alone would."""
    unknown = sorted(set(mix) - {s.name for s in sources})
    if unknown:
        raise OpenMedError(f"parameter mix: unknown source(s) {', '.join(unknown)}; sources: "
                           f"{', '.join(s.name for s in sources)}")
    finder = SentenceFinder(evaluation_sentences, min_overlap_chars)
    seen: set[str] = set()
    kept: dict[str, list[tuple[str, int]]] = {}
    counts: dict[str, SourceCount] = {}
    held_out: list[str] = []
    for source in sources:
        count = counts[source.name] = SourceCount(source.name, files=len(source.files),
                                                  mix_weight=float(mix.get(source.name, 0.0)))
        candidates: list[tuple[str, int, str]] = []  # passage, tokens, the line it came from
        for path in source.files:
            for line in read_passages(path):
                count.read += 1
                pieces = [(line, token_count(line))]
                if split_long and pieces[0][1] > max_tokens:
                    pieces = split_passage(line, token_count, max_tokens)
                    count.split_long += 1
                for passage, tokens in pieces:
                    if tokens < min_tokens:
                        count.too_short += 1
                        continue
                    if tokens > max_tokens:
                        count.too_long += 1
                        continue
                    key = normalised(passage)
                    if key in seen:
                        count.duplicates += 1
                        continue
                    seen.add(key)
                    if finder.occurs_in(passage):
                        count.evaluation_overlap += 1
                        continue
                    candidates.append((passage, tokens, line))
        if source.name in held_out_sources:
            # Decided on the whole line, so the pieces of one abstract never straddle training and held-out.
            chosen = [item for item in candidates if held_out_rank(item[2], seed) < held_out_fraction]
            held_out += [p for p, _, _ in chosen]
            count.held_out = len(chosen)
            candidates = [item for item in candidates if held_out_rank(item[2], seed) >= held_out_fraction]
        count.available = len(candidates)
        kept[source.name] = sorted((p, t) for p, t, _ in candidates)
    total = sum(len(v) for v in kept.values()) if passages is None else passages
    quota = allocate({s.name: counts[s.name].mix_weight for s in sources},
                     {name: len(v) for name, v in kept.items()}, total)
    rng = random.Random(seed)
    training: list[str] = []
    for source in sources:
        chosen = rng.sample(kept[source.name], quota[source.name])
        counts[source.name].training = len(chosen)
        counts[source.name].training_tokens = sum(tokens for _, tokens in chosen)
        training += [p for p, _ in chosen]
    rng.shuffle(training)
    if not training:
        raise OpenMedError("the DAPT corpus is empty after filtering: check the source files, the mix and "
                           f"the length limits ({min_tokens}-{max_tokens} tokens)")
    if not held_out:
        raise OpenMedError(f"no held-out passages: none of the sources {', '.join(held_out_sources)} kept any text")
    return DaptCorpus(training, sorted(held_out, key=lambda p: held_out_rank(p, seed)), list(counts.values()))
