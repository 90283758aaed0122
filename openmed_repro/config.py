"""Where things live: the project's parameters, the corpus directory and the download cache."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from openmed_repro.errors import OpenMedError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PARAMETERS_DIR = Path(os.environ.get("OPENMED_PARAMETERS_DIR", PROJECT_ROOT / "parameters"))
SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"

DATA_DIR_ENV = "OPENMED_DATA_DIR"
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
