"""Masked-LM loss computed on the masked positions only. The transformers *ForMaskedLM models project every
position onto the vocabulary although only the ~15% masked ones enter the loss; beside a small backbone's
encoder that projection is much of the work. Same loss, same gradients, without the unused projections."""

from __future__ import annotations

from typing import Callable

import torch
from transformers import Trainer

IGNORED = -100


def vocabulary_head(model) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Hidden states -> vocabulary logits of the known MLM heads (BERT, DeBERTa-v2/v3, ELECTRA), else None."""
    model = _unwrapped(model)
    if hasattr(model, "cls"):                                   # BERT family, legacy DeBERTa-v2
        return model.cls
    if hasattr(model, "lm_predictions"):                        # DeBERTa-v2/v3
        return lambda hidden: model.lm_predictions(hidden, model.deberta.embeddings.word_embeddings)
    if hasattr(model, "generator_predictions"):                 # ELECTRA
        return lambda hidden: model.generator_lm_head(model.generator_predictions(hidden))
    return None


def loss_sum(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the masked tokens of `batch` and their number. Models whose head is not
    known fall back to their own forward pass over every position (same result, more work)."""
    logits, targets, _ = _masked_logits(model, batch)
    total = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return total, int(targets.numel())


def loss_sums_per_row(model, batch: dict[str, torch.Tensor]) -> tuple[list[float], list[int]]:
    """Per row of `batch`: the summed cross-entropy over its masked tokens and their number (a row without a
    masked token: 0.0 and 0)."""
    logits, targets, selected = _masked_logits(model, batch)
    per_token = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
    rows = selected.nonzero()[:, 0]
    sums = torch.zeros(len(selected), dtype=torch.float64).index_add_(0, rows, per_token.double())
    return sums.tolist(), selected.sum(dim=1).tolist()


def _masked_logits(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Vocabulary logits of the masked positions only, their target tokens, and where they are."""
    labels = batch["labels"]
    selected = labels != IGNORED
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    inner = _unwrapped(model)
    head = vocabulary_head(inner)
    if head is None:
        logits = model(**inputs).logits[selected]
    else:
        hidden = getattr(inner, inner.base_model_prefix)(**inputs)[0]
        logits = head(hidden[selected])
    return logits, labels[selected], selected


class MaskedPositionsTrainer(Trainer):
    """The Trainer with the masked-positions loss, normalised over the whole accumulated batch (the
    token-weighted mean the stock MLM models compute with `num_items_in_batch`)."""

    loss_is_scaled_for_ga = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # The Trainer's mixed precision is accelerate's autocast around the model's own forward; loss_sum calls
        # the encoder and the head inside it, so it takes the autocast here, or bf16 training would run in fp32.
        with self.accelerator.autocast():
            total, count = loss_sum(model, inputs)
        if num_items_in_batch is None:
            num_items_in_batch = max(count, 1) * self.current_gradient_accumulation_steps
        loss = total / num_items_in_batch
        return (loss, None) if return_outputs else loss


def _unwrapped(model):
    """The transformers model inside a peft wrapper (its LoRA layers stay in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
