"""What the run trains and predicts on: the device's name and the machine for provenance, and the precision a
profile's `auto` means there (a GPU's half precision, a CPU's bf16 or int8 units where it has them)."""

from __future__ import annotations

import importlib.util

import os

import torch

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import cpu_units as cpu_units_module
from openmed_repro.infra.cpu_units import CpuUnits
from openmed_repro.infra.run_provenance import cpu_model

INFERENCE_PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"


def cpu_units() -> CpuUnits:
    """This CPU's low-precision units (tests replace this to stand for another CPU)."""
    return cpu_units_module.detect()


def machine() -> dict:
    """The machine a run's figures come from: CPU model and its low-precision units, cores, torch's threads,
    GPU (None without one)."""
    cuda = torch.cuda.is_available()
    return {"cpu": cpu_model(), "cpu_units": cpu_units().to_dict(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "gpu_count": torch.cuda.device_count() if cuda else 0}


def resolve_precision(precision: str) -> str:
    """The precision training runs in. `auto`: on a GPU bf16 where it has it, else fp16; on a CPU bf16
    (autocast) where it has bf16 units (AMX or AVX-512 BF16), else fp32. fp16 needs a GPU."""
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_units().bf16 else "fp32"
    if precision == "fp16" and not cuda:
        raise OpenMedError("parameter precision=fp16 needs a GPU; on a CPU use bf16, fp32 or auto")
    return precision


def resolve_inference_precision(precision: str, parameter: str = "precision") -> str:
    """The precision a trained model predicts in. `auto`: on a GPU as training's; on a CPU bf16 where it has
    bf16 units, else int8 where it has int8 dot-product units (AMX or VNNI), else fp32. int8 runs on a CPU
    (ONNX Runtime), fp16 on a GPU. `parameter`: the name the user gave it (eval_precision for a training run)."""
    if precision not in INFERENCE_PRECISIONS:
        raise OpenMedError(f"parameter {parameter}={precision!r}; valid: {', '.join(INFERENCE_PRECISIONS)}")
    cuda = torch.cuda.is_available()
    if precision == "auto":
        if cuda:
            return resolve_precision("auto")
        units = cpu_units()
        return "bf16" if units.bf16 else "int8" if units.int8 else "fp32"
    if precision == "int8" and cuda:
        raise OpenMedError(f"parameter {parameter}=int8 runs on a CPU (ONNX Runtime); on a GPU use bf16, fp16 or auto")
    if precision == "fp16" and not cuda:
        raise OpenMedError(f"parameter {parameter}=fp16 needs a GPU; on a CPU use bf16, int8, fp32 or auto")
    if precision == "int8" and importlib.util.find_spec("onnxruntime") is None:
        raise OpenMedError(f"parameter {parameter}=int8 predicts through ONNX Runtime, which is not installed: "
                           "pip install '.[int8]', or use bf16, fp32 or auto")
    return precision


def auto_reason() -> str:
    """Why `auto` chooses what it chooses on this machine, in one line (for benchmark records and logs)."""
    if torch.cuda.is_available():
        return f"a GPU ({torch.cuda.get_device_name(0)}): {resolve_precision('auto')}"
    units = cpu_units()
    present = sorted(units.flags) or ["none of " + ", ".join(cpu_units_module.BF16_FLAGS + cpu_units_module.INT8_FLAGS)]
    if units.bf16:
        return f"bf16: this CPU has bf16 units ({', '.join(present)})"
    if units.int8:
        return f"training fp32, prediction int8: this CPU has int8 units but no bf16 units ({', '.join(present)})"
    return f"fp32: this CPU reports {', '.join(present)}"
