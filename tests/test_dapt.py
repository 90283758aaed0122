"""LoRA DAPT on the smoke profile: calibrated head, perplexity before/after, the adapter hand-off."""

import json
import math

import pytest
import torch
from transformers import Trainer

from openmed_repro.models import backbones
from openmed_repro.infra import atomic_files, job_settings, lifecycle, paths
from openmed_repro.training import dapt
from openmed_repro.models import predictor
from openmed_repro.training import finetune
from openmed_repro.models import token_classifier
from openmed_repro.infra import runs
from openmed_repro.data import saved_predictions
from openmed_repro.errors import OpenMedError

from conftest import write_dapt_text

PLANTED_DEV_SENTENCE = "patients with lung cancer were treated in the study of many cells"


@pytest.fixture(scope="module")
def dapt_dir(tmp_path_factory):
    return write_dapt_text(tmp_path_factory.mktemp("dapt"),
                           {"pubmedqa_pqal.txt": f"Background . {PLANTED_DEV_SENTENCE} . More text follows here ."})


@pytest.fixture(scope="module")
def finished(dapt_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dapt, "evaluation_sentences", lambda data_dir=None: [PLANTED_DEV_SENTENCE])
        return dapt.run(job_settings.load_dapt_config("smoke", {"dapt_dir": str(dapt_dir)}),
                        tmp_path_factory.mktemp("runs") / "dapt")


def test_a_dapt_run_reports_perplexity_before_and_after_with_a_calibrated_head(finished):
    m = finished.metrics
    assert m["perplexity_before"] > 1 and m["perplexity_after"] > 1
    assert m["perplexity_reduction_percent"] == pytest.approx(
        100 * (m["perplexity_before"] - m["perplexity_after"]) / m["perplexity_before"])
    assert m["head"] == f"calibrated: {m['optimizer_steps']} optimizer steps, encoder frozen"
    assert (finished.run_dir / "adapter" / "adapter_config.json").is_file()


def test_a_dapt_run_records_its_perplexity_curve_from_the_calibrated_head_to_the_end(finished):
    m = finished.metrics
    curve = m["perplexity_curve"]
    assert curve[0] == {"step": 0, "held_out_perplexity": m["perplexity_before"]}
    assert curve[-1]["step"] == m["optimizer_steps"]
    assert curve[-1]["held_out_perplexity"] == pytest.approx(m["perplexity_after"], rel=1e-6)
    assert [p["step"] for p in curve] == sorted({p["step"] for p in curve})


def test_the_recorded_held_out_losses_give_back_both_perplexities_and_the_interval_holds_the_reduction(finished):
    m = finished.metrics
    held_out = m["held_out"]
    assert len(held_out["masked_tokens"]) == m["held_out_passages"]
    tokens = sum(held_out["masked_tokens"])
    assert math.exp(sum(held_out["loss_before"]) / tokens) == pytest.approx(m["perplexity_before"], rel=1e-3)
    assert math.exp(sum(held_out["loss_after"]) / tokens) == pytest.approx(m["perplexity_after"], rel=1e-3)
    interval = m["perplexity_reduction_interval"]
    assert interval["percent"] == pytest.approx(m["perplexity_reduction_percent"], abs=0.01)
    assert interval["low"] <= interval["percent"] <= interval["high"]


def test_the_planted_evaluation_sentence_never_reaches_training(finished):
    rows = {row["source"]: row for row in finished.metrics["composition"]}
    assert rows["pubmed"]["evaluation_overlap"] == 1
    assert sum(row["training"] for row in rows.values()) == finished.metrics["training_passages"]


def test_the_merged_adapter_changes_the_backbone_and_fine_tuning_can_start_from_it(finished):
    tiny = backbones.resolve("tiny-random-bert")
    labels = ["O", "B-X", "I-X"]
    plain = backbones.load_token_classifier(tiny, labels, 30522)
    merged = backbones.merge_adapter(backbones.load_token_classifier(tiny, labels, 30522), finished.run_dir / "adapter")
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(plain.state_dict()[query], merged.state_dict()[query])
    assert not any("lora" in name for name in merged.state_dict())


def test_fine_tuning_from_the_dapt_adapter_trains_and_reloads_exactly(finished, synthetic_corpus, tmp_path):
    run_config = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "epochs": 1,
                                                  "dapt_adapter": str(finished.run_dir / "adapter")})
    result = finetune.run(run_config, tmp_path / "from-dapt")
    model, tokenizer, labels = token_classifier.load(tmp_path / "from-dapt" / "model", run_config)
    tokens, _, predicted = saved_predictions.read_predictions(tmp_path / "from-dapt" / "predictions_test.tsv")
    assert predictor.predict(model, tokenizer, tokens, labels, 32, 8) == predicted
    assert result.metrics["trainable_parameters"] < result.metrics["total_parameters"]


