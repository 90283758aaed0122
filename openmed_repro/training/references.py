"""What a run names must exist (its corpus, its backbone, a DAPT adapter or text): checked in one step before its
directory is claimed (lifecycle.run's `check`), so that a typo is one line naming the parameter and never leaves a
claimed directory behind that the corrected command would then refuse."""

from __future__ import annotations

from pathlib import Path

from openmed_repro.data import corpora
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import paths
from openmed_repro.infra.job_settings import DaptConfig, RunConfig
from openmed_repro.models import backbones


def check_corpus(dataset: str) -> None:
    """A corpus key of parameters/corpora.yaml or a corpus directory."""
    if dataset not in corpora.registry() and not Path(dataset).is_dir():
        corpora.spec(dataset)  # raises with the list of known datasets


def check_run(run_config: RunConfig) -> None:
    """A fine-tuning run's corpus, backbone and DAPT adapter."""
    check_corpus(run_config.dataset)
    backbones.resolve(run_config.backbone)
    if run_config.dapt_adapter and not (Path(run_config.dapt_adapter) / "adapter_config.json").is_file():
        raise OpenMedError(f"parameter dapt_adapter: {run_config.dapt_adapter} holds no adapter_config.json "
                           "(give the adapter/ directory of a finished DAPT run)")


def check_dapt(dapt_config: DaptConfig) -> None:
    """A DAPT run's backbone and its text."""
    backbones.resolve(dapt_config.backbone)
    paths.existing_dapt_dir(dapt_config.dapt_dir)
