"""The paper's 12 corpora: registry, locating (directory, environment, shared copy, verified download),
loading with checksum verification, and the statistics table shown beside the paper's split sizes.

Run `openmed-repro corpus-stats` to print the statistics of every corpus that can be loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd

from openmed_repro.infra import paths
from openmed_repro.data import downloads
from openmed_repro.errors import OpenMedError
from openmed_repro.data.iob import OUTSIDE, Sentence, entity_type, read_iob

SPLITS = ("train", "devel", "test")


@dataclass(frozen=True)
class SplitSpec:
    file: str
    url: str | None = None
    git_blob: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class CorpusSpec:
    key: str
    name: str
    entity_types: tuple[str, ...]
    citation: str
    licence: str
    splits: dict[str, SplitSpec]
    note: str = ""

    @property
    def downloadable(self) -> bool:
        return all(split.url and split.git_blob for split in self.splits.values())


@dataclass(frozen=True)
class SplitFile:
    """Which copy of a split was read: path, checksums, what it was verified against, repairs made."""

    path: Path
    sha256: str
    git_blob: str
    verified_as: str
    repaired: int
    docstarts: int


@dataclass(frozen=True)
class Corpus:
    key: str
    name: str
    directory: Path
    splits: dict[str, list[Sentence]]
    files: dict[str, SplitFile] = field(repr=False)

    @property
    def train(self) -> list[Sentence]:
        return self.splits["train"]

    @property
    def devel(self) -> list[Sentence]:
        return self.splits["devel"]

    @property
    def test(self) -> list[Sentence]:
        if "test" not in self.splits:
            raise OpenMedError(f"corpus {self.key}: the test split was not loaded; a hyper-parameter search "
                               "never reads it (load it with splits=SPLITS to evaluate)")
        return self.splits["test"]

    @property
    def entity_types(self) -> list[str]:
        return sorted({entity_type(tag) for split in self.splits.values() for s in split for tag in s.tags} - {None})

    @property
    def labels(self) -> list[str]:
        """O, then B-/I- of every type seen in any split: a label set that is stable across runs."""
        return [OUTSIDE] + [f"{prefix}-{kind}" for kind in self.entity_types for prefix in "BI"]

    def provenance(self) -> dict:
        """What a run records about the data it read: the corpus by key and each split file by name and
        checksum, never where it lay on this machine (a record must read the same anywhere)."""
        return {
            "corpus": self.key,
            "files": {
                split: {"file": f.path.name, "sha256": f.sha256, "git_blob": f.git_blob, "verified_as": f.verified_as,
                        "repaired_I_starts": f.repaired, "sentences": len(self.splits[split])}
                for split, f in self.files.items()
            },
        }


@cache
def registry() -> dict[str, CorpusSpec]:
    """The corpora of parameters/corpora.yaml, by key."""
    entries = paths.read_parameters("corpora.yaml").get("corpora") or {}
    specs = {}
    for key, entry in entries.items():
        try:
            splits = {split: SplitSpec(**entry["splits"][split]) for split in SPLITS}
            specs[key] = CorpusSpec(
                key=key, name=entry["name"], entity_types=tuple(entry.get("entity_types") or ()),
                citation=entry.get("citation", ""), licence=entry.get("licence", ""),
                note=entry.get("note", ""), splits=splits,
            )
        except (KeyError, TypeError) as error:
            raise OpenMedError(f"{paths.PARAMETERS_DIR / 'corpora.yaml'}: corpus {key!r} is malformed ({error})") from error
    return specs


def spec(key: str) -> CorpusSpec:
    specs = registry()
    if key not in specs:
        raise OpenMedError(f"unknown dataset {key!r}; known: {', '.join(specs)} (or give a corpus directory)")
    return specs[key]


def locate(key: str, data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The directory holding `key`'s three splits: `data_dir`, else $OPENMED_DATA_DIR, else
    ../shared/data when it exists, else a verified download into the cache (unless `download=False`)."""
    corpus = spec(key)
    chosen = data_dir if data_dir is not None else os.environ.get(paths.DATA_DIR_ENV)
    if chosen:
        directory = _corpus_directory(Path(chosen), corpus)
        missing = _missing(directory, corpus)
        if missing:
            origin = "data_dir" if data_dir is not None else f"${paths.DATA_DIR_ENV}"
            raise OpenMedError(
                f"corpus {key} ({corpus.name}): missing {', '.join(missing)} in {directory} (from {origin}). "
                f"{corpus.note}".strip()
            )
        return directory
    shared = paths.SHARED_DATA_DIR / key
    if not _missing(shared, corpus):
        return shared
    looked = [f"data_dir and ${paths.DATA_DIR_ENV}: neither is set", f"{shared} (the shared copy): not there"]
    if not corpus.downloadable:
        raise OpenMedError(_not_available(corpus, looked, "It has no public download."))
    if not download:
        raise OpenMedError(_not_available(corpus, looked, "Downloading was not allowed.", "or allow the download"))
    try:
        return _download(corpus)
    except OpenMedError as error:
        looked.append(f"{_cache_directory(key)} (the download cache): the verified download failed and kept "
                      f"nothing ({error})")
        raise OpenMedError(_not_available(corpus, looked, "", "or run where the network is reachable, so that the "
                                                              "package downloads and verifies the files")) from None


