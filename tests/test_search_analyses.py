"""The analyses of finished searches in benchmarks/search_analyses.py: what pruning saved, read back from two
search directories as the search chapter's runs leave them; a pruner replayed on an unpruned study; one trial
retrained with other seeds."""

import datetime
import json

import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState

import benchmark_scripts
from openmed_repro.infra import job_settings
from openmed_repro.search import hpo
from openmed_repro.errors import OpenMedError



search_analyses = benchmark_scripts.load("search_analyses")

GOOD, BAD = [-0.45, -0.40, -0.38], [-0.60, -0.55, -0.50]
EPOCH_SECONDS = 30
START = datetime.datetime(2026, 11, 25, 12, 0, 0)


def search_directory(path, curves, pruner="median", startup_trials=1, prune_on="dev_loss", keep_dev_f1=False):
    """A finished search run one trial after another; a trial pruned after epoch k reported k values (its
    negated dev losses); with `keep_dev_f1` each epoch's dev F1 (0: no entity found yet) was kept too."""
    path.mkdir()
    study = optuna.create_study(study_name="ncbi", storage=f"sqlite:///{path / 'study.db'}", direction="maximize")
    clock = START
    for number, (curve, state) in enumerate(curves):
        seconds = EPOCH_SECONDS * len(curve)
        study.add_trial(FrozenTrial(
            number=number, trial_id=number, state=state, value=curve[-1] + 1, values=None,
            datetime_start=clock, datetime_complete=clock + datetime.timedelta(seconds=seconds),
            params={}, distributions={}, system_attrs={},
            user_attrs={"epochs_run": len(curve), **({"dev_strict_f1_by_epoch": [0.0] * len(curve)} if keep_dev_f1 else {})},
            intermediate_values=dict(enumerate(curve, start=1))))
        clock += datetime.timedelta(seconds=seconds)
    hpo.write_results(study, path, job_settings.load_search_config({"pruner": pruner, "pruner_startup_trials": startup_trials,
                                                             "prune_on": prune_on}))
    return path


@pytest.fixture
def pair(tmp_path):
    unpruned = search_directory(tmp_path / "none", [(c, TrialState.COMPLETE) for c in (GOOD, BAD, GOOD, BAD)], "none")
    pruned = search_directory(tmp_path / "median", [(GOOD, TrialState.COMPLETE), (BAD[:1], TrialState.PRUNED),
                                                    (GOOD, TrialState.COMPLETE), (BAD[:2], TrialState.PRUNED)])
    return pruned, unpruned


def test_pruning_is_credited_with_the_epochs_and_trial_time_it_saved(pair):
    record = search_analyses.compare(*pair)
    assert record["pruned"]["epochs_trained"] == 3 + 1 + 3 + 2 and record["unpruned"]["epochs_trained"] == 12
    assert record["epochs_saved"] == pytest.approx(0.25)
    assert record["trial_time_saved"] == pytest.approx(0.25)              # 270 s of trials against 360 s
    assert record["pruned"]["pruned_after_epoch"] == {"1": 1, "2": 1}
    assert record["pruned"]["wall_seconds"] == 270 and record["unpruned"]["wall_seconds"] == 360
    assert record["best_dev_f1_difference"] == 0


def test_the_replay_uses_the_pruned_studys_start_up_count_on_the_unpruned_trials(pair):
    replay = search_analyses.compare(*pair)["pruner_replayed_on_unpruned"]
    assert replay["startup_trials"] == 1
    assert replay["pruned_trials"] == 2 and replay["epochs_trained"] == 3 + 1 + 3 + 1
    assert replay["best_dev_strict_f1"] == replay["unpruned_best_dev_strict_f1"]


