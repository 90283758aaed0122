"""Tell the user what a finished run produced and where: `openmed-repro summary RUN_DIR [NOTEBOOK]`."""

from __future__ import annotations

from pathlib import Path

from openmed_repro.data import paper
from openmed_repro.infra import atomic_files, runs
from openmed_repro.errors import OpenMedError


def summary(run_dir: Path, notebook: Path | None = None) -> str:
    if not runs.is_complete(run_dir):
        raise OpenMedError(f"{run_dir}: no {runs.METRICS}; the run did not finish (rerun the same command to resume)")
    m = atomic_files.read_json(run_dir / runs.METRICS)
    test = m["test"]
    reported = paper.table4().get(m["dataset"], {}).get("f1")
    lines = [
        f"{m['dataset']}: backbone {m['backbone']} ({m['method']}), profile {m['profile']}, seed {m['seed']}",
        f"  test strict P/R/F1: {100 * test['strict']['precision']:.1f} / {100 * test['strict']['recall']:.1f} / "
        f"{100 * test['strict']['f1']:.1f}   (seqeval default-mode F1 {100 * test['default']['f1']:.1f}; "
        f"paper {reported if reported is not None else 'n/a'} with its best large backbone)",
        f"  {m['epochs_run']:g} epochs (best dev epoch {m['best_epoch']:g}), {m['train_seconds']:.0f} s of training on {m['device']}",
    ]
    if notebook is not None:
        lines.append(f"  executed notebook: {notebook}")
    lines += [f"  metrics:           {run_dir / runs.METRICS}",
              f"  predictions:       {run_dir / 'predictions_test.tsv'}",
              f"  adapter and head:  {run_dir / 'model'}"]
    return "\n".join(lines)
