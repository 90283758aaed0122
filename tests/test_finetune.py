"""The fine-tuning chapter's library on the smoke profile (tiny random BERT, a synthetic corpus)."""

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap

import pytest
import safetensors.torch
from peft import PeftModel
from transformers import Trainer

from openmed_repro.data import corpora, encoding
from openmed_repro.infra import atomic_files, job_settings
from openmed_repro.models import backbones, predictor
from openmed_repro.training import finetune
from openmed_repro.models import token_classifier
from openmed_repro.infra import footprint
from openmed_repro.evaluation import metrics
from openmed_repro.infra import runs
from openmed_repro.errors import OpenMedError
from openmed_repro.data import saved_predictions


def smoke(corpus_dir, **overrides) -> job_settings.RunConfig:
    return job_settings.load_run_config("smoke", {"dataset": str(corpus_dir), **overrides})


def without_timings(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items()
            if k not in {"train_seconds", "train_tokens_per_second", "train_attempts"}}


@pytest.fixture(scope="module")
def finished(synthetic_corpus, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "lora"
    return finetune.run(smoke(synthetic_corpus), run_dir)


def test_a_run_writes_every_artefact_and_metrics_last(finished):
    names = {p.name for p in finished.run_dir.iterdir()}
    assert {"config.json", "model", "predictions_devel.tsv", "predictions_test.tsv", "log_history.json",
            "provenance.json", "metrics.json"} <= names
    metrics = finished.metrics
    for split in ("devel", "test"):
        assert {"strict", "default", "per_type", "errors"} <= metrics[split].keys()
    assert 0 < metrics["trainable_parameters"] < metrics["total_parameters"]
    assert metrics["model_mb"] > 0 and metrics["train_seconds"] > 0
    provenance = json.loads((finished.run_dir / "provenance.json").read_text())
    assert provenance["seed"] == 42 and provenance["packages"]["transformers"]
    assert all(len(f["sha256"]) == 64 for f in provenance["data"]["files"].values())


def test_every_file_of_a_run_has_an_ordinary_new_files_permissions(finished):
    """safetensors writes weights through an owner-only temporary (0600); a run's files follow the umask."""
    modes = {path.relative_to(finished.run_dir).as_posix(): oct(path.stat().st_mode & 0o777)
             for path in finished.run_dir.rglob("*") if path.is_file()}
    assert "model/adapter_model.safetensors" in modes
    assert {name: mode for name, mode in modes.items() if mode != oct(0o666 & ~atomic_files.umask())} == {}


def test_a_run_records_the_energy_and_emissions_of_its_training(finished):
    [record] = footprint.read(finished.run_dir)
    assert record["chapter"] == "finetune" and record["outcome"] == "finished"
    assert record["energy_kwh"] > 0 and record["emissions_kg"] > 0
    rounding = 0.05  # metrics.json keeps train_seconds to 0.1 s
    assert record["duration_s"] >= finished.metrics["train_seconds"] - rounding


def test_training_loss_falls_and_dev_f1_is_logged_every_epoch(finished):
    losses = [e["loss"] for e in finished.log_history if "loss" in e]
    assert losses[-1] < losses[0]
    assert [e["epoch"] for e in finished.log_history if "eval_strict_f1" in e] == [1.0, 2.0]


def test_the_dev_f1_that_selected_the_model_is_the_dev_f1_of_its_saved_predictions(finished):
    """Catches any mismatch between the Trainer's evaluation order and the windows it is scored against."""
    best = max(e["eval_strict_f1"] for e in finished.log_history if "eval_strict_f1" in e)
    _, gold, predicted = saved_predictions.read_predictions(finished.run_dir / "predictions_devel.tsv")
    assert metrics.score(gold, predicted).strict.f1 == pytest.approx(best)
    assert best > 0


def test_predictions_are_one_tag_per_word_beside_the_gold_tags(finished, synthetic_corpus):
    tokens, gold, predicted = saved_predictions.read_predictions(finished.run_dir / "predictions_test.tsv")
    assert len(tokens) == 24
    assert all(len(t) == len(g) == len(p) for t, g, p in zip(tokens, gold, predicted))


def test_the_saved_adapter_reproduces_the_predictions_exactly(finished, synthetic_corpus):
    run_config = smoke(synthetic_corpus)
    model, tokenizer, labels = token_classifier.load(finished.run_dir / "model", run_config)
    tokens, _, predicted = saved_predictions.read_predictions(finished.run_dir / "predictions_test.tsv")
    again = predictor.predict(model, tokenizer, tokens, labels, run_config.max_length, run_config.overlap)
    assert again == predicted


def cut(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def emptied(path):
    path.write_bytes(b"")


def removed(path):
    path.unlink()


def without_head(path):
    tensors = safetensors.torch.load_file(path)
    safetensors.torch.save_file({k: v for k, v in tensors.items() if "classifier" not in k}, path)


def damaged_copy(model_dir, tmp_path, name, damage):
    """A copy of a saved model directory with one file damaged as an interrupted copy or a full disk leaves it."""
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    damage(copy / name)
    return copy


@pytest.mark.parametrize("method, name, damage, complaint", [
    ("lora", "adapter_model.safetensors", emptied, "damaged weights"),
    ("lora", "adapter_model.safetensors", cut, "damaged weights"),
    ("lora", "adapter_model.safetensors", removed, "missing"),
    ("lora", "adapter_model.safetensors", without_head, "no classification head"),
    ("lora", "adapter_config.json", cut, "unreadable JSON"),
    ("lora", "labels.json", emptied, "unreadable JSON"),
    ("lora", "tokenizer.json", cut, "unreadable JSON"),
    ("full", "model.safetensors", cut, "damaged weights"),
    ("full", "model.safetensors", without_head, "no classification head"),
    ("full", "config.json", cut, "unreadable JSON"),
])
def test_a_damaged_saved_model_is_refused_in_one_line_naming_the_file(request, synthetic_corpus, tmp_path, method,
                                                                      name, damage, complaint):
    saved = request.getfixturevalue("finished" if method == "lora" else "full")
    directory = damaged_copy(saved.run_dir / "model", tmp_path, name, damage)
    with pytest.raises(OpenMedError, match=complaint) as refused:
        token_classifier.load(directory, smoke(synthetic_corpus, method=method))
    assert str(refused.value).startswith(f"{directory / name}: ") and "\n" not in str(refused.value)


def test_prediction_batches_hold_a_token_budget_and_their_size_does_not_change_a_tag(finished, synthetic_corpus):
    lengths = [30, 5, 200, 12, 12, 64, 5000, 31]
    batches = predictor.length_batches(lengths, batch_size=3, max_tokens=64)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert [[lengths[i] for i in batch] for batch in batches] == [[5, 12, 12], [30, 31], [64], [200], [5000]]
    run_config = smoke(synthetic_corpus)
    model, tokenizer, labels = token_classifier.load(finished.run_dir / "model", run_config)
    tokens, _, predicted = saved_predictions.read_predictions(finished.run_dir / "predictions_test.tsv")
    for batch_size, max_batch_tokens in ((1, 10**6), (64, 10**6), (64, 32)):
        assert predictor.predict(model, tokenizer, tokens, labels, run_config.max_length, run_config.overlap,
                                batch_size, max_batch_tokens) == predicted


def test_the_merged_inference_model_predicts_the_same_tags_and_leaves_the_lora_model_as_it_was(finished,
                                                                                              synthetic_corpus):
    run_config = smoke(synthetic_corpus)
    model, tokenizer, labels = token_classifier.load(finished.run_dir / "model", run_config)
    tokens, _, predicted = saved_predictions.read_predictions(finished.run_dir / "predictions_test.tsv")
    merged = predictor.inference_model(model)
    assert isinstance(model, PeftModel) and not isinstance(merged, PeftModel)
    assert predictor.predict(merged, tokenizer, tokens, labels, run_config.max_length, run_config.overlap) == predicted
    tags, scores = predictor.predict_with_scores(model, tokenizer, tokens, labels, run_config.max_length,
                                                 run_config.overlap, progress=False)
    assert tags == predicted and all(1 / len(labels) < p <= 1 for sentence in scores for p in sentence)


def test_the_same_seed_gives_identical_metrics(finished, synthetic_corpus, tmp_path):
    again = finetune.run(smoke(synthetic_corpus), tmp_path / "again")
    assert without_timings(again.metrics) == without_timings(finished.metrics)
    assert (tmp_path / "again" / "predictions_test.tsv").read_text() == \
        (finished.run_dir / "predictions_test.tsv").read_text()


def test_a_complete_run_directory_is_read_back_not_retrained(finished, synthetic_corpus, monkeypatch):
    monkeypatch.setattr(finetune, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    reread = finetune.run(smoke(synthetic_corpus), finished.run_dir)
    assert reread.reused and reread.metrics == finished.metrics and reread.log_history == finished.log_history


def test_a_run_directory_of_other_parameters_is_refused(finished, synthetic_corpus):
    with pytest.raises(OpenMedError, match=r"holds a run with other parameters \(learning_rate\)"):
        finetune.run(smoke(synthetic_corpus, learning_rate=0.01), finished.run_dir)


@pytest.fixture(scope="module")
def full(synthetic_corpus, tmp_path_factory):
    return finetune.run(smoke(synthetic_corpus, method="full", epochs=1), tmp_path_factory.mktemp("runs") / "full")


def test_full_fine_tuning_trains_every_parameter_and_reloads(full, synthetic_corpus):
    assert full.metrics["trainable_parameters"] == full.metrics["total_parameters"]
    model, tokenizer, labels = token_classifier.load(full.run_dir / "model", smoke(synthetic_corpus, method="full"))
    tokens, _, predicted = saved_predictions.read_predictions(full.run_dir / "predictions_test.tsv")
    assert predictor.predict(model, tokenizer, tokens, labels, 32, 8) == predicted


def test_full_fine_tuning_can_keep_the_word_embeddings_fixed(synthetic_corpus, tmp_path):
    settings = smoke(synthetic_corpus, method="full", epochs=1, freeze_word_embeddings=True)
    model = token_classifier.build(settings, backbones.resolve(settings.backbone), ["O", "B-D", "I-D"],
                                   backbones.load_tokenizer(backbones.resolve(settings.backbone)))
    embeddings = model.get_input_embeddings().weight
    assert not embeddings.requires_grad
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in model.parameters()) - embeddings.numel()




KILL_AFTER_FIRST_CHECKPOINT = textwrap.dedent("""
    import os, signal, sys
    from transformers import Trainer
    from openmed_repro.infra import job_settings
    from openmed_repro.training import finetune

    save = Trainer._save_checkpoint
    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)   # as abrupt as a power cut or an OOM kill
    Trainer._save_checkpoint = save_then_die
    run_config = job_settings.load_run_config("smoke", {"dataset": sys.argv[1], "epochs": int(sys.argv[3])})
    finetune.run(run_config, sys.argv[2])
""")


def test_an_interrupted_run_looks_incomplete_and_resumes_to_the_same_metrics(synthetic_corpus, tmp_path,
                                                                             monkeypatch):
    run_dir = tmp_path / "interrupted"
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_CHECKPOINT, str(synthetic_corpus), str(run_dir),
                             "3"], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not runs.is_complete(run_dir)
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["checkpoint-6"]

    run_config = smoke(synthetic_corpus, epochs=3)
    steps = []
    training_step = Trainer.training_step
    monkeypatch.setattr(Trainer, "training_step", lambda self, *a, **k: steps.append(1) or training_step(self, *a, **k))
    resumed = finetune.run(run_config, run_dir)
    assert len(steps) == 12  # epochs 2 and 3 only: 6 steps of batch 8 over 48 sentences each
    uninterrupted = finetune.run(run_config, tmp_path / "uninterrupted")
    assert not resumed.reused
    assert [e["epoch"] for e in resumed.log_history if "eval_strict_f1" in e] == [1.0, 2.0, 3.0]
    assert without_timings(resumed.metrics) == without_timings(uninterrupted.metrics)
    assert resumed.metrics["train_attempts"] == 2 and uninterrupted.metrics["train_attempts"] == 1
    assert [r["outcome"] for r in footprint.read(run_dir)] == ["unfinished", "finished"]


def test_a_run_killed_while_writing_its_second_checkpoint_resumes_from_the_first(synthetic_corpus, tmp_path, capsys):
    """The kill lands after the adapter of checkpoint-12 is written and before its trainer_state.json: the same
    command moves it aside in one line and resumes from checkpoint-6, to the uninterrupted run's figures."""
    run_dir = tmp_path / "interrupted"
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_CHECKPOINT, str(synthetic_corpus), str(run_dir),
                             "3"], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    half_written = run_dir / "checkpoints" / "checkpoint-12"
    shutil.copytree(run_dir / "checkpoints" / "checkpoint-6", half_written)
    (half_written / "trainer_state.json").unlink()
    resumed = finetune.run(smoke(synthetic_corpus, epochs=3), run_dir)
    assert "checkpoint-12: incomplete (no trainer_state.json), moved aside" in capsys.readouterr().out
    uninterrupted = finetune.run(smoke(synthetic_corpus, epochs=3), tmp_path / "uninterrupted")
    assert without_timings(resumed.metrics) == without_timings(uninterrupted.metrics)


