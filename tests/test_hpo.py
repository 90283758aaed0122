"""The search chapter on the smoke profile: exactly n finished trials, best.yaml that fine-tuning accepts,
the test split never read, resume after a killed worker, and two workers sharing one PostgreSQL study."""

import functools
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import optuna
import pandas as pd
import pytest
import yaml

from openmed_repro.infra import job_settings, layout, paths
from openmed_repro.data import corpora
from openmed_repro.search import hpo
from openmed_repro.errors import OpenMedError
from optuna.trial import TrialState

SPACE = {"space": {"learning_rate": {"low": 1.0e-3, "high": 1.0e-1, "log": True},
                   "batch_size": {"choices": [8, 16]}, "lora_r": {"choices": [4, 8]}}}
FAST_HEARTBEAT = {"heartbeat_interval": 1, "grace_period": 3}


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return str(path)


@pytest.fixture(scope="module")
def corpus_without_a_readable_test_split(synthetic_corpus, tmp_path_factory):
    """The synthetic corpus with a test.tsv that the reader would reject: a search that opened it fails."""
    directory = tmp_path_factory.mktemp("guarded") / "guarded"
    shutil.copytree(synthetic_corpus, directory)
    (directory / "test.tsv").write_bytes(b"\xff\xfe not UTF-8 and one column\n")
    return directory


def search_config(space_file, **values):
    return job_settings.load_search_config({"space": space_file, **FAST_HEARTBEAT, **values})


def run_config(dataset, **values):
    return job_settings.load_run_config("smoke", {"dataset": str(dataset), "epochs": 2, **values})


def finished(study):
    return [t for t in study.get_trials() if t.state in hpo.FINISHED]


def test_a_search_finishes_exactly_n_trials_starting_from_the_default_configuration(
        corpus_without_a_readable_test_split, space_file, tmp_path):
    result = hpo.work(run_config(corpus_without_a_readable_test_split), search_config(space_file, n_trials=4),
                      tmp_path / "search")
    trials = finished(result.study)
    assert len(trials) == 4
    assert trials[0].user_attrs["origin"] == hpo.DEFAULT_TRIAL
    assert trials[0].params == {"learning_rate": 5e-2, "batch_size": 8, "lora_r": 4}  # the smoke profile's
    assert result.default_dev_f1 == trials[0].value
    assert result.best_dev_f1 == max(t.value for t in trials)
    summary = json.loads((tmp_path / "search" / "summary.json").read_text())
    assert summary["finished"] == 4 and summary["best_dev_strict_f1"] == result.best_dev_f1
    assert (summary["pruner"], summary["prune_on"], summary["pruner_startup_trials"]) == ("hyperband", "dev_loss", 5)


def test_a_worker_that_finds_the_study_finished_leaves_the_provenance_of_the_workers_that_trained_it(
        corpus_without_a_readable_test_split, space_file, tmp_path):
    settings, search = run_config(corpus_without_a_readable_test_split), search_config(space_file, n_trials=2)
    hpo.work(settings, search, tmp_path / "search")
    provenance = tmp_path / "search" / "provenance.json"
    trained_on = json.loads(provenance.read_text())
    provenance.write_text(json.dumps({**trained_on, "device": "the GPU the trials trained on"}))
    hpo.work(settings, search, tmp_path / "search")
    assert json.loads(provenance.read_text())["device"] == "the GPU the trials trained on"


def test_the_best_parameters_are_a_yaml_file_that_fine_tuning_accepts(
        corpus_without_a_readable_test_split, space_file, tmp_path):
    result = hpo.work(run_config(corpus_without_a_readable_test_split), search_config(space_file, n_trials=2),
                      tmp_path / "search")
    best = yaml.safe_load((tmp_path / "search" / layout.LAYOUT.best_parameters).read_text())
    # the smoke profile caps the training split: best.yaml says so, for the fine-tuning chapter to warn
    assert best.pop("tuned_on") == "the first 48 training sentences, at most 2 epochs"
    (tmp_path / "best.yaml").write_text(yaml.safe_dump(best))
    tuned = job_settings.load_run_config("smoke", {"dataset": "x"}, files=[tmp_path / "best.yaml"])
    assert {key: getattr(tuned, key) for key in SPACE["space"]} == result.best_parameters


