"""What `precision: auto` means on the device a run finds, for training and for prediction, tested with the
device and the CPU's units reported by a stub, so that every path is covered on any machine."""

import pytest
import torch
from transformers import Trainer, default_data_collator

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import cpu_units, devices, job_settings, lifecycle
from openmed_repro.models import backbones
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


def a_cpu(monkeypatch, *flags: str) -> None:
    """No GPU, and a CPU that reports these low-precision flags."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_units", lambda: cpu_units.CpuUnits(frozenset(flags)))


@pytest.mark.parametrize("flag", ["amx_bf16", "avx512_bf16"])
def test_auto_trains_in_bf16_on_a_cpu_with_bf16_units(monkeypatch, flag):
    a_cpu(monkeypatch, flag, "avx512_vnni")
    assert devices.resolve_precision("auto") == "bf16"


@pytest.mark.parametrize("flags", [(), ("avx512_vnni",), ("avx_vnni", "amx_int8")])
def test_auto_trains_in_fp32_on_a_cpu_without_bf16_units(monkeypatch, flags):
    a_cpu(monkeypatch, *flags)
    assert devices.resolve_precision("auto") == "fp32"


@pytest.mark.parametrize("asked", ["fp32", "bf16"])
def test_an_explicit_training_precision_is_kept_on_any_cpu(monkeypatch, asked):
    a_cpu(monkeypatch)
    assert devices.resolve_precision(asked) == asked
    a_cpu(monkeypatch, "amx_bf16")
    assert devices.resolve_precision(asked) == asked


def test_fp16_without_a_gpu_is_refused_naming_the_parameter(monkeypatch):
    a_cpu(monkeypatch, "amx_bf16")
    with pytest.raises(OpenMedError, match="parameter precision=fp16 needs a GPU"):
        devices.resolve_precision("fp16")


@pytest.mark.parametrize("flags, chosen", [
    (("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni"), "bf16"),   # a Xeon with AMX
    (("avx512_bf16", "avx512_vnni"), "bf16"),
    (("avx512_vnni",), "int8"),                                        # VNNI without bf16 units
    (("avx_vnni",), "int8"),
    ((), "fp32"),                                                      # AVX2 only
])
def test_auto_predicts_in_the_fastest_precision_the_cpu_has_units_for(monkeypatch, flags, chosen):
    a_cpu(monkeypatch, *flags)
    assert devices.resolve_inference_precision("auto") == chosen


@pytest.mark.parametrize("asked", ["fp32", "bf16", "int8"])
def test_an_explicit_prediction_precision_is_kept_on_a_cpu(monkeypatch, asked):
    a_cpu(monkeypatch)
    assert devices.resolve_inference_precision(asked) == asked


def test_prediction_on_a_gpu_follows_trainings_auto_and_refuses_int8(monkeypatch):
    a_gpu(monkeypatch, bf16=False)
    assert devices.resolve_inference_precision("auto") == "fp16"
    with pytest.raises(OpenMedError, match="parameter precision=int8 runs on a CPU"):
        devices.resolve_inference_precision("int8")


def test_an_unknown_prediction_precision_is_refused_listing_the_valid_ones(monkeypatch):
    with pytest.raises(OpenMedError, match="precision='int4'; valid: auto, fp32, bf16, fp16, int8"):
        devices.resolve_inference_precision("int4")


def test_the_units_are_read_from_the_cpus_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse avx2 avx512f avx512_vnni "
                       "amx_tile amx_int8\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    units = cpu_units.detect(cpuinfo)
    assert units.flags == {"avx512_vnni", "amx_int8"} and units.int8 and not units.bf16
    assert cpu_units.detect(tmp_path / "absent") == cpu_units.CpuUnits()


def test_the_machine_record_names_the_cpu_and_each_low_precision_flag(monkeypatch):
    a_cpu(monkeypatch, "avx512_bf16", "avx512_vnni")
    recorded = devices.machine()
    assert recorded["cpu"] and recorded["gpu"] is None
    assert recorded["cpu_units"] == {"amx_bf16": False, "avx512_bf16": True, "amx_int8": False,
                                     "avx512_vnni": True, "avx_vnni": False, "bf16_units": True, "int8_units": True}


def test_auto_says_why_it_chose_what_it_chose(monkeypatch):
    a_cpu(monkeypatch, "avx512_vnni")
    assert devices.auto_reason() == ("training fp32, prediction int8: this CPU has int8 units but no bf16 units "
                                     "(avx512_vnni)")
    a_cpu(monkeypatch)
    assert devices.auto_reason().startswith("fp32: this CPU reports none of amx_bf16, avx512_bf16")


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_the_trainer_gets_the_precision_that_auto_resolved_to(monkeypatch, tmp_path, precision):
    monkeypatch.setattr(lifecycle, "resolve_precision", lambda asked: precision)
    seen = {}

    def recording_arguments(**arguments):
        seen.update(arguments)

    monkeypatch.setattr(trainer_arguments, "TrainingArguments", recording_arguments)
    paper = job_settings.load_run_config("paper", {"dataset": "ncbi_disease"})
    trainer_arguments.training_arguments(paper, tmp_path, lifecycle.resolve(paper).precision)
    assert (seen["bf16"], seen["fp16"]) == (precision == "bf16", precision == "fp16")
    assert paper.precision == "auto" and seen["activation_checkpointing"] is True


def test_bf16_training_on_a_cpu_runs_the_model_under_bf16_autocast(monkeypatch, tmp_path):
    """TrainingArguments(bf16=True, use_cpu=True): the Trainer (through accelerate) wraps the forward pass in
    torch.autocast("cpu", torch.bfloat16); a layer inside the model sees it."""
    a_cpu(monkeypatch, "amx_bf16")
    settings = job_settings.load_run_config("smoke", {"dataset": "ncbi_disease", "precision": "auto"})
    arguments = trainer_arguments.training_arguments(settings, tmp_path, lifecycle.resolve(settings).precision,
                                                     max_steps=2, save_strategy="no",
                                                     learning_rate=1e-3)
    model = backbones.load_token_classifier(backbones.resolve("tiny-random-bert"), ["O", "B-X"], vocab_size=50)
    seen = []
    model.classifier.register_forward_hook(
        lambda module, inputs, output: seen.append((torch.is_autocast_enabled("cpu"), output.dtype)))
    examples = [{"input_ids": [2, 5, 6, 3], "labels": [0, 1, 0, 0]}] * 4
    Trainer(model=model, args=arguments, train_dataset=examples, data_collator=default_data_collator).train()
    assert arguments.bf16 and arguments.use_cpu
    assert seen == [(True, torch.bfloat16)] * 2
