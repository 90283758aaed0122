"""What pruning saved, read back from two search directories as the search chapter's runs leave them."""

import datetime
import json

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from openmed_repro.infra import config
from openmed_repro.search import hpo
from openmed_repro.search import search_comparison

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
    hpo.write_results(study, path, config.load_search_config({"pruner": pruner, "pruner_startup_trials": startup_trials,
                                                             "prune_on": prune_on}))
    return path


@pytest.fixture
def pair(tmp_path):
    unpruned = search_directory(tmp_path / "none", [(c, TrialState.COMPLETE) for c in (GOOD, BAD, GOOD, BAD)], "none")
    pruned = search_directory(tmp_path / "median", [(GOOD, TrialState.COMPLETE), (BAD[:1], TrialState.PRUNED),
                                                    (GOOD, TrialState.COMPLETE), (BAD[:2], TrialState.PRUNED)])
    return pruned, unpruned


def test_pruning_is_credited_with_the_epochs_and_trial_time_it_saved(pair):
    record = search_comparison.compare(*pair)
    assert record["pruned"]["epochs_trained"] == 3 + 1 + 3 + 2 and record["unpruned"]["epochs_trained"] == 12
    assert record["epochs_saved"] == pytest.approx(0.25)
    assert record["trial_time_saved"] == pytest.approx(0.25)              # 270 s of trials against 360 s
    assert record["pruned"]["pruned_after_epoch"] == {"1": 1, "2": 1}
    assert record["pruned"]["wall_seconds"] == 270 and record["unpruned"]["wall_seconds"] == 360
    assert record["best_dev_f1_difference"] == 0


def test_the_replay_uses_the_pruned_studys_start_up_count_on_the_unpruned_trials(pair):
    replay = search_comparison.compare(*pair)["pruner_replayed_on_unpruned"]
    assert replay["startup_trials"] == 1
    assert replay["pruned_trials"] == 2 and replay["epochs_trained"] == 3 + 1 + 3 + 1
    assert replay["best_dev_strict_f1"] == replay["unpruned_best_dev_strict_f1"]


def test_the_replay_uses_the_pruned_studys_pruner_and_signal(pair, tmp_path):
    halving = search_directory(tmp_path / "halving", [(GOOD, TrialState.COMPLETE), (BAD[:1], TrialState.PRUNED)],
                               "successive_halving", prune_on="dev_f1_then_loss")
    with pytest.raises(hpo.OpenMedError, match="cannot be replayed on prune_on='dev_f1_then_loss'"):
        search_comparison.compare(halving, pair[1])   # these unpruned trials kept no dev F1 by epoch
    unpruned = search_directory(tmp_path / "none-f1", [(c, TrialState.COMPLETE) for c in (GOOD, BAD, GOOD, BAD)],
                                "none", keep_dev_f1=True)   # F1 0 throughout: the loss decides
    replay = search_comparison.compare(halving, unpruned)["pruner_replayed_on_unpruned"]
    assert (replay["pruner"], replay["signal"]) == ("successive_halving", "dev_f1_then_loss")
    assert replay["pruned_trials"] == 2 and replay["best_dev_strict_f1"] == replay["unpruned_best_dev_strict_f1"]


def test_the_replay_can_try_other_start_up_counts_on_the_same_trials(pair):
    replays = search_comparison.compare(*pair, replay_startup_trials=(1, 3, 4))["median_pruner_replays"]
    # 3: the second trial is bad but runs while one trial has completed; 4: never four completed before a trial
    assert [(r["startup_trials"], r["pruned_trials"]) for r in replays] == [(1, 2), (3, 1), (4, 0)]


def test_the_command_writes_the_comparison_and_says_what_pruning_saved(pair, tmp_path, capsys):
    pruned, unpruned = pair
    search_comparison.main(["--pruned", str(pruned), "--unpruned", str(unpruned), "--out", str(tmp_path / "c.json"),
                            "--replay-startup-trials", "1"])
    assert json.loads((tmp_path / "c.json").read_text()) == search_comparison.compare(pruned, unpruned, (1,))
    printed = capsys.readouterr().out
    assert "Pruning saved 25% of the epochs trained and 25% of the trial time" in printed
    assert "median pruner, 1 start-up trial(s), replayed: 2 pruned, 33% of the epochs saved" in printed


def test_a_directory_without_a_finished_search_is_refused_naming_it(tmp_path, pair):
    with pytest.raises(SystemExit, match="absent"):
        search_comparison.main(["--pruned", str(tmp_path / "absent"), "--unpruned", str(pair[1])])
