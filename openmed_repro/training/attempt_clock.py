"""Training time summed over every attempt of a run. A killed run resumes from its last checkpoint, and the
attempt that resumes knows only its own time (half a second when nothing was left to train); so each checkpoint
stores the seconds trained so far (the Trainer keeps an ExportableState callback's state in trainer_state.json)
and the resumed attempt adds its own to them. Each checkpoint also updates the attempt's footprint record: an
attempt killed outright counts up to its last checkpoint, in time and in energy alike, and the work it lost
after that is counted by neither."""

from __future__ import annotations

import time

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from openmed_repro.infra import footprint


class AttemptClock(TrainerCallback, ExportableState):
    """Seconds and attempts of a Trainer's training; `start` it when the attempt's work begins."""

    def __init__(self):
        self.started: float | None = None
        self.earlier_seconds = 0.0
        self.attempts = 1
        self.footprint: footprint.Attempt | None = None

    def start(self, attempt: footprint.Attempt | None = None) -> None:
        self.started, self.footprint = time.perf_counter(), attempt

    @property
    def seconds(self) -> float:
        """Seconds trained by every attempt so far (an earlier, killed one up to its last checkpoint)."""
        return self.earlier_seconds + (time.perf_counter() - self.started if self.started is not None else 0.0)

    def state(self) -> dict:
        return {"args": {}, "attributes": {"seconds": self.seconds, "attempts": self.attempts}}

    def on_train_begin(self, args, state, control, **kwargs):
        """A resumed Trainer has loaded the checkpoint's state: the attempts before this one are in it."""
        name = type(self).__name__
        if state.global_step:
            earlier = (state.stateful_callbacks.get(name) or {}).get("attributes", {})
            self.earlier_seconds = float(earlier.get("seconds", 0.0))
            self.attempts = int(earlier.get("attempts", 1)) + 1
        state.stateful_callbacks[name] = self.state()   # a checkpoint written before this clock existed has none

    def on_evaluate(self, args, state, control, **kwargs):
        self._update_footprint()

    def on_save(self, args, state, control, **kwargs):
        self._update_footprint()

    def _update_footprint(self) -> None:
        if self.footprint is not None:
            self.footprint.update()