def test_the_replay_uses_the_pruned_studys_pruner_and_signal(pair, tmp_path):
    halving = search_directory(tmp_path / "halving", [(GOOD, TrialState.COMPLETE), (BAD[:1], TrialState.PRUNED)],
                               "successive_halving", prune_on="dev_f1_then_loss")
    with pytest.raises(OpenMedError, match="cannot be replayed on prune_on='dev_f1_then_loss'"):
        search_analyses.compare(halving, pair[1])   # these unpruned trials kept no dev F1 by epoch
    unpruned = search_directory(tmp_path / "none-f1", [(c, TrialState.COMPLETE) for c in (GOOD, BAD, GOOD, BAD)],
                                "none", keep_dev_f1=True)   # F1 0 throughout: the loss decides
    replay = search_analyses.compare(halving, unpruned)["pruner_replayed_on_unpruned"]
    assert (replay["pruner"], replay["signal"]) == ("successive_halving", "dev_f1_then_loss")
    assert replay["pruned_trials"] == 2 and replay["best_dev_strict_f1"] == replay["unpruned_best_dev_strict_f1"]


def test_the_replay_can_try_other_start_up_counts_on_the_same_trials(pair):
    replays = search_analyses.compare(*pair, replay_startup_trials=(1, 3, 4))["median_pruner_replays"]
    # 3: the second trial is bad but runs while one trial has completed; 4: never four completed before a trial
    assert [(r["startup_trials"], r["pruned_trials"]) for r in replays] == [(1, 2), (3, 1), (4, 0)]


def test_the_command_writes_the_comparison_and_says_what_pruning_saved(pair, tmp_path, capsys):
    pruned, unpruned = pair
    assert search_analyses.main(["compare", "--pruned", str(pruned), "--unpruned", str(unpruned),
                                 "--out", str(tmp_path / "c.json"), "--replay-startup-trials", "1"]) == 0
    assert json.loads((tmp_path / "c.json").read_text()) == search_analyses.compare(pruned, unpruned, (1,))
    printed = capsys.readouterr().out
    assert "Pruning saved 25% of the epochs trained and 25% of the trial time" in printed
    assert "median pruner, 1 start-up trial(s), replayed: 2 pruned, 33% of the epochs saved" in printed


def test_a_directory_without_a_finished_search_is_refused_naming_it(tmp_path, pair, capsys):
    assert search_analyses.main(["compare", "--pruned", str(tmp_path / "absent"), "--unpruned", str(pair[1])]) == 2
    assert capsys.readouterr().err.startswith(f"search_analyses: error: --pruned {tmp_path / 'absent'}: not a finished search")


def test_without_search_directories_the_comparison_says_it_was_skipped():
    assert "no search directories given" in search_analyses.compare(None, None)["skipped"]


def unpruned_study(curves):
    """A finished study without pruning whose trials reported these per-epoch values (negated dev losses)
    and scored their last value plus one as best dev F1."""
    study = optuna.create_study(direction="maximize")
    for curve in curves:
        trial = study.ask()
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
        study.tell(trial, curve[-1] + 1)
    return study


def test_replaying_the_median_pruner_on_an_unpruned_study_counts_the_epochs_it_would_have_saved():
    good, bad = [-0.45, -0.40, -0.38], [-0.60, -0.55, -0.50]
    study = unpruned_study([good, bad, good, bad, good, bad, [-0.44, -0.39, -0.30], bad])
    replay = search_analyses.replay_pruning(study, "median", epochs=3, startup_trials=1)
    assert replay["pruned_trials"] == 4                      # every bad one after the first completed trial
    assert replay["epochs_trained"] == 24 - 4 * 2 and replay["epochs_unpruned"] == 24
    assert replay["best_dev_strict_f1"] == replay["unpruned_best_dev_strict_f1"] == pytest.approx(0.70)


def test_the_median_pruner_prunes_nothing_before_its_start_up_trials_have_completed():
    good, bad = [-0.45, -0.40, -0.38], [-0.60, -0.55, -0.50]
    study = unpruned_study([good, bad, good, bad, good, bad, [-0.44, -0.39, -0.30], bad])
    replay = search_analyses.replay_pruning(study, "median", epochs=3, startup_trials=5)
    assert replay["pruned_trials"] == 2                      # the fourth trial is bad but among the first five


