"""Papermill injects parameters as notebook globals (`-p key value`, or every key of a `-f file.yaml`).
This turns them into a validated RunConfig before any work, so a misspelt or mistyped parameter stops
the notebook at its first code cell with a message naming it."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

from openmed_repro.models import backbones
from openmed_repro.infra import config, runs
from openmed_repro.infra.config import Positive
from openmed_repro.data import corpora
from openmed_repro.released import checkpoints
from openmed_repro.errors import OpenMedError

NOTEBOOK_KEYS = {"output_dir"}
FINETUNE_NOTEBOOK_KEYS = {"output_dir", "tuned_on"}   # tuned_on: set by a search's best.yaml (-f), in words


@dataclasses.dataclass(frozen=True)
class EvaluationSettings:
    runs: list[str] | None = None         # None: the main job, its tuned twin and the baseline (DEFAULT_COMPARISON)
    names: list[str] | None = None
    split: typing.Literal["test", "devel"] = "test"
    trials: Positive[int] = 10_000
    samples: Positive[int] = 10_000
    seed: int = 0
    examples_per_category: Positive[int] = 3
    paired_runs_dir: str | None = None    # runs/ or the record: LoRA (cpu) against full (cpu-fast), seed by seed


@dataclasses.dataclass(frozen=True)
class ResultsSettings:
    runs_dir: str = "runs"
    profiles: list[str] | None = None     # None: runs of every profile are candidates
    samples: Positive[int] = 10_000
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class FootprintSettings:
    runs_dir: str = "runs"


@dataclasses.dataclass(frozen=True)
class DataSettings:
    data_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class ReleasedChapterSettings:
    """The released-checkpoint chapter's own parameters: where our runs to test against are, and the tests' sizes."""

    ours_dir: str = "results"             # our fine-tuning runs to test against: the record, or runs/
    profiles: list[str] | None = None     # e.g. ["cpu", "cpu-fast"]: only runs of these profiles (None: all)
    samples: Positive[int] = 10_000       # bootstrap samples of the interval
    trials: Positive[int] = 10_000        # approximate randomization trials
    seed: int = 0


DAPT_NOTEBOOK_KEYS = {"output_dir", "runs_dir"}
BASELINE_NOTEBOOK_KEYS = {"output_dir", "throughput_json"}
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def run_config(namespace: dict) -> tuple[config.RunConfig, Path | None]:
    """The RunConfig of the notebook's parameters (None means "the profile's value") and its output_dir. A
    search's best.yaml given with -f brings `tuned_on` when its trials had a smaller budget: that is printed
    as a warning, since such a configuration may not hold on the full run."""
    values = _parameters(namespace, {f.name for f in dataclasses.fields(config.RunConfig)}, FINETUNE_NOTEBOOK_KEYS)
    tuned_on = values.pop("tuned_on", None)
    if tuned_on:
        print(f"Warning: these parameters were tuned on {tuned_on}, a smaller budget than a full run; compare "
              "this run with the default on dev before trusting them.")
    output_dir = values.pop("output_dir", None)
    profile = values.pop("profile", None)
    overrides = {key: value for key, value in values.items() if value is not None}
    settings = config.load_run_config(profile, overrides)
    check_references(settings)
    return settings, Path(output_dir) if output_dir else None


def search_config(namespace: dict) -> tuple[config.RunConfig, config.SearchConfig, Path | None]:
    """The search notebook's parameters: a RunConfig for every trial's base, a SearchConfig, output_dir."""
    search_fields = {f.name for f in dataclasses.fields(config.SearchConfig)}
    values = _parameters(namespace, {f.name for f in dataclasses.fields(config.RunConfig)} | search_fields)
    popped = {key: values.pop(key) for key in search_fields & set(values)}
    search = config.load_search_config({key: value for key, value in popped.items() if value is not None})
    settings, output_dir = run_config(values)
    return settings, search, output_dir


def dapt_config(namespace: dict) -> tuple[config.DaptConfig, Path | None]:
    """The DaptConfig of the DAPT notebook's parameters and its output_dir, validated the same way
    (`runs_dir` is the notebook's own: where it finds the ablation's fine-tuning runs)."""
    values = _parameters(namespace, {f.name for f in dataclasses.fields(config.DaptConfig)}, DAPT_NOTEBOOK_KEYS)
    output_dir = values.pop("output_dir", None)
    values.pop("runs_dir", None)
    profile = values.pop("profile", None)
    settings = config.load_dapt_config(profile, {key: value for key, value in values.items() if value is not None})
    backbones.resolve(settings.backbone)
    config.existing_dapt_dir(settings.dapt_dir)
    return settings, Path(output_dir) if output_dir else None


DEFAULT_COMPARISON = (("finetune", {"dataset": "ncbi_disease", "profile": "cpu"}, ""),
                      ("finetune", {"dataset": "ncbi_disease", "profile": "cpu"}, "-tuned"),
                      ("baseline", {"dataset": "ncbi_disease", "profile": "cpu"}, ""))


def evaluation_settings(namespace: dict) -> EvaluationSettings:
    """The evaluation chapter's parameters; without `runs`, the default directories of `make reproduce`,
    `make tuned` and `make baseline`."""
    settings = _chapter_settings(EvaluationSettings, namespace, "evaluate.ipynb")
    if settings.runs is None:
        defaults = [f"{runs.run_directory(chapter, parameters)}{suffix}"
                    for chapter, parameters, suffix in DEFAULT_COMPARISON]
        settings = dataclasses.replace(settings, runs=defaults)
    if settings.names is not None and len(settings.names) != len(settings.runs):
        raise OpenMedError(f"parameter names: {len(settings.names)} names for {len(settings.runs)} runs")
    return settings


def released_config(namespace: dict) -> tuple[config.ReleasedConfig, ReleasedChapterSettings, Path | None]:
    """The released-checkpoint chapter's parameters: the checkpoint's scoring (`model` None: the corpus's first
    in parameters/released.yaml, `labels` None: its map there), the chapter's own settings and output_dir."""
    chapter_fields = {f.name for f in dataclasses.fields(ReleasedChapterSettings)}
    values = _parameters(namespace, {f.name for f in dataclasses.fields(config.ReleasedConfig)} | chapter_fields)
    own = {key: values.pop(key) for key in chapter_fields & set(values)}
    chapter = config.validated(ReleasedChapterSettings, {k: v for k, v in own.items() if v is not None},
                               "released.ipynb parameters")
    output_dir = values.pop("output_dir", None)
    settings = checkpoints.configure(values, "released.ipynb parameters")
    if settings.dataset not in corpora.registry() and not Path(settings.dataset).is_dir():
        corpora.spec(settings.dataset)  # raises with the list of known datasets
    return settings, chapter, Path(output_dir) if output_dir else None


