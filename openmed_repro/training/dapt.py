"""LoRA domain-adaptive pre-training: masked-language modelling on the DAPT text with the transformers
Trainer and peft, perplexity on held-out text before and after. A backbone without a trained MLM head first
gets a calibrated one (encoder frozen, as many optimizer steps as DAPT takes), so that the reduction measures
what adapting the encoder adds, not more head training; DAPT then trains only the LoRA matrices."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import (DataCollatorForLanguageModeling, DataCollatorForTokenClassification, TrainerCallback,
                          TrainingArguments, set_seed)

from openmed_repro.models import backbones
from openmed_repro.infra import paths
from openmed_repro.data import corpora
from openmed_repro.data import dapt_corpus
from openmed_repro.infra import checkpoints as checkpoints_of_run
from openmed_repro.infra import footprint
from openmed_repro.infra import lifecycle
from openmed_repro.infra import runs
from openmed_repro.models import masked_lm
from openmed_repro.infra.job_settings import DaptConfig
from openmed_repro.errors import OpenMedError
from openmed_repro.evaluation import significance
from openmed_repro.infra.devices import device_name
from openmed_repro.training import references
from openmed_repro.training.attempt_clock import AttemptClock
from openmed_repro.training.trainer_arguments import training_arguments

ADAPTER_DIR = "adapter"
CALIBRATED_HEAD = runs.CALIBRATED_HEAD


def sources(dapt_config: DaptConfig) -> tuple[list[dapt_corpus.Source], dict[str, float], list[str]]:
    """The named sources of parameters/dapt.yaml in the DAPT text directory, the mix and held-out sources."""
    spec = paths.read_parameters("dapt.yaml")
    named = dapt_corpus.configured_sources(paths.dapt_dir(dapt_config.dapt_dir))
    mix = dapt_config.mix if dapt_config.mix is not None else {k: float(v) for k, v in spec["mix"].items()}
    return named, mix, list(spec.get("held_out_sources") or [])


def evaluation_sentences(data_dir: str | None = None) -> list[str]:
    """Every dev and test sentence of every corpus found locally: text DAPT must never train on."""
    sentences = []
    for key in corpora.available(data_dir):
        corpus = corpora.load(key, data_dir)
        sentences += [" ".join(s.tokens) for s in corpus.devel + corpus.test]
    return sentences


def build_corpus(dapt_config: DaptConfig, tokenizer, evaluation: list[str]) -> dapt_corpus.DaptCorpus:
    named, mix, held_out_sources = sources(dapt_config)
    return dapt_corpus.build(
        named, lambda text: len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]), evaluation,
        mix=mix, passages=dapt_config.passages, min_tokens=dapt_config.min_tokens,
        max_tokens=dapt_config.max_tokens, held_out_sources=held_out_sources,
        held_out_fraction=dapt_config.held_out_fraction, seed=dapt_config.seed, split_long=dapt_config.split_long)


def tokenise(passages: list[str], tokenizer, max_length: int) -> list[dict]:
    encoded = tokenizer(passages, truncation=True, max_length=max_length, return_special_tokens_mask=True)
    return [{key: encoded[key][i] for key in ("input_ids", "attention_mask", "special_tokens_mask")}
            for i in range(len(passages))]


def masked_once(features: list[dict], tokenizer, probability: float, seed: int) -> list[dict]:
    """The held-out set masked once with a fixed seed, so perplexity before and after is measured on the
    very same masked positions."""
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability, seed=seed)
    masked = []
    for feature in features:
        batch = collator([feature])
        masked.append({"input_ids": batch["input_ids"][0].tolist(), "attention_mask": feature["attention_mask"],
                       "labels": batch["labels"][0].tolist()})
    return masked


def passage_losses(model, masked: list[dict], tokenizer, batch_size: int = 64) -> tuple[list[float], list[int]]:
    """Per held-out passage: the summed cross-entropy over its masked tokens, and their number, in the
    passages' order; the bootstrap over passages resamples these pairs."""
    collator = DataCollatorForTokenClassification(tokenizer)
    device = next(model.parameters()).device
    order = sorted(range(len(masked)), key=lambda i: len(masked[i]["input_ids"]))
    losses, counts = [0.0] * len(masked), [0] * len(masked)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            batch = collator([masked[i] for i in chosen])
            batch = {k: v.to(device) for k, v in batch.items()}
            for index, total, count in zip(chosen, *masked_lm.loss_sums_per_row(model, batch)):
                losses[index], counts[index] = total, count
    model.train(was_training)
    return losses, counts


def perplexity(model, masked: list[dict], tokenizer, batch_size: int = 64) -> float:
    """exp of the mean cross-entropy over every masked token of the held-out set (token-weighted)."""
    losses, counts = passage_losses(model, masked, tokenizer, batch_size)
    return perplexity_of(losses, counts)


def perplexity_of(losses: list[float], counts: list[int]) -> float:
    if sum(counts) == 0:
        raise OpenMedError("the held-out set has no masked token: too few held-out passages")
    return math.exp(sum(losses) / sum(counts))


