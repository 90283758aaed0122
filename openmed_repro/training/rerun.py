"""The training chapters' runner for a reviewer's rerun: train a recorded run again from its recorded settings
(config.json), seed and thread count into a directory of its own, here or as tasks of a Ray cluster. A finished
rerun is read back and an interrupted one resumed, unless asked fresh; a rerun on another version of the corpus is
refused. Judging the reruns against the record is report/verify.py's job, which only reads.

    openmed-repro verify finetune --all          (the command: report/verify.py plans, this trains, verify judges)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, cluster, job_settings, runs, validation


@dataclass(frozen=True)
class Chapter:
    """How a chapter's run is trained again: its configuration type and its one-run function."""

    settings: type
    run: Callable


def _finetune_run(settings, run_dir):
    from openmed_repro.training import finetune
    return finetune.run(settings, run_dir)


def _baseline_run(settings, run_dir):
    from openmed_repro.training import baseline
    return baseline.run(settings, run_dir)


def _dapt_run(settings, run_dir):
    from openmed_repro.training import dapt
    return dapt.run(settings, run_dir)


CHAPTERS = {
    "finetune": Chapter(job_settings.RunConfig, _finetune_run),
    "baseline": Chapter(job_settings.BaselineConfig, _baseline_run),
    "dapt": Chapter(job_settings.DaptConfig, _dapt_run),
}


def chapter_of(name: str) -> Chapter:
    if name not in CHAPTERS:
        raise OpenMedError(f"chapter {name!r}: no rerun; chapters that can be rerun: {', '.join(CHAPTERS)}")
    return CHAPTERS[name]


def recorded_settings(chapter: str, record_dir: Path, overrides: dict | None = None):
    """The recorded configuration (config.json) as the chapter's config dataclass, `overrides` on top (a corpus
    directory for a run whose corpus was a directory, not a registry key)."""
    values = {**atomic_files.read_json(record_dir / runs.CONFIG), **(overrides or {})}
    return validation.validated(chapter_of(chapter).settings, values, str(record_dir / runs.CONFIG))


def recorded_threads(record_dir: Path) -> int | None:
    """The thread count the recorded run trained with (its provenance's machine), None when not recorded."""
    return (_provenance(record_dir).get("machine") or {}).get("threads")


def rerun(chapter: str, record_dir: Path, rerun_dir: Path, overrides: dict | None = None,
          threads: int | None = None, fresh: bool = False) -> int:
    """Train the recorded run again into `rerun_dir` with torch on `threads` (default: the recorded count); a
    finished rerun there is read back and an interrupted one resumed, unless `fresh` (then it is deleted first).
    Returns the threads used."""
    import torch

    settings = recorded_settings(chapter, record_dir, overrides)
    threads = threads or recorded_threads(record_dir) or torch.get_num_threads()
    if fresh and rerun_dir.exists():
        shutil.rmtree(rerun_dir)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        chapter_of(chapter).run(settings, rerun_dir)
    finally:
        torch.set_num_threads(before)
    _check_same_data(record_dir, rerun_dir)
    return threads


def rerun_each(chapter: str, reruns: Sequence[tuple[str, Path, Path]], overrides: dict | None = None,
               threads: int | None = None, fresh: bool = False,
               placement: cluster.Placement = cluster.SERIAL) -> list[int]:
    """Every (name, record directory, rerun directory) of `reruns` trained again (`rerun`), here one after another
    or as tasks of a Ray cluster (`placement`); the threads each used, in the order given."""
    jobs = [cluster.Job(name, rerun, (chapter, Path(record_dir).resolve(), Path(rerun_dir).resolve(), overrides,
                                      threads, fresh))
            for name, record_dir, rerun_dir in reruns]
    return cluster.run_each(jobs, placement)


def _check_same_data(record_dir: Path, rerun_dir: Path) -> None:
    """A rerun on another version of the corpus is no rerun: the split files' sha256 must be the recorded ones."""
    recorded = ((_provenance(record_dir).get("data") or {}).get("files")) or {}
    again = ((_provenance(rerun_dir).get("data") or {}).get("files")) or {}
    changed = [split for split, entry in recorded.items()
               if entry.get("sha256") and (again.get(split) or {}).get("sha256") != entry["sha256"]]
    if changed:
        raise OpenMedError(f"{rerun_dir}: trained on {', '.join(changed)} files whose sha256 is not the one "
                           f"{record_dir} records; give the recorded corpus version")


def _provenance(directory: Path) -> dict:
    path = directory / runs.PROVENANCE
    return atomic_files.read_json(path) if path.is_file() else {}
