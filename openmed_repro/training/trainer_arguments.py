"""The transformers TrainingArguments of every Trainer here (fine-tuning, DAPT and its head calibration):
one place for what they share, so that precision, CPU use, checkpointing, seeds and reporting never drift
apart between chapters."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import TrainingArguments

from openmed_repro.infra.job_settings import DaptConfig, RunConfig


def training_arguments(settings: RunConfig | DaptConfig, output_dir: Path, precision: str, **chapter) -> TrainingArguments:
    """The shared settings from a run's configuration and the precision it resolved to on this machine
    (lifecycle.resolve), with the chapter's own arguments (`chapter`: learning rate, warm-up, evaluation and
    saving schedule, sampling) on top."""
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        weight_decay=settings.weight_decay,
        lr_scheduler_type=settings.lr_scheduler,
        optim="adamw_torch",
        logging_strategy="steps",
        logging_steps=settings.logging_steps,
        save_total_limit=2,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=settings.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=False,
        **chapter,
    )