def test_a_recorded_search_reads_back_with_its_trials_best_parameters_and_plots(
        corpus_without_a_readable_test_split, space_file, tmp_path, monkeypatch):
    result = hpo.work(run_config(corpus_without_a_readable_test_split), search_config(space_file, n_trials=3),
                      tmp_path / "runs" / "hpo" / "search")
    monkeypatch.setenv(layout.RECORD_DIR_ENV, str(tmp_path / "results"))
    recorded = tmp_path / "results" / "hpo" / "search"
    recorded.mkdir(parents=True)
    for name in (layout.LAYOUT.search_trials, layout.LAYOUT.search_summary, layout.LAYOUT.best_parameters):
        shutil.copy(tmp_path / "runs" / "hpo" / "search" / name, recorded / name)
    read = hpo.study_result(run_config(corpus_without_a_readable_test_split), search_config(space_file), recorded)
    assert read.best_dev_f1 == result.best_dev_f1 and read.default_dev_f1 == result.default_dev_f1
    assert [t.params for t in finished(read.study)] == [t.params for t in finished(result.study)]
    assert [t.state for t in finished(read.study)] == [t.state for t in finished(result.study)]
    assert read.study.best_value == result.best_dev_f1
    optuna.visualization.matplotlib.plot_slice(read.study)   # the chapter's plots draw from the rebuilt study


def test_pruning_is_costed_in_epochs_and_seconds_against_running_every_trial_to_its_end():
    trials = pd.DataFrame({"state": ["COMPLETE", "PRUNED", "PRUNED", "FAIL"],
                           "user_attrs_epochs_run": [6, 1, 2, None],
                           "duration": pd.to_timedelta([600, 100, 200, 50], unit="s")})
    cost = hpo.pruning_cost(trials, epochs=8)
    assert (cost["trials"], cost["pruned"]) == (3, 2)
    assert (cost["epochs_trained"], cost["epochs_unpruned"]) == (9.0, 22.0)   # 6 + 8 + 8: a completed trial stopped early
    assert (cost["trial_seconds"], cost["trial_seconds_unpruned"]) == (900.0, 2200.0)
    assert cost["saved_fraction"] == round(1 - 9 / 22, 3)


def test_a_trials_configuration_depends_on_the_seed_and_its_number_only_not_on_the_worker_that_draws_it():
    space = hpo.search_space()

    def proposals(seed, workers, n=6):
        """Trials drawn in turn by `workers` samplers sharing one study, as worker processes do."""
        storage = optuna.storages.InMemoryStorage()
        optuna.create_study(study_name="s", storage=storage, direction="maximize")
        studies = [optuna.load_study(study_name="s", storage=storage, sampler=hpo.TrialSeededSampler(seed))
                   for _ in range(workers)]
        drawn = []
        for number in range(n):
            trial = studies[number % workers].ask()
            drawn.append(hpo.suggest(trial, space))
            studies[number % workers].tell(trial, 0.0)
        return drawn

    one_worker = proposals(42, workers=1)
    assert proposals(42, workers=2) == one_worker                 # a rerun, with any workers, draws the same
    assert len({str(sorted(c.items())) for c in one_worker}) == 6  # no configuration is trained twice
    assert proposals(7, workers=1) != one_worker


def test_a_search_never_opens_the_test_split(synthetic_corpus, corpus_without_a_readable_test_split):
    with pytest.raises(OpenMedError, match="test.tsv"):
        corpora.load(corpus_without_a_readable_test_split)
    search_corpus = corpora.load(synthetic_corpus, splits=hpo.SEARCH_SPLITS)
    with pytest.raises(OpenMedError, match="the test split was not loaded; a hyper-parameter search never reads it"):
        search_corpus.test