def results_settings(namespace: dict) -> ResultsSettings:
    return _chapter_settings(ResultsSettings, namespace, "results.ipynb")


def footprint_settings(namespace: dict) -> FootprintSettings:
    return _chapter_settings(FootprintSettings, namespace, "footprint.ipynb")


def data_settings(namespace: dict) -> DataSettings:
    return _chapter_settings(DataSettings, namespace, "data.ipynb")


def _chapter_settings(kind: type, namespace: dict, notebook: str):
    """A chapter's own parameters, checked like the run configuration (names, types, ranges)."""
    values = _parameters(namespace, {f.name for f in dataclasses.fields(kind)}, set())
    return config.validated(kind, values, f"{notebook} parameters")


def baseline_config(namespace: dict) -> tuple[config.BaselineConfig, Path | None]:
    """The BaselineConfig of the baseline notebook's parameters and its output_dir, validated the same way
    (`throughput_json` is the notebook's own: the annotation benchmark it shows)."""
    values = _parameters(namespace, {f.name for f in dataclasses.fields(config.BaselineConfig)}, BASELINE_NOTEBOOK_KEYS)
    output_dir = values.pop("output_dir", None)
    values.pop("throughput_json", None)
    profile = values.pop("profile", None)
    settings = config.load_baseline_config(profile, {key: value for key, value in values.items() if value is not None})
    if settings.dataset not in corpora.registry() and not Path(settings.dataset).is_dir():
        corpora.spec(settings.dataset)  # raises with the list of known datasets
    from openmed_repro.training import baseline   # torch and gensim load when the baseline notebook asks, not before

    baseline.check_start(settings)
    return settings, Path(output_dir) if output_dir else None


def show_project_errors_alone() -> None:
    """In a notebook, an OpenMedError shows as its message alone: it already names what is wrong and how to
    fix it, and a traceback through the library would bury it. The cell still fails (papermill stops)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((OpenMedError,), lambda shell, etype, value, tb, tb_offset=None:
                             shell.showtraceback((etype, value, tb), exception_only=True))


def _parameters(namespace: dict, fields: set[str], notebook_keys: set[str] = NOTEBOOK_KEYS) -> dict:
    """The notebook's parameters among its globals; anything unknown is refused with the valid names."""
    show_project_errors_alone()
    values = {name: value for name, value in namespace.items()
              if not name.startswith("_") and name not in _IPYTHON_NAMES
              and not isinstance(value, (types.ModuleType, types.FunctionType, type))}
    known = fields | notebook_keys
    unknown = sorted(set(values) - known)
    if unknown:
        raise OpenMedError(f"unknown notebook parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    for key in notebook_keys:
        if values.get(key) is not None and not isinstance(values[key], str):
            raise OpenMedError(f"parameter {key} must be a path string, got {values[key]!r}")
    return values


def check_references(settings: config.RunConfig) -> None:
    """Dataset and backbone must name something that exists, checked before any loading or training."""
    if settings.dataset not in corpora.registry() and not Path(settings.dataset).is_dir():
        corpora.spec(settings.dataset)  # raises with the list of known datasets
    backbones.resolve(settings.backbone)
    if settings.dapt_adapter and not (Path(settings.dapt_adapter) / "adapter_config.json").is_file():
        raise OpenMedError(f"parameter dapt_adapter: {settings.dapt_adapter} holds no adapter_config.json "
                           "(give the adapter/ directory of a finished DAPT run)")
