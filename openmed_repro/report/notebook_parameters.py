"""Papermill injects parameters as notebook globals (`-p key value`, or every key of a `-f file.yaml`).
This turns them into a validated RunConfig before any work, so a misspelt or mistyped parameter stops
the notebook at its first code cell with a message naming it."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import job_settings, layout, validation
from openmed_repro.infra.validation import Positive
from openmed_repro.released import checkpoints
from openmed_repro.training import references

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
    runs_dir: str | None = None           # None: your runs (runs/); the record: results
    profiles: list[str] | None = None     # None: runs of every profile are candidates
    samples: Positive[int] = 10_000
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class FootprintSettings:
    runs_dir: str | None = None           # None: your runs (runs/); the record: results


@dataclasses.dataclass(frozen=True)
class DataSettings:
    data_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class ReleasedChapterSettings:
    """The released-checkpoint chapter's own parameters: where our runs to test against are, and the tests' sizes."""

    ours_dir: str | None = None           # our fine-tuning runs to test against: None: the record; or runs/
    profiles: list[str] | None = None     # e.g. ["cpu", "cpu-fast"]: only runs of these profiles (None: all)
    samples: Positive[int] = 10_000       # bootstrap samples of the interval
    trials: Positive[int] = 10_000        # approximate randomization trials
    seed: int = 0


DAPT_NOTEBOOK_KEYS = {"output_dir", "runs_dir"}
BASELINE_NOTEBOOK_KEYS = {"output_dir", "throughput_json"}

# The one list of what each chapter notebook's parameters cell accepts: the fields of its settings and its own keys.
# The cells of the chapters whose settings are long end in lines written from it (`openmed-repro parameter-cells`).
CHAPTER_SETTINGS = {
    "finetune": ((job_settings.RunConfig,), FINETUNE_NOTEBOOK_KEYS),
    "dapt": ((job_settings.DaptConfig,), DAPT_NOTEBOOK_KEYS),
    "baseline": ((job_settings.BaselineConfig,), BASELINE_NOTEBOOK_KEYS),
    "hpo": ((job_settings.RunConfig, job_settings.SearchConfig), NOTEBOOK_KEYS),
    "evaluate": ((EvaluationSettings,), set()),
    "results": ((ResultsSettings,), set()),
    "footprint": ((FootprintSettings,), set()),
    "data": ((DataSettings,), set()),
    "released": ((job_settings.ReleasedConfig, ReleasedChapterSettings), NOTEBOOK_KEYS),
}
GENERATED_CELLS = ("finetune", "dapt", "baseline", "hpo")
GENERATED_MARK = "# Every other field of "


def accepted(notebook: str) -> set[str]:
    """Every name the notebook's parameters cell must assign, and no other."""
    kinds, notebook_keys = CHAPTER_SETTINGS[notebook]
    return {field.name for kind in kinds for field in dataclasses.fields(kind)} | notebook_keys


