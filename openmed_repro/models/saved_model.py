"""What a saved token classifier must hold, checked before anything is loaded: its labels, readable JSON
files, and complete weights with a classification head of one output per label. A file damaged by an
interrupted copy or a full disk is named in one line instead of failing deep inside safetensors, peft or
transformers. Needs no torch, so a Spark driver checks a run before its executors load it."""

from __future__ import annotations

import re
from pathlib import Path

from safetensors import SafetensorError, safe_open

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files

LABELS_FILE = "labels.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"   # LoRA: the adapter with the head (modules_to_save)
FULL_WEIGHTS = "model.safetensors"              # full fine-tuning: the whole model, beside its config.json
# The head of AutoModelForTokenClassification, bare or under LoRA's prefix (base_model.model.classifier.weight).
_HEAD = re.compile(r"(^|\.)(classifier|score)\.weight$")


def check(directory: Path) -> list[str]:
    """The labels of a saved model directory, once every file loading needs is there and whole."""
    directory = Path(directory)
    labels = atomic_files.read_json(directory / LABELS_FILE)
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise OpenMedError(f"{directory / LABELS_FILE}: not a list of labels; the file is damaged: restore it "
                           "or train again")
    for path in sorted(directory.glob("*.json")):
        atomic_files.read_json(path)
    lora = (directory / ADAPTER_CONFIG).is_file()
    if not lora and not (directory / "config.json").is_file():
        raise OpenMedError(f"{directory}: holds neither {ADAPTER_CONFIG} (LoRA) nor config.json (a fully "
                           "fine-tuned model); give the model/ directory of a finished fine-tuning run")
    weights = directory / (ADAPTER_WEIGHTS if lora else FULL_WEIGHTS)
    heads = [shape for name, shape in tensor_shapes(weights).items() if _HEAD.search(name)]
    if not heads:
        raise OpenMedError(f"{weights}: no classification head (no classifier.weight among its tensors); it was "
                           "saved without the head: train the run again")
    if heads[0][0] != len(labels):
        raise OpenMedError(f"{weights}: the classification head has {heads[0][0]} outputs but "
                           f"{directory / LABELS_FILE} names {len(labels)} labels; the two come from different runs")
    return labels


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Every tensor's shape, read from the header of a safetensors file, which is checked to cover the whole
    file: an empty or truncated file is an error naming it."""
    if not path.is_file():
        raise OpenMedError(f"{path}: missing; the run's model/ is incomplete: restore it or train again")
    try:
        with safe_open(str(path), framework="numpy") as weights:
            return {name: list(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except (SafetensorError, OSError) as error:
        raise OpenMedError(f"{path}: damaged weights ({error}); restore the file or train again") from error