def test_invalid_search_parameters_are_refused_naming_them(space_file, tmp_path):
    with pytest.raises(OpenMedError, match="pruner='bayes'; valid: median, successive_halving, hyperband, none"):
        job_settings.load_search_config({"pruner": "bayes"})
    with pytest.raises(OpenMedError, match="prune_on='accuracy'; valid: dev_loss, dev_f1, dev_f1_then_loss"):
        job_settings.load_search_config({"prune_on": "accuracy"})
    with pytest.raises(OpenMedError, match="n_trials=0 must be positive"):
        job_settings.load_search_config({"n_trials": 0})
    with pytest.raises(OpenMedError, match="pruner_startup_trials"):
        job_settings.load_search_config({"pruner_startup_trials": -1})
    bad_space = tmp_path / "space.yaml"
    bad_space.write_text(yaml.safe_dump({"space": {"learning_rat": {"low": 0.1, "high": 0.2}}}))
    with pytest.raises(OpenMedError, match="'learning_rat' is not a run parameter"):
        hpo.search_space(str(bad_space))


class EpochState:
    """The Trainer's state at the end of an epoch of a three-epoch run, ten steps an epoch."""

    def __init__(self, epoch):
        self.epoch, self.global_step, self.max_steps = epoch, round(epoch * 10), 30


def epoch_one_of(study, loss, callback_signal="dev_loss"):
    """A trial that reports only its first epoch: dev F1 0 (no entity predicted yet) and the given loss."""
    trial = study.ask()
    callback = hpo.ReportToPruner(trial, callback_signal)
    callback.on_evaluate(None, EpochState(1.0), None, metrics={"eval_loss": loss, "eval_strict_f1": 0.0})
    return trial


def test_a_trial_whose_first_epoch_dev_loss_is_above_the_median_is_pruned_while_every_dev_f1_is_zero():
    study = optuna.create_study(direction="maximize", pruner=hpo.pruner("median", epochs=3, startup_trials=2))
    for loss in (0.30, 0.40):                         # two completed trials: median 0.35
        trial = study.ask()
        trial.report(-loss, 1)
        study.tell(trial, 0.0)
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 1"):
        epoch_one_of(study, 0.60)
    promising = epoch_one_of(study, 0.32)
    assert promising.user_attrs == {"dev_strict_f1_by_epoch": [0.0], "dev_loss_by_epoch": [0.32], "epochs_run": 1}
    assert study.trials[-1].intermediate_values == {1: -0.32}


def test_on_dev_f1_alone_a_first_epoch_of_zeros_cannot_prune():
    study = optuna.create_study(direction="maximize", pruner=hpo.pruner("median", epochs=3, startup_trials=2))
    for loss in (0.30, 0.40):
        trial = study.ask()
        trial.report(0.0, 1)                          # dev F1 after the first epoch
        study.tell(trial, 0.0)
    trial = epoch_one_of(study, 0.60, "dev_f1")       # no TrialPruned: 0 is not below a median of 0
    assert study.trials[-1].number == trial.number and study.trials[-1].intermediate_values == {1: 0.0}


def test_dev_f1_then_loss_ranks_trials_by_dev_f1_and_breaks_its_ties_with_the_dev_loss():
    signal = functools.partial(hpo.pruning_signal, "dev_f1_then_loss")
    assert signal(dev_f1=0.0, dev_loss=0.44) > signal(dev_f1=0.0, dev_loss=0.47)   # no entity yet: the loss decides
    assert signal(dev_f1=0.12, dev_loss=0.47) > signal(dev_f1=0.10, dev_loss=0.30)  # otherwise the F1 does
    assert hpo.pruning_signal("dev_loss", 0.5, 0.44) == -0.44 and hpo.pruning_signal("dev_f1", 0.5, 0.44) == 0.5
    with pytest.raises(OpenMedError, match="prune_on='accuracy'"):
        hpo.pruning_signal("accuracy", 0.5, 0.44)