def parameters_cell(notebook: str, source: str) -> str:
    """The notebook's parameters cell with its written part (from GENERATED_MARK on) made from its settings: every
    field the hand-kept lines above it do not assign, `None` meaning the profile's value."""
    import ast

    head = source.split(GENERATED_MARK)[0].rstrip("\n")
    assigned = {target.id for node in ast.parse(head).body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    kinds, _ = CHAPTER_SETTINGS[notebook]
    rest = dict.fromkeys(field.name for kind in kinds for field in dataclasses.fields(kind) if field.name not in assigned)
    return "\n".join([head, f"{GENERATED_MARK}{' and '.join(kind.__name__ for kind in kinds)} "
                             "(openmed_repro/infra/job_settings.py), written by",
                       "# `openmed-repro parameter-cells` so that papermill knows its name (-p or -f YAML); None: the "
                       "profile's value.", *(f"{name} = None" for name in rest)])
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def run_config(namespace: dict) -> tuple[job_settings.RunConfig, Path | None]:
    """The RunConfig of the notebook's parameters (None means "the profile's value") and its output_dir. A
    search's best.yaml given with -f brings `tuned_on` when its trials had a smaller budget: that is printed
    as a warning, since such a configuration may not hold on the full run."""
    values = _parameters(namespace, {f.name for f in dataclasses.fields(job_settings.RunConfig)}, FINETUNE_NOTEBOOK_KEYS)
    tuned_on = values.pop("tuned_on", None)
    if tuned_on:
        print(f"Warning: these parameters were tuned on {tuned_on}, a smaller budget than a full run; compare "
              "this run with the default on dev before trusting them.")
    output_dir = values.pop("output_dir", None)
    profile = values.pop("profile", None)
    overrides = {key: value for key, value in values.items() if value is not None}
    settings = job_settings.load_run_config(profile, overrides)
    references.check_run(settings)
    return settings, Path(output_dir) if output_dir else None


def search_config(namespace: dict) -> tuple[job_settings.RunConfig, job_settings.SearchConfig, Path | None]:
    """The search notebook's parameters: a RunConfig for every trial's base, a SearchConfig, output_dir."""
    search_fields = {f.name for f in dataclasses.fields(job_settings.SearchConfig)}
    values = _parameters(namespace, {f.name for f in dataclasses.fields(job_settings.RunConfig)} | search_fields)
    popped = {key: values.pop(key) for key in search_fields & set(values)}
    search = job_settings.load_search_config({key: value for key, value in popped.items() if value is not None})
    settings, output_dir = run_config(values)
    return settings, search, output_dir


def dapt_config(namespace: dict) -> tuple[job_settings.DaptConfig, Path | None]:
    """The DaptConfig of the DAPT notebook's parameters and its output_dir, validated the same way
    (`runs_dir` is the notebook's own: where it finds the ablation's fine-tuning runs)."""
    values = _parameters(namespace, {f.name for f in dataclasses.fields(job_settings.DaptConfig)}, DAPT_NOTEBOOK_KEYS)
    output_dir = values.pop("output_dir", None)
    values.pop("runs_dir", None)
    profile = values.pop("profile", None)
    settings = job_settings.load_dapt_config(profile, {key: value for key, value in values.items() if value is not None})
    references.check_dapt(settings)
    return settings, Path(output_dir) if output_dir else None


DEFAULT_COMPARISON = (("finetune", {"dataset": "ncbi_disease", "profile": "cpu"}, False),   # False: not tuned
                      ("finetune", {"dataset": "ncbi_disease", "profile": "cpu"}, True),
                      ("baseline", {"dataset": "ncbi_disease", "profile": "cpu"}, False))


def evaluation_settings(namespace: dict) -> EvaluationSettings:
    """The evaluation chapter's parameters; without `runs`, the default directories of `make reproduce`,
    `make tuned` and `make baseline`."""
    settings = _chapter_settings(EvaluationSettings, namespace, "evaluate.ipynb")
    if settings.runs is None:
        defaults = [str(layout.LAYOUT.tuned(directory) if tuned else directory)
                    for chapter, parameters, tuned in DEFAULT_COMPARISON
                    for directory in [layout.run_directory(chapter, parameters)]]
        settings = dataclasses.replace(settings, runs=defaults)
    if settings.names is not None and len(settings.names) != len(settings.runs):
        raise OpenMedError(f"parameter names: {len(settings.names)} names for {len(settings.runs)} runs")
    return settings


def released_config(namespace: dict) -> tuple[job_settings.ReleasedConfig, ReleasedChapterSettings, Path | None]:
    """The released-checkpoint chapter's parameters: the checkpoint's scoring (`model` None: the corpus's first
    in parameters/released.yaml, `labels` None: its map there), the chapter's own settings and output_dir."""
    chapter_fields = {f.name for f in dataclasses.fields(ReleasedChapterSettings)}
    values = _parameters(namespace, {f.name for f in dataclasses.fields(job_settings.ReleasedConfig)} | chapter_fields)
    own = {key: values.pop(key) for key in chapter_fields & set(values)}
    chapter = placed(validation.validated(ReleasedChapterSettings, {k: v for k, v in own.items() if v is not None},
                                          "released.ipynb parameters"))
    output_dir = values.pop("output_dir", None)
    settings = checkpoints.configure(values, "released.ipynb parameters")
    references.check_corpus(settings.dataset)
    return settings, chapter, Path(output_dir) if output_dir else None


def results_settings(namespace: dict) -> ResultsSettings:
    return _chapter_settings(ResultsSettings, namespace, "results.ipynb")


def footprint_settings(namespace: dict) -> FootprintSettings:
    return _chapter_settings(FootprintSettings, namespace, "footprint.ipynb")


def data_settings(namespace: dict) -> DataSettings:
    return _chapter_settings(DataSettings, namespace, "data.ipynb")


def _chapter_settings(kind: type, namespace: dict, notebook: str):
    """A chapter's own parameters, checked like the run configuration (names, types, ranges), a folder left None
    placed by the layout."""
    values = _parameters(namespace, {f.name for f in dataclasses.fields(kind)}, set())
    return placed(validation.validated(kind, values, f"{notebook} parameters"))


def placed(settings):
    """A chapter's settings with each folder parameter left None set by the layout: runs_dir your runs (runs/),
    ours_dir the record."""
    defaults = {"runs_dir": layout.LAYOUT.runs.as_posix(), "ours_dir": str(layout.LAYOUT.record)}
    return dataclasses.replace(settings, **{key: value for key, value in defaults.items()
                                             if getattr(settings, key, "") is None})


def baseline_config(namespace: dict) -> tuple[job_settings.BaselineConfig, Path | None]:
    """The BaselineConfig of the baseline notebook's parameters and its output_dir, validated the same way
    (`throughput_json` is the notebook's own: the annotation benchmark it shows)."""
    values = _parameters(namespace, {f.name for f in dataclasses.fields(job_settings.BaselineConfig)}, BASELINE_NOTEBOOK_KEYS)
    output_dir = values.pop("output_dir", None)
    values.pop("throughput_json", None)
    profile = values.pop("profile", None)
    settings = job_settings.load_baseline_config(profile, {key: value for key, value in values.items() if value is not None})
    references.check_corpus(settings.dataset)
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
