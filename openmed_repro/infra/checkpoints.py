"""Which Trainer checkpoint a run resumes from: the last complete one. A run killed while a checkpoint was being
written leaves a checkpoint-N folder without some of its files (or with a weights file cut short); resuming from it
fails, so it is moved aside (checkpoint-N.incomplete), said in one line, and the one before it is taken."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

NEEDED = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth")
WEIGHTS = ("model.safetensors", "adapter_model.safetensors", "pytorch_model.bin", "adapter_model.bin")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def last_complete(directory: Path, say=print) -> str | None:
    """The last complete checkpoint-N under `directory` (None without one); every incomplete one after it is
    moved aside and named in one line through `say`."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    numbered = sorted(((int(m.group(1)), path) for path in directory.iterdir()
                       if path.is_dir() and (m := _CHECKPOINT.match(path.name))), reverse=True)
    for _, path in numbered:
        missing = incomplete(path)
        if not missing:
            return str(path)
        aside = path.with_name(path.name + ".incomplete")
        if aside.exists():
            aside = path.with_name(f"{path.name}.incomplete-{len(list(directory.glob(path.name + '.incomplete*')))}")
        path.rename(aside)
        say(f"{path}: incomplete ({missing}), moved aside to {aside.name}; resuming from the checkpoint before it")
    return None


def incomplete(checkpoint: Path) -> str | None:
    """What makes a checkpoint unusable for resuming (a missing, empty or cut-short file), or None."""
    for name in NEEDED:
        if not (checkpoint / name).is_file() or (checkpoint / name).stat().st_size == 0:
            return f"no {name}"
    weights = [checkpoint / name for name in WEIGHTS if (checkpoint / name).is_file()]
    if not weights:
        return "no weights file"
    for path in weights:
        if path.suffix == ".safetensors" and not _whole_safetensors(path):
            return f"{path.name} cut short"
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "trainer_state.json unreadable"
    return None


def _whole_safetensors(path: Path) -> bool:
    """Whether a safetensors file holds every byte its header announces."""
    size = path.stat().st_size
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length <= 0 or 8 + length > size:
                return False
            header = json.loads(handle.read(length))
    except (OSError, ValueError, struct.error):
        return False
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    return 8 + length + max(ends, default=0) == size
