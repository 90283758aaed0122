"""A run's predicted tags as saved on disk, read back alike from either of the two places they are kept:

  a run directory (runs/<chapter>/<name>/): predictions_devel.tsv and predictions_test.tsv, token, gold and
      predicted tag per line (write_predictions), written by the training run itself;
  a record directory (results/<chapter>/<name>/): predictions.json.gz, the predicted tags alone, tied to the
      corpus split files by sha256, so that the record stays small and the tokens and gold tags come from the
      corpus.

predictions.json.gz, gzip of one JSON object (written with mtime 0, so an unchanged run gives the same bytes):
  {"format": 1, "corpus": KEY, "repair": false,
   "splits": {"devel": {"file": "devel.tsv", "sha256": "...", "sentences": N, "tags": [["O", "B-Disease"], ...]},
              "test": {...}}}
  the predicted tags of the first N sentences of the corpus's split file, one per word; the tokens and gold tags
  are read from the corpus, whose split file must have the recorded sha256."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from openmed_repro.data import corpora
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, runs

RECORD_FILE = "predictions.json.gz"
FORMAT = 1
SPLITS = ("devel", "test")

Predictions = tuple[list[list[str]], list[list[str]], list[list[str]]]


def run_file(run_dir: str | Path, split: str) -> Path:
    """Where a run directory keeps the tokens, gold and predicted tags of `split`."""
    return Path(run_dir) / f"predictions_{split}.tsv"


def exists(directory: str | Path, split: str) -> bool:
    """Whether `read` finds predictions of `split` in `directory` (a run or a record directory)."""
    if run_file(directory, split).is_file():
        return True
    path = Path(directory) / RECORD_FILE
    return path.is_file() and split in _payload(path)["splits"]


def read(directory: str | Path, split: str, dataset: str | Path | None = None,
         data_dir: str | Path | None = None) -> Predictions:
    """(tokens, gold, predicted) of `split`, from a run directory's predictions_<split>.tsv or, failing that, a
    record directory's predictions.json.gz. A record's tokens and gold tags come from its corpus: the recorded
    key (a key outside the registry is looked for as `data_dir`/KEY), or `dataset` (another key or a corpus
    directory); its split file must have the recorded sha256."""
    directory = Path(directory)
    if run_file(directory, split).is_file():
        return read_predictions(run_file(directory, split))
    if (directory / RECORD_FILE).is_file():
        return _read_record(directory, split, dataset, data_dir)
    raise OpenMedError(f"{directory}: no saved {split} predictions: neither {run_file(directory, split).name} (a run "
                       f"directory's) nor {RECORD_FILE} (a record's); give a finished run that predicted tags (it has "
                       f"{runs.METRICS}) or its record under results/")


def compact(run_dir: Path, provenance: dict | None) -> bytes:
    """The predictions.json.gz of a run directory: its dev and test predicted tags, tied to the corpus split
    files its provenance names by sha256 (the module's docstring gives the format)."""
    data = (provenance or {}).get("data") or {}
    files = data.get("files") or {}
    splits = {}
    for split in SPLITS:
        path = run_file(run_dir, split)
        if not path.is_file():
            continue
        if split not in files or not files[split].get("sha256"):
            raise OpenMedError(f"{run_dir}: {path.name} cannot be tied to its corpus: {runs.PROVENANCE} names no "
                               f"sha256 of the {split} split file")
        _, _, predicted = read_predictions(path)
        splits[split] = {"file": files[split]["file"], "sha256": files[split]["sha256"], "sentences": len(predicted),
                         "tags": predicted}
    config = (provenance or {}).get("config") or {}
    payload = {"format": FORMAT, "corpus": data.get("corpus"), "repair": bool(config.get("repair")), "splits": splits}
    return gzip.compress(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8"), mtime=0)


def _payload(path: Path) -> dict:
    payload = json.loads(gzip.decompress(path.read_bytes()))
    if payload.get("format") != FORMAT:
        raise OpenMedError(f"{path}: format {payload.get('format')!r}, but this version reads format {FORMAT}")
    return payload


def _read_record(record_dir: Path, split: str, dataset: str | Path | None,
                 data_dir: str | Path | None) -> Predictions:
    path = record_dir / RECORD_FILE
    payload = _payload(path)
    if split not in payload["splits"]:
        raise OpenMedError(f"{path}: no {split!r} predictions; recorded: {', '.join(payload['splits'])}")
    recorded = payload["splits"][split]
    corpus = corpora.load(_corpus(record_dir, payload["corpus"], dataset, data_dir), data_dir,
                          repair=payload["repair"], verify=False, splits=(split,))
    read = corpus.files[split]
    if read.sha256 != recorded["sha256"]:
        raise OpenMedError(
            f"{record_dir}: its {split} predictions were made on {recorded['file']} with sha256 {recorded['sha256']}, "
            f"but {read.path} has sha256 {read.sha256}; give the corpus version the record names (data_dir or dataset)")
    sentences = corpus.splits[split][: recorded["sentences"]]
    predicted = recorded["tags"]
    mismatched = [i for i, (s, tags) in enumerate(zip(sentences, predicted), 1) if len(s.tokens) != len(tags)]
    if len(sentences) != len(predicted) or mismatched:
        raise OpenMedError(f"{record_dir}: {read.path} does not align with the recorded {split} predictions "
                           f"(sentence {mismatched[0] if mismatched else len(sentences) + 1})")
    return [s.tokens for s in sentences], [s.tags for s in sentences], predicted


def _corpus(record_dir: Path, key: str, dataset: str | Path | None, data_dir: str | Path | None) -> str | Path:
    """What corpora.load reads for a record: `dataset`, else the recorded key, else data_dir/KEY for a corpus the
    registry does not know (a test's corpus, a user's own)."""
    if dataset is not None:
        return dataset
    if key in corpora.registry():
        return key
    if data_dir is not None and (Path(data_dir) / key).is_dir():
        return Path(data_dir) / key
    raise OpenMedError(f"{record_dir}: its predictions were made on corpus {key!r}, which the registry does not know; "
                       f"give its directory (dataset=<dir>) or the directory holding {key}/ (data_dir=<dir>)")


def write_predictions(path: Path, sentences: list, predicted: list[list[str]]) -> None:
    """token, gold, predicted per line; a blank line between sentences (what later chapters read)."""
    blocks = ["\n".join(f"{t}\t{g}\t{p}" for t, g, p in zip(s.tokens, s.tags, tags))
              for s, tags in zip(sentences, predicted)]
    atomic_files.write_text(path, "\n\n".join(blocks) + "\n")


def read_predictions(path: Path) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """The tokens, gold tags and predicted tags of a predictions file, sentence by sentence."""
    tokens, gold, predicted = [], [], []
    for number, block in enumerate(path.read_text(encoding="utf-8").split("\n\n"), start=1):
        rows = [line.split("\t") for line in block.splitlines() if line]
        if not rows:
            continue
        if any(len(row) != 3 for row in rows):
            raise OpenMedError(f"{path}: sentence {number} has a line without token, gold and predicted tag")
        tokens.append([r[0] for r in rows])
        gold.append([r[1] for r in rows])
        predicted.append([r[2] for r in rows])
    return tokens, gold, predicted
