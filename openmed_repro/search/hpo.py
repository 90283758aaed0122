"""Hyper-parameter search: an Optuna TPE study whose objective is the best dev strict F1 of a fine-tuning
run (the fine-tuning chapter's own `finetune.train`). Any number of workers, on one machine or many, run
the same command against one storage (SQLite by default, PostgreSQL for many machines) and share the
study; a worker that dies mid-trial stops sending heartbeats, its trial is marked failed and retried, and
rerunning the command continues until the requested number of trials has finished. The test split is
never loaded.

    openmed-repro search --dataset ncbi_disease --profile cpu --out runs/hpo/ncbi --n-trials 20 \
        [--storage postgresql://... --study-name ncbi]

By default a trial is the run the tuned configuration will be used for (the full training split, the
profile's epochs, early stopping) and Hyperband prunes on epochs. A search on a capped training split stays
possible (`max_train_sentences`, `epochs`); its best.yaml then says so in `tuned_on`, which the fine-tuning
chapter prints as a warning. A recorded search (results/hpo/...) is read back from its trials.csv."""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import yaml
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState
from transformers import TrainerCallback

from openmed_repro.infra import atomic_files, job_settings, layout, paths, run_provenance
from openmed_repro.data import corpora
from openmed_repro.training import finetune
from openmed_repro.infra import devices, lifecycle, runs
from openmed_repro.infra.job_settings import RunConfig, SearchConfig
from openmed_repro.errors import OpenMedError

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SEARCH_SPLITS = ("train", "devel")
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


def search_space(file: str | None = None) -> dict[str, dict]:
    """`space` of a YAML file (default parameters/search.yaml): RunConfig fields, each with a range
    (`low`, `high`, optional `log`) or a list of `choices`."""
    source = Path(file) if file else paths.PARAMETERS_DIR / "search.yaml"
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
    """The study's pruner. The median pruner (after `startup_trials` completed trials) compares a trial with
    the completed ones only, so once weak trials are pruned its bar rises to the survivors' and slow starters
    are cut; successive halving ranks every trial that reached an epoch, pruned ones included, so its bar
    does not ratchet."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=1)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, round(epochs)))
    return optuna.pruners.NopPruner()


def storage(search: SearchConfig, run_dir: Path, attempts: int = 5) -> RDBStorage:
    """The study's storage with heartbeats, so that a dead worker's trial is failed and retried. Workers
    started together race to create the schema; the losers try again."""
    url = search.storage or f"sqlite:///{(run_dir / layout.LAYOUT.study_storage).resolve()}"
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


WORKER_JOINED = "worker joined: "   # a study attribute per worker, so a search names who shared it


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """TPE whose random draws for trial N come from the run's seed and N alone, whichever worker runs it:
    workers never draw the same configuration twice, a rerun proposes the same start-up configurations,
    and two studies that differ only in their pruner try the same ones (so their comparison is paired).
    The constant liar keeps concurrent workers from proposing the same point once TPE takes over."""

    def __init__(self, seed: int):
        self.seed = seed
        self._current: tuple[int, optuna.samplers.TPESampler] | None = None

    def _tpe(self, trial: FrozenTrial) -> optuna.samplers.TPESampler:
        if self._current is None or self._current[0] != trial.number:
            trial_seed = int.from_bytes(hashlib.sha256(f"{self.seed}:{trial.number}".encode()).digest()[:4], "little")
            with warnings.catch_warnings():   # constant_liar is "experimental" since Optuna 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._current = (trial.number, optuna.samplers.TPESampler(seed=trial_seed, constant_liar=True))
        return self._current[1]

    def infer_relative_search_space(self, study, trial):
        return self._tpe(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self._tpe(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values):
        self._tpe(trial).after_trial(study, trial, state, values)


def open_study(run_config: RunConfig, search: SearchConfig, space: dict[str, dict], run_dir: Path) -> optuna.Study:
    """Create or join the study; its first trial is the profile's own configuration (default vs tuned)."""
    name = search.study_name or layout.study_name(run_config.dataset, run_config.backbone, run_config.profile)
    study = optuna.create_study(
        study_name=name, storage=storage(search, run_dir), direction="maximize", load_if_exists=True,
        sampler=TrialSeededSampler(run_config.seed), pruner=pruner(search.pruner, run_config.epochs, search.pruner_startup_trials))
    defaults = {key: getattr(run_config, key) for key in space}
    if contains(space, defaults):
        study.enqueue_trial(defaults, user_attrs={"origin": DEFAULT_TRIAL}, skip_if_exists=True)
    return study


