"""Which of the ecosystem's CPU training options pay on this machine: the same sentences trained for one pass
under each option, in one process, as real (non-padding) tokens per second relative to the standard recipe's
batching (random order, dynamic padding). The baseline is measured first and last to show the drift of a
shared machine.

    .venv/bin/python benchmarks/training_options.py [--sentences 320] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import torch
from peft import get_peft_model
from transformers import DataCollatorForTokenClassification

from openmed_repro.models import backbones
from openmed_repro.data import corpora
from openmed_repro.data import encoding

MEGA_BATCH = 50  # the Trainer's length grouping sorts within mega-batches of 50 batches


def batches(features: list[dict], batch_size: int, grouped: bool, seed: int) -> list[list[dict]]:
    order = list(range(len(features)))
    random.Random(seed).shuffle(order)
    if grouped:
        size = MEGA_BATCH * batch_size
        order = [i for start in range(0, len(order), size)
                 for i in sorted(order[start:start + size], key=lambda i: -len(features[i]["input_ids"]))]
    return [[features[i] for i in order[start:start + batch_size]] for start in range(0, len(order), batch_size)]


def one_pass(model, collated: list[dict], warm_up: int = 2) -> tuple[float, int]:
    """Seconds and real tokens for forward, backward and AdamW step over `collated` (after `warm_up` steps)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    model.train()

    def step(batch):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    warm_up = min(warm_up, len(collated) - 1)
    for batch in collated[:warm_up]:
        step(batch)
    start = time.perf_counter()
    for batch in collated[warm_up:]:
        step(batch)
    seconds = time.perf_counter() - start
    return seconds, int(sum(b["attention_mask"].sum() for b in collated[warm_up:]))


def measure_options(backbone_name: str, sentences, labels: list[str], batch_size: int = 16,
                    max_length: int = 256, overlap: int = 50, compile_model: bool = True,
                    seed: int = 42) -> list[dict]:
    """Tokens per second of one pass over `sentences` under each option, relative to the baseline."""
    backbone = backbones.resolve(backbone_name)
    tokenizer = backbones.load_tokenizer(backbone)
    label2id = {label: i for i, label in enumerate(labels)}
    torch.manual_seed(seed)
    base = backbones.load_token_classifier(backbone, labels, vocab_size=len(tokenizer))
    features = [w.features() for w in encoding.encode([s.tokens for s in sentences], tokenizer, label2id,
                                                      tags=[s.tags for s in sentences], max_length=max_length,
                                                      overlap=overlap)]
    collator = DataCollatorForTokenClassification(tokenizer)
    fixed = DataCollatorForTokenClassification(tokenizer, padding="max_length", max_length=max_length)

    def collate(grouped: bool, size: int = batch_size, pad=collator) -> list[dict]:
        return [pad(b) for b in batches(features, size, grouped, seed)]

    def no_dropout(model):
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        return model

    def frozen_embeddings(model):
        model.get_input_embeddings().weight.requires_grad = False
        return model

    def lora(model):
        return get_peft_model(model, backbones.lora_config(backbone, model, 16, 32, 0.05))

    threads = torch.get_num_threads()
    other_threads = 2 if threads == 1 else 1
    options: list[tuple[str, Callable, Callable[[], list[dict]], int]] = [
        ("random order, dynamic padding (standard recipe)", lambda m: m, lambda: collate(False), threads),
        ("length-grouped, dynamic padding", lambda m: m, lambda: collate(True), threads),
        ("random order, padded to max_length", lambda m: m, lambda: collate(False, pad=fixed)[:6], threads),
        ("length-grouped, batch 32", lambda m: m, lambda: collate(True, 2 * batch_size), threads),
        ("length-grouped, dropout off", no_dropout, lambda: collate(True), threads),
        ("length-grouped, word embeddings frozen", frozen_embeddings, lambda: collate(True), threads),
        ("length-grouped, LoRA r16 query+value", lora, lambda: collate(True), threads),
        (f"length-grouped, {other_threads} thread(s)", lambda m: m, lambda: collate(True), other_threads),
    ]
    if compile_model:
        options.append(("length-grouped, torch.compile(dynamic=True)",
                         lambda m: torch.compile(m, dynamic=True), lambda: collate(True), threads))
    options.append(("random order, dynamic padding (standard recipe, again)", lambda m: m, lambda: collate(False),
                    threads))
    results = []
    for name, prepare, make_batches, n_threads in options:
        torch.set_num_threads(n_threads)
        torch.manual_seed(seed)
        model = prepare(copy.deepcopy(base))
        collated = make_batches()
        start = time.perf_counter()
        try:
            seconds, tokens = one_pass(model, collated)
            error = None
        except Exception as failure:  # an option that does not work here is reported, not fatal
            seconds, tokens, error = float("nan"), 0, f"{type(failure).__name__}: {failure}"[:300]
        results.append({"option": name, "threads": n_threads, "tokens": tokens, "seconds": round(seconds, 3),
                        "tokens_per_second": round(tokens / seconds, 1) if tokens else None,
                        "wall_seconds_with_warm_up": round(time.perf_counter() - start, 1), "error": error})
        torch.set_num_threads(threads)
        print(json.dumps(results[-1]), flush=True)
    baseline = results[0]["tokens_per_second"]
    for row in results:
        row["relative_to_standard"] = round(row["tokens_per_second"] / baseline, 3) if row["tokens_per_second"] else None
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ncbi_disease")
    parser.add_argument("--backbone", default="minilm-l6")
    parser.add_argument("--sentences", type=int, default=320)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    corpus = corpora.load(args.dataset, splits=("train",))
    rows = measure_options(args.backbone, corpus.train[: args.sentences], corpus.labels,
                           compile_model=not args.no_compile)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training_options.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
