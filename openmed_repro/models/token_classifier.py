"""The fine-tuned token classifier: built on a backbone (a DAPT adapter merged in first, when given) under a
LoRA task adapter or fully trainable, saved with its head, tokenizer and labels, and loaded back. Training,
evaluation and annotation all reach a trained model through here."""

from __future__ import annotations

from pathlib import Path

from peft import PeftModel, get_peft_model

from openmed_repro.infra import atomic_files, runs
from openmed_repro.infra.job_settings import RunConfig
from openmed_repro.models import backbones, saved_model

LABELS_FILE = saved_model.LABELS_FILE


def build(run_config: RunConfig, backbone: backbones.Backbone, labels: list[str], tokenizer):
    """A fresh head on the backbone, under a new LoRA task adapter (or bare, for full fine-tuning, its word
    embeddings fixed when `freeze_word_embeddings`)."""
    model = _base(run_config, backbone, labels, len(tokenizer))
    if run_config.method == "full":
        if run_config.freeze_word_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        return model
    lora = backbones.lora_config(backbone, model, run_config.lora_r, run_config.lora_alpha,
                                 run_config.lora_dropout, run_config.lora_target_modules)
    return get_peft_model(model, lora)


def _base(run_config: RunConfig, backbone: backbones.Backbone, labels: list[str], vocab_size: int):
    model = backbones.load_token_classifier(backbone, labels, vocab_size=vocab_size)
    return backbones.merge_adapter(model, run_config.dapt_adapter) if run_config.dapt_adapter else model


def save(model, tokenizer, labels: list[str], directory: Path) -> float:
    """The adapter with its head (LoRA) or the whole model (full), the tokenizer and the labels; returns
    the weights' size in MB."""
    backbones.save_adapter(model, directory)
    tokenizer.save_pretrained(directory)
    atomic_files.write_json(directory / LABELS_FILE, labels)
    weights = [p for p in directory.iterdir() if p.suffix in {".safetensors", ".bin"}]
    return sum(p.stat().st_size for p in weights) / 1e6


def load(directory: Path, run_config: RunConfig):
    """(model, tokenizer, labels) of a saved run: the backbone with the saved adapter and head, or the
    saved full model. A missing or damaged file is an error naming it (saved_model.check)."""
    if (directory.parent / runs.METRICS).is_file():   # the model/ of a run directory: its recorded checksums
        runs.read_finished(directory.parent)
    labels = saved_model.check(directory)
    saved = backbones.Backbone("saved", str(directory), "local", str(directory))
    tokenizer = backbones.load_tokenizer(saved)
    if (directory / saved_model.ADAPTER_CONFIG).is_file():
        base = _base(run_config, backbones.resolve(run_config.backbone), labels, len(tokenizer))
        model = PeftModel.from_pretrained(base, directory)
    else:
        model = backbones.load_token_classifier(saved, labels, len(tokenizer))
    return model.eval(), tokenizer, labels