def test_a_directory_without_an_adapter_is_refused_naming_the_parameter(tmp_path):
    with pytest.raises(OpenMedError, match="parameter dapt_adapter: .* holds no adapter_config.json"):
        backbones.merge_adapter(torch.nn.Linear(1, 1), tmp_path)


def test_a_finished_dapt_run_is_read_back_not_retrained(finished, dapt_dir, monkeypatch):
    monkeypatch.setattr(dapt, "build_corpus", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = dapt.run(job_settings.load_dapt_config("smoke", {"dapt_dir": str(dapt_dir)}), finished.run_dir)
    assert again.reused and again.metrics == finished.metrics


def test_a_dapt_directory_of_other_parameters_is_refused(finished, dapt_dir, monkeypatch):
    monkeypatch.setattr(dapt, "build_corpus", lambda *a, **k: pytest.fail("trained in another run's directory"))
    with pytest.raises(OpenMedError, match=r"holds a run with other parameters \(learning_rate\)"):
        dapt.run(job_settings.load_dapt_config("smoke", {"dapt_dir": str(dapt_dir), "learning_rate": 0.5}), finished.run_dir)


def test_fine_tuning_and_dapt_trainers_share_precision_cpu_checkpointing_seeds_and_reporting(synthetic_corpus,
                                                                                             tmp_path):
    run_config = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "gradient_checkpointing": True,
                                                  "seed": 5})
    dapt_config = job_settings.load_dapt_config("smoke", {"gradient_checkpointing": True, "seed": 5})
    tuning = finetune._training_arguments(run_config, tmp_path, lifecycle.resolve(run_config).precision)
    adapting = dapt._arguments(dapt_config, tmp_path, dapt_config.learning_rate, lifecycle.resolve(dapt_config).precision)
    shared = ("use_cpu", "report_to", "seed", "data_seed", "optim", "save_total_limit", "bf16", "fp16",
              "activation_checkpointing", "activation_checkpointing_kwargs", "dataloader_num_workers",
              "logging_strategy", "disable_tqdm")
    assert {k: getattr(tuning, k) for k in shared} == {k: getattr(adapting, k) for k in shared}
    assert tuning.seed == 5 and tuning.activation_checkpointing and tuning.report_to in ("none", [])
    assert (tuning.eval_strategy, tuning.save_strategy, tuning.load_best_model_at_end) == ("epoch", "epoch", True)
    assert (adapting.save_strategy, adapting.save_steps, adapting.per_device_eval_batch_size) == \
        ("steps", dapt_config.save_steps, 8)   # DAPT never evaluates in the Trainer: the stock batch size stays


def ablation_cell(root, name, profile, method, predicted, dapt):
    """A finished fine-tuning run of the ablation on ncbi_disease, seed 42: its test predictions, metrics and config."""
    from openmed_repro.data.iob import Sentence

    sentences = [Sentence(["a", "b", "c"], ["B-X", "O", "B-X"])] * 60
    directory = root / name
    saved_predictions.write_predictions(directory / "predictions_test.tsv", sentences, [predicted] * 60)
    settings = job_settings.load_run_config(profile, {"dataset": "ncbi_disease",
                                                "dapt_adapter": "results/dapt/x/adapter" if dapt else None})
    atomic_files.write_json(directory / "config.json", settings.to_dict())
    atomic_files.write_json(directory / "metrics.json", {"dataset": "ncbi_disease", "method": method, "profile": profile,
                                                 "seed": 42, "test": {"strict": {"f1": 0.5}}})


def test_the_dapt_notebook_runs_on_the_smoke_profile_and_shows_the_ablation_it_finds(dapt_dir, tmp_path):
    import papermill

    finetuned = tmp_path / "finetuned"
    for method, profile in (("lora", "cpu"), ("full", "cpu-fast")):
        ablation_cell(finetuned, f"{method}-plain", profile, method, ["B-X", "O", "O"], dapt=False)
        ablation_cell(finetuned, f"{method}-dapt", profile, method, ["B-X", "O", "B-X"], dapt=True)
    notebook = paths.PROJECT_ROOT / "notebooks" / "dapt.ipynb"
    executed = papermill.execute_notebook(str(notebook), str(tmp_path / "dapt.ipynb"), kernel_name="python3",
                                          parameters={"profile": "smoke", "dapt_dir": str(dapt_dir),
                                                      "output_dir": str(tmp_path / "run"),
                                                      "runs_dir": str(finetuned)},
                                          cwd=str(tmp_path), progress_bar=False)
    assert (tmp_path / "run" / "metrics.json").is_file()
    outputs = "".join(str(o) for cell in executed.cells for o in cell.get("outputs", []))
    assert outputs.count("image/png") == 4 and "profile **smoke**" in outputs
    assert "DAPT gain" in outputs and "with DAPT" in outputs and "33.33" in outputs   # 66.67 -> 100.00 a seed
    assert "95% bootstrap interval over" in outputs