def test_successive_halving_ranks_a_trial_among_every_trial_that_reached_its_epoch_so_a_slow_starter_survives():
    good, bad, slow = [-0.45, -0.40, -0.38], [-0.60, -0.55, -0.50], [-0.47, -0.39, -0.30]
    study = unpruned_study([good, bad, good, bad, good, bad, bad, slow])   # the slow starter is the best trial
    median = search_analyses.replay_pruning(study, "median", epochs=3, startup_trials=1)
    halving = search_analyses.replay_pruning(study, "successive_halving", epochs=3)
    assert median["best_dev_strict_f1"] == pytest.approx(0.62)     # below the median of the completed good ones
    assert halving["best_dev_strict_f1"] == pytest.approx(0.70)    # in the better half of all eight at epoch 1
    assert halving["pruned_trials"] == 4                           # every bad one


def test_a_replay_rebuilds_another_signal_from_each_epochs_dev_f1_and_loss():
    study = optuna.create_study(direction="maximize")
    for losses, f1s in (([0.45, 0.40, 0.38], [0.0, 0.1, 0.2]), ([0.44, 0.41, 0.40], [0.0, 0.0, 0.0]),
                        ([0.50, 0.42, 0.39], [0.05, 0.12, 0.3])):
        trial = study.ask()
        for step, loss in enumerate(losses, start=1):
            trial.report(-loss, step)
        trial.set_user_attr("dev_strict_f1_by_epoch", f1s)
        study.tell(trial, max(f1s))
    on_loss = search_analyses.replay_pruning(study, "median", epochs=3, startup_trials=1)
    on_f1 = search_analyses.replay_pruning(study, "median", epochs=3, startup_trials=1, signal="dev_f1_then_loss")
    assert on_loss["best_dev_strict_f1"] == pytest.approx(0.2)     # the third trial's loss lags: pruned
    assert on_f1["best_dev_strict_f1"] == pytest.approx(0.3)       # its F1 leads: kept
    assert on_f1["signal"] == "dev_f1_then_loss"
    with pytest.raises(OpenMedError, match="cannot be replayed on prune_on='dev_f1_then_loss'"):
        search_analyses.replay_pruning(study, "median", epochs=3, signal="dev_f1_then_loss", recorded_signal="dev_f1")


def test_a_replay_never_prunes_a_trial_after_its_last_epoch():
    replayed = search_analyses.replay_pruning(unpruned_study([[-0.30, -0.28, -0.26], [-0.30, -0.28, -0.90]]), "median",
                                              epochs=3, startup_trials=1)
    assert replayed["pruned_trials"] == 0 and replayed["epochs_trained"] == 6


def test_a_trial_retrained_with_its_own_seed_scores_what_the_study_recorded(synthetic_corpus, tmp_path):
    search = tmp_path / "search"
    base = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus), "epochs": 2})
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"space": {"learning_rate": {"low": 1.0e-3, "high": 1.0e-1, "log": True}}}))
    hpo.work(base, job_settings.load_search_config({"space": str(space), "n_trials": 1, "heartbeat_interval": 1, "grace_period": 3}), search)
    record = search_analyses.retrain(search, 0, [base.seed, 7])
    assert record["study_seed"] == base.seed
    assert record["best_dev_strict_f1_by_seed"][base.seed] == record["study_best_dev_strict_f1"]
    by_seed = record["best_dev_strict_f1_by_seed"]
    assert 0 <= by_seed[7] <= 1
    assert record["spread"] == pytest.approx(max(by_seed.values()) - min(by_seed.values()))
    with pytest.raises(OpenMedError, match="trial 3 is not a completed trial"):
        search_analyses.retrain(search, 3, [1])
