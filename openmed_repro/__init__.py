"""openmed-repro: reproduce OpenMed NER (2025) on a laptop CPU or a GPU cluster."""

from openmed_repro.errors import OpenMedError

__all__ = ["OpenMedError"]
__version__ = "0.1.0"