def _not_available(corpus: CorpusSpec, looked: list[str], outcome: str, alternative: str = "") -> str:
    """What is missing, every place looked in and how to supply the corpus: one message, nothing chained."""
    files = [split.file for split in corpus.splits.values()]
    return "\n".join([
        f"corpus {corpus.key} ({corpus.name}) is not available: no {'/'.join(files)} found. Looked in:",
        *(f"  - {place}" for place in looked),
        *filter(None, [corpus.note, outcome]),
        f"Supply it: `-p data_dir <dir>` (notebook), data_dir=<dir> (Python) or {paths.DATA_DIR_ENV}=<dir>, where "
        f"<dir>/{corpus.key}/ holds {', '.join(files[:-1])} and {files[-1]}{'; ' + alternative if alternative else ''}.",
    ])


def available(data_dir: str | Path | None = None) -> list[str]:
    """Registry keys whose three files can be found locally (nothing is downloaded to decide)."""
    keys = []
    for key in registry():
        try:
            locate(key, data_dir, download=False)
            keys.append(key)
        except OpenMedError:
            pass
    return keys


def load(dataset: str | Path, data_dir: str | Path | None = None, repair: bool = False,
         verify: bool = True, splits: tuple[str, ...] = SPLITS) -> Corpus:
    """Load a registry corpus by key, or any directory with train.tsv, devel.tsv and test.tsv.
    Registry files must match a known checksum unless `verify=False`. Splits left out of `splits` are never
    opened (a search loads ("train", "devel") so the test split cannot leak into it)."""
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise OpenMedError(f"splits {unknown} unknown; valid: {', '.join(SPLITS)}")
    if str(dataset) not in registry() and Path(dataset).is_dir():
        return _load_directory(Path(dataset), key=Path(dataset).name, name=Path(dataset).name,
                               specs=None, repair=repair, verify=False, splits=splits)
    corpus = spec(str(dataset))
    return _load_directory(locate(corpus.key, data_dir), key=corpus.key, name=corpus.name,
                           specs=corpus.splits, repair=repair, verify=verify, splits=splits)


def _load_directory(directory: Path, key: str, name: str, specs: dict[str, SplitSpec] | None,
                    repair: bool, verify: bool, splits: tuple[str, ...] = SPLITS) -> Corpus:
    file_names = {split: (specs[split].file if specs else f"{split}.tsv") for split in SPLITS if split in splits}
    missing = [name_ for name_ in file_names.values() if not (directory / name_).is_file()]
    if missing:
        raise OpenMedError(f"{directory}: missing {', '.join(missing)} (a corpus needs train.tsv, devel.tsv, test.tsv)")
    splits, files = {}, {}
    for split, file_name in file_names.items():
        path = directory / file_name
        sha, blob = downloads.sha256(path), downloads.git_blob_id(path)
        verified_as = _verify(path, sha, blob, specs[split] if specs else None, verify)
        parsed = read_iob(path, repair=repair)
        splits[split] = parsed.sentences
        files[split] = SplitFile(path, sha, blob, verified_as, parsed.repaired, parsed.docstarts)
    return Corpus(key=key, name=name, directory=directory, splits=splits, files=files)


