"""Word vectors trained on the DAPT text with word2vec (gensim, skip-gram): the pretrained start the Spark NLP
paper's BiLSTM-CNN-Char had, made offline from the text the DAPT chapter reads. The text is cut into sentences
and words as the corpora are (data/sentences.py) and every word is keyed as the tagger keys its embeddings
(models/bilstm_crf.py's `normalise`), so a corpus word finds its vector. One training per text and settings,
cached under runs/word_vectors/, serves every corpus."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from gensim.models import KeyedVectors, Word2Vec

from openmed_repro.data import dapt_corpus, sentences
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, job_settings, layout, paths
from openmed_repro.models.bilstm_crf import normalise

CACHE_DIR = layout.LAYOUT.folder(layout.LAYOUT.word_vectors)
VECTORS = "vectors.bin"             # word2vec's own binary format: any word2vec tool reads it
INFO = "word_vectors.json"          # written last: a cache directory is complete exactly when it has this file


@dataclass(frozen=True)
class Word2VecSettings:
    """Skip-gram word2vec, every setting stated here: the dimension is the baseline's word_dim and the seed its
    run's; the rest are word2vec's defaults (Mikolov et al. 2013) but for more epochs over a small text."""

    dimension: int
    seed: int
    window: int = 5             # context words on each side
    negative: int = 5           # negative samples per context word
    sample: float = 1e-3        # down-sampling of frequent words
    min_count: int = 5          # rarer words get no vector (the tagger starts them at random)
    epochs: int = 10            # word2vec's 5, doubled: the DAPT text here is ~1.3M words, not billions


@dataclass(frozen=True)
class DaptText:
    """The passages word2vec reads, each source file's sha256 and the sha256 of the text itself (the passages
    joined by newlines), which names what the vectors were trained on."""

    passages: list[str]
    files: dict[str, str]
    sha256: str


@dataclass(frozen=True)
class WordVectors:
    """Trained vectors by word key, what trained them (text sha256, settings, counts, seconds), the cache
    directory holding them, and whether they were read back from it."""

    vectors: KeyedVectors
    info: dict
    directory: Path
    reused: bool


def dapt_text(dapt_dir: str | None = None) -> DaptText:
    """The passages of parameters/dapt.yaml's source files in the DAPT text directory (dapt_dir, else
    $OPENMED_DAPT_DIR, else ../shared/data/dapt), in the order the file names them."""
    directory = paths.existing_dapt_dir(dapt_dir)
    files = [path for source in dapt_corpus.configured_sources(directory) for path in source.files]
    passages = [passage for path in files for passage in dapt_corpus.read_passages(path)]
    if not passages:
        raise OpenMedError(f"parameter dapt_dir: no DAPT text in {directory} (parameters/dapt.yaml names its files)")
    return DaptText(passages, {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files},
                    hashlib.sha256("\n".join(passages).encode()).hexdigest())


def tokenised(passages: Sequence[str]) -> list[list[str]]:
    """word2vec's sentences: each passage's sentences as lists of word keys, cut as the corpora are cut."""
    return [[normalise(passage[start:end]) for start, end in spans]
            for passage in passages for spans in sentences.sentence_words(passage)]


def cache_name(settings: Word2VecSettings, text_sha256: str) -> str:
    """word2vec-<dimension>d-seed<seed>-<sha256 of the text's sha256 and every setting, 16 hex digits>."""
    key = json.dumps({"text_sha256": text_sha256, "settings": dataclasses.asdict(settings)}, sort_keys=True)
    return f"word2vec-{settings.dimension}d-seed{settings.seed}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def word2vec(text: DaptText, settings: Word2VecSettings, cache_dir: Path = CACHE_DIR) -> WordVectors:
    """Skip-gram vectors of the text's words, trained once on one thread with the settings' seed (so the same
    text and settings always give the same vectors): a complete cache directory of the same text and
    settings is read back instead."""
    directory = Path(cache_dir) / cache_name(settings, text.sha256)
    if (directory / INFO).is_file():
        return WordVectors(KeyedVectors.load_word2vec_format(str(directory / VECTORS), binary=True),
                           atomic_files.read_json(directory / INFO), directory, reused=True)
    started = time.perf_counter()
    model = Word2Vec(sentences=tokenised(text.passages), vector_size=settings.dimension, sg=1,
                     window=settings.window, negative=settings.negative, sample=settings.sample,
                     min_count=settings.min_count, epochs=settings.epochs, workers=1, seed=settings.seed)
    seconds = time.perf_counter() - started
    with atomic_files.atomic_path(directory / VECTORS) as temporary:
        model.wv.save_word2vec_format(str(temporary), binary=True)
    info = {"start": job_settings.WORD2VEC_DAPT, "text_sha256": text.sha256, "files": text.files,
            "settings": dataclasses.asdict(settings), "passages": len(text.passages),
            "words": model.corpus_total_words, "vocabulary": len(model.wv), "train_seconds": round(seconds, 1),
            "gensim": metadata.version("gensim")}
    atomic_files.write_json(directory / INFO, info)
    return WordVectors(model.wv, info, directory, reused=False)