def pruning_signal(name: str, dev_f1: float, dev_loss: float) -> float:
    """What the pruner compares after each epoch (higher is better): dev loss (negated), dev strict F1, or
    dev F1 with dev loss breaking its ties (F1 - loss / 1000): after one short epoch most trials still
    predict no entity, their F1s tie at 0 and only the loss tells the rates that learn from those that
    crawl, while later epochs rank by the F1 the study maximises."""
    if name == "dev_loss":
        return -dev_loss
    if name == "dev_f1":
        return dev_f1
    if name == "dev_f1_then_loss":
        return dev_f1 - dev_loss / 1000
    raise OpenMedError(f"parameter prune_on={name!r}; valid: dev_loss, dev_f1, dev_f1_then_loss")


class ReportToPruner(TrainerCallback):
    """Hands each epoch's pruning signal (`pruning_signal`) to Optuna and stops the trial when the pruner
    says so. Each epoch's dev F1 and dev loss are kept as user attributes, so that a finished study can be
    replayed under another pruner or signal (benchmarks/search_analyses.py does)."""

    def __init__(self, trial: optuna.Trial, signal: str = "dev_loss"):
        self.trial = trial
        self.signal = signal
        self.dev_f1: list[float] = []
        self.dev_loss: list[float] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or "eval_strict_f1" not in metrics or "eval_loss" not in metrics:
            return
        self.dev_f1.append(round(metrics["eval_strict_f1"], 6))
        self.dev_loss.append(round(metrics["eval_loss"], 6))
        self.trial.set_user_attr("dev_strict_f1_by_epoch", self.dev_f1)
        self.trial.set_user_attr("dev_loss_by_epoch", self.dev_loss)
        self.trial.set_user_attr("epochs_run", len(self.dev_f1))
        self.trial.report(pruning_signal(self.signal, metrics["eval_strict_f1"], metrics["eval_loss"]), step=round(state.epoch))
        if state.global_step >= state.max_steps:
            return   # training is over: pruning would save nothing and lose the trial's F1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {state.epoch:g}")


def objective(run_config: RunConfig, corpus: corpora.Corpus, search: SearchConfig, space: dict[str, dict],
              run_dir: Path, resolved: lifecycle.Resolved | None = None):
    """The study's objective: one trial's configuration trained and its best dev strict F1; `resolved`: the base
    configuration resolved on this machine once, before the search began (a space that varies the precision is
    resolved per trial)."""
    resolved = resolved or lifecycle.resolve(run_config)

    def evaluate(trial: optuna.Trial) -> float:
        _refuse_surplus(trial, search.n_trials)
        trial.set_user_attr("worker", worker_name())
        trial_config = job_settings.load_run_config(run_config.profile, {**run_config.to_dict(), **suggest(trial, space)})
        trial_dir = run_dir / "trials" / f"trial-{trial.number:04d}"
        try:
            trial_resolved = resolved if trial_config.precision == run_config.precision else lifecycle.resolve(trial_config)
            trained = finetune.train(trial_config, corpus, trial_dir, callbacks=[ReportToPruner(trial, search.prune_on)],
                                     resolved=trial_resolved,
                                     footprint_dir=run_dir / "footprint" / trial_dir.name, chapter="search trial")
        finally:
            shutil.rmtree(trial_dir, ignore_errors=True)   # checkpoints of a finished trial are not needed
        trial.set_user_attr("train_seconds", round(trained.train_seconds, 1))
        return best_dev_f1(trained)

    return evaluate


def best_dev_f1(trained: finetune.FineTuned) -> float:
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


