"""What pruning saved: a pruned and an unpruned search of the same study, compared from their run directories
(summary.json, trials.csv and the SQLite study). Epochs trained is the measure a loaded machine does not
distort; trial time is what the search chapter's target is set in; the replay runs the pruned study's
pruner over the unpruned study's own trials, so that it isolates the pruner from the sampler.

    .venv/bin/python -m openmed_repro.search.search_comparison --pruned runs/hpo5/ncbi-median-startup1 \\
        --unpruned runs/hpo5/ncbi-none [--out runs/hpo5/comparison.json] [--replay-startup-trials 1 2 5]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import optuna

from openmed_repro.report import bench_report
from openmed_repro.search import hpo
from openmed_repro.infra import runs

FINISHED_STATES = {state.name for state in hpo.FINISHED}   # as trials.csv spells them
STARTUP_BEFORE_THE_SETTING = 5   # studies written before summary.json recorded it used Optuna's default


def compare(pruned: Path | None, unpruned: Path | None, replay_startup_trials: tuple[int, ...] = ()) -> dict:
    """Trial time, epochs, pruned trials, wall time and best dev F1 of each search, what pruning saved, and
    the pruned study's pruner and signal replayed on the unpruned study (when its study.db is there), and
    the median pruner (on the unpruned study's own signal) with each start-up count of `replay_startup_trials`."""
    if not (pruned and unpruned and (pruned / "summary.json").is_file() and (unpruned / "summary.json").is_file()):
        return {"skipped": f"no finished search directories given or found ({pruned}, {unpruned})"}
    record, summaries, studies = {}, {}, {}
    for name, directory in (("pruned", pruned), ("unpruned", unpruned)):
        summary = summaries[name] = json.loads((directory / "summary.json").read_text())
        studies[name] = hpo.finished_study(directory, summary)
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
            record["pruner_replayed_on_unpruned"] = hpo.replay_pruning(
                study, pruner, epochs, startup, summaries["pruned"].get("prune_on") or recorded, recorded)
        if replay_startup_trials:
            record["median_pruner_replays"] = [hpo.replay_pruning(study, "median", epochs, count, recorded_signal=recorded)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pruned", type=Path, required=True, help="run directory of the pruned search")
    parser.add_argument("--unpruned", type=Path, required=True, help="run directory of the unpruned search")
    parser.add_argument("--out", type=Path, default=None, help="also write the comparison here (JSON)")
    parser.add_argument("--replay-startup-trials", type=int, nargs="*", default=[], metavar="N",
                        help="also replay the median pruner with these start-up counts on the unpruned trials")
    args = parser.parse_args(argv)
    record = compare(args.pruned, args.unpruned, tuple(args.replay_startup_trials))
    if "skipped" in record:
        raise SystemExit(f"search comparison: {record['skipped']}")
    if args.out:
        runs.write_json(args.out, record)
    print(json.dumps(record, indent=2))
    print(bench_report.search_summary({"search": record}))
    for replay in record.get("median_pruner_replays", []):
        print(f"median pruner, {replay['startup_trials']} start-up trial(s), replayed: {replay['pruned_trials']} pruned, "
              f"{replay['epochs_saved']:.0%} of the epochs saved, best dev strict F1 {100 * (replay['best_dev_strict_f1'] or 0):.1f} "
              f"(unpruned {100 * replay['unpruned_best_dev_strict_f1']:.1f})")


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    main()
