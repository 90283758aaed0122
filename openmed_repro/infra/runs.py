"""A run directory's life: claimed for one configuration, finished exactly when its metrics.json exists (always
written last), and read back only when every file of it is whole. Where it lies and what it is called:
infra/layout.py; how its files are written: infra/atomic_files.py; what it records: infra/provenance.py."""

from __future__ import annotations

import functools
import hashlib
import typing
from pathlib import Path

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import job_settings, layout, paths
from openmed_repro.infra.atomic_files import read_json, write_json
from openmed_repro.infra.run_provenance import portable

METRICS = "metrics.json"


CONFIG = "config.json"


LOG_HISTORY = "log_history.json"


PROVENANCE = "provenance.json"


MODEL_DIR = "model"                 # a trained tagger (fine-tuning, baseline) of a run directory


def is_complete(run_dir: Path) -> bool:
    return (run_dir / METRICS).is_file()


def claim(run_dir: Path, run_config: job_settings.RunConfig) -> None:
    """Create or reopen `run_dir` for this configuration; a directory of another configuration is refused,
    so a resumed run can never mix two configurations."""
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = run_dir / CONFIG
    wanted = run_config.to_dict()
    if layout.LAYOUT.in_record(run_dir):   # the record names paths portably (a corpus directory by its name)
        wanted = portable(wanted)
    if existing.is_file():
        recorded = read_json(existing)
        changed = changed_settings(recorded, wanted)
        if changed == ["early_stopping_patience"] and is_complete(run_dir) \
                and same_run_at_a_larger_patience(run_dir, recorded, wanted):
            return   # read back: the finished run is the one this configuration would train
        if changed:
            raise OpenMedError(
                f"{run_dir}: holds a run with other parameters ({', '.join(changed)}); "
                "choose another output_dir or delete it"
            )
    else:
        write_json(existing, wanted)


WEIGHT_DIRS = (MODEL_DIR, "adapter")   # what a finished run saved to be loaded again (a tagger, a DAPT adapter)


CALIBRATED_HEAD = "calibrated_head.safetensors"   # DAPT's MLM head, trained alone before the adapter


WEIGHT_FILES = (CALIBRATED_HEAD,)


FILES_SHA256 = "files_sha256"           # metrics.json's key: the sha256 of each of those files


