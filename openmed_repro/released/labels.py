"""A released checkpoint's tags as the corpus's: its entity types (B-/I- prefixed, or bare type names) renamed by
released.yaml's `labels`, matched ignoring case; a type the map does not name becomes O, and what that removed is
counted. A map is checked against the checkpoint's labels and the corpus's types before anything is predicted."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from openmed_repro.errors import OpenMedError

OUTSIDE = "O"
_PREFIXED = re.compile(r"^([BI])-(.+)$")


@dataclass(frozen=True)
class Mapped:
    """The corpus's tags of every predicted sentence, and what the unmapped types lost: words set to O, the
    entities they formed, those entities per checkpoint type."""

    tags: list[list[str]]
    removed_words: int
    removed_entities: int
    removed_by_type: dict[str, int] = field(default_factory=dict)


def split(label: str) -> tuple[str | None, str | None]:
    """(prefix, type) of a checkpoint label: ("B", "DISEASE") for B-DISEASE, (None, "DISEASE") for a bare type,
    (None, None) for O."""
    if label.upper() == OUTSIDE:
        return None, None
    prefixed = _PREFIXED.match(label)
    return (prefixed.group(1), prefixed.group(2)) if prefixed else (None, label)


def entity_types(labels: Sequence[str]) -> list[str]:
    """The checkpoint's entity types, in the order of its labels."""
    return list(dict.fromkeys(kind for _, kind in map(split, labels) if kind is not None))


def checked(mapping: dict[str, str], labels: Sequence[str], corpus_types: Sequence[str], model: str) -> dict[str, str]:
    """The map keyed by upper-cased checkpoint type, refused when two keys differ only in case, when it names a type
    the corpus lacks, or when a corpus type is covered by none of the checkpoint's labels (naming the missing)."""
    by_type: dict[str, str] = {}
    for key, target in mapping.items():
        if key.upper() in by_type and by_type[key.upper()] != target:
            raise OpenMedError(f"label map of {model}: {key!r} is mapped twice (case is ignored), onto "
                               f"{by_type[key.upper()]!r} and {target!r}")
        by_type[key.upper()] = target
    foreign = sorted(set(by_type.values()) - set(corpus_types))
    if foreign:
        raise OpenMedError(f"label map of {model}: maps onto {', '.join(foreign)}, which the corpus lacks; its "
                           f"types: {', '.join(corpus_types)}")
    kinds = entity_types(labels)
    covered = {by_type[kind.upper()] for kind in kinds if kind.upper() in by_type}
    missing = [kind for kind in corpus_types if kind not in covered]
    if missing:
        raise OpenMedError(f"label map of {model}: no label of the checkpoint maps onto the corpus's "
                           f"{', '.join(missing)}; its types: {', '.join(kinds) or 'none'}; the map: {mapping}. "
                           "Map one in parameters/released.yaml (labels: {CHECKPOINT_TYPE: CORPUS_TYPE})")
    return by_type


def apply(by_type: dict[str, str], predicted: Sequence[Sequence[str]]) -> Mapped:
    """The corpus's IOB2 tags of the checkpoint's predicted labels. A prefixed label keeps its prefix (a stray I-
    stays one, as strict scoring should see it); a run of bare labels of one type becomes B- then I-."""
    tags, removed_words, removed = [], 0, Counter()
    for sentence in predicted:
        out, previous = [], None
        for label in sentence:
            prefix, kind = split(label)
            if kind is None:
                out.append(OUTSIDE)
                previous = None
                continue
            starts = prefix == "B" or previous != kind.upper()
            target = by_type.get(kind.upper())
            if target is None:
                out.append(OUTSIDE)
                removed_words += 1
                removed[kind] += starts
            else:
                out.append(f"{prefix or ('B' if starts else 'I')}-{target}")
            previous = kind.upper()
        tags.append(out)
    return Mapped(tags, removed_words, sum(removed.values()), dict(removed))