class HeldOutPerplexity(TrainerCallback):
    """Held-out perplexity every `every` optimizer steps, logged into the Trainer's log history before that
    step's checkpoint is written, so a resumed run keeps the points it measured: the curve that shows whether
    DAPT has stopped gaining."""

    def __init__(self, measure: Callable[[], float], every: int):
        self.measure, self.every = measure, every

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            state.log_history.append({"step": state.global_step, "epoch": state.epoch,
                                      "held_out_perplexity": self.measure()})
        return control


def optimizer_steps(dapt_config: DaptConfig, passages: int) -> int:
    per_epoch = math.ceil(passages / (dapt_config.batch_size * dapt_config.gradient_accumulation_steps))
    return max(1, math.ceil(per_epoch * dapt_config.epochs))


def calibrate_head(model, dapt_config: DaptConfig, features: list[dict], tokenizer, run_dir: Path, steps: int,
                   precision: str) -> None:
    """Train the MLM head alone (encoder frozen) for `steps` optimizer steps; saved so a rerun reuses it."""
    saved = run_dir / CALIBRATED_HEAD
    head = _head_parameters(model)
    if saved.is_file():
        state = load_file(saved)
        with torch.no_grad():
            for name, parameter in head.items():
                parameter.copy_(state[name])
        return
    for parameter in model.parameters():
        parameter.requires_grad = False
    for parameter in head.values():
        parameter.requires_grad = True
    arguments = _arguments(dapt_config, run_dir / "calibration", dapt_config.head_learning_rate, precision, max_steps=steps)
    masking = ContentSeededMasking(tokenizer, dapt_config)
    trainer = masked_lm.MaskedPositionsTrainer(model=model, args=arguments, train_dataset=features,
                                               data_collator=masking, callbacks=[masking])
    checkpoints = run_dir / "calibration"
    with _no_dropout(getattr(model, model.base_model_prefix)):
        trainer.train(resume_from_checkpoint=checkpoints_of_run.last_complete(checkpoints))
    for parameter in head.values():
        parameter.requires_grad = False
    save_file({name: p.detach().contiguous() for name, p in head.items()}, saved)


@contextlib.contextmanager
def _no_dropout(encoder: torch.nn.Module):
    """The frozen encoder without dropout while the head is calibrated: the head is fitted to the features the
    held-out perplexity is measured on (the encoder in evaluation mode), not to noisy copies of them."""
    dropouts = [(module, module.p) for module in encoder.modules() if isinstance(module, torch.nn.Dropout)]
    for module, _ in dropouts:
        module.p = 0.0
    try:
        yield
    finally:
        for module, p in dropouts:
            module.p = p


def _head_parameters(model) -> dict[str, torch.nn.Parameter]:
    """The MLM head's own parameters: everything outside the encoder (a decoder tied to the input
    embeddings is the encoder's and stays frozen)."""
    prefix = model.base_model_prefix + "."
    return {name: p for name, p in model.named_parameters() if not name.startswith(prefix)}


class ContentSeededMasking(TrainerCallback):
    """Dynamic masking whose masks follow from the run's seed, the epoch and the batch's tokens alone. The
    Trainer's data loader collates one batch ahead of the step it checkpoints: masks drawn from torch's global
    generator would be drawn from another state after a resume, and would shift that generator's state for the
    dropout of the next step. These leave the global generator untouched, so a resumed run trains exactly as an
    uninterrupted one. A callback too: the Trainer tells it each epoch, so the same passages batched alike in two
    epochs get different masks."""

    def __init__(self, tokenizer, dapt_config: DaptConfig):
        self.masking = DataCollatorForLanguageModeling(tokenizer, mlm_probability=dapt_config.mlm_probability)
        self.seed = dapt_config.seed
        self.epoch = 0

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch = math.floor(state.epoch or 0)   # a resumed epoch too: its checkpoint's epoch, e.g. 2.4 -> 2

    def __call__(self, examples: list[dict]) -> dict:
        digest = hashlib.sha256(f"{self.seed}/{self.epoch}".encode())
        for example in examples:
            digest.update(np.asarray(example["input_ids"], dtype=np.int64).tobytes())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int.from_bytes(digest.digest()[:8], "little") & (2**63 - 1))
            return self.masking(examples)


def _arguments(dapt_config: DaptConfig, output_dir: Path, learning_rate: float, precision: str,
               max_steps: int = -1) -> TrainingArguments:
    """A checkpoint every `save_steps` optimizer steps; no Trainer evaluation (held-out perplexity is measured
    by HeldOutPerplexity, token-weighted on fixed masks)."""
    return training_arguments(
        dapt_config, output_dir, precision, max_steps=max_steps, learning_rate=learning_rate,
        warmup_steps=dapt_config.warmup_steps, save_strategy="steps", save_steps=dapt_config.save_steps,
        train_sampling_strategy="group_by_length",
    )


