"""Where things live: the project, its parameters, the shared corpora and the download cache."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from openmed_repro.errors import OpenMedError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PARAMETERS_DIR = Path(os.environ.get("OPENMED_PARAMETERS_DIR", PROJECT_ROOT / "parameters"))
SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"

DATA_DIR_ENV = "OPENMED_DATA_DIR"
DAPT_DIR_ENV = "OPENMED_DAPT_DIR"
CACHE_DIR_ENV = "OPENMED_CACHE_DIR"


def read_parameters(name: str) -> dict:
    """Read one YAML file of `parameters/` (e.g. "corpora.yaml")."""
    path = PARAMETERS_DIR / name
    if not path.is_file():
        raise OpenMedError(f"{path}: parameter file not found (set OPENMED_PARAMETERS_DIR to the project's parameters/)")
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def cache_dir() -> Path:
    """Downloads go here: $OPENMED_CACHE_DIR, else ~/.cache/openmed_repro."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "openmed_repro"


def dapt_dir(configured: str | None = None) -> Path:
    """DAPT text files: the parameter, else $OPENMED_DAPT_DIR, else ../shared/data/dapt."""
    chosen = configured or os.environ.get(DAPT_DIR_ENV)
    return Path(chosen) if chosen else SHARED_DATA_DIR / "dapt"


def existing_dapt_dir(configured: str | None = None) -> Path:
    """dapt_dir(configured), refused naming the parameter unless it is a directory."""
    directory = dapt_dir(configured)
    if not directory.is_dir():
        raise OpenMedError(f"parameter dapt_dir: {directory} is not a directory of DAPT text files "
                           f"(set dapt_dir or ${DAPT_DIR_ENV})")
    return directory

