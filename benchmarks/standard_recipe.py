"""The standard Hugging Face token-classification recipe, re-created as `examples/pytorch/token-classification/
run_ner.py` does it, as the peer of our fine-tuning: full fine-tuning, fast tokenizer on pre-split words with
truncation at 256, only the first sub-word of each word labelled (`label_all_tokens=False`), dynamic padding by
`DataCollatorForTokenClassification`, the `Trainer` with its defaults (AdamW, linear decay without warm-up, no
weight decay, random batches) and lr 5e-5, batch 16. Dev strict F1 is computed every epoch so that the time to
reach a given quality can be read off; that is the only addition to run_ner.py."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import (DataCollatorForTokenClassification, Trainer, TrainerCallback, TrainingArguments,
                          set_seed)

from openmed_repro.models import backbones
from openmed_repro.evaluation import metrics
from openmed_repro.data.iob import Sentence


@dataclass(frozen=True)
class StandardRecipe:
    learning_rate: float = 5e-5
    batch_size: int = 16
    eval_batch_size: int = 8        # TrainingArguments' default per_device_eval_batch_size
    epochs: float = 3.0
    max_length: int = 256
    seed: int = 42
    precision: str = "fp32"         # bf16 or fp16 (mixed precision, a GPU) for the benchmark's GPU comparison


class EvaluationClock(TrainerCallback):
    """Wall-clock seconds since the start of training, and dev strict F1, at every evaluation."""

    def __init__(self):
        self.start = 0.0
        self.points: list[dict] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        f1 = (metrics or {}).get("eval_strict_f1")
        if f1 is not None:
            self.points.append({"epoch": round(state.epoch or 0.0, 3), "seconds": time.perf_counter() - self.start,
                                "dev_strict_f1": f1})


def tokenize_and_align(sentences: Sequence[Sentence], tokenizer, label2id: dict[str, int], max_length: int) -> list[dict]:
    """run_ner.py's tokenize_and_align_labels with label_all_tokens=False."""
    encoded = tokenizer([s.tokens for s in sentences], is_split_into_words=True, truncation=True,
                        max_length=max_length)
    features = []
    for row, sentence in enumerate(sentences):
        labels, previous = [], None
        for word in encoded.word_ids(row):
            labels.append(-100 if word is None or word == previous else label2id[sentence.tags[word]])
            previous = word
        features.append({"input_ids": encoded["input_ids"][row], "attention_mask": encoded["attention_mask"][row],
                         "labels": labels})
    return features


def word_tags(predictions: np.ndarray, features: list[dict], labels: list[str]) -> list[list[str]]:
    """run_ner.py's compute_metrics: the prediction at each labelled (first) sub-word. Words cut off by the
    truncation (none in ncbi_disease) get `O`, so every word keeps one tag."""
    return [[labels[p] for p, gold in zip(row, feature["labels"]) if gold != -100]
            for row, feature in zip(predictions, features)]


def padded(tags: list[list[str]], sentences: Sequence[Sentence]) -> list[list[str]]:
    return [t + ["O"] * (len(s.tokens) - len(t)) for t, s in zip(tags, sentences)]


def train(backbone_name: str, train_sentences: Sequence[Sentence], dev_sentences: Sequence[Sentence],
          labels: list[str], output_dir: Path, recipe: StandardRecipe = StandardRecipe(),
          clock: EvaluationClock | None = None):
    """Train as run_ner.py does; returns the Trainer (its model is the final one, as in run_ner.py)."""
    set_seed(recipe.seed)
    backbone = backbones.resolve(backbone_name)
    tokenizer = backbones.load_tokenizer(backbone)
    label2id = {label: i for i, label in enumerate(labels)}
    model = backbones.load_token_classifier(backbone, labels, vocab_size=len(tokenizer))
    train_features = tokenize_and_align(train_sentences, tokenizer, label2id, recipe.max_length)
    dev_features = tokenize_and_align(dev_sentences, tokenizer, label2id, recipe.max_length)
    gold = [s.tags for s in dev_sentences]

    def compute_metrics(prediction) -> dict[str, float]:
        predicted = padded(word_tags(np.argmax(prediction.predictions, axis=-1), dev_features, labels), dev_sentences)
        scores = metrics.score(gold, predicted)
        return {"strict_f1": scores.strict.f1, "default_f1": scores.default.f1}

    args = TrainingArguments(
        output_dir=str(output_dir), learning_rate=recipe.learning_rate, num_train_epochs=recipe.epochs,
        per_device_train_batch_size=recipe.batch_size, per_device_eval_batch_size=recipe.eval_batch_size,
        eval_strategy="epoch", seed=recipe.seed, report_to="none", use_cpu=not torch.cuda.is_available(),
        bf16=recipe.precision == "bf16", fp16=recipe.precision == "fp16", disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=train_features, eval_dataset=dev_features,
                      data_collator=DataCollatorForTokenClassification(tokenizer), processing_class=tokenizer,
                      compute_metrics=compute_metrics, callbacks=[clock] if clock else [])
    trainer.train()
    return trainer, tokenizer, train_features


def predict(trainer: Trainer, tokenizer, sentences: Sequence[Sentence], labels: list[str],
            recipe: StandardRecipe = StandardRecipe()) -> list[list[str]]:
    """Test-split word tags the way run_ner.py's do_predict produces them."""
    label2id = {label: i for i, label in enumerate(labels)}
    features = tokenize_and_align(sentences, tokenizer, label2id, recipe.max_length)
    output = trainer.predict(features)
    return padded(word_tags(np.argmax(output.predictions, axis=-1), features, labels), sentences)
