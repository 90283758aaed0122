"""What the run trains on: the device's name for provenance, and the precision a profile's `auto` means there."""

from __future__ import annotations

import torch

from openmed_repro.errors import OpenMedError


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"


def resolve_precision(precision: str) -> str:
    """`auto`: bf16 where the GPU has it, else fp16 on a GPU, fp32 on a CPU."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    if precision in {"bf16", "fp16"} and not cuda:
        raise OpenMedError(f"parameter precision={precision} needs a GPU; use fp32 (or auto) on a CPU")
    return precision
