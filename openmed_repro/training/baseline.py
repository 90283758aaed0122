"""The baseline chapter, one run: the Spark NLP paper's architecture as a comparator, a BiLSTM-CNN-Char tagger
(models/bilstm_crf.py) trained on the same splits, scored with the same metrics, selected on dev strict F1 with
the same early stopping, and written to the same run-directory layout as fine-tuning, so the evaluation chapter
can test its predictions against the transformers'. Here: train (or resume), save and load the tagger, predict.

The word embeddings are learned from random, or started from a backbone's input embeddings or from word2vec
vectors trained on the DAPT text. The runs over corpora, and over these starts to choose one on dev strict F1,
are training/baseline_sweep.py.

    openmed-repro baseline --profile cpu --corpora ncbi_disease bc5cdr_chem s800 --out runs/baseline
    openmed-repro baseline --profile cpu --corpora ncbi_disease --word-embeddings learned minilm-l6 word2vec-dapt
"""

from __future__ import annotations

import copy
import pickle
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from openmed_repro.models import backbones
from openmed_repro.infra import atomic_files, paths, validation
from openmed_repro.data import corpora
from openmed_repro.infra import footprint
from openmed_repro.infra import lifecycle
from openmed_repro.evaluation import metrics
from openmed_repro.data import paper
from openmed_repro.infra import runs
from openmed_repro.infra.job_settings import LEARNED, WORD2VEC_DAPT, BaselineConfig
from openmed_repro.infra.devices import device_name
from openmed_repro.errors import OpenMedError
from openmed_repro.training import references, step_floor, word_vectors
from openmed_repro.training.finetune import subset
from openmed_repro.data.iob import OUTSIDE, Sentence
from openmed_repro.models.bilstm_crf import Tagger, Vocabulary, build_vocabulary, collate, encode
from openmed_repro.data import saved_predictions

SYSTEM = "bilstm-cnn-char"
CHECKPOINT = "checkpoint.pt"


def predict(model: Tagger, vocabulary: Vocabulary, tokens: Sequence[Sequence[str]], max_word_chars: int,
            batch_size: int = 256) -> list[list[str]]:
    """One tag per word of every sentence (sentences are never cut: the BiLSTM reads any length)."""
    items = encode(tokens, vocabulary, max_word_chars)
    order = sorted(range(len(items)), key=lambda i: len(items[i]["words"]))
    predicted: list[list[str] | None] = [None] * len(items)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            for index, path in zip(chosen, model.decode(collate([items[i] for i in chosen]))):
                predicted[index] = [vocabulary.labels[i] for i in path]
    return predicted  # type: ignore[return-value]


def majority_tags(tokens: Sequence[Sequence[str]], train: Sequence[Sentence]) -> list[list[str]]:
    """The majority-class tagger: every word gets the most frequent training tag (O in every corpus)."""
    most_common = Counter(t for s in train for t in s.tags).most_common(1)[0][0]
    return [[most_common] * len(words) for words in tokens]


def backbone_word_vectors(name: str, vocabulary: Vocabulary) -> tuple[torch.Tensor, int]:
    """Word vectors from a backbone's input embeddings: the word's own row where the backbone's vocabulary
    has the word, else the mean of its sub-words' rows. Returns the matrix and how many words matched whole."""
    backbone = backbones.resolve(name)
    tokenizer = backbones.load_tokenizer(backbone)
    table = backbones.load_token_classifier(backbone, [OUTSIDE], len(tokenizer)).get_input_embeddings().weight.detach()
    known = tokenizer.get_vocab()
    vectors = torch.zeros(len(vocabulary.words), table.size(1))
    whole = 0
    for index, word in enumerate(vocabulary.words[2:], start=2):
        if word in known:
            vectors[index] = table[known[word]]
            whole += 1
        else:
            pieces = tokenizer(word, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id]
            vectors[index] = table[pieces].mean(dim=0)
    vectors[1] = table[tokenizer.unk_token_id]
    return vectors, whole


