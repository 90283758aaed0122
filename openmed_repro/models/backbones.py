"""Backbone names to models: hub ids (downloaded by transformers where there is a network), weights
shipped in a PyPI package (the offline default), a tiny random BERT for tests, or any local directory."""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, TaskType
from transformers import AutoConfig, AutoModelForMaskedLM, AutoModelForTokenClassification, AutoTokenizer

from openmed_repro.infra import paths
from openmed_repro.errors import OpenMedError

_RANDOM_INIT_SEED = 0
_REACH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Backbone:
    name: str
    source: str                      # a directory, a hub id, or "random"
    kind: str                        # "local" | "hub" | "package" | "random"
    tokenizer_source: str
    lora_target_modules: tuple[str, ...] = ()
    mlm_head: bool = False
    random_config: dict = field(default_factory=dict)


def registry() -> dict[str, dict]:
    return paths.read_parameters("backbones.yaml").get("backbones") or {}


def resolve(name: str) -> Backbone:
    """A registry name or a local model directory; anything else is an error listing the valid names."""
    entries = registry()
    if name in entries:
        entry = entries[name]
        targets = tuple(entry.get("lora_target_modules") or ())
        if "hub_id" in entry:
            return Backbone(name, entry["hub_id"], "hub", entry["hub_id"], targets, bool(entry.get("mlm_head")))
        if "package" in entry:
            directory = _package_directory(name, entry["package"], entry.get("package_subdir", ""))
            return Backbone(name, str(directory), "package", str(directory), targets, bool(entry.get("mlm_head")))
        if "random_config" in entry:
            tokenizer = resolve(entry["tokenizer_from"]).tokenizer_source
            return Backbone(name, "random", "random", tokenizer, targets, False, dict(entry["random_config"]))
        raise OpenMedError(f"{paths.PARAMETERS_DIR / 'backbones.yaml'}: backbone {name!r} has no hub_id, package or random_config")
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise OpenMedError(f"backbone {name!r}: directory has no config.json (not a transformers model)")
        return Backbone(Path(name).name, str(Path(name).resolve()), "local", str(Path(name).resolve()))
    raise OpenMedError(
        f"parameter backbone: unknown backbone {name!r}; known: {', '.join(entries)}, or a local model directory"
    )


def load_tokenizer(backbone: Backbone):
    _ensure_reachable(backbone.tokenizer_source)
    _ensure_sentencepiece(backbone.tokenizer_source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(backbone.tokenizer_source)
    except (OSError, ValueError) as error:
        raise OpenMedError(_unreachable_message(backbone.tokenizer_source, error)) from error
    if not tokenizer.is_fast:
        raise OpenMedError(f"backbone {backbone.name}: a fast tokenizer is needed to align words and sub-words")
    return tokenizer


SENTENCEPIECE_MODULES = {"sentencepiece": "sentencepiece", "google.protobuf": "protobuf"}


def _ensure_sentencepiece(source: str) -> None:
    """A directory with a SentencePiece model and no tokenizer.json (DeBERTa-v3's layout) becomes a fast
    tokenizer only through sentencepiece and protobuf; without them transformers fails asking for tiktoken.
    A hub id is checked in its cached copy, if any."""
    directory = Path(source)
    if not directory.is_dir():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source, "spm.model")
        if not isinstance(cached, str):
            return
        directory = Path(cached).parent
    if not (directory / "spm.model").is_file() or (directory / "tokenizer.json").is_file():
        return
    missing = [package for module, package in SENTENCEPIECE_MODULES.items() if not _importable(module)]
    if missing:
        raise OpenMedError(f"backbone {source!r}: its tokenizer is a SentencePiece model ({directory / 'spm.model'}, "
                           f"no tokenizer.json) and {', '.join(missing)} is not installed: "
                           f"pip install {' '.join(SENTENCEPIECE_MODULES.values())} (pinned in pyproject.toml)")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):   # a missing parent package, or a module set to None in sys.modules
        return False


def load_token_classifier(backbone: Backbone, labels: list[str], vocab_size: int):
    """The backbone with a fresh token-classification head for `labels`."""
    label_maps = {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
                  "label2id": {label: i for i, label in enumerate(labels)}}
    if backbone.kind == "random":
        model_config = AutoConfig.for_model(**backbone.random_config, vocab_size=vocab_size, **label_maps)
        with torch.random.fork_rng():
            torch.manual_seed(_RANDOM_INIT_SEED)  # the same "checkpoint" every time, whatever the run's seed
            return AutoModelForTokenClassification.from_config(model_config)
    _ensure_reachable(backbone.source)
    try:
        return AutoModelForTokenClassification.from_pretrained(backbone.source, **label_maps)
    except OSError as error:
        raise OpenMedError(_unreachable_message(backbone.source, error)) from error


def checkpoint(source: str) -> Backbone:
    """A trained token classifier as released: a local model directory, else a hub id (owner/name)."""
    if Path(source).is_dir():
        return resolve(source)
    return Backbone(source.rsplit("/", 1)[-1], source, "hub", source)


def trained_labels(backbone: Backbone) -> list[str]:
    """The labels of a trained token classifier's head, in the order of its outputs (config.id2label)."""
    _ensure_reachable(backbone.source)
    try:
        model_config = AutoConfig.from_pretrained(backbone.source)
    except (OSError, ValueError) as error:
        raise OpenMedError(_unreachable_message(backbone.source, error)) from error
    return [model_config.id2label[index] for index in range(model_config.num_labels)]


def load_trained_token_classifier(backbone: Backbone):
    """A trained token classifier with its own head and labels, as it was saved (nothing re-initialised)."""
    _ensure_reachable(backbone.source)
    try:
        return AutoModelForTokenClassification.from_pretrained(backbone.source)
    except OSError as error:
        raise OpenMedError(_unreachable_message(backbone.source, error)) from error


