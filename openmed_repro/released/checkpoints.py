"""parameters/released.yaml: which released checkpoint is scored on which corpus, where that pairing comes from,
how the checkpoint's labels map onto the corpus's types, and how long a CPU run of it should take."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import job_settings, paths

FILE = "released.yaml"


@dataclass(frozen=True)
class Released:
    """One checkpoint paired with one corpus (an entry of released.yaml)."""

    corpus: str
    model: str
    parameters: int
    reported_f1: float | None
    pairing: str
    labels_seen: str
    labels: dict[str, str]


def catalogue() -> list[Released]:
    """Every pairing of released.yaml, corpus by corpus in the file's order."""
    entries = paths.read_parameters(FILE).get("checkpoints") or {}
    found = []
    for corpus, checkpoints in entries.items():
        for number, entry in enumerate(checkpoints or [], start=1):
            try:
                found.append(Released(corpus=corpus, model=entry["model"], parameters=int(entry["parameters"]),
                                      reported_f1=entry.get("reported_f1"), pairing=entry["pairing"],
                                      labels_seen=entry.get("labels_seen", ""), labels=dict(entry["labels"])))
            except (KeyError, TypeError, ValueError) as error:
                raise OpenMedError(f"{paths.PARAMETERS_DIR / FILE}: checkpoint {number} of {corpus} is malformed "
                                   f"({error!r}); it needs model, parameters, pairing and labels") from error
    return found


def for_corpus(corpus: str) -> list[Released]:
    """The checkpoints paired with a corpus (its key, or a directory named like it)."""
    return [entry for entry in catalogue() if entry.corpus == Path(corpus).name]


def unpaired() -> list[str]:
    """Corpora of Table 4 that no released checkpoint is paired with."""
    return list(paths.read_parameters(FILE).get("unpaired") or [])


def find(dataset: str, model: str) -> Released | None:
    """The pairing of `model` with `dataset`: the hub id itself, or a local copy named like it (the directory
    `huggingface-cli download ID --local-dir DIR` makes keeps only the name after the owner)."""
    for entry in for_corpus(dataset):
        if model == entry.model or Path(model).name == entry.model.rsplit("/", 1)[-1]:
            return entry
    return None


def configure(values: dict, source: str = "released parameters") -> job_settings.ReleasedConfig:
    """The ReleasedConfig of these parameters: `model` None is the corpus's first released checkpoint, `labels`
    None that checkpoint's map in released.yaml (written into config.json, so a changed map is a changed run)."""
    values = {key: value for key, value in values.items() if value is not None}
    dataset = values.get("dataset")
    if dataset is not None and "model" not in values:
        paired = for_corpus(str(dataset))
        if not paired:
            raise OpenMedError(f"{source}: no released checkpoint is paired with {dataset} in "
                               f"{paths.PARAMETERS_DIR / FILE}; give model (a hub id or a local directory)")
        values["model"] = paired[0].model
    settings = job_settings.load_released_config(values, source)
    return resolved(settings, source)


def resolved(settings: job_settings.ReleasedConfig, source: str = "released parameters") -> job_settings.ReleasedConfig:
    """`settings` with its label map: its own, else released.yaml's for this checkpoint and corpus."""
    if settings.labels is not None:
        return settings
    entry = find(settings.dataset, settings.model)
    if entry is None:
        raise OpenMedError(f"{source}: {settings.model} is not paired with {Path(settings.dataset).name} in "
                           f"{paths.PARAMETERS_DIR / FILE}, so its labels have no map; give labels "
                           "{CHECKPOINT_TYPE: CORPUS_TYPE, ...}")
    return dataclasses.replace(settings, labels=dict(entry.labels))


def estimated_seconds(parameters: int, words: int) -> float:
    """CPU seconds to predict `words` words with a model of `parameters` parameters on one thread: the speed
    measured here with the offline model, scaled by the parameter count (released.yaml's cpu_estimate)."""
    measured = paths.read_parameters(FILE)["cpu_estimate"]
    words_per_second = measured["measured_words_per_second"] * measured["measured_parameters"] / parameters
    return words / words_per_second
