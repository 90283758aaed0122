"""The search's answer checked where it will be used: the best and the default trained on the full run with
the same seeds, compared seed by seed; best.yaml keeps the tuned configuration only if it is better on dev."""

import shutil

import pandas as pd
import pytest
import yaml

from openmed_repro.infra import job_settings, layout
from openmed_repro.report import record
from openmed_repro.search import confirmation


@pytest.fixture
def workplace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(layout.RECORD_DIR_ENV, str(tmp_path / "results"))
    (tmp_path / "search").mkdir()
    return tmp_path


def search_base(corpus):
    """A search's base configuration with its budget capped, as a subset search has it."""
    return job_settings.load_run_config("smoke", {"dataset": str(corpus), "max_train_sentences": 12, "epochs": 1})


def test_the_confirmation_runs_train_the_profiles_budget_not_the_searchs_caps(synthetic_corpus):
    full = confirmation.full_run(search_base(synthetic_corpus), seed=1, parameters={"lora_r": 8})
    profile = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus)})
    assert (full.max_train_sentences, full.epochs) == (profile.max_train_sentences, profile.epochs)
    assert (full.seed, full.lora_r) == (1, 8)


def test_a_tuned_configuration_no_better_on_dev_leaves_best_yaml_with_the_default_and_the_reason(
        synthetic_corpus, workplace):
    base = search_base(synthetic_corpus)
    same_as_default = {"learning_rate": base.learning_rate, "tuned_on": "the first 12 training sentences"}
    confirmed = confirmation.confirm(base, same_as_default, workplace / "search", seeds=(42, 1), trials=200)
    assert list(confirmed.per_seed["seed"]) == [42, 1]
    assert (confirmed.per_seed["tuned dev F1"] == confirmed.per_seed["default dev F1"]).all()
    assert confirmed.kept == "default" and "is not above the default's" in confirmed.reason
    best = yaml.safe_load((workplace / "search" / "best.yaml").read_text())
    assert best == {"learning_rate": base.learning_rate, "kept_default": confirmed.reason}
    assert confirmation.read(workplace / "search").kept == "default"


def test_the_default_runs_are_read_from_the_record_when_it_holds_them(synthetic_corpus, workplace):
    base = search_base(synthetic_corpus)
    confirmation.confirm(base, {"learning_rate": 0.01}, workplace / "search", seeds=(42,), trials=100)
    default_dir = layout.default_directory(confirmation.full_run(base, 42))
    record.record_one(default_dir, workplace / "results")
    shutil.rmtree(default_dir)
    again = confirmation.confirm(base, {"learning_rate": 0.01}, workplace / "search", seeds=(42,), trials=100)
    assert not default_dir.exists(), "the recorded default was not trained again"
    named = again.per_seed[["default run", "tuned run"]].iloc[0].tolist()
    assert named == [f"finetune/{default_dir.name}", f"finetune/{default_dir.name}-tuned"], \
        "runs are named as the record names them, wherever they lie"


def test_only_a_higher_mean_dev_f1_keeps_the_tuned_configuration():
    rows = pd.DataFrame({"tuned dev F1": [80.0, 82.0], "default dev F1": [79.0, 81.5]})
    assert confirmation.decide(rows)[0] == "tuned"
    assert confirmation.decide(rows.assign(**{"tuned dev F1": [79.0, 81.5]}))[0] == "default"