def word2vec_word_vectors(settings: BaselineConfig, vocabulary: Vocabulary) -> tuple[torch.Tensor, int, dict]:
    """Word vectors from word2vec on the DAPT text (trained once, then read from runs/word_vectors/): a word
    word2vec has starts from its vector, scaled with the whole table to standard deviation 1 (the scale of the
    random rows), any other word at random as a learned start would. Returns the matrix, how many words had a
    vector, and what trained the vectors (the text's sha256, the settings)."""
    trained = word_vectors.word2vec(word_vectors.dapt_text(settings.dapt_dir),
                                    word_vectors.Word2VecSettings(dimension=settings.word_dim, seed=settings.seed))
    table = torch.from_numpy(trained.vectors.vectors.copy())
    table = table / table.std(correction=0)
    vectors = torch.randn(len(vocabulary.words), settings.word_dim,
                          generator=torch.Generator().manual_seed(settings.seed))
    vectors[0] = 0.0
    found = 0
    for index, word in enumerate(vocabulary.words[2:], start=2):
        if word in trained.vectors.key_to_index:
            vectors[index] = table[trained.vectors.key_to_index[word]]
            found += 1
    return vectors, found, {"name": trained.directory.name, **trained.info}


def check_start(settings: BaselineConfig) -> None:
    """Stop before any training when the word-vector start cannot be had: word2vec-dapt without a DAPT text
    directory, or a name that is no backbone."""
    if settings.word_embeddings == WORD2VEC_DAPT:
        paths.existing_dapt_dir(settings.dapt_dir)
    elif settings.word_embeddings != LEARNED:
        try:
            backbones.resolve(settings.word_embeddings)
        except OpenMedError as error:
            raise OpenMedError(f"parameter word_embeddings={settings.word_embeddings!r}; valid: {LEARNED}, "
                               f"{WORD2VEC_DAPT}, or a backbone ({error})") from error


@dataclass
class TrainedBaseline:
    """A trained BiLSTM-CNN-Char tagger with its vocabulary and what its training took."""

    model: Tagger
    vocabulary: Vocabulary
    log_history: list[dict]
    train_seconds: float
    best_epoch: int
    words_from_backbone: int | None
    words_from_word2vec: int | None = None
    word2vec: dict | None = None        # what trained the word2vec start: text sha256, settings, counts


def train(settings: BaselineConfig, corpus: corpora.Corpus, run_dir: Path,
          checkpointed: Callable[[], None] = lambda: None) -> TrainedBaseline:
    """Adam with gradient clipping, dev strict F1 after every epoch, the best epoch's weights kept, early
    stopping after `early_stopping_patience` epochs without improvement; a small corpus passes over its split
    several times an epoch (the step floor, `min_optimizer_steps`). An interrupted run resumes from
    the checkpoint of its last finished epoch and ends with the same weights; its seconds add up every
    attempt's epochs. `checkpointed` is called after each epoch's checkpoint (the footprint's update)."""
    torch.manual_seed(settings.seed)
    train_sentences = subset(corpus.train, settings.max_train_sentences)
    dev_sentences = subset(corpus.devel, settings.max_eval_sentences)
    vocabulary = build_vocabulary(train_sentences, corpus.labels, settings.min_word_count)
    start, whole, found, word2vec = None, None, None, None
    if settings.word_embeddings == WORD2VEC_DAPT:
        start, found, word2vec = word2vec_word_vectors(settings, vocabulary)
    elif settings.word_embeddings != LEARNED:
        start, whole = backbone_word_vectors(settings.word_embeddings, vocabulary)
    model = Tagger(settings, vocabulary, start)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    items = encode([s.tokens for s in train_sentences], vocabulary, settings.max_word_chars,
                   [s.tags for s in train_sentences])
    gold_dev = [s.tags for s in dev_sentences]
    passes = step_floor.passes_per_epoch(len(items), settings.batch_size, settings.epochs,
                                         settings.min_optimizer_steps, capped=bool(settings.max_train_sentences))
    epoch_items = list(range(len(items))) * passes
    state = {"epoch": 0, "best_f1": -1.0, "best_epoch": 0, "best_weights": None, "stale": 0,
             "log_history": [], "seconds": 0.0}
    checkpoint = run_dir / CHECKPOINT
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        state = saved["state"]
    for epoch in range(state["epoch"] + 1, settings.epochs + 1):
        if state["stale"] >= settings.early_stopping_patience:
            break
        started = time.perf_counter()
        order = random.Random(settings.seed * 1_000_003 + epoch).sample(epoch_items, len(epoch_items))
        model.train()
        total, steps = 0.0, 0
        for start in tqdm(range(0, len(order), settings.batch_size), desc=f"epoch {epoch}", unit="batch",
                          leave=False, disable=None):
            loss = model.loss(collate([items[i] for i in order[start:start + settings.batch_size]]))
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings.gradient_clip)
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        scores = metrics.score(gold_dev, predict(model, vocabulary, [s.tokens for s in dev_sentences],
                                                 settings.max_word_chars, settings.eval_batch_size))
        state["log_history"].append({"epoch": float(epoch), "loss": total / max(steps, 1),
                                     "eval_strict_f1": scores.strict.f1, "eval_default_f1": scores.default.f1})
        if scores.strict.f1 > state["best_f1"]:
            state.update(best_f1=scores.strict.f1, best_epoch=epoch, stale=0,
                         best_weights=copy.deepcopy(model.state_dict()))
        else:
            state["stale"] += 1
        state["epoch"] = epoch
        state["seconds"] += time.perf_counter() - started
        _save_checkpoint(checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                      "rng": torch.get_rng_state(), "state": state})
        checkpointed()
    model.load_state_dict(state["best_weights"])
    return TrainedBaseline(model, vocabulary, state["log_history"], state["seconds"], state["best_epoch"], whole,
                           found, word2vec)