def test_a_run_killed_after_its_last_checkpoint_still_times_its_training_when_resumed(finished, synthetic_corpus,
                                                                                      tmp_path):
    """The resume has nothing left to train: its timing and footprint still count the attempt that trained,
    and tokens per second divide the tokens trained by that time, not by the resume's half second."""
    run_dir = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_FIRST_CHECKPOINT, str(synthetic_corpus), str(run_dir),
                             "1"], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    [unfinished] = footprint.read(run_dir)
    assert unfinished["outcome"] == "unfinished" and unfinished["duration_s"] > 0
    resumed = finetune.run(smoke(synthetic_corpus, epochs=1), run_dir).metrics
    first, last = footprint.read(run_dir)
    assert first == unfinished and last["outcome"] == "finished"
    assert resumed["train_attempts"] == 2
    assert resumed["train_seconds"] >= unfinished["duration_s"] - 0.1
    assert resumed["train_tokens"] * 2 == finished.metrics["train_tokens"] > 0   # one epoch of the two
    rounding = 0.05 / resumed["train_seconds"]   # metrics.json keeps train_seconds to 0.1 s
    assert resumed["train_tokens_per_second"] == pytest.approx(resumed["train_tokens"] / resumed["train_seconds"],
                                                               rel=2 * rounding)


