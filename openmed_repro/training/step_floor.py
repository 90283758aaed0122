"""The step floor: a run on a small corpus passes over its training split several times an epoch, so that every
run takes at least its profile's `min_optimizer_steps` optimizer steps. One rule for every corpus and both
models (fine-tuning and the BiLSTM baseline); only a small corpus (CLL: 120 sentences) needs it, and without it
a run of a few dozen steps predicts no entity at all."""

from __future__ import annotations

import math


def passes_per_epoch(examples: int, examples_per_step: int, epochs: float, min_optimizer_steps: int,
                     capped: bool) -> int:
    """How many times one epoch passes over `examples` training examples: 1, or enough that `epochs` epochs
    take at least `min_optimizer_steps` steps. A capped training split is a budget chosen on purpose and gets
    no floor."""
    if not min_optimizer_steps or capped or not examples:
        return 1
    return math.ceil(min_optimizer_steps / epochs * examples_per_step / examples)
