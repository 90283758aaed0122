"""The BiLSTM-CNN-Char baseline on the smoke profile and a synthetic corpus."""

import dataclasses
import json
import shutil
import zipfile

import pytest
import torch

from conftest import write_dapt_text
from openmed_repro.models import bilstm_crf
from openmed_repro.training import baseline, step_floor, word_vectors
from openmed_repro.data import corpora
from openmed_repro.training.word_vectors import Word2VecSettings
from openmed_repro.infra import job_settings, layout, paths
from openmed_repro.evaluation import metrics
from openmed_repro.infra import runs
from openmed_repro.errors import OpenMedError
from openmed_repro.data import saved_predictions


def smoke(corpus_dir, **overrides) -> job_settings.BaselineConfig:
    return job_settings.load_baseline_config("smoke", {"dataset": str(corpus_dir), **overrides})


@pytest.fixture(scope="module")
def finished(synthetic_corpus, tmp_path_factory):
    return baseline.run(smoke(synthetic_corpus), tmp_path_factory.mktemp("baseline") / "crf")


def test_the_baseline_beats_a_majority_class_tagger_on_the_smoke_corpus(finished, synthetic_corpus):
    test = finished.metrics["test"]["strict"]["f1"]
    assert finished.metrics["majority_test_strict_f1"] == 0.0   # all-O finds no entity
    assert test > 0.5


def test_a_baseline_run_has_the_fine_tuning_layout_and_metrics_last(finished):
    names = {p.name for p in finished.run_dir.iterdir()}
    assert {"config.json", "model", "predictions_devel.tsv", "predictions_test.tsv", "log_history.json",
            "provenance.json", "metrics.json"} <= names
    assert "checkpoint.pt" not in names
    provenance = json.loads((finished.run_dir / "provenance.json").read_text())
    assert provenance["config"]["output"] == "crf" and provenance["seed"] == 42
    tokens, gold, predicted = saved_predictions.read_predictions(finished.run_dir / "predictions_test.tsv")
    assert len(tokens) == 24 and all(len(t) == len(g) == len(p) for t, g, p in zip(tokens, gold, predicted))


def test_the_kept_weights_are_the_best_dev_epoch_and_reload_exactly(finished):
    best = max(e["eval_strict_f1"] for e in finished.log_history)
    _, gold, predicted = saved_predictions.read_predictions(finished.run_dir / "predictions_devel.tsv")
    assert metrics.score(gold, predicted).strict.f1 == pytest.approx(best)
    model, vocabulary, settings = baseline.load_model(finished.run_dir / "model")
    tokens, _, predicted = saved_predictions.read_predictions(finished.run_dir / "predictions_test.tsv")
    assert baseline.predict(model, vocabulary, tokens, settings.max_word_chars) == predicted


def pickled_library_names(path) -> list[str]:
    """The names of library code a torch.save file would import to load (its pickles' module paths)."""
    with zipfile.ZipFile(path) as saved:
        return [name for name in saved.namelist() if name.endswith(".pkl") and b"openmed_repro" in saved.read(name)]


def test_a_saved_tagger_is_tensors_only_so_moving_the_code_never_breaks_a_finished_run(finished):
    assert not pickled_library_names(finished.run_dir / "model" / "tagger.pt")
    weights = torch.load(finished.run_dir / "model" / "tagger.pt", weights_only=True)
    assert all(isinstance(value, torch.Tensor) for value in weights.values())
    assert set(json.loads((finished.run_dir / "model" / "vocabulary.json").read_text())) == {"words", "chars", "labels"}


@pytest.mark.parametrize("name, damage, complaint", [
    ("tagger.pt", lambda path: path.write_bytes(b""), "damaged weights"),
    ("tagger.pt", lambda path: path.write_bytes(path.read_bytes()[:1000]), "damaged weights"),
    ("vocabulary.json", lambda path: path.write_text('{"words": ["<pad>"'), "unreadable JSON"),
])
def test_a_damaged_saved_tagger_is_refused_in_one_line_naming_the_file(finished, tmp_path, name, damage, complaint):
    directory = tmp_path / "model"
    shutil.copytree(finished.run_dir / "model", directory)
    damage(directory / name)
    with pytest.raises(OpenMedError, match=complaint) as refused:
        baseline.load_model(directory)
    assert str(refused.value).startswith(f"{directory / name}: ") and "\n" not in str(refused.value)


