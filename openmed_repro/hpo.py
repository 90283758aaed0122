"""Hyper-parameter search: an Optuna TPE study whose objective is the best dev strict F1 of a fine-tuning
run (the fine-tuning chapter's own `finetune.train`). Any number of workers, on one machine or many, run
the same command against one storage (SQLite by default, PostgreSQL for many machines) and share the
study; a worker that dies mid-trial stops sending heartbeats, its trial is marked failed and retried, and
rerunning the command continues until the requested number of trials has finished. The test split is
never loaded."""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import time
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import yaml
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState
from transformers import TrainerCallback

from openmed_repro import config, corpora, finetune, runs
from openmed_repro.config import RunConfig, SearchConfig
from openmed_repro.errors import OpenMedError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SEARCH_SPLITS = ("train", "devel")
BEST_PARAMETERS = "best.yaml"
DEFAULT_TRIAL = "default configuration"


@dataclass(frozen=True)
class SearchResult:
    study: optuna.Study
    best_parameters: dict
    best_dev_f1: float
    default_dev_f1: float | None
    trials: pd.DataFrame


class SurplusTrial(Exception):
    """Raised when a worker's new trial would take the study past its number of trials."""


def default_directory(run_config: RunConfig) -> Path:
    return Path("runs") / "hpo" / f"{Path(run_config.dataset).name}-{Path(run_config.backbone).name}-{run_config.profile}"


def search_space(file: str | None = None) -> dict[str, dict]:
    """`space` of a YAML file (default parameters/search.yaml): RunConfig fields, each with a range
    (`low`, `high`, optional `log`) or a list of `choices`."""
    source = Path(file) if file else config.PARAMETERS_DIR / "search.yaml"
    if not source.is_file():
        raise OpenMedError(f"parameter space: {source} not found")
    space = (yaml.safe_load(source.read_text(encoding="utf-8")) or {}).get("space") or {}
    fields = set(RunConfig.__dataclass_fields__)
    for name, spec in space.items():
        if name not in fields:
            raise OpenMedError(f"{source}: {name!r} is not a run parameter; valid: {', '.join(sorted(fields))}")
        if not (isinstance(spec, dict) and ("choices" in spec or {"low", "high"} <= set(spec))):
            raise OpenMedError(f"{source}: {name} needs `choices` or `low` and `high`, got {spec!r}")
    return space


def contains(space: dict[str, dict], parameters: dict) -> bool:
    """Whether every value lies in the space (the profile's defaults may not: then no default trial)."""
    return all(parameters[name] in spec["choices"] if "choices" in spec
               else float(spec["low"]) <= parameters[name] <= float(spec["high"]) for name, spec in space.items())


