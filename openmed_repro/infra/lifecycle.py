"""The life of one training run, the same for fine-tuning, DAPT and the baseline: claim the directory (another
configuration's is refused), read a finished run back (its saved weights checked against the sha256 its
metrics.json records), else train, give the run's files the permissions the umask asks for, then write the log
history, the provenance and metrics.json last. Apart from runs.py because
it needs torch (the device's name), and reading a run directory (annotation, the book) must not import torch."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, job_settings, layout, run_provenance, runs
from openmed_repro.infra.devices import device_name, machine, resolve_inference_precision, resolve_precision

Settings = job_settings.RunConfig | job_settings.DaptConfig | job_settings.BaselineConfig | job_settings.ReleasedConfig


@dataclass(frozen=True)
class RunResult:
    """A chapter's finished run: its directory, metrics.json, log history, and whether it was read back."""

    run_dir: Path
    metrics: dict
    log_history: list[dict]
    reused: bool


@dataclass(frozen=True)
class Outcome:
    """What a chapter's training hands back: its metrics record, the Trainer's log history, the data's
    checksums for the provenance, and scratch files of the run directory that go once the run is complete."""

    metrics: dict
    log_history: list[dict]
    data: dict
    scratch: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolved:
    """What a run's settings become on this machine, resolved once before its directory is claimed and handed
    down to its training and into its provenance: fp16 without a GPU, or int8 prediction without ONNX Runtime,
    is refused in one line before any work, not after a whole training."""

    precision: str          # training: `auto` resolved (fp32 for a run without one: the BiLSTM, a released checkpoint)
    eval_precision: str     # the final dev and test predictions: fp32 unless the run's eval_precision asks otherwise


def resolve(settings: Settings) -> Resolved:
    precision = getattr(settings, "precision", None)
    eval_precision = getattr(settings, "eval_precision", None)
    return Resolved("fp32" if precision is None else resolve_precision(precision),
                    resolve_inference_precision(eval_precision or "fp32", "eval_precision"))


def run(settings: Settings, run_dir: str | Path | None, train: Callable[[Path, Resolved], Outcome],
        check: Callable[[], None] | None = None) -> RunResult:
    """`train(run_dir, resolved)` in `run_dir` (default: layout.default_directory), which trains (or resumes) with
    the settings resolved on this machine, writes the model and predictions and returns the Outcome; a complete
    directory of the same settings is read back instead, and one of other settings is refused before anything runs.
    `check`: the chapter's own refusals (what the run names must exist), with the resolution, before the claim."""
    run_dir = Path(run_dir) if run_dir else layout.default_directory(settings)
    resolved = resolve(settings)   # before the directory is claimed or anything loads
    if check is not None:
        check()
    if layout.LAYOUT.in_record(run_dir) and not runs.is_complete(run_dir):
        raise OpenMedError(f"{run_dir}: not in the record, and a run is never trained into the record; train it "
                           f"into runs/ (output_dir {layout.default_directory(settings)}) and copy it in with "
                           "`openmed-repro record RUN_DIR`")
    runs.claim(run_dir, settings)
    atomic_files.remove_stale_temporaries(run_dir)   # what a killed write left
    if runs.is_complete(run_dir):
        finished = runs.read_finished(run_dir)
        return RunResult(run_dir, finished, atomic_files.read_json(run_dir / runs.LOG_HISTORY), reused=True)
    code = run_provenance.code_state()   # the code that trains is the tree's as this process began, whatever is committed since
    outcome = train(run_dir, resolved)
    atomic_files.follow_umask(run_dir)
    atomic_files.write_json(run_dir / runs.LOG_HISTORY, outcome.log_history)
    atomic_files.write_json(run_dir / runs.PROVENANCE, run_provenance.provenance(settings, outcome.data, device_name(), machine(),
                                                                   run_dir, resolved.precision, code))
    saved = runs.weights_sha256(run_dir)
    metrics = {**outcome.metrics, **({runs.FILES_SHA256: saved} if saved else {})}
    atomic_files.write_json(run_dir / runs.METRICS, metrics)
    for name in outcome.scratch:
        scratch = run_dir / name
        if scratch.is_dir():
            shutil.rmtree(scratch)
        else:
            scratch.unlink(missing_ok=True)
    return RunResult(run_dir, metrics, outcome.log_history, reused=False)
