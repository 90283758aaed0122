"""Analyses of finished searches (the search chapter's run directories), for the Performance and search
chapters; the search itself, its pruners and pruning signals live in openmed_repro/search/hpo.py.

compare: what pruning saved, a pruned and an unpruned search of the same study compared from their run
directories (summary.json, trials.csv and the SQLite study). Epochs trained is the measure a loaded machine
does not distort; trial time is what the search chapter's target is set in; the replay runs the pruned
study's pruner over the unpruned study's own trials, so that it isolates the pruner from the sampler.

seeds: one search trial retrained with other seeds: how far its best dev F1 moves with the seed alone, the
yardstick for any difference between two searches' best trials. Same base configuration (the search's
config.json), same parameters, same training path (`finetune.train`), test split never loaded.

    .venv/bin/python benchmarks/search_analyses.py compare --pruned runs/hpo7/seed42-halving \\
        --unpruned runs/hpo7/seed42-none [--out runs/hpo7/comparison.json] [--replay-startup-trials 1 2 5]
    .venv/bin/python benchmarks/search_analyses.py seeds --search runs/hpo5/ncbi-none --trial 7 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from openmed_repro.data import corpora
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, job_settings, runs
from openmed_repro.infra.job_settings import SearchConfig
from openmed_repro.report import bench_report
from openmed_repro.search import hpo
from openmed_repro.training import finetune

FINISHED_STATES = {state.name for state in hpo.FINISHED}   # as trials.csv spells them
STARTUP_BEFORE_THE_SETTING = 5   # studies written before summary.json recorded it used Optuna's default
NOT_ASKED = ("no search directories given (make bench SEARCH_PRUNED=DIR SEARCH_UNPRUNED=DIR: two finished "
             "searches of one study, one pruned)")


def finished_study(run_dir: Path, summary: dict) -> optuna.Study | None:
    """The SQLite study of a finished search directory, named by its summary.json; None when the study
    lives elsewhere (a PostgreSQL URL) or the directory holds no study file."""
    study_file = run_dir / "study.db"
    if not (study_file.is_file() and summary.get("study")):
        return None
    return optuna.load_study(study_name=summary["study"], storage=f"sqlite:///{study_file.resolve()}")


def check_search_directory(directory: Path, option: str) -> None:
    """Refuse, naming the option, a directory that holds no finished search (before any work is done)."""
    if not ((directory / "summary.json").is_file() and (directory / "trials.csv").is_file()):
        raise OpenMedError(f"{option} {directory}: not a finished search (summary.json and trials.csv needed); "
                           "run the search first (make hpo, or openmed-repro search --out DIR)")


def compare(pruned: Path | None, unpruned: Path | None, replay_startup_trials: tuple[int, ...] = ()) -> dict:
    """Trial time, epochs, pruned trials, wall time and best dev F1 of each search, what pruning saved, and
    the pruned study's pruner and signal replayed on the unpruned study (when its study.db is there), and
    the median pruner (on the unpruned study's own signal) with each start-up count of `replay_startup_trials`.
    Without both directories the record only says it was skipped."""
    if not (pruned and unpruned):
        return {"skipped": NOT_ASKED}
    check_search_directory(pruned, "--pruned")
    check_search_directory(unpruned, "--unpruned")
    record, summaries, studies = {}, {}, {}
    for name, directory in (("pruned", pruned), ("unpruned", unpruned)):
        summary = summaries[name] = json.loads((directory / "summary.json").read_text())
        studies[name] = finished_study(directory, summary)
        record[name] = {"directory": str(directory), **study_figures(directory, summary, studies[name])}
    record["trial_time_saved"] = round(1 - record["pruned"]["trial_seconds"] / record["unpruned"]["trial_seconds"], 3)
    if record["pruned"]["epochs_trained"] and record["unpruned"]["epochs_trained"]:
        record["epochs_saved"] = round(1 - record["pruned"]["epochs_trained"] / record["unpruned"]["epochs_trained"], 3)
    study = studies["unpruned"]
    if study is not None:
        epochs = max((len(t.intermediate_values) for t in study.trials), default=1)
        startup = summaries["pruned"].get("pruner_startup_trials", STARTUP_BEFORE_THE_SETTING)
        recorded = summaries["unpruned"].get("prune_on") or "dev_loss"
        pruner = summaries["pruned"].get("pruner") or "median"
        if pruner != "none":
            record["pruner_replayed_on_unpruned"] = replay_pruning(
                study, pruner, epochs, startup, summaries["pruned"].get("prune_on") or recorded, recorded)
        if replay_startup_trials:
            record["median_pruner_replays"] = [replay_pruning(study, "median", epochs, count, recorded_signal=recorded)
                                               for count in replay_startup_trials]
    record["best_dev_f1_difference"] = round(record["pruned"]["best_dev_strict_f1"]
                                             - record["unpruned"]["best_dev_strict_f1"], 4)
    return record


def study_figures(directory: Path, summary: dict, study: optuna.Study | None) -> dict:
    with (directory / "trials.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle) if row["state"] in FINISHED_STATES]
    epochs = [row.get("user_attrs_epochs_run") for row in rows]
    figures = {"trial_seconds": round(summary["trial_seconds"], 1), "best_dev_strict_f1": summary["best_dev_strict_f1"],
               "trials": len(rows), "pruned_trials": sum(row["state"] == "PRUNED" for row in rows),
               "pruned_after_epoch": pruned_after_epoch(rows),
               "epochs_trained": sum(int(float(e)) for e in epochs) if all(epochs) else None,
               "pruner": summary.get("pruner"), "pruner_startup_trials": summary.get("pruner_startup_trials")}
    if study is not None:   # from the first trial's start to the last one's end, every worker together
        times = [t for t in study.trials if t.datetime_start and t.datetime_complete]
        if times:
            figures["wall_seconds"] = round((max(t.datetime_complete for t in times)
                                             - min(t.datetime_start for t in times)).total_seconds(), 1)
    return figures


def pruned_after_epoch(rows: list[dict]) -> dict[str, int]:
    """How many trials were pruned after each epoch (keys are epochs, as JSON writes them): a trial pruned
    after epoch 1 saves the most."""
    epochs = sorted(int(float(row["user_attrs_epochs_run"])) for row in rows
                    if row["state"] == "PRUNED" and row.get("user_attrs_epochs_run"))
    return {str(epoch): epochs.count(epoch) for epoch in dict.fromkeys(epochs)}


def replay_pruning(study: optuna.Study, pruner_name: str, epochs: float,
                   startup_trials: int = SearchConfig.pruner_startup_trials, signal: str | None = None,
                   recorded_signal: str = "dev_loss") -> dict:
    """What a pruner would have done to the finished trials of an unpruned study, replayed one by one in the
    order they started: the epochs it would have trained and the best dev F1 it would have kept. Both sides
    see the same trials, so unlike two separate studies (whose samplers part ways at the first pruned
    trial) the difference is the pruner's alone. Sequential: a trial sees every earlier trial as finished.
    `signal` (default: the one the study recorded, `recorded_signal`) is rebuilt from each epoch's dev F1
    and dev loss."""
    signal = signal or recorded_signal
    replayed = optuna.create_study(direction="maximize", pruner=hpo.pruner(pruner_name, epochs, startup_trials))
    finished = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.datetime_start)
    trained = pruned = 0
    for trial in finished:
        live = replayed.ask()
        curve = epoch_signals(trial, signal, recorded_signal)
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
    return {"pruner": pruner_name, "startup_trials": startup_trials, "signal": signal,
            "trials": len(finished), "pruned_trials": pruned, "epochs_trained": trained,
            "epochs_unpruned": unpruned_epochs, "epochs_saved": round(1 - trained / unpruned_epochs, 3) if unpruned_epochs else None,
            "best_dev_strict_f1": replayed.best_value if pruned < len(finished) else None,
            "unpruned_best_dev_strict_f1": max(t.value for t in finished) if finished else None}


def epoch_signals(trial: FrozenTrial, signal: str, recorded_signal: str) -> list[tuple[int, float]]:
    """A finished trial's (epoch, pruning signal) pairs: as reported, or rebuilt from its dev F1 and dev loss
    by epoch (trials written before the loss was kept reported it as their signal)."""
    curve = sorted(trial.intermediate_values.items())
    if signal == recorded_signal:
        return curve
    dev_f1 = trial.user_attrs.get("dev_strict_f1_by_epoch")
    dev_loss = trial.user_attrs.get("dev_loss_by_epoch") or (
        [-value for _, value in curve] if recorded_signal == "dev_loss" else None)
    if not dev_f1 or not dev_loss:
        raise OpenMedError(f"trial {trial.number} kept no dev F1 and dev loss by epoch: it cannot be replayed on "
                           f"prune_on={signal!r}")
    return [(step, hpo.pruning_signal(signal, f1, loss)) for (step, _), f1, loss in zip(curve, dev_f1, dev_loss)]


def retrain(search_dir: Path, trial_number: int, seeds: list[int]) -> dict:
    """The trial's best dev strict F1 under each seed (its own seed first, as the study recorded it)."""
    summary_file, base_file = search_dir / "summary.json", search_dir / runs.CONFIG
    if not (summary_file.is_file() and base_file.is_file() and (search_dir / "study.db").is_file()):
        raise OpenMedError(f"{search_dir}: not a finished search (summary.json, {runs.CONFIG} and study.db needed)")
    summary, base = json.loads(summary_file.read_text()), json.loads(base_file.read_text())
    trials = {t.number: t for t in finished_study(search_dir, summary).get_trials(deepcopy=False)}
    if trial_number not in trials or trials[trial_number].state != TrialState.COMPLETE:
        raise OpenMedError(f"{search_dir}: trial {trial_number} is not a completed trial of the study")
    trial = trials[trial_number]
    corpus = corpora.load(base["dataset"], base.get("data_dir"), repair=base.get("repair", False), splits=hpo.SEARCH_SPLITS)
    scores = {}
    for seed in seeds:
        run_config = job_settings.load_run_config(base["profile"], {**base, **trial.params, "seed": seed})
        work = search_dir / "seeds" / f"trial-{trial_number:04d}-seed{seed}"
        try:
            trained = finetune.train(run_config, corpus, work, footprint_dir=search_dir / "footprint" / work.name,
                                     chapter="search trial, other seed")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        scores[seed] = hpo.best_dev_f1(trained)
    values = list({base["seed"]: trial.value, **scores}.values())   # the study's own seed counted once
    return {"search": str(search_dir), "trial": trial_number, "parameters": trial.params, "study_seed": base["seed"],
            "study_best_dev_strict_f1": trial.value, "best_dev_strict_f1_by_seed": scores,
            "mean": statistics.mean(values), "spread": max(values) - min(values)}


def compare_command(args: argparse.Namespace) -> None:
    record = compare(args.pruned, args.unpruned, tuple(args.replay_startup_trials))
    if args.out:
        atomic_files.write_json(args.out, record)
    print(json.dumps(record, indent=2))
    print(bench_report.search_summary({"search": record}))
    for replay in record.get("median_pruner_replays", []):
        print(f"median pruner, {replay['startup_trials']} start-up trial(s), replayed: {replay['pruned_trials']} pruned, "
              f"{replay['epochs_saved']:.0%} of the epochs saved, best dev strict F1 {100 * (replay['best_dev_strict_f1'] or 0):.1f} "
              f"(unpruned {100 * replay['unpruned_best_dev_strict_f1']:.1f})")


def seeds_command(args: argparse.Namespace) -> None:
    record = retrain(args.search, args.trial, args.seeds)
    atomic_files.write_json(args.search / "seeds" / f"trial-{args.trial:04d}.json", record)
    print(json.dumps(record, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    analyses = parser.add_subparsers(dest="analysis", required=True)
    comparison = analyses.add_parser("compare", help="what pruning saved: a pruned and an unpruned search compared")
    comparison.add_argument("--pruned", type=Path, required=True, help="run directory of the pruned search")
    comparison.add_argument("--unpruned", type=Path, required=True, help="run directory of the unpruned search")
    comparison.add_argument("--out", type=Path, default=None, help="also write the comparison here (JSON)")
    comparison.add_argument("--replay-startup-trials", type=int, nargs="*", default=[], metavar="N",
                            help="also replay the median pruner with these start-up counts on the unpruned trials")
    comparison.set_defaults(handler=compare_command)
    seeds = analyses.add_parser("seeds", help="one search trial retrained with other seeds")
    seeds.add_argument("--search", type=Path, required=True, help="run directory of a finished search")
    seeds.add_argument("--trial", type=int, required=True, help="number of a completed trial")
    seeds.add_argument("--seeds", type=int, nargs="+", required=True)
    seeds.set_defaults(handler=seeds_command)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        args.handler(args)
    except OpenMedError as error:
        print(f"search_analyses: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
