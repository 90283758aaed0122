"""Where things live (parameters, corpora, cache) and the validated configuration of a run."""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from pathlib import Path

import yaml

from openmed_repro.errors import OpenMedError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PARAMETERS_DIR = Path(os.environ.get("OPENMED_PARAMETERS_DIR", PROJECT_ROOT / "parameters"))
SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"

DATA_DIR_ENV = "OPENMED_DATA_DIR"
DAPT_DIR_ENV = "OPENMED_DAPT_DIR"
CACHE_DIR_ENV = "OPENMED_CACHE_DIR"


def read_parameters(name: str) -> dict:
    """Read one YAML file of `parameters/` (e.g. "corpora.yaml")."""
    path = PARAMETERS_DIR / name
    if not path.is_file():
        raise OpenMedError(f"{path}: parameter file not found (set OPENMED_PARAMETERS_DIR to the project's parameters/)")
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def cache_dir() -> Path:
    """Downloads go here: $OPENMED_CACHE_DIR, else ~/.cache/openmed_repro."""
    configured = os.environ.get(CACHE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "openmed_repro"


@dataclasses.dataclass(frozen=True)
class Bound:
    """A range a field's value must lie in, carried by the field's annotation (`Positive[int]`, `Fraction`);
    `message` ends the error "parameter key=value ..."."""

    holds: typing.Callable[[typing.Any], bool]
    message: str


POSITIVE = Bound(lambda value: value > 0, "must be positive")
NON_NEGATIVE = Bound(lambda value: value >= 0, "must not be negative")
BELOW_ONE = Bound(lambda value: value < 1, "must be below 1")

_T = typing.TypeVar("_T")
Positive = typing.Annotated[_T, POSITIVE]
NonNegative = typing.Annotated[_T, NON_NEGATIVE]
Fraction = typing.Annotated[float, NON_NEGATIVE, BELOW_ONE]            # [0, 1)
PositiveFraction = typing.Annotated[float, POSITIVE, BELOW_ONE]        # (0, 1)
Precision = typing.Literal["auto", "fp32", "bf16", "fp16"]
InferencePrecision = typing.Literal["auto", "fp32", "bf16", "fp16", "int8"]
Scheduler = typing.Literal["cosine", "linear", "constant_with_warmup"]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything one fine-tuning run depends on: a profile's values with the user's overrides on top. The
    defaults are the paper's fine-tuning recipe (arXiv 2508.01630); profiles state only what differs."""

    dataset: str
    backbone: str
    profile: str
    method: typing.Literal["lora", "full"] = "lora"
    dapt_adapter: str | None = None
    data_dir: str | None = None
    seed: int = 42
    epochs: Positive[float] = 3.0
    learning_rate: Positive[float] = 5e-4          # not legible in the paper; the search chapter tunes it
    batch_size: Positive[int] = 32
    eval_batch_size: Positive[int] = 64
    gradient_accumulation_steps: Positive[int] = 1
    weight_decay: NonNegative[float] = 0.01
    warmup_ratio: Fraction = 0.1                   # linear warm-up over the first 10% of steps
    lr_scheduler: Scheduler = "cosine"             # then cosine decay
    label_smoothing: Fraction = 0.1                # value not legible in the paper: the usual 0.1
    lora_r: Positive[int] = 16
    lora_alpha: Positive[int] = 32
    lora_dropout: Fraction = 0.05
    lora_target_modules: list[str] | None = None   # None: the backbone's query and value (parameters/backbones.yaml)
    max_length: Positive[int] = 256
    overlap: NonNegative[int] = 50
    early_stopping_patience: NonNegative[int] = 3
    # A small corpus's epoch passes over its training split several times until the run takes at least this
    # many optimizer steps, so that evaluation every epoch and early stopping keep their meaning (0: no floor).
    # A run capped by max_train_sentences takes the budget it is given: the floor is for whole splits.
    min_optimizer_steps: NonNegative[int] = 0
    precision: Precision = "auto"                  # GPU: bf16 where supported, else fp16; CPU: bf16 where it has
                                                   # bf16 units (AMX, AVX-512 BF16), else fp32 (infra/devices.py)
    # The precision of the final dev and test predictions: None is exact fp32, as every recorded run; auto,
    # bf16 or int8 trade exactness for speed where the CPU has the units (models/low_precision.py).
    eval_precision: InferencePrecision | None = None
    gradient_checkpointing: bool = False
    group_by_length: bool = True
    # Full fine-tuning with the input word embeddings fixed: on MiniLM they are half the weights, and on a CPU
    # their optimizer update costs more time than it gives (the Performance chapter's options). None: they
    # train. LoRA keeps them fixed anyway.
    freeze_word_embeddings: bool | None = None
    max_train_sentences: Positive[int] | None = None
    max_eval_sentences: Positive[int] | None = None
    repair: bool = False
    logging_steps: Positive[int] = 50
    country: str | None = None          # footprint: None = the paper's EU average grid, or an ISO alpha-3 code

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DaptConfig:
    """One LoRA DAPT run: a DAPT profile's values with the user's overrides on top. The defaults are the
    paper's DAPT recipe (arXiv 2508.01630); profiles state only what differs."""

    backbone: str
    profile: str
    dapt_dir: str | None = None
    mix: dict[str, float] | None = None
    passages: Positive[int] | None = None
    min_tokens: Positive[int] = 50
    max_tokens: Positive[int] = 256
    split_long: bool = True
    held_out_fraction: PositiveFraction = 0.1
    seed: int = 42
    epochs: Positive[float] = 3.0
    learning_rate: Positive[float] = 2e-4
    head_learning_rate: Positive[float] = 1e-3
    head_calibration_steps: Positive[int] | None = None
    batch_size: Positive[int] = 64
    eval_batch_size: Positive[int] = 64
    gradient_accumulation_steps: Positive[int] = 2
    weight_decay: NonNegative[float] = 0.01
    warmup_steps: NonNegative[int] = 500
    lr_scheduler: Scheduler = "cosine"
    mlm_probability: PositiveFraction = 0.15
    lora_r: Positive[int] = 16
    lora_alpha: Positive[int] = 32
    lora_dropout: Fraction = 0.05
    lora_target_modules: list[str] | None = None
    # dropout of the attention probabilities while adapting (None: the backbone's own, BERT's 0.1); on a CPU
    # drawing a mask for every attention probability takes most of a step's time
    attention_dropout: Fraction | None = None
    max_length: Positive[int] = 256
    precision: Precision = "auto"
    gradient_checkpointing: bool = False
    save_steps: Positive[int] = 200
    perplexity_steps: Positive[int] | None = None   # held-out perplexity every this many steps (None: save_steps)
    logging_steps: Positive[int] = 50
    country: str | None = None          # footprint: None = the paper's EU average grid, or an ISO alpha-3 code

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


LEARNED = "learned"                 # BaselineConfig.word_embeddings: every word starts at random
WORD2VEC_DAPT = "word2vec-dapt"     # BaselineConfig.word_embeddings: words start from word2vec on the DAPT text


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """One BiLSTM-CNN-Char run (Chiu & Nichols 2016, the Spark NLP paper's architecture): a baseline
    profile's values with the user's overrides on top. The defaults are that recipe at batch 32; profiles
    state only what differs."""

    dataset: str
    profile: str
    data_dir: str | None = None
    seed: int = 42
    output: typing.Literal["crf", "softmax"] = "crf"
    word_embeddings: str = LEARNED          # or WORD2VEC_DAPT, or a backbone whose input embeddings start words
    word_dim: Positive[int] = 100           # ignored when word_embeddings names a backbone (its width is used)
    dapt_dir: str | None = None             # word2vec-dapt's text: None = $OPENMED_DAPT_DIR, else ../shared/data/dapt
    min_word_count: Positive[int] = 2       # rarer training words share the unknown word's vector
    char_dim: Positive[int] = 25
    char_filters: Positive[int] = 30
    char_kernel: Positive[int] = 3
    max_word_chars: Positive[int] = 30      # characters beyond this feed no character features (the word stays)
    casing_dim: Positive[int] = 8
    hidden_size: Positive[int] = 200        # per direction
    lstm_layers: Positive[int] = 1
    dropout: Fraction = 0.5
    epochs: Positive[int] = 30
    batch_size: Positive[int] = 32
    eval_batch_size: Positive[int] = 256
    learning_rate: Positive[float] = 1e-3
    weight_decay: NonNegative[float] = 0.0
    gradient_clip: Positive[float] = 5.0
    early_stopping_patience: NonNegative[int] = 3
    min_optimizer_steps: NonNegative[int] = 0   # the step floor (training/step_floor.py); 0: none
    max_train_sentences: Positive[int] | None = None
    max_eval_sentences: Positive[int] | None = None
    repair: bool = False
    country: str | None = None              # footprint: None = the paper's EU average grid, or an ISO alpha-3 code

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_baseline_config(profile: str, overrides: dict | None = None,
                         files: typing.Sequence[str | Path] = ()) -> BaselineConfig:
    """parameters/baseline_profiles/<profile>.yaml, YAML files, then overrides; validated like load_run_config."""
    return load_settings(BaselineConfig, "baseline_profiles", profile, overrides, files)


@dataclasses.dataclass(frozen=True)
class ReleasedConfig:
    """Scoring one released checkpoint (parameters/released.yaml) on one corpus's test split: inference only,
    through our windows, with the checkpoint's own tokenizer, labels and maximum length."""

    dataset: str
    model: str                              # a hub id (OpenMed/...) or a local directory holding a token classifier
    # the checkpoint's entity types (any case) -> the corpus's, the others becoming O; None: parameters/released.yaml's
    labels: dict[str, str] | None = None
    data_dir: str | None = None
    max_length: Positive[int] | None = None # None: the checkpoint's own (its tokenizer's, else its position embeddings)
    overlap: NonNegative[int] = 50
    batch_size: Positive[int] = 64
    max_eval_sentences: Positive[int] | None = None
    repair: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_released_config(values: dict, source: str = "released parameters") -> ReleasedConfig:
    """ReleasedConfig from `values`, validated like the run configuration (names, types, ranges)."""
    missing = [name for name in ("dataset", "model") if values.get(name) is None]
    if missing:
        raise OpenMedError(f"{source}: missing parameter(s) {', '.join(missing)}")
    return validated(ReleasedConfig, values, source)


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """One Optuna study: how many finished trials, where it lives, how trials are pruned and how a worker
    that died mid-trial is noticed (heartbeat) and its trial retried."""

    n_trials: Positive[int] = 40
    storage: str | None = None              # None: SQLite file in the run directory; or any SQLAlchemy URL
    study_name: str | None = None           # None: <dataset>-<backbone>-<profile>
    # Hyperband: epochs are the resource (from 1 up to the run's epochs), so cheap early rungs, not a smaller
    # training split, give the saving; trials train the full run the tuned configuration will train
    pruner: typing.Literal["median", "successive_halving", "hyperband", "none"] = "hyperband"
    # the per-epoch signal the pruner compares
    prune_on: typing.Literal["dev_loss", "dev_f1", "dev_f1_then_loss"] = "dev_loss"
    pruner_startup_trials: NonNegative[int] = 5 # completed trials the median pruner waits for (Optuna's default)
    heartbeat_interval: Positive[int] = 60  # seconds between a running trial's heartbeats
    grace_period: Positive[int] = 180       # seconds without a heartbeat before a trial counts as dead
    max_retry: NonNegative[int] = 3         # retries of a trial whose worker died
    space: str | None = None                # None: parameters/search.yaml; or a YAML file with a `space` mapping
    # seeds of the confirmation: the best and the default trained on the full run, paired by seed; [] skips it
    confirm_seeds: list[int] | None = None  # None: 42, 1 and 2


def key_values(items: typing.Sequence[str], option: str = "--set") -> dict:
    """`KEY=VALUE` command-line items as a mapping, each value read as YAML (so 3 is an int, null is None)."""
    values = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise OpenMedError(f"{option} {item!r}: expected KEY=VALUE")
        values[key] = yaml.safe_load(value)
    return values


def load_search_config(overrides: dict | None = None) -> SearchConfig:
    """SearchConfig from keyword overrides, validated like the run configuration."""
    return validated(SearchConfig, overrides or {}, "search parameters")


def validated(kind: type, values: dict, source: str):
    """A dataclass `kind` from `values`, each checked against its field's annotation: its type, its choices
    (`typing.Literal`) and its range (`Positive[int]`, `NonNegative[...]`, `Fraction`, `PositiveFraction`)."""
    return kind(**_checked_values(kind, values, source))


def _checked_values(kind: type, values, source: str) -> dict:
    """`values` checked against the fields of dataclass `kind`: unknown names, types and ranges."""
    if not isinstance(values, dict):
        raise OpenMedError(f"{source}: expected a mapping of parameter names to values")
    hints = typing.get_type_hints(kind, include_extras=True)
    checked = {}
    for key, value in values.items():
        if key not in hints:
            raise OpenMedError(f"{source}: unknown parameter {key!r}; valid: {', '.join(sorted(hints))}")
        checked[key] = _checked(key, value, hints[key], source)
    return checked


def dapt_dir(configured: str | None = None) -> Path:
    """DAPT text files: the parameter, else $OPENMED_DAPT_DIR, else ../shared/data/dapt."""
    chosen = configured or os.environ.get(DAPT_DIR_ENV)
    return Path(chosen) if chosen else SHARED_DATA_DIR / "dapt"


def existing_dapt_dir(configured: str | None = None) -> Path:
    """dapt_dir(configured), refused naming the parameter unless it is a directory."""
    directory = dapt_dir(configured)
    if not directory.is_dir():
        raise OpenMedError(f"parameter dapt_dir: {directory} is not a directory of DAPT text files "
                           f"(set dapt_dir or ${DAPT_DIR_ENV})")
    return directory


def load_dapt_config(profile: str, overrides: dict | None = None, files: typing.Sequence[str | Path] = ()) -> DaptConfig:
    """parameters/dapt_profiles/<profile>.yaml, YAML files, then overrides; validated like load_run_config."""
    return load_settings(DaptConfig, "dapt_profiles", profile, overrides, files)


def load_run_config(profile: str, overrides: dict | None = None, files: typing.Sequence[str | Path] = ()) -> RunConfig:
    """Merge parameters/profiles/<profile>.yaml, then YAML files in order, then `overrides`; validate every
    value before any work starts (unknown keys, wrong types, out-of-range values name the parameter)."""
    config = load_settings(RunConfig, "profiles", profile, overrides, files)
    if config.overlap >= config.max_length - 2:
        raise OpenMedError(f"parameter overlap={config.overlap} must be below max_length={config.max_length} minus 2")
    return config


# What a user varies from run to run without changing a profile's recipe.
PER_RUN_FIELDS = ("dataset", "data_dir", "seed", "backbone", "dapt_adapter", "country", "repair")


def follows_its_profile(recorded: dict, load: typing.Callable | None = None) -> bool:
    """Whether a run's configuration (its config.json) is its profile's recipe, whatever its corpus, seed,
    backbone or adapter: a tuned run, a baseline started from other word vectors, any run given other parameters
    is not one of the profile's runs (nor one of its seeds). `load`: the chapter's loader (load_run_config for
    fine-tuning, load_baseline_config for the baseline). A run of a profile that no longer exists is taken as it is."""
    wanted = _recipe(load or load_run_config, recorded.get("profile"), PARAMETERS_DIR)
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


def load_settings(kind: type, profiles: str, profile: str, overrides: dict | None = None,
                  files: typing.Sequence[str | Path] = ()):
    """A dataclass `kind` from parameters/<profiles>/<profile>.yaml, YAML files and overrides, validated."""
    directory = PARAMETERS_DIR / profiles
    if not isinstance(profile, str) or not (directory / f"{profile}.yaml").is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise OpenMedError(f"parameter profile: unknown profile {profile!r}; known: {', '.join(known)}")
    merged: dict = {"profile": profile}
    sources = [(f"{profiles}/{profile}.yaml", read_parameters(f"{profiles}/{profile}.yaml"))]
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise OpenMedError(f"{path}: parameter file not found")
        sources.append((str(path), yaml.safe_load(path.read_text(encoding="utf-8")) or {}))
    sources.append(("overrides", overrides or {}))
    fields = {f.name: f for f in dataclasses.fields(kind)}
    for source, values in sources:
        merged.update(_checked_values(kind, values, source))
    missing = [name for name, f in fields.items()
               if name not in merged and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise OpenMedError(f"missing parameter(s) {', '.join(missing)}")
    return kind(**merged)


def _rules(hint) -> tuple[tuple, tuple | None, list[Bound]]:
    """A field's annotation taken apart: the types it allows, its choices (a Literal) and its bounds (Annotated)."""
    members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    allowed, choices, bounds = [], None, []
    for member in members:
        if typing.get_origin(member) is typing.Annotated:
            member, *extras = typing.get_args(member)
            bounds += [extra for extra in extras if isinstance(extra, Bound)]
        if typing.get_origin(member) is typing.Literal:
            choices = typing.get_args(member)
            member = type(choices[0])
        allowed.append(member)
    return tuple(allowed), choices, bounds


def _checked(key: str, value, expected, source: str):
    allowed, choices, bounds = _rules(expected)
    if value is None and type(None) in allowed:
        return None
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if dict[str, float] in allowed:
        if not (isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, (int, float))
                                                and not isinstance(v, bool) and v >= 0 for k, v in value.items())):
            raise OpenMedError(f"{source}: parameter {key} must map names to non-negative numbers, got {value!r}")
        return {k: float(v) for k, v in value.items()}
    if dict[str, str] in allowed:
        if not (isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
            raise OpenMedError(f"{source}: parameter {key} must map names to names, got {value!r}")
        return dict(value)
    if list[str] in allowed:
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise OpenMedError(f"{source}: parameter {key} must be a list of strings, got {value!r}")
        return list(value)
    if list[int] in allowed:
        if not (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise OpenMedError(f"{source}: parameter {key} must be a list of integers, got {value!r}")
        return list(value)
    plain = tuple(t for t in allowed if isinstance(t, type))
    if not isinstance(value, plain) or (isinstance(value, bool) and bool not in plain):
        names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
        raise OpenMedError(f"{source}: parameter {key} must be {names}, got {type(value).__name__} {value!r}")
    if choices is not None and value not in choices:
        raise OpenMedError(f"{source}: parameter {key}={value!r}; valid: {', '.join(choices)}")
    for bound in bounds:
        if not bound.holds(value):
            raise OpenMedError(f"{source}: parameter {key}={value!r} {bound.message}")
    return value
