"""One run lifecycle and one name for every run directory, shared by fine-tuning, DAPT, the baseline and the
search: tested through each chapter's own entry point, its training replaced by a stand-in that takes no time."""

import ast
import functools
import json
from pathlib import Path

import papermill
import pytest

from openmed_repro import cli
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, job_settings, layout, lifecycle, paths, run_provenance, runs
from openmed_repro.report import record
from openmed_repro.search import hpo
from openmed_repro.training import baseline, dapt, finetune

CHAPTERS = {   # chapter: (module, its training inside the lifecycle, configuration loader, has a dataset)
    "finetune": (finetune, "train_and_score", job_settings.load_run_config, True),
    "dapt": (dapt, "adapt", job_settings.load_dapt_config, False),
    "baseline": (baseline, "train_and_score", job_settings.load_baseline_config, True),
}


def printed_run_dir(capsys, *arguments: str) -> Path:
    assert cli.main(["run-dir", *arguments]) == 0
    return Path(capsys.readouterr().out.strip())


def stand_in(calls: list):
    """A chapter's training that writes a scratch file and hands back a small record."""
    def train(settings, run_dir: Path, *resolved) -> lifecycle.Outcome:
        calls.append(run_dir)
        (run_dir / "checkpoint.pt").write_text("scratch")
        return lifecycle.Outcome({"f1": 0.5}, [{"epoch": 1.0}], {"corpus": "sha256"}, scratch=("checkpoint.pt",))
    return train


def never_trains(settings, run_dir, *resolved):
    raise AssertionError("a finished run was trained again")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_names_its_run_directory_through_one_function(chapter, synthetic_corpus, tmp_path, capsys,
                                                                    monkeypatch):
    module, training, load, has_dataset = CHAPTERS[chapter]
    values = {"seed": 7, **({"dataset": str(synthetic_corpus)} if has_dataset else {})}
    monkeypatch.chdir(tmp_path)
    printed = printed_run_dir(capsys, chapter, "profile=smoke", *(f"{k}={v}" for k, v in values.items()))
    monkeypatch.setattr(module, training, stand_in([]))
    result = module.run(load("smoke", values))
    assert result.run_dir == printed and runs.is_complete(tmp_path / printed)


def test_the_search_claims_the_directory_run_dir_names(synthetic_corpus, tmp_path, capsys, monkeypatch):
    class Claimed(Exception):
        pass

    monkeypatch.chdir(tmp_path)
    printed = printed_run_dir(capsys, "hpo", "profile=smoke", f"dataset={synthetic_corpus}", "n_trials=3")
    monkeypatch.setattr(hpo, "open_study", lambda *args: (_ for _ in ()).throw(Claimed()))
    run_config = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus)})
    with pytest.raises(Claimed):
        hpo.work(run_config, job_settings.load_search_config({"n_trials": 3}))
    assert json.loads((tmp_path / printed / runs.CONFIG).read_text()) == run_config.to_dict()


@pytest.mark.parametrize("arguments, expected", [
    (["finetune"], "runs/finetune/ncbi_disease-minilm-l6-cpu-lora-seed42"),
    (["finetune", "dapt_adapter=runs/dapt/minilm-l6-cpu-seed42/adapter", "dataset=s800"],
     "runs/finetune/s800-minilm-l6-cpu-lora-dapt-seed42"),
    (["finetune", "profile=paper", "backbone=pubmedbert-large"],
     "runs/finetune/ncbi_disease-pubmedbert-large-paper-lora-seed42"),
    (["dapt"], "runs/dapt/minilm-l6-cpu-seed42"),
    (["baseline"], "runs/baseline/ncbi_disease-cpu-crf-word2vec-dapt-seed42"),   # the cpu profile's start
    (["baseline", "output=softmax", "seed=1"], "runs/baseline/ncbi_disease-cpu-softmax-word2vec-dapt-seed1"),
    (["baseline", "word_embeddings=learned"], "runs/baseline/ncbi_disease-cpu-crf-seed42"),
    (["baseline", "word_embeddings=word2vec-dapt"], "runs/baseline/ncbi_disease-cpu-crf-word2vec-dapt-seed42"),
    (["baseline", "word_embeddings=minilm-l6", "seed=1"], "runs/baseline/ncbi_disease-cpu-crf-minilm-l6-seed1"),
    (["hpo", "n_trials=20", "max_train_sentences=500", "epochs=3"], "runs/hpo/ncbi_disease-minilm-l6-cpu"),
    (["finetune", "output_dir=runs/mine"], "runs/mine"),
])
def test_default_run_directories_keep_the_names_users_have(arguments, expected, capsys):
    assert printed_run_dir(capsys, *arguments) == Path(expected)