def test_a_complete_baseline_run_is_read_back_and_other_settings_are_refused(finished, synthetic_corpus,
                                                                            monkeypatch):
    monkeypatch.setattr(baseline, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    reread = baseline.run(smoke(synthetic_corpus), finished.run_dir)
    assert reread.reused and reread.metrics == finished.metrics
    with pytest.raises(OpenMedError, match=r"other parameters \(hidden_size\)"):
        baseline.run(smoke(synthetic_corpus, hidden_size=8), finished.run_dir)


def test_early_stopping_ends_training_after_patience_epochs_without_dev_gain(synthetic_corpus, tmp_path):
    result = baseline.run(smoke(synthetic_corpus, learning_rate=1e-9, early_stopping_patience=2),
                          tmp_path / "stalled")
    assert result.metrics["epochs_run"] == 3 and result.metrics["best_epoch"] == 1


def test_a_small_split_passes_over_itself_until_the_baseline_takes_the_minimum_optimizer_steps(
        synthetic_corpus, tmp_path, monkeypatch):
    profile = job_settings.load_baseline_config("cpu", {"dataset": "cll"})
    assert profile.min_optimizer_steps == 1000
    # CLL: 120 sentences in batches of 32; 10 epochs of 100 steps need 3,200 sentences an epoch: 27 passes.
    assert step_floor.passes_per_epoch(120, profile.batch_size, profile.epochs, 1000, capped=False) == 27
    steps = []
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: steps.append(1))
    settings = smoke(synthetic_corpus, epochs=1, early_stopping_patience=1, min_optimizer_steps=40,
                     max_train_sentences=None)
    baseline.train(settings, corpora.load(settings.dataset), tmp_path)
    assert len(steps) >= 40
    unfloored = []
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: unfloored.append(1))
    baseline.train(dataclasses.replace(settings, min_optimizer_steps=0), corpora.load(settings.dataset),
                   tmp_path / "without")
    assert len(unfloored) < 40


