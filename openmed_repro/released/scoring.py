"""A released checkpoint scored on a corpus's test split like any run (infra/lifecycle.py): its own tokenizer,
labels and maximum length, our windows and predictor, its labels mapped onto the corpus's (labels.py), strict and
default seqeval scores, and predictions_test.tsv, so that the evaluation, the record and the results table read it
as they read a fine-tuning run. Nothing is trained."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from openmed_repro.data import corpora, saved_predictions
from openmed_repro.errors import OpenMedError
from openmed_repro.evaluation import metrics
from openmed_repro.infra import job_settings, layout, lifecycle, runs
from openmed_repro.infra.devices import device_name
from openmed_repro.models import backbones, predictor
from openmed_repro.released import checkpoints, labels

SPLIT = "test"
NOT_RUN = "not run here:"


@dataclass(frozen=True)
class Attempt:
    """What the chapter asked for: the finished run, or why it was not run here (one line)."""

    result: lifecycle.RunResult | None
    not_run: str | None = None


def run(settings: job_settings.ReleasedConfig, run_dir: str | Path | None = None) -> lifecycle.RunResult:
    """Score the checkpoint into `run_dir` (default runs/released/<corpus>-<checkpoint>); a finished run of the
    same settings is read back, needing neither the hub nor the corpus."""
    settings = checkpoints.resolved(settings)
    return lifecycle.run(settings, run_dir, lambda directory, _resolved: score(settings, directory))


def attempt(settings: job_settings.ReleasedConfig, run_dir: str | Path | None = None) -> Attempt:
    """`run`, unless the run is not finished and its checkpoint cannot be reached from here: then why, in one
    line, and nothing is written."""
    run_dir = Path(run_dir) if run_dir else layout.default_directory(settings)
    if not runs.is_complete(run_dir):
        reason = backbones.unreachable(settings.model)
        if reason:
            return Attempt(None, f"{NOT_RUN} {settings.model} cannot be reached ({reason}); where there is a network, "
                                 f"rerun this chapter or `make released`, or `huggingface-cli download {settings.model} "
                                 "--local-dir DIR` there and pass -p model DIR")
    return Attempt(run(settings, run_dir))


def score(settings: job_settings.ReleasedConfig, run_dir: Path) -> lifecycle.Outcome:
    """The run's own work: load, check the label map, predict the test split, map, score, write predictions."""
    corpus = corpora.load(settings.dataset, settings.data_dir, repair=settings.repair, splits=(SPLIT,))
    checkpoint = backbones.checkpoint(settings.model)
    own_labels = backbones.trained_labels(checkpoint)
    by_type = labels.checked(settings.labels, own_labels, corpus_types(corpus), settings.model)
    tokenizer = backbones.load_tokenizer(checkpoint)
    model = backbones.load_trained_token_classifier(checkpoint).to("cuda" if torch.cuda.is_available() else "cpu")
    max_length = settings.max_length or backbones.maximum_length(tokenizer, model.config)
    sentences = corpus.test[: settings.max_eval_sentences]
    started = time.perf_counter()
    predicted = predictor.predict(model, tokenizer, [s.tokens for s in sentences], own_labels, max_length,
                                  settings.overlap, settings.batch_size)
    seconds = time.perf_counter() - started
    mapped = labels.apply(by_type, predicted)
    saved_predictions.write_predictions(saved_predictions.run_file(run_dir, SPLIT), sentences, mapped.tags)
    words = sum(len(s.tokens) for s in sentences)
    record = {
        "dataset": settings.dataset, "checkpoint": settings.model,
        SPLIT: metrics.score([s.tags for s in sentences], mapped.tags).to_dict(),
        "labels": {"checkpoint": own_labels, "map": settings.labels,
                   "unmapped_types": [kind for kind in labels.entity_types(own_labels) if kind.upper() not in by_type],
                   "removed_words": mapped.removed_words, "removed_entities": mapped.removed_entities,
                   "removed_by_type": mapped.removed_by_type},
        "sentences": {SPLIT: len(sentences)}, "words": {SPLIT: words},
        "max_length": max_length, "overlap": settings.overlap,
        "parameters": sum(p.numel() for p in model.parameters()),
        "inference_seconds": round(seconds, 1), "words_per_second": round(words / seconds, 1),
        "device": device_name(),
    }
    return lifecycle.Outcome(record, [], corpus.provenance())


def corpus_types(corpus: corpora.Corpus) -> list[str]:
    """The corpus's entity types: the registry's for a registered corpus that names them, else its files'."""
    registered = corpora.registry().get(corpus.key)
    return list(registered.entity_types) if registered and registered.entity_types else corpus.entity_types


def score_all(pairs: Sequence[checkpoints.Released], say: Callable[[str], None],
              after_each: Callable[[Path], None] | None = None,
              recorded: Callable[[Path], dict | None] | None = None) -> int:
    """Score every pairing, one line each through `say` (plus the CPU estimate before a long run); a pairing that
    fails does not stop the others. `recorded` finds a run the record already holds (it is not scored again),
    `after_each` records a finished one. Returns how many failed."""
    failed = 0
    for entry in pairs:
        settings = checkpoints.configure({"dataset": entry.corpus, "model": entry.model})
        run_dir = layout.default_directory(settings)
        name = f"{entry.corpus}: {entry.model}"
        try:
            held = recorded(run_dir) if recorded else None
            if held is not None:
                say(f"{name}: recorded, test strict F1 {100 * held[SPLIT]['strict']['f1']:.2f}")
                continue
            if not runs.is_complete(run_dir):
                reason = backbones.unreachable(entry.model)
                if reason:
                    raise OpenMedError(f"{NOT_RUN} the checkpoint cannot be reached ({reason})")
                say(f"{name}: {estimate(entry, settings)}")
            result = run(settings, run_dir)
            if after_each:
                after_each(result.run_dir)
            say(f"{name}: test strict F1 {100 * result.metrics[SPLIT]['strict']['f1']:.2f} "
                f"(paper {entry.reported_f1}) in {result.run_dir}")
        except OpenMedError as error:
            failed += 1
            say(f"{name}: " + "; ".join(line.strip() for line in str(error).splitlines() if line.strip()))
    return failed


def estimate(entry: checkpoints.Released, settings: job_settings.ReleasedConfig) -> str:
    """How long predicting the test split should take on one CPU thread (released.yaml's cpu_estimate)."""
    corpus = corpora.load(settings.dataset, settings.data_dir, repair=settings.repair, splits=(SPLIT,))
    words = sum(len(s.tokens) for s in corpus.test[: settings.max_eval_sentences])
    minutes = checkpoints.estimated_seconds(entry.parameters, words) / 60
    return f"{words:,} test words, about {minutes:.0f} min on one CPU thread (less with more threads or a GPU)"