def work(run_config: RunConfig, search: SearchConfig, run_dir: str | Path | None = None) -> SearchResult:
    """One worker: run trials until the study has `n_trials` finished ones (waiting while the last ones
    run elsewhere, so a trial whose worker dies is still retried), then write the results in `run_dir`
    (default: layout.default_directory(run_config, "hpo"))."""
    run_dir = Path(run_dir) if run_dir else layout.default_directory(run_config, "hpo")
    if layout.LAYOUT.in_record(run_dir):
        raise OpenMedError(f"{run_dir}: a search never runs in the record (results/); run it into runs/ "
                           f"(output_dir {layout.default_directory(run_config, 'hpo')}) and copy it in with "
                           "`openmed-repro record RUN_DIR`")
    resolved = lifecycle.resolve(run_config)   # before the directory is claimed or anything loads
    runs.claim(run_dir, run_config)   # one directory per base configuration; n_trials may grow between reruns
    atomic_files.remove_stale_temporaries(run_dir)   # what a killed write left
    corpus = corpora.load(run_config.dataset, run_config.data_dir, repair=run_config.repair, splits=SEARCH_SPLITS)
    space = search_space(search.space)
    study = open_study(run_config, search, space, run_dir)
    study.set_user_attr(f"{WORKER_JOINED}{worker_name()}", time.time())   # every worker that shared the study
    evaluate = objective(run_config, corpus, search, space, run_dir, resolved)
    trained = False
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
        trained = True
    # The provenance says where trials trained: a worker that only read a finished study back leaves it be.
    if trained or not (run_dir / runs.PROVENANCE).is_file():
        atomic_files.write_json(run_dir / runs.PROVENANCE, run_provenance.provenance(
            run_config, corpus.provenance(), devices.device_name(), devices.machine(), run_dir,
            resolved.precision))
    return write_results(study, run_dir, search, run_config)


def write_results(study: optuna.Study, run_dir: Path, search: SearchConfig | None = None,
                  run_config: RunConfig | None = None) -> SearchResult:
    """best.yaml (for `finetune.ipynb -f`; with `tuned_on` when the trials trained on a capped split),
    trials.csv and summary.json (last: the search is finished when it exists) in the run directory."""
    best = study.best_trial
    default = [t for t in study.get_trials(states=FINISHED) if t.user_attrs.get("origin") == DEFAULT_TRIAL]
    default_f1 = default[0].value if default and default[0].state == TrialState.COMPLETE else None
    trials = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params", "user_attrs"))
    budget = tuned_on(run_config) if run_config else None
    atomic_files.write_text(run_dir / layout.LAYOUT.best_parameters,
                    yaml.safe_dump({**best.params, **({"tuned_on": budget} if budget else {})}, sort_keys=True))
    atomic_files.write_text(run_dir / layout.LAYOUT.search_trials, trials.to_csv(index=False))
    summary = {"study": study.study_name, "best_trial": best.number, "best_dev_strict_f1": best.value,
               "default_dev_strict_f1": default_f1, "best_parameters": best.params, **counts(study),
               "trial_seconds": sum((t.duration.total_seconds() for t in study.trials if t.duration), 0.0)}
    if search:   # how the trials were pruned, for whoever compares this study with another
        summary.update(pruner=search.pruner, prune_on=search.prune_on, pruner_startup_trials=search.pruner_startup_trials)
    if run_config:
        summary.update(tuned_on=budget, pruning=pruning_cost(trials, run_config.epochs))
    atomic_files.write_json(run_dir / layout.LAYOUT.search_summary, summary)
    return SearchResult(study, best.params, best.value, default_f1, trials)


def default_outcome(study: optuna.Study) -> str:
    """In words, what became of the profile's own configuration (the study's first trial): its dev strict F1, or
    the epoch the pruner stopped it at (the confirmation then trains it to the end beside the best)."""
    default = [t for t in study.get_trials(states=FINISHED) if t.user_attrs.get("origin") == DEFAULT_TRIAL]
    if not default:
        return "not in the search space"
    if default[0].state == TrialState.COMPLETE:
        return f"{100 * default[0].value:.1f}"
    curve = default[0].user_attrs.get("dev_strict_f1_by_epoch") or []
    return f"pruned after epoch {len(curve)} (dev strict F1 {100 * curve[-1]:.1f} then)" if curve else "pruned"


def tuned_on(run_config: RunConfig) -> str | None:
    """In words, the smaller budget the trials trained on (None: the full training split and epochs the tuned
    run will have): a configuration found there may not transfer to the many more steps of the full run."""
    if not run_config.max_train_sentences:
        return None
    return f"the first {run_config.max_train_sentences:,} training sentences, at most {run_config.epochs:g} epochs"