def suggest(trial: optuna.Trial, space: dict[str, dict]) -> dict:
    return {name: trial.suggest_categorical(name, spec["choices"]) if "choices" in spec
            else trial.suggest_float(name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
            for name, spec in space.items()}


def pruner(name: str, epochs: float, startup_trials: int = SearchConfig.pruner_startup_trials) -> optuna.pruners.BasePruner:
    """The study's pruner. The median pruner waits for `startup_trials` completed trials (Optuna's five by
    default). Fewer prune more and lose more: in four pairs of 20-trial studies on ncbi_disease (3-epoch
    trials, dev loss), one start-up trial saved 46-48% of the trial time but lost 0.4 and 1.3 points of best
    dev F1, because pruned trials never enter the median, so the bar ratchets up to the best survivors and
    slow starters (long warm-up) are cut after epoch 1; with two or five, 20-21% saved and the best improved."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, round(epochs)))
    return optuna.pruners.NopPruner()


def storage(search: SearchConfig, run_dir: Path, attempts: int = 5) -> RDBStorage:
    """The study's storage with heartbeats, so that a dead worker's trial is failed and retried. Workers
    started together race to create the schema; the losers try again."""
    url = search.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats and retries are "experimental" since Optuna 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry = RetryHeartbeatStaleTrialCallback(max_retry=search.max_retry)
                return RDBStorage(url, heartbeat_interval=search.heartbeat_interval, grace_period=search.grace_period,
                                  heartbeat_stale_trial_callback=retry)
        except Exception as error:  # SQLAlchemy raises many kinds; all mean the URL cannot be used (yet)
            if attempt == attempts - 1:
                raise OpenMedError(f"parameter storage: cannot open {url!r}: {error}") from error
            time.sleep(1 + attempt)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sampler(seed: int, worker: str) -> optuna.samplers.TPESampler:
    """TPE seeded from the run's seed and the worker's name: workers sharing one seed draw the same random
    start-up configurations and train each of them twice. The constant liar keeps concurrent workers
    from proposing the same point once TPE takes over."""
    worker_seed = int.from_bytes(hashlib.sha256(f"{seed}:{worker}".encode()).digest()[:4], "little")
    return optuna.samplers.TPESampler(seed=worker_seed, constant_liar=True)


def open_study(run_config: RunConfig, search: SearchConfig, space: dict[str, dict], run_dir: Path,
               worker: str | None = None) -> optuna.Study:
    """Create or join the study; its first trial is the profile's own configuration (default vs tuned)."""
    name = search.study_name or f"{Path(run_config.dataset).name}-{Path(run_config.backbone).name}-{run_config.profile}"
    study = optuna.create_study(
        study_name=name, storage=storage(search, run_dir), direction="maximize", load_if_exists=True,
        sampler=sampler(run_config.seed, worker or worker_name()), pruner=pruner(search.pruner, run_config.epochs, search.pruner_startup_trials))
    defaults = {key: getattr(run_config, key) for key in space}
    if contains(space, defaults):
        study.enqueue_trial(defaults, user_attrs={"origin": DEFAULT_TRIAL}, skip_if_exists=True)
    return study


PRUNING_SIGNALS = {"dev_loss": ("eval_loss", -1.0), "dev_f1": ("eval_strict_f1", 1.0)}


class ReportToPruner(TrainerCallback):
    """Hands each epoch's pruning signal to Optuna and stops the trial when the pruner says so. The
    signal is dev loss by default (reported negated: the study maximises), not dev F1: on a small
    training budget almost every trial still predicts no entity after its first epoch, so every dev F1
    is 0, nothing lies below the median and the first epoch cannot prune. The loss already separates
    the rates that learn from those that crawl or diverge. Each epoch's dev F1 is kept as a user
    attribute either way."""

    def __init__(self, trial: optuna.Trial, signal: str = "dev_loss"):
        self.trial = trial
        self.metric, self.sign = PRUNING_SIGNALS[signal]
        self.dev_f1: list[float] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or self.metric not in metrics:
            return
        if "eval_strict_f1" in metrics:
            self.dev_f1.append(round(metrics["eval_strict_f1"], 6))
            self.trial.set_user_attr("dev_strict_f1_by_epoch", self.dev_f1)
            self.trial.set_user_attr("epochs_run", len(self.dev_f1))
        self.trial.report(self.sign * metrics[self.metric], step=round(state.epoch))
        if state.global_step >= state.max_steps:
            return   # training is over: pruning would save nothing and lose the trial's F1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {state.epoch:g}")


def objective(run_config: RunConfig, corpus: corpora.Corpus, search: SearchConfig, space: dict[str, dict],
              run_dir: Path):
    def evaluate(trial: optuna.Trial) -> float:
        _refuse_surplus(trial, search.n_trials)
        trial.set_user_attr("worker", worker_name())
        trial_config = config.load_run_config(run_config.profile, {**run_config.to_dict(), **suggest(trial, space)})
        trial_dir = run_dir / "trials" / f"trial-{trial.number:04d}"
        try:
            trained = finetune.train(trial_config, corpus, trial_dir, callbacks=[ReportToPruner(trial, search.prune_on)],
                                     footprint_dir=run_dir / "footprint" / trial_dir.name, chapter="search trial")
        finally:
            shutil.rmtree(trial_dir, ignore_errors=True)   # checkpoints of a finished trial are not needed
        trial.set_user_attr("train_seconds", round(trained.train_seconds, 1))
        return best_dev_f1(trained)

    return evaluate


def best_dev_f1(trained: finetune.Trained) -> float:
    """A trial's score: the best dev strict F1 of any of its epochs."""
    return max(entry["eval_strict_f1"] for entry in trained.log_history if "eval_strict_f1" in entry)


def _refuse_surplus(trial: optuna.Trial, n_trials: int) -> None:
    """Workers start trials concurrently; the ones numbered after the first `n_trials` finished or running
    ones step back, so that exactly `n_trials` finish."""
    ahead = [t for t in trial.study.get_trials(deepcopy=False)
             if t.number != trial.number and (t.state in FINISHED or
                                               (t.state == TrialState.RUNNING and t.number < trial.number))]
    if len(ahead) >= n_trials:
        trial.set_user_attr("surplus", True)
        raise SurplusTrial(f"{len(ahead)} trials already finished or running ahead of trial {trial.number}")


def counts(study: optuna.Study) -> dict[str, int]:
    trials = study.get_trials(deepcopy=False)
    return {"finished": sum(t.state in FINISHED for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials),
            "waiting": sum(t.state == TrialState.WAITING for t in trials)}


def work(run_config: RunConfig, search: SearchConfig, run_dir: str | Path) -> SearchResult:
    """One worker: run trials until the study has `n_trials` finished ones (waiting while the last ones
    run elsewhere, so a trial whose worker dies is still retried), then write the results."""
    run_dir = Path(run_dir)
    runs.claim(run_dir, run_config)   # one directory per base configuration; n_trials may grow between reruns
    corpus = corpora.load(run_config.dataset, run_config.data_dir, repair=run_config.repair, splits=SEARCH_SPLITS)
    space = search_space(search.space)
    study = open_study(run_config, search, space, run_dir)
    evaluate = objective(run_config, corpus, search, space, run_dir)
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)
        state = counts(study)
        if state["finished"] >= search.n_trials:
            break
        if state["finished"] + state["running"] >= search.n_trials and not state["waiting"]:
            time.sleep(min(search.heartbeat_interval, 5))
            continue
        study.optimize(evaluate, n_trials=1, catch=(SurplusTrial,))
    return write_results(study, run_dir, search)