def weights_sha256(run_dir: Path) -> dict[str, str]:
    """The sha256 of every file a finished run saved to be loaded again, by its path in the run directory."""
    run_dir = Path(run_dir)
    saved = [path for folder in WEIGHT_DIRS if (run_dir / folder).is_dir()
             for path in sorted((run_dir / folder).rglob("*")) if path.is_file()]
    saved += [run_dir / name for name in WEIGHT_FILES if (run_dir / name).is_file()]
    return {path.relative_to(run_dir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest() for path in saved}


def read_finished(run_dir: Path) -> dict:
    """metrics.json of a finished run, once every JSON file beside it parses and (outside the record, which keeps
    no weights) its saved files match their sha256: a damaged file is one line naming it, never a run read back
    as complete."""
    run_dir = Path(run_dir)
    remedy = (f"restore it from git (git checkout -- {run_dir})" if layout.LAYOUT.in_record(run_dir)
              else f"delete {run_dir} and rerun the same command to train it again")
    parsed = {path.name: read_json(path, remedy) for path in sorted(run_dir.glob("*.json"))}
    metrics = parsed[METRICS] if METRICS in parsed else read_json(run_dir / METRICS, remedy)   # missing: named
    if not isinstance(metrics, dict):
        raise OpenMedError(f"{run_dir / METRICS}: not a metrics record (a JSON object); the file is damaged: {remedy}")
    if not layout.LAYOUT.in_record(run_dir):
        check_weights(run_dir, metrics)
    return metrics


def check_weights(run_dir: Path, metrics: dict | None = None) -> None:
    """A finished run's saved files against the sha256 its metrics.json records (a run from before they were
    recorded is taken as it is): a damaged or missing file is one line naming it and what to do."""
    run_dir = Path(run_dir)
    recorded = (metrics if metrics is not None else read_json(run_dir / METRICS)).get(FILES_SHA256) or {}
    for name, digest in recorded.items():
        path = run_dir / name
        if not path.is_file():
            raise OpenMedError(f"{path}: missing from the finished run; delete {run_dir} and rerun the same command "
                               "to train it again")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise OpenMedError(f"{path}: damaged (its sha256 is not the one {METRICS} records); delete {run_dir} and "
                               "rerun the same command to train it again")


def changed_settings(recorded: dict, wanted: dict) -> list[str]:
    """The parameters whose values differ between a run's recorded configuration and the one wanted; a parameter
    added after the run was recorded counts as unchanged when it is None (unset), and a DAPT adapter is the DAPT
    run it comes from, wherever that run's directory lies."""
    def value(values: dict, key: str):
        return dapt_run_of(values.get(key)) if key == "dapt_adapter" else values.get(key)
    return sorted(k for k in wanted.keys() | recorded.keys() if value(wanted, k) != value(recorded, k))


def dapt_run_of(adapter: str | None) -> str | None:
    """The DAPT run an adapter directory belongs to (runs/dapt/<name>/adapter and results/dapt/<name>/adapter
    name the same run), or the path itself when it lies elsewhere."""
    if not adapter:
        return None
    parts = Path(adapter).parts
    return f"dapt/{parts[-2]}" if len(parts) >= 3 and parts[-1] == "adapter" and parts[-3] == "dapt" else adapter


def recorded_with(record_dir: Path, run_config) -> bool:
    """Whether the record `record_dir` holds a run of exactly this configuration (paths compared portably)."""
    config_file = Path(record_dir) / CONFIG
    return config_file.is_file() and not changed_settings(read_json(config_file), portable(run_config.to_dict()))


def follows_its_profile(run_dir: Path, load=job_settings.load_run_config, but: dict | None = None) -> bool:
    """Whether the run in `run_dir` is its profile's recipe (settings_follow_profile, with the chapter's
    loader), or the same run as the profile's would be (_same_run_under_the_profiles_patience); `but`: fields
    taken as the profile's whatever the run's (a precision twin, a run of an earlier rate). A run without its
    configuration file is taken as it is."""
    config_file = Path(run_dir) / CONFIG
    if not config_file.is_file():
        return True
    recorded = {**read_json(config_file), **(but or {})}
    return settings_follow_profile(recorded, load) or _same_run_under_the_profiles_patience(run_dir, recorded, load)


def _same_run_under_the_profiles_patience(run_dir: Path, recorded: dict, load) -> bool:
    """A profile that raised its early-stopping patience since a run keeps the run as its own when early stopping
    never ended it (same_run_at_a_larger_patience)."""
    wanted = _recipe(load, recorded.get("profile"), paths.PARAMETERS_DIR)
    if not wanted or "early_stopping_patience" not in wanted:
        return False
    return (settings_follow_profile({**recorded, "early_stopping_patience": wanted["early_stopping_patience"]}, load)
            and same_run_at_a_larger_patience(run_dir, recorded, wanted))


def same_run_at_a_larger_patience(run_dir: Path, recorded: dict, wanted: dict) -> bool:
    """Whether a fine-tuning run of settings `recorded` is also the run of `wanted`'s larger (or equal)
    early-stopping patience: early stopping never ended it, it trained every epoch. Other settings are the
    caller's to compare."""
    patience = wanted.get("early_stopping_patience")
    if patience is None or recorded.get("early_stopping_patience", patience) > patience:
        return False
    return trained_every_epoch(run_dir, recorded.get("epochs", float("inf")))


def trained_every_epoch(run_dir: Path, epochs: float) -> bool:
    """Whether a fine-tuning run was evaluated after its last epoch (its log_history.json): early stopping never
    ended it."""
    history = Path(run_dir) / LOG_HISTORY
    evaluated = [entry["epoch"] for entry in read_json(history) if "eval_strict_f1" in entry] if history.is_file() else []
    return bool(evaluated) and max(evaluated) >= epochs - 1e-6


def started_from_dapt(run_dir: Path) -> bool:
    """Whether the fine-tuning run in `run_dir` started from a DAPT adapter (its configuration's dapt_adapter):
    the paper's two stages, a recipe of its own beside the profile's plain one."""
    config_file = Path(run_dir) / CONFIG
    return config_file.is_file() and bool(read_json(config_file).get("dapt_adapter"))


# What a user varies from run to run without changing a profile's recipe.
PER_RUN_FIELDS = ("dataset", "data_dir", "seed", "backbone", "dapt_adapter", "country", "repair")


def settings_follow_profile(recorded: dict, load: typing.Callable | None = None) -> bool:
    """Whether a run's configuration (its config.json) is its profile's recipe, whatever its corpus, seed,
    backbone or adapter: a tuned run, a baseline started from other word vectors, any run given other parameters
    is not one of the profile's runs (nor one of its seeds). `load`: the chapter's loader (load_run_config for
    fine-tuning, load_baseline_config for the baseline). A run of a profile that no longer exists is taken as it is."""
    wanted = _recipe(load or job_settings.load_run_config, recorded.get("profile"), paths.PARAMETERS_DIR)
    if wanted is None:
        return True
    return all(wanted.get(key) == recorded.get(key) for key in wanted.keys() | recorded.keys()
               if key not in PER_RUN_FIELDS)


@functools.lru_cache(maxsize=None)
def _recipe(load: typing.Callable, profile, parameters_dir: Path) -> dict | None:
    """A profile's settings, read once per loader, profile and parameters folder (None: no such profile)."""
    try:
        return load(profile, {"dataset": "any"}).to_dict()
    except OpenMedError:
        return None
