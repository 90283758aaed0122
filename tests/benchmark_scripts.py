"""The scripts of benchmarks/ imported as modules in the tests (benchmarks/ is not a package)."""

import importlib
import sys

from openmed_repro.infra import paths

BENCHMARKS = paths.PROJECT_ROOT / "benchmarks"


def load(name: str):
    """benchmarks/<name>.py as a module."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))
