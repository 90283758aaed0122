"""What `precision: auto` means on the device a run finds, tested with the device reported by a stub so the
GPU path is covered on a machine without one."""

import pytest
import torch

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import config, devices
from openmed_repro.training import trainer_arguments


def a_gpu(monkeypatch, bf16: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)


def test_auto_is_bf16_on_a_gpu_with_bf16_units(monkeypatch):
    a_gpu(monkeypatch, bf16=True)
    assert devices.resolve_precision("auto") == "bf16"


def test_auto_is_fp16_on_a_gpu_without_bf16(monkeypatch):
    a_gpu(monkeypatch, bf16=False)
    assert devices.resolve_precision("auto") == "fp16"


def test_auto_is_fp32_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_precision("auto") == "fp32"


@pytest.mark.parametrize("asked", ["bf16", "fp16"])
def test_half_precision_without_a_gpu_is_refused_naming_the_parameter(monkeypatch, asked):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(OpenMedError, match=f"parameter precision={asked} needs a GPU"):
        devices.resolve_precision(asked)


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_the_trainer_gets_the_precision_that_auto_resolved_to(monkeypatch, tmp_path, precision):
    monkeypatch.setattr(trainer_arguments, "resolve_precision", lambda asked: precision)
    seen = {}

    def recording_arguments(**arguments):
        seen.update(arguments)

    monkeypatch.setattr(trainer_arguments, "TrainingArguments", recording_arguments)
    paper = config.load_run_config("paper", {"dataset": "ncbi_disease"})
    trainer_arguments.training_arguments(paper, tmp_path)
    assert (seen["bf16"], seen["fp16"]) == (precision == "bf16", precision == "fp16")
    assert paper.precision == "auto" and seen["activation_checkpointing"] is True