def write_results(study: optuna.Study, run_dir: Path, search: SearchConfig | None = None) -> SearchResult:
    """best.yaml (for `finetune.ipynb -f`), trials.csv and summary.json in the run directory."""
    best = study.best_trial
    default = [t for t in study.get_trials(states=FINISHED) if t.user_attrs.get("origin") == DEFAULT_TRIAL]
    default_f1 = default[0].value if default and default[0].state == TrialState.COMPLETE else None
    trials = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params", "user_attrs"))
    runs.write_text(run_dir / BEST_PARAMETERS, yaml.safe_dump(best.params, sort_keys=True))
    runs.write_text(run_dir / "trials.csv", trials.to_csv(index=False))
    summary = {"study": study.study_name, "best_trial": best.number, "best_dev_strict_f1": best.value,
               "default_dev_strict_f1": default_f1, "best_parameters": best.params, **counts(study),
               "trial_seconds": sum((t.duration.total_seconds() for t in study.trials if t.duration), 0.0)}
    if search:   # how the trials were pruned, for whoever compares this study with another
        summary.update(pruner=search.pruner, prune_on=search.prune_on, pruner_startup_trials=search.pruner_startup_trials)
    runs.write_json(run_dir / "summary.json", summary)
    return SearchResult(study, best.params, best.value, default_f1, trials)


def finished_study(run_dir: Path, summary: dict) -> optuna.Study | None:
    """The SQLite study of a finished search directory, named by its summary.json; None when the study
    lives elsewhere (a PostgreSQL URL) or the directory holds no study file."""
    study_file = run_dir / "study.db"
    if not (study_file.is_file() and summary.get("study")):
        return None
    return optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{study_file.resolve()}")


def replay_pruning(study: optuna.Study, pruner_name: str, epochs: float,
                   startup_trials: int = SearchConfig.pruner_startup_trials) -> dict:
    """What a pruner would have done to the finished trials of an unpruned study, replayed one by one in the
    order they started: the epochs it would have trained and the best dev F1 it would have kept. Both sides
    see the same trials, so unlike two separate studies (whose samplers part ways at the first pruned
    trial) the difference is the pruner's alone. Sequential: a trial sees every earlier trial as finished."""
    replayed = optuna.create_study(direction="maximize", pruner=pruner(pruner_name, epochs, startup_trials))
    finished = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.datetime_start)
    trained = pruned = 0
    for trial in finished:
        live = replayed.ask()
        curve = sorted(trial.intermediate_values.items())
        for step, value in curve:
            live.report(value, step)
            trained += 1
            if step < curve[-1][0] and live.should_prune():   # as in a trial, never after its last epoch
                replayed.tell(live, state=TrialState.PRUNED)
                pruned += 1
                break
        else:
            replayed.tell(live, trial.value)
    unpruned_epochs = sum(len(t.intermediate_values) for t in finished)
    return {"pruner": pruner_name, "startup_trials": startup_trials, "trials": len(finished), "pruned_trials": pruned, "epochs_trained": trained,
            "epochs_unpruned": unpruned_epochs, "epochs_saved": round(1 - trained / unpruned_epochs, 3) if unpruned_epochs else None,
            "best_dev_strict_f1": replayed.best_value if pruned < len(finished) else None,
            "unpruned_best_dev_strict_f1": max(t.value for t in finished) if finished else None}


def main(argv: list[str] | None = None) -> None:
    """One search worker from the command line; start it on as many processes or machines as you like
    with the same --storage, --study-name and --out (or --out on each machine's own disk)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--out", type=Path, required=True, help="run directory (SQLite study, best.yaml, trials.csv)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="run parameters (YAML values), e.g. max_train_sentences=500 epochs=3")
    for name, hint in typing.get_type_hints(SearchConfig).items():   # names and URLs stay strings
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None,
                            type=str if hint is str or str in typing.get_args(hint) else yaml.safe_load)
    args = parser.parse_args(argv)
    overrides = {**config.key_values(args.set), "dataset": args.dataset}
    run_config = config.load_run_config(args.profile, overrides)
    search = config.load_search_config({name: getattr(args, name) for name in typing.get_type_hints(SearchConfig)
                                        if getattr(args, name) is not None})
    result = work(run_config, search, args.out)
    print(f"best dev strict F1 {result.best_dev_f1:.4f} (default configuration: {result.default_dev_f1}); "
          f"parameters in {args.out / BEST_PARAMETERS}")


if __name__ == "__main__":
    main()
