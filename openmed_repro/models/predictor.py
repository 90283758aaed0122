"""Word-level tags from a token classifier, whatever the sentence length: sentences become sliding windows
(data/encoding.py), windows are predicted in length-sorted batches under a token budget, and each word takes
the tag of the window where it lies farthest from a cut. Evaluation, annotation (in-process and on Spark) and
the benchmarks all predict through here, so they cannot disagree on a tag."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from peft import PeftModel
from tqdm.auto import tqdm
from transformers import DataCollatorForTokenClassification

from openmed_repro.data import encoding

BATCH_SIZE = 64
MAX_BATCH_TOKENS = 1024


def predict(model, tokenizer, sentences: Sequence[Sequence[str]], labels: Sequence[str], max_length: int,
            overlap: int, batch_size: int = BATCH_SIZE, max_batch_tokens: int = MAX_BATCH_TOKENS,
            progress: bool = True) -> list[list[str]]:
    """One tag per word of every sentence."""
    return predict_with_scores(model, tokenizer, sentences, labels, max_length, overlap, batch_size,
                               max_batch_tokens, progress)[0]


def predict_with_scores(model, tokenizer, sentences: Sequence[Sequence[str]], labels: Sequence[str],
                        max_length: int, overlap: int, batch_size: int = BATCH_SIZE,
                        max_batch_tokens: int = MAX_BATCH_TOKENS,
                        progress: bool = True) -> tuple[list[list[str]], list[list[float]]]:
    """One tag per word and its softmax probability (at the word's first sub-word). A batch holds at most
    `batch_size` windows and `max_batch_tokens` padded sub-words: long windows come in smaller batches, whose
    activations stay in the CPU's caches; neither limit changes a tag."""
    windows = encoding.encode(sentences, tokenizer, max_length=max_length, overlap=overlap)
    collator = DataCollatorForTokenClassification(tokenizer)
    device = next(iter(model.parameters()), torch.empty(0)).device   # a runtime's model (int8) holds none
    # Every window position gets a global index; the merge picks indices, which then look up tag and score.
    bases, total = [], 0
    for window in windows:
        bases.append(total)
        total += len(window.input_ids)
    label_ids, scores = [0] * total, [0.0] * total
    model.eval()
    with torch.inference_mode():
        for batch_ids in tqdm(length_batches([len(w.input_ids) for w in windows], batch_size, max_batch_tokens),
                              desc="predicting", unit="batch", leave=False, disable=not progress):
            batch = collator([{"input_ids": windows[i].input_ids, "attention_mask": [1] * len(windows[i].input_ids)}
                              for i in batch_ids])
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            best = logits.argmax(dim=-1)
            probabilities = logits.float().softmax(dim=-1).gather(-1, best.unsqueeze(-1)).squeeze(-1)
            best, probabilities = best.cpu().tolist(), probabilities.cpu().tolist()
            for row, index in enumerate(batch_ids):
                start, length = bases[index], len(windows[index].input_ids)
                label_ids[start:start + length] = best[row][:length]
                scores[start:start + length] = probabilities[row][:length]
    positions = [list(range(base, base + len(w.input_ids))) for base, w in zip(bases, windows)]
    merged = encoding.merge_predictions(windows, positions, [len(s) for s in sentences])
    return ([[labels[label_ids[i]] for i in sentence] for sentence in merged],
            [[scores[i] for i in sentence] for sentence in merged])


def length_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Indices sorted by length, cut into batches of at most `batch_size` items and at most `max_tokens`
    once padded to the batch's longest item (an item longer than `max_tokens` forms a batch of its own)."""
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        current = batches[-1] if batches else None
        if current and len(current) < batch_size and lengths[index] * (len(current) + 1) <= max_tokens:
            current.append(index)
        else:
            batches.append([index])
    return batches


def inference_model(model, keep_original: bool = True) -> torch.nn.Module:
    """A plain model for prediction: a LoRA model's adapter merged into its weights (one matrix product per
    layer instead of three), into a copy unless the caller no longer needs the original (`keep_original=False`,
    which spares a second copy of the weights); any other model is returned as it is."""
    if not isinstance(model, PeftModel):
        return model.eval()
    return (copy.deepcopy(model) if keep_original else model).merge_and_unload().eval()