def pruning_cost(trials: pd.DataFrame, epochs: float) -> dict:
    """What pruning saved: epochs and seconds the finished trials trained, against running every trial to the
    end of its budget (a pruned trial would have trained `epochs`; a completed one stopped where it stopped,
    early stopping included). Seconds unpruned are estimated from each trial's own seconds per epoch."""
    finished = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
    trained = finished["user_attrs_epochs_run"].fillna(0).astype(float) if "user_attrs_epochs_run" in finished \
        else pd.Series(0.0, index=finished.index)
    pruned = finished["state"] == "PRUNED"
    budget = trained.where(~pruned, float(round(epochs)))
    seconds = finished["duration"].map(_seconds) if "duration" in finished else pd.Series(0.0, index=finished.index)
    per_epoch = (seconds / trained.where(trained > 0)).fillna(0.0)
    return {"trials": int(len(finished)), "pruned": int(pruned.sum()),
            "epochs_trained": float(trained.sum()), "epochs_unpruned": float(budget.sum()),
            "trial_seconds": round(float(seconds.sum()), 1),
            "trial_seconds_unpruned": round(float((per_epoch * budget).sum()), 1),
            "saved_fraction": round(1 - float(trained.sum()) / float(budget.sum()), 3) if budget.sum() else 0.0}


def _seconds(duration) -> float:
    if duration is None or (isinstance(duration, float) and duration != duration):
        return 0.0
    return pd.Timedelta(duration).total_seconds()


def read_recorded(run_dir: str | Path, search: SearchConfig | None = None) -> SearchResult:
    """A recorded search (results/hpo/<name>: trials.csv, summary.json, best.yaml) as a SearchResult whose
    study is rebuilt in memory from trials.csv over the search space, so the chapter's tables and plots show
    the record without its SQLite study."""
    run_dir = Path(run_dir)
    for name in (layout.LAYOUT.search_trials, layout.LAYOUT.search_summary, layout.LAYOUT.best_parameters):
        if not (run_dir / name).is_file():
            raise OpenMedError(f"{run_dir}: no {name}; a recorded search holds {layout.LAYOUT.search_trials}, {layout.LAYOUT.search_summary} and {layout.LAYOUT.best_parameters}")
    trials = pd.read_csv(run_dir / layout.LAYOUT.search_trials)
    summary = atomic_files.read_json(run_dir / layout.LAYOUT.search_summary)
    space = search_space(search.space if search else None)
    distributions = {name: optuna.distributions.CategoricalDistribution(spec["choices"]) if "choices" in spec
                     else optuna.distributions.FloatDistribution(float(spec["low"]), float(spec["high"]),
                                                                 log=bool(spec.get("log")))
                     for name, spec in space.items()}
    study = optuna.create_study(study_name=summary["study"], direction="maximize")
    for row in trials.itertuples(index=False):
        row = row._asdict()
        state = TrialState[row["state"]]
        if state not in FINISHED:
            continue
        params = {name: _native(row[f"params_{name}"], distributions[name]) for name in distributions
                  if f"params_{name}" in row}
        attrs = {key.removeprefix("user_attrs_"): _literal(value) for key, value in row.items()
                 if key.startswith("user_attrs_") and not _missing(value)}
        value = None if _missing(row.get("value")) else float(row["value"])
        intermediate = dict(enumerate(attrs.get("dev_strict_f1_by_epoch") or [], start=1))
        study.add_trial(optuna.trial.create_trial(
            state=state, value=value if state == TrialState.COMPLETE else None, params=params,
            distributions={name: distributions[name] for name in params}, user_attrs=attrs,
            intermediate_values=intermediate))
    best = yaml.safe_load((run_dir / layout.LAYOUT.best_parameters).read_text(encoding="utf-8"))
    return SearchResult(study, best, summary["best_dev_strict_f1"], summary.get("default_dev_strict_f1"), trials)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _literal(value):
    """A user attribute as written by trials.csv: lists and numbers come back as Python values."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def _native(value, distribution):
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return next(choice for choice in distribution.choices if str(choice) == str(value)
                    or (isinstance(choice, (int, float)) and float(choice) == float(value)))
    return float(value)


def study_result(run_config: RunConfig, search: SearchConfig, run_dir: str | Path | None = None) -> SearchResult:
    """The search chapter's result: a recorded search read back, else this worker's share of the study."""
    if run_dir and layout.LAYOUT.in_record(run_dir):
        return read_recorded(run_dir, search)
    return work(run_config, search, run_dir)

