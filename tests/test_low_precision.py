"""Prediction below fp32 (bf16 weights, int8 through ONNX Runtime) for annotation and, when asked, evaluation:
the same entities as fp32 on a trained run, fp32 unless asked, and `auto` choosing by the CPU's units (a stub)."""

import json
import sys

import pytest
import torch

from openmed_repro import cli
from openmed_repro.annotation import annotate
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, cpu_units, devices, job_settings, runs
from openmed_repro.models import backbones, low_precision
from openmed_repro.training import finetune
from openmed_repro.data import saved_predictions


@pytest.fixture(scope="module")
def run_dir(synthetic_corpus, tmp_path_factory):
    directory = tmp_path_factory.mktemp("low-precision") / "run"
    finetune.run(job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "epochs": 4}), directory)
    return directory


def documents_of_test_split(run_dir) -> list[annotate.Document]:
    tokens, _, _ = saved_predictions.read_predictions(run_dir / "predictions_test.tsv")
    return [annotate.Document(str(i), " ".join(words), i) for i, words in enumerate(tokens)]


def spans(found) -> list[list[tuple]]:
    return [[(e.start, e.end, e.type) for e in entities] for entities in found]


def tiny_model():
    return backbones.load_token_classifier(backbones.resolve("tiny-random-bert"), ["O", "B-X", "I-X"], 60).eval()


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_a_low_precision_annotator_finds_the_entities_fp32_finds(run_dir, precision):
    documents = documents_of_test_split(run_dir)
    exact = spans(annotate.Annotator(run_dir).annotate(documents))
    fast = annotate.Annotator(run_dir, precision=precision)
    assert fast.precision == precision
    same = sum(a == b for a, b in zip(exact, spans(fast.annotate(documents))))
    assert sum(map(len, exact)) > len(documents) / 2 and same >= 0.9 * len(documents)


def test_bf16_weights_go_into_a_copy_and_the_original_stays_fp32():
    model = tiny_model()
    half = low_precision.prepare(model, "bf16")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert low_precision.prepare(model, "fp32") is model


def test_the_int8_model_answers_fp32_logits_near_fp32s_for_any_batch_and_length():
    model = tiny_model()
    int8 = low_precision.prepare(model, "int8")
    for batch, length in ((1, 5), (3, 17)):
        ids = torch.randint(5, 60, (batch, length))
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[0, length - 2:] = 0
        with torch.inference_mode():
            exact, quantized = model(input_ids=ids, attention_mask=mask).logits, int8(ids, mask).logits
        assert quantized.dtype == torch.float32 and quantized.shape == exact.shape
        assert torch.allclose(quantized, exact, atol=0.05 * exact.abs().max().item())


def test_int8_without_onnx_runtime_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(OpenMedError, match=r"precision int8 needs ONNX Runtime: pip install '.\[int8\]'"):
        low_precision.prepare(tiny_model(), "int8")


def test_annotation_is_fp32_unless_asked_and_auto_takes_the_cpus_bf16_units(run_dir, tmp_path, capsys,
                                                                           monkeypatch):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "text": "Lung cancer and asthma in patients."}) + "\n")
    assert cli.main(["annotate", "--run", str(run_dir), str(source), str(tmp_path / "exact.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["precision"] == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_units", lambda: cpu_units.CpuUnits(frozenset({"amx_bf16", "amx_int8"})))
    assert cli.main(["annotate", "--run", str(run_dir), "--precision", "auto", str(source),
                     str(tmp_path / "fast.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["precision"] == "bf16"


def test_an_evaluation_asked_in_bf16_says_so_in_its_metrics_and_the_default_stays_fp32(synthetic_corpus, run_dir,
                                                                                     tmp_path):
    assert "eval_precision" not in atomic_files.read_json(run_dir / runs.METRICS)
    assert atomic_files.read_json(run_dir / runs.CONFIG)["eval_precision"] is None
    asked = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "epochs": 4, "eval_precision": "bf16"})
    result = finetune.run(asked, tmp_path / "bf16")
    assert result.metrics["eval_precision"] == "bf16"
    exact = atomic_files.read_json(run_dir / runs.METRICS)["test"]["strict"]["f1"]
    assert abs(result.metrics["test"]["strict"]["f1"] - exact) < 0.1


def test_an_unknown_evaluation_precision_is_refused_naming_the_valid_ones(synthetic_corpus):
    with pytest.raises(OpenMedError, match="eval_precision='int4'; valid: auto, fp32, bf16, fp16, int8"):
        job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "eval_precision": "int4"})
