"""Fine-tune one configuration on every corpus that loads here (and every seed asked for), one run directory
each, and gather test strict F1, epochs and wall time into one table beside the paper's Table 4.

    openmed-repro sweep --profile cpu --seeds 42 1 2 --corpora ncbi_disease s800 --record

Runs go to their default directories (runs/finetune/<name>, the names the record and the book use), or under
`runs_root` for a study of its own (a capped budget). A rerun reads back the runs already finished and trains
only the rest; `after_each` sees each finished run's directory (the command records it)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from openmed_repro.infra import atomic_files, job_settings, layout
from openmed_repro.training import finetune
from openmed_repro.data import paper
from openmed_repro.infra import cluster


def run_all(profile: str, overrides: dict, out: Path, keys: list[str], seeds: Sequence[int | None] = (None,),
            runs_root: Path | None = None, after_each: Callable[[Path], None] | None = None,
            recorded: Callable[[Path, job_settings.RunConfig], dict | None] | None = None,
            placement: cluster.Placement = cluster.SERIAL) -> pd.DataFrame:
    """Every corpus of `keys` for every seed (None: the profile's), in this process one after another or spread
    over a Ray cluster (`placement`); the table so far is rewritten into `out` (results.md, results.json) after
    each run, in the order of corpora and seeds. A run for which `recorded` returns metrics (the record already
    holds it, with this configuration) is not trained again."""
    rows: dict[int, dict] = {}           # by the run's position in the plan: corpus by corpus, seed by seed
    jobs, position_of = [], {}
    for position, (key, seed) in enumerate((key, seed) for key in keys for seed in seeds):
        seeded = {} if seed is None else {"seed": seed}
        run_config = job_settings.load_run_config(profile, {**overrides, **seeded, "dataset": key})
        run_dir = (runs_root / layout.default_directory(run_config).name if runs_root
                   else layout.default_directory(run_config))
        kept = recorded(run_dir, run_config) if recorded else None
        if kept is not None:
            rows[position] = table_row(kept, None)
        else:
            position_of[str(run_dir)] = position
            jobs.append(cluster.Job(str(run_dir), timed_run, (run_config, run_dir.resolve())))

    def finished(job: cluster.Job, result: tuple) -> None:
        outcome, seconds = result
        if after_each:
            after_each(Path(job.name))
        rows[position_of[job.name]] = table_row(outcome.metrics, None if outcome.reused else seconds)
        write_table(rows, out)

    write_table(rows, out)
    cluster.run_each(jobs, placement, finished)
    return pd.DataFrame([rows[i] for i in sorted(rows)])


def timed_run(run_config: job_settings.RunConfig, run_dir: Path):
    """One fine-tuning run (wherever it executes) and the seconds it took there."""
    started = time.perf_counter()
    result = finetune.run(run_config, run_dir)
    return result, time.perf_counter() - started


def write_table(rows: dict[int, dict], out: Path) -> None:
    if not rows:
        return
    table = pd.DataFrame([rows[i] for i in sorted(rows)])
    atomic_files.write_text(out / "results.md", markdown_table(table))
    atomic_files.write_json(out / "results.json", [rows[i] for i in sorted(rows)])
    print(table.to_string(index=False), flush=True)


def markdown_table(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def table_row(metrics: dict, wall_seconds: float | None) -> dict:
    reported = paper.table4().get(metrics["dataset"], {})
    return {
        "corpus": Path(metrics["dataset"]).name,
        "seed": metrics.get("seed"),
        "train sentences": metrics["sentences"]["train"],
        "epochs run (best)": f"{metrics['epochs_run']:g} ({metrics['best_epoch']:g})",
        "test strict F1": round(100 * metrics["test"]["strict"]["f1"], 1),
        "test default F1": round(100 * metrics["test"]["default"]["f1"], 1),
        "paper F1": reported.get("f1"),
        "train s": round(metrics["train_seconds"]),
        "wall s": round(wall_seconds) if wall_seconds is not None else "(read back)",
    }
