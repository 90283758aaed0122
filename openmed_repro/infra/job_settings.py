"""The settings of every job, declared once: what all trainers share, what the transformer trainers and the
corpus trainers add, then each chapter's own, each read from a profile with the user's overrides on top and
validated before any work (infra/validation.py)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import yaml

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import paths
from openmed_repro.infra.validation import (Fraction, NonNegative, Positive, PositiveFraction, checked_values,
                                            validated)

Precision = typing.Literal["auto", "fp32", "bf16", "fp16"]
InferencePrecision = typing.Literal["auto", "fp32", "bf16", "fp16", "int8"]
Scheduler = typing.Literal["cosine", "linear", "constant_with_warmup"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainerSettings:
    """What every trainer (fine-tuning, DAPT, the BiLSTM-CNN-Char) is given. The defaults are the paper's
    fine-tuning recipe (arXiv 2508.01630); a trainer whose recipe differs says so in its own class."""

    profile: str
    seed: int = 42
    epochs: Positive[float] = 3.0
    learning_rate: Positive[float] = 5e-4          # not legible in the paper; the search chapter tunes it
    batch_size: Positive[int] = 32
    eval_batch_size: Positive[int] = 64
    weight_decay: NonNegative[float] = 0.01
    country: str | None = None          # footprint: None = the paper's EU average grid, or an ISO alpha-3 code

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerSettings(TrainerSettings):
    """What a trainer of a transformer backbone through LoRA adds (fine-tuning and DAPT)."""

    backbone: str
    gradient_accumulation_steps: Positive[int] = 1
    lr_scheduler: Scheduler = "cosine"             # after the warm-up, cosine decay
    lora_r: Positive[int] = 16
    lora_alpha: Positive[int] = 32
    lora_dropout: Fraction = 0.05
    lora_target_modules: list[str] | None = None   # None: the backbone's query and value (parameters/backbones.yaml)
    max_length: Positive[int] = 256
    precision: Precision = "auto"                  # GPU: bf16 where supported, else fp16; CPU: bf16 where it has
                                                   # bf16 units (AMX, AVX-512 BF16), else fp32 (infra/devices.py)
    gradient_checkpointing: bool = False
    logging_steps: Positive[int] = 50


@dataclasses.dataclass(frozen=True, kw_only=True)
class CorpusSettings(TrainerSettings):
    """What a trainer of a tagger on one corpus adds (fine-tuning and the BiLSTM-CNN-Char)."""

    dataset: str
    data_dir: str | None = None
    early_stopping_patience: NonNegative[int] = 3
    # A small corpus's epoch passes over its training split several times until the run takes at least this
    # many optimizer steps, so that evaluation every epoch and early stopping keep their meaning (0: no floor).
    # A run capped by max_train_sentences takes the budget it is given: the floor is for whole splits.
    min_optimizer_steps: NonNegative[int] = 0
    max_train_sentences: Positive[int] | None = None
    max_eval_sentences: Positive[int] | None = None
    repair: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig(CorpusSettings, TransformerSettings):
    """Everything one fine-tuning run depends on: a profile's values with the user's overrides on top. The
    defaults are the paper's fine-tuning recipe (arXiv 2508.01630); profiles state only what differs."""

    method: typing.Literal["lora", "full"] = "lora"
    dapt_adapter: str | None = None
    warmup_ratio: Fraction = 0.1                   # linear warm-up over the first 10% of steps
    label_smoothing: Fraction = 0.1                # value not legible in the paper: the usual 0.1
    overlap: NonNegative[int] = 50
    # The precision of the final dev and test predictions: None is exact fp32, as every recorded run; auto,
    # bf16 or int8 trade exactness for speed where the CPU has the units (models/low_precision.py).
    eval_precision: InferencePrecision | None = None
    group_by_length: bool = True
    # Full fine-tuning with the input word embeddings fixed: on MiniLM they are half the weights, and on a CPU
    # their optimizer update costs more time than it gives (the Performance chapter's options). None: they
    # train. LoRA keeps them fixed anyway.
    freeze_word_embeddings: bool | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class DaptConfig(TransformerSettings):
    """One LoRA DAPT run: a DAPT profile's values with the user's overrides on top. The defaults are the
    paper's DAPT recipe (arXiv 2508.01630); profiles state only what differs."""

    learning_rate: Positive[float] = 2e-4          # the DAPT recipe's, where it differs from fine-tuning's
    batch_size: Positive[int] = 64
    gradient_accumulation_steps: Positive[int] = 2
    dapt_dir: str | None = None
    mix: dict[str, float] | None = None
    passages: Positive[int] | None = None
    min_tokens: Positive[int] = 50
    max_tokens: Positive[int] = 256
    split_long: bool = True
    held_out_fraction: PositiveFraction = 0.1
    head_learning_rate: Positive[float] = 1e-3
    head_calibration_steps: Positive[int] | None = None
    warmup_steps: NonNegative[int] = 500
    mlm_probability: PositiveFraction = 0.15
    # dropout of the attention probabilities while adapting (None: the backbone's own, BERT's 0.1); on a CPU
    # drawing a mask for every attention probability takes most of a step's time
    attention_dropout: Fraction | None = None
    save_steps: Positive[int] = 200
    perplexity_steps: Positive[int] | None = None   # held-out perplexity every this many steps (None: save_steps)


LEARNED = "learned"                 # BaselineConfig.word_embeddings: every word starts at random
WORD2VEC_DAPT = "word2vec-dapt"     # BaselineConfig.word_embeddings: words start from word2vec on the DAPT text


@dataclasses.dataclass(frozen=True, kw_only=True)
class BaselineConfig(CorpusSettings):
    """One BiLSTM-CNN-Char run (Chiu & Nichols 2016, the Spark NLP paper's architecture): a baseline
    profile's values with the user's overrides on top. The defaults are that recipe at batch 32; profiles
    state only what differs."""

    epochs: Positive[int] = 30                     # the BiLSTM recipe's, where it differs from fine-tuning's
    learning_rate: Positive[float] = 1e-3
    eval_batch_size: Positive[int] = 256
    weight_decay: NonNegative[float] = 0.0
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
    gradient_clip: Positive[float] = 5.0


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


def load_search_config(overrides: dict | None = None) -> SearchConfig:
    """SearchConfig from keyword overrides, validated like the run configuration."""
    return validated(SearchConfig, overrides or {}, "search parameters")


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


def load_settings(kind: type, profiles: str, profile: str, overrides: dict | None = None,
                  files: typing.Sequence[str | Path] = ()):
    """A dataclass `kind` from parameters/<profiles>/<profile>.yaml, YAML files and overrides, validated."""
    directory = paths.PARAMETERS_DIR / profiles
    if not isinstance(profile, str) or not (directory / f"{profile}.yaml").is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        raise OpenMedError(f"parameter profile: unknown profile {profile!r}; known: {', '.join(known)}")
    merged: dict = {"profile": profile}
    sources = [(f"{profiles}/{profile}.yaml", paths.read_parameters(f"{profiles}/{profile}.yaml"))]
    for file in files:
        path = Path(file)
        if not path.is_file():
            raise OpenMedError(f"{path}: parameter file not found")
        sources.append((str(path), yaml.safe_load(path.read_text(encoding="utf-8")) or {}))
    sources.append(("overrides", overrides or {}))
    fields = {f.name: f for f in dataclasses.fields(kind)}
    for source, values in sources:
        merged.update(checked_values(kind, values, source))
    missing = [name for name, f in fields.items()
               if name not in merged and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise OpenMedError(f"missing parameter(s) {', '.join(missing)}")
    return kind(**merged)

