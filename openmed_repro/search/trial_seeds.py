"""One search trial retrained with other seeds: how far its best dev F1 moves with the seed alone, the yardstick
for any difference between two searches' best trials. Same base configuration (the search's config.json),
same parameters, same training path (`finetune.train`), test split never loaded.

    .venv/bin/python -m openmed_repro.search.trial_seeds --search runs/hpo5/ncbi-none --trial 7 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

from optuna.trial import TrialState

from openmed_repro.infra import config
from openmed_repro.data import corpora
from openmed_repro.training import finetune
from openmed_repro.search import hpo
from openmed_repro.infra import runs
from openmed_repro.errors import OpenMedError


def retrain(search_dir: Path, trial_number: int, seeds: list[int]) -> dict:
    """The trial's best dev strict F1 under each seed (its own seed first, as the study recorded it)."""
    summary_file, base_file = search_dir / "summary.json", search_dir / runs.CONFIG
    if not (summary_file.is_file() and base_file.is_file() and (search_dir / "study.db").is_file()):
        raise OpenMedError(f"{search_dir}: not a finished search (summary.json, {runs.CONFIG} and study.db needed)")
    summary, base = json.loads(summary_file.read_text()), json.loads(base_file.read_text())
    trials = {t.number: t for t in hpo.finished_study(search_dir, summary).get_trials(deepcopy=False)}
    if trial_number not in trials or trials[trial_number].state != TrialState.COMPLETE:
        raise OpenMedError(f"{search_dir}: trial {trial_number} is not a completed trial of the study")
    trial = trials[trial_number]
    corpus = corpora.load(base["dataset"], base.get("data_dir"), repair=base.get("repair", False), splits=hpo.SEARCH_SPLITS)
    scores = {}
    for seed in seeds:
        run_config = config.load_run_config(base["profile"], {**base, **trial.params, "seed": seed})
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", type=Path, required=True, help="run directory of a finished search")
    parser.add_argument("--trial", type=int, required=True, help="number of a completed trial")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    args = parser.parse_args(argv)
    record = retrain(args.search, args.trial, args.seeds)
    runs.write_json(args.search / "seeds" / f"trial-{args.trial:04d}.json", record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