def test_an_interrupted_baseline_resumes_from_its_last_epoch_to_the_same_predictions(synthetic_corpus, tmp_path,
                                                                                    monkeypatch):
    settings = smoke(synthetic_corpus, epochs=4, output="softmax")
    uninterrupted = baseline.run(settings, tmp_path / "whole")
    save = baseline._save_checkpoint

    def save_then_stop(path, content):
        save(path, content)
        if content["state"]["epoch"] == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(baseline, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        baseline.run(settings, tmp_path / "interrupted")
    assert not runs.is_complete(tmp_path / "interrupted")
    assert not pickled_library_names(tmp_path / "interrupted" / baseline.CHECKPOINT)
    monkeypatch.setattr(baseline, "_save_checkpoint", save)
    resumed = baseline.run(settings, tmp_path / "interrupted")
    assert [e["epoch"] for e in resumed.log_history] == [1.0, 2.0, 3.0, 4.0]
    assert (tmp_path / "interrupted" / "predictions_test.tsv").read_text() == \
        (tmp_path / "whole" / "predictions_test.tsv").read_text()
    assert resumed.metrics["test"] == uninterrupted.metrics["test"]


def test_word_vectors_can_start_from_a_backbones_input_embeddings(synthetic_corpus, tmp_path):
    result = baseline.run(smoke(synthetic_corpus, word_embeddings="tiny-random-bert", epochs=1), tmp_path / "init")
    assert result.metrics["words_from_backbone"] > 0
    model, _, _ = baseline.load_model(tmp_path / "init" / "model")
    assert model.words.weight.size(1) == 32                  # the tiny BERT's hidden size


def test_an_unknown_baseline_parameter_is_refused_naming_it(synthetic_corpus):
    with pytest.raises(OpenMedError, match="unknown parameter 'hiden_size'"):
        smoke(synthetic_corpus, hiden_size=3)
    with pytest.raises(OpenMedError, match=r"parameter output='lstm'; valid: crf, softmax"):
        smoke(synthetic_corpus, output="lstm")


def test_the_baseline_notebook_runs_end_to_end_on_the_smoke_profile(synthetic_corpus, tmp_path):
    import papermill

    executed = papermill.execute_notebook(
        str(paths.PROJECT_ROOT / "notebooks" / "baseline.ipynb"), str(tmp_path / "executed.ipynb"),
        parameters={"dataset": str(synthetic_corpus), "profile": "smoke", "output_dir": str(tmp_path / "run")},
        cwd=str(tmp_path), progress_bar=False, kernel_name="python3")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["system"] == "bilstm-cnn-char" and metrics["profile"] == "smoke"
    outputs = "".join(str(o) for cell in executed.cells for o in cell.get("outputs", []))
    assert "image/png" in outputs and "Spark NLP BiLSTM-CNN-Char (paper)" in outputs


def test_the_command_trains_one_run_per_corpus_and_writes_the_results_file(synthetic_corpus, tmp_path, capsys):
    from openmed_repro import cli

    assert cli.main(["baseline", "--profile", "smoke", "--corpora", str(synthetic_corpus), "--out", str(tmp_path),
                     "--set", "epochs=1"]) == 0
    results = json.loads((tmp_path / "results-smoke.json").read_text())
    assert [r["dataset"] for r in results] == [str(synthetic_corpus)]
    assert (tmp_path / "synthetic-smoke-crf-seed42" / runs.METRICS).is_file()
    assert "Spark NLP BiLSTM-CNN-Char (paper)" in capsys.readouterr().out


def test_with_record_each_run_is_recorded_and_a_recorded_run_is_not_trained_again(synthetic_corpus, tmp_path,
                                                                                   monkeypatch):
    from openmed_repro import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(layout.RECORD_DIR_ENV, str(tmp_path / "results"))
    command = ["baseline", "--profile", "smoke", "--corpora", str(synthetic_corpus), "--out", "runs/baseline",
               "--set", "epochs=1", "--record"]
    assert cli.main(command) == 0
    assert (tmp_path / "results" / "baseline" / "synthetic-smoke-crf-seed42" / runs.METRICS).is_file()
    shutil.rmtree(tmp_path / "runs")
    assert cli.main(command) == 0
    assert not (tmp_path / "runs" / "baseline" / "synthetic-smoke-crf-seed42").exists()


@pytest.fixture
def dapt_dir(tmp_path):
    directory = tmp_path / "dapt"
    directory.mkdir()
    return write_dapt_text(directory)


def test_word_vectors_can_start_from_word2vec_trained_on_the_dapt_text(synthetic_corpus, dapt_dir, tmp_path,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = smoke(synthetic_corpus, word_embeddings="word2vec-dapt", dapt_dir=str(dapt_dir), epochs=1,
                     learning_rate=1e-9)
    result = baseline.run(settings, tmp_path / "word2vec")
    text = word_vectors.dapt_text(str(dapt_dir))
    trained = word_vectors.word2vec(text, Word2VecSettings(dimension=settings.word_dim, seed=settings.seed))
    assert trained.reused and (tmp_path / "runs" / "word_vectors" / trained.directory.name / "vectors.bin").is_file()
    assert result.metrics["word_embeddings"] == "word2vec-dapt"
    assert result.metrics["word_vectors"] == {"name": trained.directory.name, "text_sha256": text.sha256}
    provenance = json.loads((tmp_path / "word2vec" / "provenance.json").read_text())
    assert provenance["data"]["word_vectors"]["text_sha256"] == text.sha256
    assert provenance["data"]["word_vectors"]["files"] == text.files
    model, vocabulary, _ = baseline.load_model(tmp_path / "word2vec" / "model")
    assert result.metrics["words_from_word2vec"] == len(vocabulary.words) - 2   # every corpus word is in the text
    scaled = torch.tensor(trained.vectors["cancer"]) / float(trained.vectors.vectors.std())
    assert torch.allclose(model.words.weight[vocabulary.word_id("Cancer")], scaled, atol=1e-4)  # lr 1e-9: the start


def test_a_word_word2vec_lacks_starts_at_random_and_padding_at_zero(synthetic_corpus, dapt_dir, tmp_path,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = smoke(synthetic_corpus, word_embeddings="word2vec-dapt", dapt_dir=str(dapt_dir))
    vocabulary = bilstm_crf.Vocabulary(words=[bilstm_crf.PAD, bilstm_crf.UNK, "cancer", "zebrafish"], chars=[],
                                       labels=["O"])
    vectors, found, info = baseline.word2vec_word_vectors(settings, vocabulary)
    known = word_vectors.word2vec(word_vectors.dapt_text(str(dapt_dir)),
                                  Word2VecSettings(dimension=settings.word_dim, seed=settings.seed)).vectors
    assert found == 1 and vectors.shape == (4, settings.word_dim) and info["start"] == "word2vec-dapt"
    assert torch.equal(vectors[0], torch.zeros(settings.word_dim))
    assert torch.allclose(vectors[2], torch.tensor(known["cancer"]) / float(known.vectors.std()))
    assert 0.5 < vectors[3].std() < 2.0                 # N(0, 1), like a learned start's rows
    again, _, _ = baseline.word2vec_word_vectors(settings, vocabulary)
    assert torch.equal(vectors, again)                  # the random rows come from the run's seed


def test_an_unknown_word_vector_start_is_refused_naming_the_valid_ones(synthetic_corpus, tmp_path):
    with pytest.raises(OpenMedError, match=r"word_embeddings='glove'; valid: learned, word2vec-dapt, or a backbone"):
        baseline.check_start(smoke(synthetic_corpus, word_embeddings="glove"))
    with pytest.raises(OpenMedError, match="parameter dapt_dir: .*nowhere is not a directory"):
        baseline.check_start(smoke(synthetic_corpus, word_embeddings="word2vec-dapt",
                                   dapt_dir=str(tmp_path / "nowhere")))


def test_the_command_trains_one_run_per_start_and_writes_the_chosen_start(synthetic_corpus, dapt_dir, tmp_path,
                                                                         monkeypatch, capsys):
    from openmed_repro import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["baseline", "--profile", "smoke", "--corpora", str(synthetic_corpus),
                     "--out", str(tmp_path / "out"), "--word-embeddings", "learned", "word2vec-dapt",
                     "--set", "epochs=1", f"dapt_dir={dapt_dir}"]) == 0
    assert (tmp_path / "out" / "synthetic-smoke-crf-seed42" / runs.METRICS).is_file()
    assert (tmp_path / "out" / "synthetic-smoke-crf-word2vec-dapt-seed42" / runs.METRICS).is_file()
    choice = json.loads((tmp_path / "out" / "word-embeddings-smoke.json").read_text())
    assert [(r["corpus"], r["word_embeddings"]) for r in choice["runs"]] == \
        [("synthetic", "learned"), ("synthetic", "word2vec-dapt")]
    best = max(choice["runs"], key=lambda r: r["dev strict F1"])
    assert choice["chosen"] == {"synthetic": best["word_embeddings"]}
    assert f"synthetic: word_embeddings {best['word_embeddings']}" in capsys.readouterr().out


def test_the_starts_to_choose_from_are_given_once(synthetic_corpus, tmp_path, capsys):
    from openmed_repro import cli

    assert cli.main(["baseline", "--profile", "smoke", "--corpora", str(synthetic_corpus), "--out", str(tmp_path),
                     "--word-embeddings", "learned", "--set", "word_embeddings=minilm-l6"]) == 2
    assert "give the starts once" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