def test_a_trial_is_never_pruned_after_its_last_epoch_because_that_would_save_nothing():
    study = optuna.create_study(direction="maximize", pruner=hpo.pruner("median", epochs=3, startup_trials=1))
    trial = study.ask()
    for epoch, loss in enumerate((0.30, 0.28, 0.26), start=1):
        trial.report(-loss, epoch)
    study.tell(trial, 0.5)
    late = study.ask()
    callback = hpo.ReportToPruner(late)
    for epoch in (1, 2):                                      # level with the finished trial so far
        callback.on_evaluate(None, EpochState(epoch), None, metrics={"eval_loss": 0.30 - 0.02 * (epoch - 1),
                                                                     "eval_strict_f1": 0.1})
    callback.on_evaluate(None, EpochState(3), None, metrics={"eval_loss": 0.90, "eval_strict_f1": 0.4})
    assert late.should_prune()                                # the pruner would have said so ...
    assert late.user_attrs["epochs_run"] == 3                 # ... but the last epoch ran to its end


KILL_IN_SECOND_TRIAL = """
import os, signal, sys
from openmed_repro.infra import job_settings
from openmed_repro.search import hpo

report = hpo.ReportToPruner.on_evaluate
def die_in_trial_one(self, *args, **kwargs):
    if self.trial.number == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return report(self, *args, **kwargs)
hpo.ReportToPruner.on_evaluate = die_in_trial_one
run_config = job_settings.load_run_config("smoke", {"dataset": sys.argv[1], "epochs": 2})
hpo.work(run_config, job_settings.load_search_config({"space": sys.argv[3], "n_trials": 3, "heartbeat_interval": 1,
                                                "grace_period": 3}), sys.argv[2])
"""


def test_an_interrupted_search_resumes_to_the_requested_number_of_trials(synthetic_corpus, space_file, tmp_path):
    out = tmp_path / "search"
    killed = subprocess.run([sys.executable, "-c", KILL_IN_SECOND_TRIAL, str(synthetic_corpus), str(out), space_file],
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    study = optuna.load_study(study_name="synthetic-tiny-random-bert-smoke", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE, TrialState.RUNNING]

    resumed = hpo.work(run_config(synthetic_corpus), search_config(space_file, n_trials=3), out)
    trials = resumed.study.get_trials()
    assert len(finished(resumed.study)) == 3
    assert trials[1].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
    assert len(retries) == 1 and retries[0].state in hpo.FINISHED and retries[0].params == trials[1].params

    again = hpo.work(run_config(synthetic_corpus), search_config(space_file, n_trials=3), out)
    assert len(again.study.get_trials()) == len(trials)  # a finished search trains nothing more


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian's postgresql package; CI installs it)."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
    if not binaries[-1]:
        if os.environ.get("OPENMED_REQUIRE_POSTGRES"):
            pytest.fail("initdb not found: install Debian's postgresql package")
        pytest.skip("PostgreSQL is not installed (CI installs it: apt-get install postgresql)")
    bin_dir = os.path.dirname(binaries[-1])
    data = tempfile.mkdtemp(prefix="openmed-pg-")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(data, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run(as_postgres + [f"{bin_dir}/initdb", "-D", f"{data}/db", "-U", "openmed", "--auth=trust"],
                   check=True, capture_output=True)
    subprocess.run(as_postgres + [f"{bin_dir}/pg_ctl", "-D", f"{data}/db", "-w", "-l", f"{data}/log", "-o",
                                  f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://openmed@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_postgres + [f"{bin_dir}/pg_ctl", "-D", f"{data}/db", "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_two_workers_share_one_postgresql_study_and_survive_a_killed_worker(synthetic_corpus, space_file,
                                                                           postgres_url, tmp_path):
    n_trials = 6
    command = [sys.executable, "-m", "openmed_repro.cli", "search", "--dataset", str(synthetic_corpus), "--profile", "smoke",
               "--out", str(tmp_path / "search"), "--storage", postgres_url, "--study-name", "shared",
               "--n-trials", str(n_trials), "--space", space_file, "--heartbeat-interval", "1",
               "--grace-period", "3", "--pruner", "none", "--set", "epochs=3"]   # whole trials: one can be killed
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed_trial = None
    deadline = time.monotonic() + 300
    while killed_trial is None and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="shared", storage=postgres_url)
        except Exception:  # the workers have not created the study (or its tables) yet
            continue
        running = [t for t in study.get_trials() if t.state == TrialState.RUNNING
                   and t.user_attrs.get("worker", "").endswith(f":{first.pid}") and t.number > 0]
        if running:
            first.send_signal(signal.SIGKILL)
            killed_trial = running[0].number
    assert killed_trial is not None, "the first worker never started a trial"
    first.wait(timeout=60)
    restarted = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert restarted.wait(timeout=600) == 0, restarted.stderr.read()[-2000:]
    assert second.wait(timeout=600) == 0, second.stderr.read()[-2000:]

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    assert len(finished(study)) == n_trials
    assert trials[killed_trial].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed_trial]
    assert len(retries) == 1 and retries[0].state in hpo.FINISHED
    workers = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in trials if "worker" in t.user_attrs}
    assert {str(first.pid), str(second.pid)} <= workers  # one study, trials run by both processes