def _save_checkpoint(path: Path, content: dict) -> None:
    with atomic_files.atomic_path(path) as temporary:
        torch.save(content, temporary)


def save_model(trained: TrainedBaseline, settings: BaselineConfig, directory: Path) -> float:
    """Weights, vocabulary and settings: everything load_model needs. Returns MB."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(trained.model.state_dict(), directory / "tagger.pt")
    atomic_files.write_json(directory / "vocabulary.json", trained.vocabulary.to_dict())
    atomic_files.write_json(directory / "settings.json", settings.to_dict())
    return (directory / "tagger.pt").stat().st_size / 1e6


def load_model(directory: Path) -> tuple[Tagger, Vocabulary, BaselineConfig]:
    """The trained tagger of a run's model/ directory, ready to predict."""
    if not (directory / "tagger.pt").is_file():
        raise OpenMedError(f"{directory}: no tagger.pt (give the model/ directory of a finished baseline run)")
    settings = validation.validated(BaselineConfig, atomic_files.read_json(directory / "settings.json"), str(directory))
    vocabulary = Vocabulary(**atomic_files.read_json(directory / "vocabulary.json"))
    weights = _weights(directory / "tagger.pt")
    model = Tagger(settings, vocabulary, torch.zeros(len(vocabulary.words), weights["words.weight"].size(1)))
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise OpenMedError(f"{directory / 'tagger.pt'}: its weights do not fit the tagger of settings.json and "
                           f"vocabulary.json ({str(error).splitlines()[-1].strip()}); they come from different "
                           "runs") from error
    return model.eval(), vocabulary, settings


def _weights(path: Path) -> dict:
    """The tagger's saved weights; an empty, truncated or foreign file is an error naming it."""
    try:
        weights = torch.load(path, weights_only=True)
    except (OSError, EOFError, RuntimeError, KeyError, pickle.UnpicklingError) as error:
        reason = str(error).splitlines()[0] if str(error) else "the file ends early"
        raise OpenMedError(f"{path}: damaged weights ({type(error).__name__}: {reason}); restore the file or "
                           "train again") from error
    if not isinstance(weights, dict) or "words.weight" not in weights:
        raise OpenMedError(f"{path}: damaged weights (no words.weight); restore the file or train again")
    return weights