def test_a_small_split_passes_over_itself_until_the_run_takes_the_minimum_optimizer_steps(synthetic_corpus):
    floor = job_settings.load_run_config("cpu", {"dataset": "ncbi_disease"})
    assert floor.min_optimizer_steps == 1000
    # CLL: 120 sentences in batches of 16; 8 epochs of 125 steps need 2,000 windows an epoch: 17 passes.
    assert finetune.passes_per_epoch(120, floor) == 17
    # A corpus of 3,033 sentences already takes 1,520 steps: unchanged.
    assert finetune.passes_per_epoch(3033, floor) == 1
    capped = dataclasses.replace(floor, max_train_sentences=120)
    assert finetune.passes_per_epoch(120, capped) == 1
    assert finetune.passes_per_epoch(120, dataclasses.replace(floor, min_optimizer_steps=0)) == 1


def test_the_step_floor_is_what_a_small_corpus_trains_with(synthetic_corpus, tmp_path):
    settings = smoke(synthetic_corpus, epochs=1, min_optimizer_steps=30, max_train_sentences=None)
    result = finetune.run(settings, tmp_path / "floor")
    passes = finetune.passes_per_epoch(result.metrics["sentences"]["train"], settings)
    assert passes > 1
    assert result.metrics["train_tokens"] == passes * window_tokens(settings)   # every pass was trained
    log_history = json.loads((tmp_path / "floor" / "log_history.json").read_text())
    assert max(entry["step"] for entry in log_history) >= 30