def test_the_dapt_notebook_says_how_to_get_the_ablation_before_it_exists(finished, dapt_dir, tmp_path):
    import papermill

    executed = papermill.execute_notebook(str(paths.PROJECT_ROOT / "notebooks" / "dapt.ipynb"),
                                          str(tmp_path / "dapt.ipynb"), kernel_name="python3",
                                          parameters={"profile": "smoke", "dapt_dir": str(dapt_dir),
                                                      "output_dir": str(finished.run_dir),
                                                      "runs_dir": str(tmp_path / "none")},
                                          cwd=str(tmp_path), progress_bar=False)
    outputs = "".join(str(o) for cell in executed.cells for o in cell.get("outputs", []))
    assert "run `make ablation`" in outputs and outputs.count("image/png") == 3


KILL_AT_FIRST_DAPT_CHECKPOINT = """
import os, signal, sys
from transformers import Trainer
from openmed_repro.infra import job_settings
from openmed_repro.training import dapt

save = Trainer._save_checkpoint
def save_then_die(self, *args, **kwargs):
    save(self, *args, **kwargs)
    if "checkpoints" in self.args.output_dir.split(os.sep)[-1]:   # the LoRA stage, after calibration
        os.kill(os.getpid(), signal.SIGKILL)
Trainer._save_checkpoint = save_then_die
dapt.evaluation_sentences = lambda data_dir=None: []
dapt.run(job_settings.load_dapt_config("smoke", {"dapt_dir": sys.argv[1]}), sys.argv[2])
"""


def test_an_interrupted_dapt_run_resumes_to_the_same_perplexity(dapt_dir, tmp_path, monkeypatch):
    import subprocess
    import sys

    run_dir = tmp_path / "interrupted"
    killed = subprocess.run([sys.executable, "-c", KILL_AT_FIRST_DAPT_CHECKPOINT, str(dapt_dir), str(run_dir)],
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (run_dir / "calibrated_head.safetensors").is_file() and not (run_dir / "metrics.json").exists()

    monkeypatch.setattr(dapt, "evaluation_sentences", lambda data_dir=None: [])
    dapt_config = job_settings.load_dapt_config("smoke", {"dapt_dir": str(dapt_dir)})
    steps = []
    training_step = Trainer.training_step
    monkeypatch.setattr(Trainer, "training_step", lambda self, *a, **k: steps.append(1) or training_step(self, *a, **k))
    resumed = dapt.run(dapt_config, run_dir)
    resumed_steps, steps[:] = len(steps), []
    uninterrupted = dapt.run(dapt_config, tmp_path / "uninterrupted")
    assert resumed_steps < len(steps)  # the calibration was reused and the LoRA stage continued, not restarted
    exact = ("perplexity_before", "perplexity_after", "perplexity_curve", "optimizer_steps", "training_passages")
    assert {k: resumed.metrics[k] for k in exact} == {k: uninterrupted.metrics[k] for k in exact}


def test_a_sweep_from_the_dapt_adapter_names_its_runs_apart_and_records_where_they_started(finished, synthetic_corpus,
                                                                                            tmp_path):
    from openmed_repro.training import sweep

    adapter = str(finished.run_dir / "adapter")
    table = sweep.run_all("smoke", {"epochs": 1, "dapt_adapter": adapter}, tmp_path / "table", [str(synthetic_corpus)],
                          runs_root=tmp_path / "finetune")
    [run_dir] = (tmp_path / "finetune").iterdir()
    assert run_dir.name == "synthetic-tiny-random-bert-smoke-lora-dapt-seed42" and len(table) == 1
    assert runs.started_from_dapt(run_dir)
    assert json.loads((run_dir / "config.json").read_text())["dapt_adapter"] == adapter


def test_attention_dropout_can_be_set_for_dapt_and_the_calibration_sees_the_encoder_without_dropout():
    backbone = backbones.resolve("tiny-random-bert")
    model, _ = backbones.load_masked_lm(backbone, 120, attention_dropout=0.0)
    assert model.config.attention_probs_dropout_prob == 0.0
    assert backbones.load_masked_lm(backbone, 120)[0].config.attention_probs_dropout_prob > 0
    encoder = model.bert
    before = [m.p for m in encoder.modules() if isinstance(m, torch.nn.Dropout)]
    with dapt._no_dropout(encoder):
        assert all(m.p == 0.0 for m in encoder.modules() if isinstance(m, torch.nn.Dropout))
    assert [m.p for m in encoder.modules() if isinstance(m, torch.nn.Dropout)] == before and any(before)
