"""Does the search's answer hold where it will be used? The search's best configuration and the default are
trained on the full training split with the same seeds (paired by seed), scored on dev and test, and tested
against each other per seed (approximate randomization). best.yaml keeps the tuned configuration only when
its mean dev strict F1 is above the default's; otherwise it keeps the default and says why.

The default's runs are the fine-tuning chapter's own default runs (runs/finetune/<name>), read from the
record (results/finetune/<name>) when it holds them, so the Table 4 seed runs are never trained twice; the
tuned runs are <name>-tuned. confirmation.json names each run by its record name (finetune/<name>: results/ once
recorded, runs/ before), so the recorded confirmation points at the records the audit checks it against."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from openmed_repro.evaluation import comparison, significance
from openmed_repro.infra import atomic_files, job_settings, layout, runs
from openmed_repro.infra.job_settings import RunConfig
from openmed_repro.training import finetune

BUDGET_CAPS = ("max_train_sentences", "epochs")   # a search may cap these; the confirmation runs never do


@dataclass(frozen=True)
class Confirmation:
    per_seed: pd.DataFrame   # seed, default/tuned dev and test strict F1, test difference, p (AR)
    kept: str                # "tuned" or "default": what best.yaml now holds
    reason: str


def full_run(search_config: RunConfig, seed: int, parameters: dict | None = None) -> RunConfig:
    """The run a configuration is used for: the search's base without its budget caps (the profile's epochs,
    the whole training split), this seed, and the tuned `parameters` on top."""
    base = {key: value for key, value in search_config.to_dict().items() if key not in (*BUDGET_CAPS, "profile")}
    return job_settings.load_run_config(search_config.profile, {**base, **(parameters or {}), "seed": seed})


def default_directory(settings: RunConfig) -> Path:
    """The default run's directory: its record when the record holds it, else its place under runs/."""
    directory = layout.default_directory(settings)
    recorded = layout.LAYOUT.recorded(directory)
    return recorded if runs.is_complete(recorded) else directory


def tuned_directory(settings: RunConfig) -> Path:
    return layout.LAYOUT.tuned(layout.default_directory(settings))


def record_name(run_dir: Path) -> str:
    """A fine-tuning run as the record names it, wherever it lies now: finetune/<name>."""
    return f"finetune/{Path(run_dir).name}"


def confirm(search_config: RunConfig, best_parameters: dict, search_dir: Path, seeds: Sequence[int] = (42, 1, 2),
            trials: int = 10_000) -> Confirmation:
    """Train (or read back) the default and the tuned configuration for every seed, compare them, and rewrite
    the search's best.yaml with the configuration that holds on dev, and confirmation.json beside it."""
    tuned_parameters = {key: value for key, value in best_parameters.items() if key != "tuned_on"}
    rows = []
    for seed in seeds:
        default_settings = full_run(search_config, seed)
        tuned_settings = full_run(search_config, seed, tuned_parameters)
        default_dir = default_directory(default_settings)
        default = finetune.run(default_settings, default_dir).metrics
        tuned_dir = tuned_directory(tuned_settings)
        tuned = finetune.run(tuned_settings, tuned_dir).metrics
        pair = comparison.load([tuned_dir, default_dir], data_dir=_corpus_home(search_config))
        test = significance.approximate_randomization(pair[0].sentence_counts, pair[1].sentence_counts,
                                                                  trials, seed=0)
        rows.append({"seed": seed, "default dev F1": 100 * default["devel"]["strict"]["f1"],
                     "tuned dev F1": 100 * tuned["devel"]["strict"]["f1"],
                     "default test F1": 100 * default["test"]["strict"]["f1"],
                     "tuned test F1": 100 * tuned["test"]["strict"]["f1"],
                     "tuned - default (test)": 100 * test.difference, "p (AR)": test.p_value,
                     "default run": record_name(default_dir), "tuned run": record_name(tuned_dir)})
    per_seed = pd.DataFrame(rows).round({"default dev F1": 2, "tuned dev F1": 2, "default test F1": 2,
                                         "tuned test F1": 2, "tuned - default (test)": 2, "p (AR)": 4})
    kept, reason = decide(per_seed)
    defaults = {key: getattr(search_config, key) for key in tuned_parameters}
    chosen = tuned_parameters if kept == "tuned" else {**defaults, "kept_default": reason}
    atomic_files.write_text(search_dir / layout.LAYOUT.best_parameters, yaml.safe_dump(chosen, sort_keys=True))
    atomic_files.write_json(search_dir / layout.LAYOUT.confirmation, {"kept": kept, "reason": reason, "tuned_parameters": tuned_parameters,
                                                "default_parameters": defaults, "seeds": list(seeds),
                                                "per_seed": per_seed.to_dict(orient="records")})
    return Confirmation(per_seed, kept, reason)


def _corpus_home(settings: RunConfig) -> str | None:
    """Where a recorded run's corpus is found: the folder holding a corpus given as a directory, else data_dir."""
    return str(Path(settings.dataset).parent) if Path(settings.dataset).is_dir() else settings.data_dir


def decide(per_seed: pd.DataFrame) -> tuple[str, str]:
    """Keep the tuned configuration only if its mean dev strict F1 over the seeds is above the default's (the
    test split decides nothing; it is reported)."""
    tuned, default = statistics.mean(per_seed["tuned dev F1"]), statistics.mean(per_seed["default dev F1"])
    seeds = len(per_seed)
    if tuned > default:
        return "tuned", f"mean dev strict F1 over {seeds} seeds {tuned:.2f} against the default's {default:.2f}"
    return "default", (f"the tuned configuration's mean dev strict F1 over {seeds} seeds, {tuned:.2f}, is not "
                       f"above the default's {default:.2f} on the full run")


def read(search_dir: Path) -> Confirmation | None:
    """A confirmation written earlier (or recorded), None if the search was never confirmed."""
    path = Path(search_dir) / layout.LAYOUT.confirmation
    if not path.is_file():
        return None
    written = atomic_files.read_json(path)
    return Confirmation(pd.DataFrame(written["per_seed"]), written["kept"], written["reason"])
