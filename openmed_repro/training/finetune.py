"""Fine-tuning one backbone on one corpus with the transformers Trainer: LoRA (or full fine-tuning for
the ablation), label smoothing, warm-up then cosine, dev strict F1 every epoch with early stopping,
epoch checkpoints to resume from, and word-level predictions through models/predictor.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import SequentialSampler
from transformers import (DataCollatorForTokenClassification, EarlyStoppingCallback, Trainer, TrainerCallback,
                          TrainingArguments, set_seed)

from openmed_repro.models import backbones, low_precision, predictor, token_classifier
from openmed_repro.data import corpora
from openmed_repro.data import encoding
from openmed_repro.infra import footprint
from openmed_repro.infra.checkpoints import last_complete
from openmed_repro.evaluation import metrics
from openmed_repro.infra import lifecycle
from openmed_repro.infra import runs
from openmed_repro.infra.devices import device_name
from openmed_repro.infra.job_settings import RunConfig
from openmed_repro.training import references, step_floor
from openmed_repro.training.attempt_clock import AttemptClock
from openmed_repro.training.trainer_arguments import training_arguments
from openmed_repro.data.iob import Sentence
from openmed_repro.data import saved_predictions

CHECKPOINTS_DIR = "checkpoints"


@dataclass
class FineTuned:
    """A fine-tuned token classifier (LoRA or full) with its tokenizer, labels and what its training took."""

    model: torch.nn.Module
    tokenizer: object
    labels: list[str]
    log_history: list[dict]
    train_seconds: float            # every attempt's, a killed one's up to its last checkpoint (AttemptClock)
    trainable_parameters: int
    total_parameters: int
    train_tokens: int               # sub-words of one pass over the training windows
    tokens_trained: int = 0         # sub-words of every training step that made the model, over every attempt
    attempts: int = 1


class InOrderEvaluationTrainer(Trainer):
    """Trainer whose evaluation batches keep the dataset's order. With length-grouped training the stock
    Trainer also shuffles evaluation batches by length, and compute_metrics could not tell which prediction
    row belongs to which window."""

    def _get_eval_sampler(self, eval_dataset):
        return SequentialSampler(eval_dataset)


def subset(sentences: list[Sentence], cap: int | None) -> list[Sentence]:
    """The first `cap` sentences: a documented, seed-independent cap for budget runs."""
    return sentences if cap is None else sentences[:cap]


def train(run_config: RunConfig, corpus: corpora.Corpus, run_dir: Path,
          callbacks: Sequence[TrainerCallback] = (), footprint_dir: Path | None = None,
          chapter: str = "finetune", resolved: lifecycle.Resolved | None = None) -> FineTuned:
    """Train on the corpus's train split, select on dev strict F1; resumes from the last epoch checkpoint
    in `run_dir` if an earlier attempt was interrupted. The training's energy and emissions go to
    `footprint_dir` (default `run_dir`); `callbacks` see every epoch's dev scores (the search's pruner).
    `resolved`: the run's settings resolved on this machine (default: resolved here, lifecycle.resolve)."""
    resolved = resolved or lifecycle.resolve(run_config)
    set_seed(run_config.seed)
    backbone = backbones.resolve(run_config.backbone)
    tokenizer = backbones.load_tokenizer(backbone)
    labels = corpus.labels
    label2id = {label: i for i, label in enumerate(labels)}
    train_sentences = subset(corpus.train, run_config.max_train_sentences)
    dev_sentences = subset(corpus.devel, run_config.max_eval_sentences)
    train_windows = _encode(train_sentences, tokenizer, label2id, run_config)
    # Sorted by length for tight dynamic padding; the merge back to words does not depend on the order.
    dev_windows = sorted(_encode(dev_sentences, tokenizer, label2id, run_config), key=lambda w: len(w.input_ids))
    model = token_classifier.build(run_config, backbone, labels, tokenizer)

    checkpoints = run_dir / CHECKPOINTS_DIR
    clock = AttemptClock()
    trainer = InOrderEvaluationTrainer(
        model=model,
        args=_training_arguments(run_config, checkpoints, resolved.precision),
        train_dataset=[w.features() for w in train_windows] * passes_per_epoch(len(train_windows), run_config),
        eval_dataset=[w.features() for w in dev_windows],
        data_collator=DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8 if torch.cuda.is_available() else None),
        processing_class=tokenizer,
        compute_metrics=_dev_scorer(dev_windows, dev_sentences, labels),
        preprocess_logits_for_metrics=lambda logits, _: logits.argmax(dim=-1),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=run_config.early_stopping_patience), clock,
                   *callbacks],
    )
    resume_from = last_complete(checkpoints)
    with footprint.track(footprint_dir or run_dir, chapter, Path(run_config.dataset).name,
                         run_config.country) as attempt:
        clock.start(attempt)
        trainer.train(resume_from_checkpoint=resume_from)
        seconds = clock.seconds
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    return FineTuned(
        model=trainer.model, tokenizer=tokenizer, labels=labels, log_history=trainer.state.log_history,
        train_seconds=seconds, trainable_parameters=trainable,
        total_parameters=sum(p.numel() for p in trainer.model.parameters()),
        train_tokens=sum(len(w.input_ids) for w in train_windows),
        tokens_trained=trainer.state.num_input_tokens_seen, attempts=clock.attempts,
    )