def run(dapt_config: DaptConfig, run_dir: str | Path | None = None) -> lifecycle.RunResult:
    """Corpus, calibrated head, perplexity before, LoRA MLM training (resumable), perplexity after, adapter.
    A complete run directory of the same configuration is read back instead of retrained."""
    return lifecycle.run(dapt_config, run_dir, lambda directory, resolved: adapt(dapt_config, directory, resolved),
                         check=lambda: references.check_dapt(dapt_config))


def adapt(dapt_config: DaptConfig, run_dir: Path, resolved: lifecycle.Resolved) -> lifecycle.Outcome:
    """The chapter's own work inside the run lifecycle: everything up to the saved adapter and its record."""
    set_seed(dapt_config.seed)
    backbone = backbones.resolve(dapt_config.backbone)
    tokenizer = backbones.load_tokenizer(backbone)
    corpus = build_corpus(dapt_config, tokenizer, evaluation_sentences())
    training = tokenise(corpus.training, tokenizer, dapt_config.max_length)
    held_out = masked_once(tokenise(corpus.held_out, tokenizer, dapt_config.max_length), tokenizer,
                           dapt_config.mlm_probability, dapt_config.seed)
    model, head_trained = backbones.load_masked_lm(backbone, len(tokenizer), dapt_config.attention_dropout)
    steps = optimizer_steps(dapt_config, len(training))
    calibration_steps = dapt_config.head_calibration_steps or steps
    calibration_seconds = 0.0
    if not head_trained:
        with footprint.track(run_dir, "dapt head calibration", Path(dapt_config.backbone).name, dapt_config.country):
            started = time.perf_counter()
            calibrate_head(model, dapt_config, training, tokenizer, run_dir, calibration_steps, resolved.precision)
            calibration_seconds = time.perf_counter() - started
    losses_before, masked_tokens = passage_losses(model, held_out, tokenizer, dapt_config.eval_batch_size)
    before = perplexity_of(losses_before, masked_tokens)

    for parameter in model.parameters():
        parameter.requires_grad = False
    lora = LoraConfig(r=dapt_config.lora_r, lora_alpha=dapt_config.lora_alpha, lora_dropout=dapt_config.lora_dropout,
                      target_modules=list(dapt_config.lora_target_modules or backbone.lora_target_modules
                                          or backbones.query_value_modules(model)))
    model = get_peft_model(model, lora)
    checkpoints = run_dir / "checkpoints"
    clock = AttemptClock()
    curve = HeldOutPerplexity(lambda: perplexity(model, held_out, tokenizer, dapt_config.eval_batch_size),
                              dapt_config.perplexity_steps or dapt_config.save_steps)
    masking = ContentSeededMasking(tokenizer, dapt_config)
    trainer = masked_lm.MaskedPositionsTrainer(model=model, args=_arguments(dapt_config, checkpoints, dapt_config.learning_rate, resolved.precision),
                                               train_dataset=training, data_collator=masking,
                                               callbacks=[clock, curve, masking])
    with footprint.track(run_dir, "dapt", Path(dapt_config.backbone).name, dapt_config.country) as attempt:
        clock.start(attempt)
        trainer.train(resume_from_checkpoint=checkpoints_of_run.last_complete(checkpoints))
        train_seconds = clock.seconds
    losses_after, _ = passage_losses(model, held_out, tokenizer, dapt_config.eval_batch_size)
    after = perplexity_of(losses_after, masked_tokens)
    interval = significance.perplexity_reduction_interval(losses_before, losses_after, masked_tokens,
                                                          seed=dapt_config.seed)

    backbones.save_adapter(model, run_dir / ADAPTER_DIR)
    tokenizer.save_pretrained(run_dir / ADAPTER_DIR)
    record = {
        "backbone": dapt_config.backbone, "profile": dapt_config.profile, "seed": dapt_config.seed,
        "perplexity_before": before, "perplexity_after": after,
        "perplexity_reduction_percent": 100 * (before - after) / before,
        "perplexity_reduction_interval": dataclasses.asdict(interval),
        "perplexity_curve": [{"step": 0, "held_out_perplexity": before}] + [
            {"step": e["step"], "held_out_perplexity": e["held_out_perplexity"]}
            for e in trainer.state.log_history if "held_out_perplexity" in e],
        # per held-out passage (in the held-out set's order): masked tokens and summed loss before and after,
        # so the interval and both perplexities can be recomputed from the record
        "held_out": {"masked_tokens": masked_tokens, "loss_before": [round(x, 4) for x in losses_before],
                     "loss_after": [round(x, 4) for x in losses_after]},
        "head": "shipped with the checkpoint" if head_trained else
                f"calibrated: {calibration_steps} optimizer steps, encoder frozen",
        "calibration_seconds": round(calibration_seconds, 1), "train_seconds": round(train_seconds, 1),
        "train_attempts": clock.attempts,
        "optimizer_steps": trainer.state.global_step, "training_passages": len(training),
        "held_out_passages": len(held_out), "training_tokens": sum(len(f["input_ids"]) for f in training),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "composition": [vars(row) for row in corpus.composition], "device": device_name(),
    }
    return lifecycle.Outcome(record, trainer.state.log_history, {})