@pytest.mark.parametrize("chapter", ["finetune", "dapt", "baseline", "hpo"])
def test_run_dir_without_parameters_names_what_the_notebook_writes_by_default(chapter):
    declared = papermill.inspect_notebook(str(paths.PROJECT_ROOT / "notebooks" / f"{chapter}.ipynb"))
    defaults = {key: ast.literal_eval(declared[key]["default"]) for key in cli.RUN_DIR_DEFAULTS if key in declared}
    assert defaults == {key: value for key, value in cli.RUN_DIR_DEFAULTS.items()
                        if key != "dataset" or chapter != "dapt"}


def test_run_dir_refuses_a_parameter_the_chapter_does_not_have(capsys):
    assert cli.main(["run-dir", "dapt", "learning_rat=0.1"]) == 2
    assert "unknown parameter 'learning_rat'" in capsys.readouterr().err


def test_a_configuration_names_no_directory_of_another_chapter():
    with pytest.raises(OpenMedError, match="chapter 'hpo' of a DaptConfig"):
        layout.default_directory(job_settings.load_dapt_config("smoke"), "hpo")


def test_metrics_json_is_written_last_and_the_scratch_goes_once_the_run_is_complete(synthetic_corpus, tmp_path):
    settings = job_settings.load_baseline_config("smoke", {"dataset": str(synthetic_corpus)})

    def interrupted(settings, run_dir):
        (run_dir / "checkpoint.pt").write_text("scratch")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lifecycle.run(settings, tmp_path / "run", lambda run_dir, _resolved: interrupted(settings, run_dir))
    assert not runs.is_complete(tmp_path / "run") and (tmp_path / "run" / "checkpoint.pt").is_file()

    result = lifecycle.run(settings, tmp_path / "run", lambda run_dir, _resolved: stand_in([])(settings, run_dir))
    names = {p.name for p in result.run_dir.iterdir()}
    assert names == {runs.CONFIG, runs.LOG_HISTORY, runs.PROVENANCE, runs.METRICS}
    provenance = atomic_files.read_json(result.run_dir / runs.PROVENANCE)
    assert provenance["config"] == settings.to_dict() and provenance["data"] == {"corpus": "sha256"}
    assert result == lifecycle.RunResult(tmp_path / "run", {"f1": 0.5}, [{"epoch": 1.0}], reused=False)


def test_a_finished_run_is_read_back_not_retrained(synthetic_corpus, tmp_path):
    settings = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus)})
    calls = []
    first = lifecycle.run(settings, tmp_path / "run", lambda run_dir, _resolved: stand_in(calls)(settings, run_dir))
    again = lifecycle.run(settings, tmp_path / "run", lambda run_dir, _resolved: never_trains(settings, run_dir))
    assert len(calls) == 1 and again.reused
    assert (again.metrics, again.log_history) == (first.metrics, first.log_history)


def test_a_directory_of_other_parameters_is_refused(synthetic_corpus, tmp_path):
    settings = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus)})
    lifecycle.run(settings, tmp_path / "run", lambda run_dir, _resolved: stand_in([])(settings, run_dir))
    other = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "seed": 1, "lora_r": 3})
    with pytest.raises(OpenMedError, match=r"holds a run with other parameters \(lora_r, seed\)"):
        lifecycle.run(other, tmp_path / "run", lambda run_dir, _resolved: never_trains(other, run_dir))


def test_a_run_missing_from_the_record_is_refused_never_trained_into_the_record(synthetic_corpus, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.setenv(layout.RECORD_DIR_ENV, str(tmp_path / "results"))
    settings = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus)})
    missing = tmp_path / "results" / "finetune" / "not-recorded"
    with pytest.raises(OpenMedError, match="not in the record.*openmed-repro record"):
        lifecycle.run(settings, missing, lambda run_dir, _resolved: never_trains(settings, run_dir))
    assert not missing.exists()


def test_a_recorded_run_is_read_from_the_record(synthetic_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv(layout.RECORD_DIR_ENV, str(tmp_path / "results"))
    settings = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus)})
    lifecycle.run(settings, tmp_path / "runs" / "finetune" / "run", lambda run_dir, _resolved: stand_in([])(settings, run_dir))
    recorded = record.record_one(tmp_path / "runs" / "finetune" / "run", tmp_path / "results").path
    again = lifecycle.run(settings, recorded, lambda run_dir, _resolved: never_trains(settings, run_dir))
    assert again.reused and again.metrics == {"f1": 0.5}