def test_the_search_notebook_runs_on_the_smoke_profile(synthetic_corpus, space_file, tmp_path):
    import papermill

    executed = papermill.execute_notebook(
        str(paths.PROJECT_ROOT / "notebooks" / "hpo.ipynb"), str(tmp_path / "hpo.ipynb"), kernel_name="python3",
        parameters={"dataset": str(synthetic_corpus), "profile": "smoke", "n_trials": 4, "epochs": 2,
                    "max_train_sentences": 40, "pruner": "median", "prune_on": "dev_loss", "pruner_startup_trials": 4,
                    "confirm_seeds": [],
                    "output_dir": str(tmp_path / "run"), "space": space_file, "heartbeat_interval": 1,
                    "grace_period": 3},
        cwd=str(tmp_path), progress_bar=False)
    assert (tmp_path / "run" / layout.LAYOUT.best_parameters).is_file()
    outputs = "".join(str(o) for cell in executed.cells for o in cell.get("outputs", []))
    assert outputs.count("image/png") == 3 and "profile **smoke**" in outputs
    assert "Dev strict F1 of the profile's configuration" in outputs
    assert "Trials trained on the first 40 training sentences" in outputs   # tuning on a subset may not transfer


def test_a_misspelt_search_parameter_stops_the_notebook_naming_it(synthetic_corpus, tmp_path):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match="unknown notebook parameter.*n_trial"):
        papermill.execute_notebook(
            str(paths.PROJECT_ROOT / "notebooks" / "hpo.ipynb"), str(tmp_path / "hpo.ipynb"),
            kernel_name="python3", parameters={"dataset": str(synthetic_corpus), "profile": "smoke", "n_trial": 4},
            cwd=str(tmp_path), progress_bar=False)


def test_a_search_never_runs_in_the_record(synthetic_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv(layout.RECORD_DIR_ENV, str(tmp_path / "results"))
    run_config = job_settings.load_run_config("smoke", {"dataset": str(synthetic_corpus)})
    with pytest.raises(OpenMedError, match="never runs in the record"):
        hpo.work(run_config, job_settings.load_search_config({"n_trials": 1}), tmp_path / "results" / "hpo" / "x")
    assert not (tmp_path / "results").exists()


def test_the_chapter_says_what_became_of_the_default_configuration_completed_pruned_or_absent():
    def study_with(*trials):
        study = optuna.create_study(direction="maximize")
        for trial in trials:
            study.add_trial(trial)
        return study
    default = {"origin": hpo.DEFAULT_TRIAL, "dev_strict_f1_by_epoch": [0.57, 0.62, 0.671]}
    pruned = optuna.trial.create_trial(state=hpo.TrialState.PRUNED, user_attrs=default)
    completed = optuna.trial.create_trial(state=hpo.TrialState.COMPLETE, value=0.8085, user_attrs=default)
    other = optuna.trial.create_trial(state=hpo.TrialState.COMPLETE, value=0.81, user_attrs={})
    assert hpo.default_outcome(study_with(pruned, other)) == "pruned after epoch 3 (dev strict F1 67.1 then)"
    assert hpo.default_outcome(study_with(completed, other)) == "80.8"
    assert hpo.default_outcome(study_with(other)) == "not in the search space"
