"""What the run trains on: the device's name and the machine for provenance, and the precision a profile's
`auto` means there."""

from __future__ import annotations

import os

import torch

from openmed_repro.errors import OpenMedError
from openmed_repro.infra.runs import cpu_model


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"


def machine() -> dict:
    """The machine a run's figures come from: CPU model, cores, torch's threads, GPU (None without one)."""
    cuda = torch.cuda.is_available()
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if cuda else None, "gpu_count": torch.cuda.device_count() if cuda else 0}


def resolve_precision(precision: str) -> str:
    """`auto`: bf16 where the GPU has it, else fp16 on a GPU, fp32 on a CPU."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision in {"bf16", "fp16"} and not cuda:
        raise OpenMedError(f"parameter precision={precision} needs a GPU; use fp32 (or auto) on a CPU")
    return precision