@pytest.mark.parametrize("flags, trained_in", [(("amx_bf16", "amx_int8"), "bf16"), (("avx512_vnni",), "fp32")])
def test_the_provenance_records_the_cpus_units_and_the_precision_auto_trained_in(synthetic_corpus, tmp_path,
                                                                               monkeypatch, flags, trained_in):
    import torch

    from openmed_repro.infra import cpu_units, devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "cpu_units", lambda: cpu_units.CpuUnits(frozenset(flags)))
    settings = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "precision": "auto"})
    result = lifecycle.run(settings, tmp_path / "run", lambda run_dir, _resolved: stand_in([])(settings, run_dir))
    provenance = atomic_files.read_json(result.run_dir / runs.PROVENANCE)
    assert provenance["precision"] == trained_in and provenance["config"]["precision"] == "auto"
    assert {flag for flag in flags if provenance["machine"]["cpu_units"][flag]} == set(flags)
    baseline_settings = job_settings.load_baseline_config("smoke", {"dataset": str(synthetic_corpus)})
    result = lifecycle.run(baseline_settings, tmp_path / "baseline",
                           lambda run_dir, _resolved: stand_in([])(baseline_settings, run_dir))
    assert atomic_files.read_json(result.run_dir / runs.PROVENANCE)["precision"] == "fp32"


def test_the_provenance_names_the_commit_the_training_started_from_not_one_made_while_it_ran(tmp_path, monkeypatch):
    states = iter([{"commit": "a" * 40, "dirty": False}, {"commit": "b" * 40, "dirty": True}])
    monkeypatch.setattr(run_provenance, "git_state", lambda: next(states))
    monkeypatch.setattr(run_provenance, "code_state", functools.lru_cache(maxsize=1)(lambda: run_provenance.git_state()))
    settings = job_settings.load_run_config("smoke", {"dataset": "ncbi_disease"})
    lifecycle.run(settings, tmp_path / "run", lambda run_dir, _resolved: stand_in([])(settings, run_dir))
    assert atomic_files.read_json(tmp_path / "run" / "provenance.json")["git"] == {"commit": "a" * 40, "dirty": False}
    lifecycle.run(settings, tmp_path / "second", lambda run_dir, _resolved: stand_in([])(settings, run_dir))
    assert atomic_files.read_json(tmp_path / "second" / "provenance.json")["git"]["commit"] == "a" * 40, \
        "a second run of the same process runs the same code"


@pytest.mark.parametrize("asked,refusal", [
    ({"eval_precision": "fp16"}, "parameter eval_precision=fp16 needs a GPU"),
    ({"precision": "fp16"}, "parameter precision=fp16 needs a GPU"),
    ({"eval_precision": "int8"}, "parameter eval_precision=int8 predicts through ONNX Runtime, which is not installed"),
])
def test_a_precision_this_machine_cannot_run_is_refused_before_anything_loads(asked, refusal, synthetic_corpus,
                                                                               tmp_path, monkeypatch):
    from openmed_repro.infra import devices
    from openmed_repro.training import finetune

    monkeypatch.setattr(devices.torch.cuda, "is_available", lambda: False)
    real_find_spec = devices.importlib.util.find_spec
    monkeypatch.setattr(devices.importlib.util, "find_spec",
                        lambda name, *rest: None if name == "onnxruntime" else real_find_spec(name, *rest))
    monkeypatch.setattr(finetune, "train_and_score", lambda *_: pytest.fail("the run started"))
    settings = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), **asked})
    with pytest.raises(OpenMedError, match=refusal):
        finetune.run(settings, tmp_path / "run")
    assert not (tmp_path / "run").exists(), "refused before the run directory was claimed"


@pytest.mark.parametrize("chapter,asked,refusal", [
    ("finetune", {"backbone": "no-such-backbone"}, "no-such-backbone"),
    ("finetune", {"dataset": "no-such-corpus"}, "no-such-corpus"),
    ("finetune", {"dapt_adapter": "no-such-adapter"}, "parameter dapt_adapter: no-such-adapter holds no adapter_config"),
    ("dapt", {"dapt_dir": "no-such-text"}, "parameter dapt_dir: no-such-text is not a directory"),
    ("baseline", {"word_embeddings": "no-such-start"}, "parameter word_embeddings='no-such-start'"),
])
def test_what_a_run_names_must_exist_before_its_directory_is_claimed(chapter, asked, refusal, synthetic_corpus,
                                                                     tmp_path, monkeypatch):
    """A typo leaves no claimed directory behind, which the corrected command would refuse as another run's."""
    module, training, load, has_dataset = CHAPTERS[chapter]
    monkeypatch.setattr(module, training, lambda *_: pytest.fail("the run started"))
    settings = load("smoke", {**({"dataset": str(synthetic_corpus)} if has_dataset else {}), **asked})
    with pytest.raises(OpenMedError, match=refusal):
        module.run(settings, tmp_path / "run")
    assert not (tmp_path / "run").exists(), "refused before the run directory was claimed"