def run(settings: BaselineConfig, run_dir: str | Path | None = None) -> lifecycle.RunResult:
    """The whole chapter for one corpus: train (or resume), predict dev and test, write the run directory
    (metrics.json last). A complete directory of the same settings is read back, not retrained."""
    return lifecycle.run(settings, run_dir, lambda directory, _resolved: train_and_score(settings, directory),
                         check=lambda: (references.check_corpus(settings.dataset), check_start(settings)))


def train_and_score(settings: BaselineConfig, run_dir: Path) -> lifecycle.Outcome:
    """The chapter's own work inside the run lifecycle: train, save the tagger, predict and score dev and
    test; the epoch checkpoint goes once the run is complete."""
    corpus = corpora.load(settings.dataset, settings.data_dir, repair=settings.repair)
    with footprint.track(run_dir, "baseline", Path(settings.dataset).name, settings.country) as attempt:
        trained = train(settings, corpus, run_dir, attempt.update)
    model_mb = save_model(trained, settings, run_dir / runs.MODEL_DIR)
    splits = {"devel": subset(corpus.devel, settings.max_eval_sentences),
              "test": subset(corpus.test, settings.max_eval_sentences)}
    scores = {}
    for split, sentences in splits.items():
        predicted = predict(trained.model, trained.vocabulary, [s.tokens for s in sentences],
                            settings.max_word_chars, settings.eval_batch_size)
        saved_predictions.write_predictions(run_dir / f"predictions_{split}.tsv", sentences, predicted)
        scores[split] = metrics.score([s.tags for s in sentences], predicted).to_dict()
    train_sentences = subset(corpus.train, settings.max_train_sentences)
    majority = majority_tags([s.tokens for s in splits["test"]], train_sentences)
    parameters = sum(p.numel() for p in trained.model.parameters())
    record = {
        "dataset": settings.dataset, "backbone": SYSTEM, "system": SYSTEM, "profile": settings.profile,
        "method": settings.output, "seed": settings.seed, "word_embeddings": settings.word_embeddings,
        "words_from_backbone": trained.words_from_backbone, "words_from_word2vec": trained.words_from_word2vec,
        "word_vectors": {key: trained.word2vec[key] for key in ("name", "text_sha256")} if trained.word2vec else None,
        "devel": scores["devel"], "test": scores["test"],
        "majority_test_strict_f1": metrics.score([s.tags for s in splits["test"]], majority).strict.f1,
        "best_epoch": float(trained.best_epoch), "epochs_run": float(len(trained.log_history)),
        "train_seconds": round(trained.train_seconds, 1),
        "trainable_parameters": parameters, "total_parameters": parameters, "model_mb": round(model_mb, 2),
        "vocabulary": {"words": len(trained.vocabulary.words), "chars": len(trained.vocabulary.chars)},
        "sentences": {"train": len(train_sentences), **{split: len(s) for split, s in splits.items()}},
        "device": device_name(),
    }
    data = {**corpus.provenance(), **({"word_vectors": trained.word2vec} if trained.word2vec else {})}
    return lifecycle.Outcome(record, trained.log_history, data, scratch=(CHECKPOINT,))


def comparison(results: Sequence[dict]) -> pd.DataFrame:
    """Test strict F1 of each baseline run beside the Spark NLP paper's BiLSTM-CNN-Char and OpenMed NER."""
    spark = paths.read_parameters("paper.yaml")["spark_nlp_bilstm_cnn_char_f1"]
    rows = []
    for m in results:
        key = Path(m["dataset"]).name
        rows.append({
            "corpus": key, "train sentences": m["sentences"]["train"],
            "epochs run (best)": f"{m['epochs_run']:g} ({m['best_epoch']:g})",
            "test strict F1": round(100 * m["test"]["strict"]["f1"], 2),
            "test default F1": round(100 * m["test"]["default"]["f1"], 2),
            "majority-class F1": round(100 * m["majority_test_strict_f1"], 2),
            "Spark NLP BiLSTM-CNN-Char (paper)": spark.get(key),
            "OpenMed NER (paper)": paper.table4().get(key, {}).get("f1"),
            "train s": round(m["train_seconds"]),
        })
    return pd.DataFrame(rows).set_index("corpus")