UNSET_MAX_LENGTH = 100_000   # a tokenizer that names no maximum has a huge sentinel (about 1e30) instead
ROBERTA_POSITION_OFFSET = 2  # RoBERTa-style position ids start after the padding index


def maximum_length(tokenizer, model_config) -> int:
    """The longest input a trained model takes: its tokenizer's maximum when set, never beyond its position
    embeddings (less RoBERTa's offset of 2)."""
    limits = [tokenizer.model_max_length] if tokenizer.model_max_length < UNSET_MAX_LENGTH else []
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions:
        offset = ROBERTA_POSITION_OFFSET if model_config.model_type in {"roberta", "xlm-roberta", "camembert"} else 0
        limits.append(positions - offset)
    if not limits:
        raise OpenMedError(f"{model_config.name_or_path}: neither its tokenizer nor its configuration names a "
                           "maximum input length; give max_length")
    return min(limits)


def load_masked_lm(backbone: Backbone, vocab_size: int,
                   attention_dropout: float | None = None) -> tuple[torch.nn.Module, bool]:
    """The backbone with its masked-language-modelling head, and whether that head came trained with the
    checkpoint (False: freshly initialised, as for DeBERTa-v3, ELECTRA discriminators and minilm-l6).
    `attention_dropout`: the dropout of attention probabilities instead of the checkpoint's (None: its own)."""
    overrides = {} if attention_dropout is None else {"attention_probs_dropout_prob": attention_dropout}
    if backbone.kind == "random":
        model_config = AutoConfig.for_model(**{**backbone.random_config, **overrides}, vocab_size=vocab_size)
        with torch.random.fork_rng():
            torch.manual_seed(_RANDOM_INIT_SEED)
            return AutoModelForMaskedLM.from_config(model_config), False
    _ensure_reachable(backbone.source)
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(backbone.source, output_loading_info=True, **overrides)
    except OSError as error:
        raise OpenMedError(_unreachable_message(backbone.source, error)) from error
    prefix = model.base_model_prefix + "."
    head_missing = any(not key.startswith(prefix) for key in info["missing_keys"])
    return model, not head_missing


def lora_config(backbone: Backbone, model, r: int, alpha: int, dropout: float,
                target_modules: list[str] | None = None) -> LoraConfig:
    """LoRA on the attention query and value matrices; the classifier is trained and saved with the adapter
    (`modules_to_save`), or a reloaded adapter would come with a random head."""
    targets = list(target_modules or backbone.lora_target_modules or query_value_modules(model))
    return LoraConfig(task_type=TaskType.TOKEN_CLS, r=r, lora_alpha=alpha, lora_dropout=dropout,
                      target_modules=targets, modules_to_save=["classifier"])


def save_adapter(model, directory: Path) -> None:
    """model.save_pretrained, with adapter_config.json's module lists sorted: peft keeps them as sets, whose order
    follows the process's string hashing, so the same adapter would otherwise hash differently in every process."""
    model.save_pretrained(directory)
    adapter_config = Path(directory) / "adapter_config.json"
    if adapter_config.is_file():
        settings = json.loads(adapter_config.read_text(encoding="utf-8"))
        for key in ("target_modules", "modules_to_save", "exclude_modules"):
            if isinstance(settings.get(key), list):
                settings[key] = sorted(settings[key])
        adapter_config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def query_value_modules(model) -> list[str]:
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for pair in (["query", "value"], ["query_proj", "value_proj"], ["q_proj", "v_proj"], ["q_lin", "v_lin"]):
        if set(pair) <= leaves:
            return pair
    raise OpenMedError("cannot find the attention query/value modules of this backbone: set lora_target_modules")


def _package_directory(name: str, package: str, subdir: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise OpenMedError(f"backbone {name}: Python package {package!r} is not installed (pip install -e .)")
    return Path(list(spec.submodule_search_locations)[0]) / subdir


def _ensure_reachable(source: str) -> None:
    reason = unreachable(source)
    if reason:
        raise OpenMedError(_unreachable_message(source, reason))


def unreachable(source: str) -> str | None:
    """Why `source` cannot be loaded here, or None: a hub id that is neither a directory nor cached must answer
    an HTTP HEAD for its config within seconds, so that nothing hangs on DNS or connection retries."""
    if Path(source).is_dir():
        return None
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return None
    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set and it is not in the cache"
    endpoint = (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")
    probe = f"{endpoint}/{source}/resolve/main/config.json"
    try:
        request = urllib.request.Request(probe, method="HEAD")
        with urllib.request.urlopen(request, timeout=_REACH_TIMEOUT_S):
            pass
    except urllib.error.HTTPError as error:
        if error.code not in {401, 403}:  # gated or private models exist; let transformers ask for a token
            return f"{probe} answered HTTP {error.code}"
    except (OSError, ValueError) as error:
        return f"{probe} unreachable: {error}"
    return None


def _unreachable_message(source: str, reason) -> str:
    return (f"backbone {source!r} cannot be loaded ({reason}). Download it where there is a network "
            f"(huggingface-cli download {source} --local-dir DIR), copy DIR here and pass "
            f"-p backbone DIR, or use the offline default -p backbone minilm-l6")


def merge_adapter(model, adapter_dir: str | Path):
    """A model (of any head) with a DAPT adapter merged into its encoder weights: the start of fine-tuning."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise OpenMedError(f"parameter dapt_adapter: {adapter_dir} holds no adapter_config.json "
                           "(give the adapter/ directory of a finished DAPT run)")
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    for parameter in merged.parameters():  # peft froze them for the adapter; hand back a model as loaded
        parameter.requires_grad = True
    return merged