def _verify(path: Path, sha: str, blob: str, expected: SplitSpec | None, verify: bool) -> str:
    if expected is None:
        return "unverified: not a registry corpus"
    if expected.sha256 == sha:
        return "sha256 of the shared copy"
    if expected.git_blob == blob:
        return "git blob of the upstream file"
    if not (expected.sha256 or expected.git_blob):
        return "unverified: no reference checksum in the registry"
    if verify:
        raise OpenMedError(
            f"{path}: checksum mismatch (sha256 {sha}, git blob {blob}); expected "
            + " or ".join(filter(None, [expected.sha256 and f"sha256 {expected.sha256}",
                                        expected.git_blob and f"git blob {expected.git_blob}"]))
            + ". Delete it to download again, or load with verify=False to use a modified copy."
        )
    return "unverified: checksum mismatch accepted (verify=False)"


def _corpus_directory(root: Path, corpus: CorpusSpec) -> Path:
    """`root/<key>`, or `root` itself when the user pointed straight at a corpus directory."""
    nested = root / corpus.key
    return root if not nested.is_dir() and not _missing(root, corpus) else nested


def _missing(directory: Path, corpus: CorpusSpec) -> list[str]:
    return [s.file for s in corpus.splits.values() if not (directory / s.file).is_file()]


def _cache_directory(key: str) -> Path:
    return paths.cache_dir() / "corpora" / key


def _download(corpus: CorpusSpec) -> Path:
    """The corpus in the cache, its missing files downloaded and verified; a failure leaves nothing behind."""
    directory = _cache_directory(corpus.key)
    downloads.fetch_all_verified([(split.url, directory / split.file, split.git_blob)
                                  for split in corpus.splits.values()])
    return directory


def statistics(corpus: Corpus) -> pd.DataFrame:
    """Sentences, tokens and mentions per entity type for each split (rows: splits)."""
    rows = []
    for split, sentences in corpus.splits.items():
        mentions: dict[str, int] = {}
        for sentence in sentences:
            for tag in sentence.tags:
                if tag.startswith("B-"):
                    mentions[tag[2:]] = mentions.get(tag[2:], 0) + 1
        rows.append({"split": split, "sentences": len(sentences),
                     "tokens": sum(len(s.tokens) for s in sentences),
                     "mentions": sum(mentions.values()),
                     **{f"mentions {kind}": mentions.get(kind, 0) for kind in corpus.entity_types}})
    return pd.DataFrame(rows).set_index("split")


def statistics_table(corpora: list[Corpus]) -> pd.DataFrame:
    """One row per corpus: what the loaded files contain beside the paper's printed split sizes."""
    paper = paths.read_parameters("paper.yaml")["table4"]

    def triple(values) -> str:
        return " / ".join(f"{v:,}" for v in values)

    rows = []
    for corpus in corpora:
        stats = statistics(corpus)
        printed = paper.get(corpus.key, {}).get("split_sizes")
        rows.append({
            "corpus": corpus.key,
            "types": len(corpus.entity_types),
            "sentences train/devel/test": triple(stats["sentences"]),
            "mentions train/devel/test": triple(stats["mentions"]),
            "tokens": f"{int(stats['tokens'].sum()):,}",
            "paper's split sizes": triple(printed) if printed else "n/a",
            "verified against": ", ".join(sorted({f.verified_as for f in corpus.files.values()})),
        })
    return pd.DataFrame(rows).set_index("corpus")


def sources_table(found: list[str] = ()) -> pd.DataFrame:
    """Every registered corpus: whether its files are here, its licence, citation and download source."""
    rows = []
    for key, corpus in registry().items():
        rows.append({"corpus": key, "name": corpus.name, "here": "yes" if key in found else "no",
                     "entity types": ", ".join(corpus.entity_types), "licence": corpus.licence,
                     "citation": corpus.citation,
                     "download": "yes (MTL-Bioinformatics-2016)" if corpus.downloadable else "no: give a local directory"})
    return pd.DataFrame(rows).set_index("corpus")