def window_tokens(run_config: job_settings.RunConfig) -> int:
    """Sub-words (special tokens included, no padding) of one pass over the training windows."""
    corpus = corpora.load(run_config.dataset)
    tokenizer = backbones.load_tokenizer(backbones.resolve(run_config.backbone))
    windows = encoding.encode([s.tokens for s in finetune.subset(corpus.train, run_config.max_train_sentences)],
                              tokenizer, max_length=run_config.max_length, overlap=run_config.overlap)
    return sum(len(w.input_ids) for w in windows)


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_a_finished_run_whose_weights_were_damaged_is_refused_on_read_back_naming_the_file(finished, synthetic_corpus,
                                                                                          tmp_path, damage):
    copy = tmp_path / "run"
    shutil.copytree(finished.run_dir, copy)
    weights = copy / runs.MODEL_DIR / "adapter_model.safetensors"
    assert atomic_files.read_json(copy / runs.METRICS)[runs.FILES_SHA256]["model/adapter_model.safetensors"]
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        weights.unlink()
    with pytest.raises(OpenMedError, match="delete .* and rerun the same command") as refused:
        finetune.run(smoke(synthetic_corpus), copy)
    assert str(refused.value).startswith(f"{weights}: ") and "\n" not in str(refused.value)
    with pytest.raises(OpenMedError, match=str(weights)):
        token_classifier.load(copy / runs.MODEL_DIR, smoke(synthetic_corpus))