def passes_per_epoch(train_windows: int, run_config: RunConfig) -> int:
    """How many times one epoch passes over the training split (the step floor, step_floor.py)."""
    return step_floor.passes_per_epoch(train_windows, run_config.batch_size * run_config.gradient_accumulation_steps,
                                       run_config.epochs, run_config.min_optimizer_steps,
                                       capped=bool(run_config.max_train_sentences))


def _encode(sentences: list[Sentence], tokenizer, label2id: dict[str, int], run_config: RunConfig):
    return encoding.encode([s.tokens for s in sentences], tokenizer, label2id, tags=[s.tags for s in sentences],
                           max_length=run_config.max_length, overlap=run_config.overlap)


def _dev_scorer(windows: list[encoding.Window], sentences: list[Sentence], labels: list[str]):
    """compute_metrics for the Trainer: dev strict F1 at word level, through the same merge as prediction."""
    lengths = [len(s.tokens) for s in sentences]
    gold = [s.tags for s in sentences]

    def compute(prediction) -> dict[str, float]:
        predicted = np.asarray(prediction.predictions)
        rows = [predicted[i, : len(w.input_ids)].tolist() for i, w in enumerate(windows)]
        merged = encoding.merge_predictions(windows, rows, lengths)
        scores = metrics.score(gold, [[labels[i] for i in s] for s in merged])
        return {"strict_f1": scores.strict.f1, "strict_precision": scores.strict.precision,
                "strict_recall": scores.strict.recall, "default_f1": scores.default.f1}

    return compute


def _training_arguments(run_config: RunConfig, output_dir: Path, precision: str) -> TrainingArguments:
    """Every epoch: dev evaluation and a checkpoint; the best epoch on dev strict F1 is kept."""
    return training_arguments(
        run_config, output_dir, precision,
        learning_rate=run_config.learning_rate,
        per_device_eval_batch_size=run_config.eval_batch_size,
        warmup_steps=run_config.warmup_ratio,
        label_smoothing_factor=run_config.label_smoothing,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="strict_f1",
        greater_is_better=True,
        train_sampling_strategy="group_by_length" if run_config.group_by_length else "random",
        include_num_input_tokens_seen="non_padding",   # kept in every checkpoint: a resumed count goes on
    )


def run(run_config: RunConfig, run_dir: str | Path | None = None) -> lifecycle.RunResult:
    """The whole chapter: train (or resume), predict dev and test, write the run directory. A complete run
    directory of the same configuration is read back instead of retrained."""
    return lifecycle.run(run_config, run_dir, lambda directory, resolved: train_and_score(run_config, directory, resolved),
                         check=lambda: references.check_run(run_config))


def train_and_score(run_config: RunConfig, run_dir: Path, resolved: lifecycle.Resolved) -> lifecycle.Outcome:
    """The chapter's own work inside the run lifecycle: train, save the model, predict and score dev and test."""
    corpus = corpora.load(run_config.dataset, run_config.data_dir, repair=run_config.repair)
    trained = train(run_config, corpus, run_dir, resolved=resolved)
    model_mb = token_classifier.save(trained.model, trained.tokenizer, trained.labels, run_dir / runs.MODEL_DIR)
    splits = {"devel": subset(corpus.devel, run_config.max_eval_sentences),
              "test": subset(corpus.test, run_config.max_eval_sentences)}
    precision = resolved.eval_precision
    model = trained.model if precision == "fp32" else low_precision.prepare(
        predictor.inference_model(trained.model), precision, keep_original=False)
    scores = {}
    for split, sentences in splits.items():
        predicted = predictor.predict(model, trained.tokenizer, [s.tokens for s in sentences],
                                      trained.labels, run_config.max_length, run_config.overlap,
                                      run_config.eval_batch_size)
        saved_predictions.write_predictions(run_dir / f"predictions_{split}.tsv", sentences, predicted)
        scores[split] = metrics.score([s.tags for s in sentences], predicted).to_dict()
    epochs = [entry for entry in trained.log_history if "eval_strict_f1" in entry]
    best = max(epochs, key=lambda entry: entry["eval_strict_f1"]) if epochs else {}
    record = {
        "dataset": run_config.dataset, "backbone": run_config.backbone, "profile": run_config.profile,
        "method": run_config.method, "seed": run_config.seed,
        "devel": scores["devel"], "test": scores["test"],
        "best_epoch": best.get("epoch"), "epochs_run": max((e["epoch"] for e in epochs), default=0),
        "train_seconds": round(trained.train_seconds, 1), "train_attempts": trained.attempts,
        "train_tokens": trained.tokens_trained,
        "train_tokens_per_second": round(trained.tokens_trained / trained.train_seconds, 1),
        "trainable_parameters": trained.trainable_parameters, "total_parameters": trained.total_parameters,
        "model_mb": round(model_mb, 2),
        "sentences": {"train": len(subset(corpus.train, run_config.max_train_sentences)),
                      **{split: len(s) for split, s in splits.items()}},
        "device": device_name(),
    }
    if run_config.eval_precision is not None:
        record["eval_precision"] = precision
    return lifecycle.Outcome(record, trained.log_history, corpus.provenance())
