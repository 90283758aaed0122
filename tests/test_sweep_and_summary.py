"""Gathering runs into the all-corpora table, and the summary `make reproduce` prints."""

import json
import shutil

import pytest

from openmed_repro.infra import layout, paths
from openmed_repro.data import corpora
from openmed_repro.report import run_summary
from openmed_repro import cli
from openmed_repro.errors import OpenMedError


def sweep(corpus, tmp_path, *more) -> list[str]:
    return ["sweep", "--profile", "smoke", "--corpora", str(corpus), "--epochs", "1", "--out", str(tmp_path),
            "--runs-root", str(tmp_path), *more]


def test_the_sweep_writes_one_run_and_one_table_row_per_corpus(synthetic_corpus, tmp_path):
    cli.main(sweep(synthetic_corpus, tmp_path))
    table = (tmp_path / "results.md").read_text().splitlines()
    assert len(table) == 3 and table[2].startswith("| synthetic | 42 | 48 | 1 (1) |")
    assert (tmp_path / "synthetic-tiny-random-bert-smoke-lora-seed42" / "metrics.json").is_file()


def test_the_sweep_runs_every_seed_asked_for_in_the_run_directories_the_record_names(synthetic_corpus, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(layout.RECORD_DIR_ENV, str(tmp_path / "results"))
    assert cli.main(sweep(synthetic_corpus, tmp_path / "runs" / "finetune", "--seeds", "1", "2", "--record")) == 0
    table = (tmp_path / "runs" / "finetune" / "results.md").read_text()
    assert "| synthetic | 1 |" in table and "| synthetic | 2 |" in table
    recorded = sorted(p.name for p in (tmp_path / "results" / "finetune").iterdir())
    assert recorded == ["synthetic-tiny-random-bert-smoke-lora-seed1", "synthetic-tiny-random-bert-smoke-lora-seed2"]
    seeds = {json.loads((tmp_path / "results" / "finetune" / name / "config.json").read_text())["seed"]
             for name in recorded}
    assert seeds == {1, 2}
    for run in (tmp_path / "runs" / "finetune").glob("synthetic-*"):
        shutil.rmtree(run)
    assert cli.main(sweep(synthetic_corpus, tmp_path / "runs" / "finetune", "--seeds", "1", "2", "--record")) == 0
    assert not list((tmp_path / "runs" / "finetune").glob("synthetic-*")), "a recorded run is not trained again"


def test_a_rerun_of_the_sweep_reads_finished_runs_back(synthetic_corpus, tmp_path):
    arguments = sweep(synthetic_corpus, tmp_path)
    assert cli.main(arguments) == 0
    assert cli.main(arguments) == 0
    assert "(read back)" in (tmp_path / "results.md").read_text()


def test_only_corpora_present_locally_are_swept(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SHARED_DATA_DIR", tmp_path / "nothing")
    monkeypatch.delenv("OPENMED_DATA_DIR", raising=False)
    assert corpora.available(str(tmp_path)) == []


def test_the_summary_names_the_numbers_and_where_they_are(synthetic_corpus, tmp_path):
    cli.main(sweep(synthetic_corpus, tmp_path))
    run_dir = tmp_path / "synthetic-tiny-random-bert-smoke-lora-seed42"
    text = run_summary.summary(run_dir, tmp_path / "executed.ipynb")
    assert "backbone tiny-random-bert (lora), profile smoke" in text and "test strict P/R/F1" in text
    assert str(run_dir / "metrics.json") in text


def test_the_summary_of_an_unfinished_run_says_it_can_be_resumed(tmp_path, capsys):
    with pytest.raises(OpenMedError, match="did not finish.*resume"):
        run_summary.summary(tmp_path)
    assert cli.main(["summary", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("openmed-repro: error: ") and "did not finish" in error and error.count("\n") == 1


def test_a_record_of_another_recipe_is_trained_again_and_replaced_only_when_asked(synthetic_corpus, tmp_path,
                                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(layout.RECORD_DIR_ENV, str(tmp_path / "results"))
    runs_dir = tmp_path / "runs" / "finetune"
    assert cli.main(sweep(synthetic_corpus, runs_dir, "--record")) == 0
    record = tmp_path / "results" / "finetune" / "synthetic-tiny-random-bert-smoke-lora-seed42"
    shutil.rmtree(runs_dir / record.name)
    changed = ["--profile", "smoke", "--corpora", str(synthetic_corpus), "--epochs", "2", "--out", str(runs_dir),
               "--runs-root", str(runs_dir), "--record"]
    assert cli.main(["sweep", *changed]) == 2, "the rerun of the new recipe is refused over the old record"
    assert json.loads((record / "config.json").read_text())["epochs"] == 1.0
    assert cli.main(["sweep", *changed, "--replace"]) == 0
    assert json.loads((record / "config.json").read_text())["epochs"] == 2.0
