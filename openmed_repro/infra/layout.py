"""Where every run lives and what it is called: the one place a run's identity is spelled. Users and the record
know these names (runs/<chapter>/<name>, results/<chapter>/<name>, a search's best.yaml), so they never change;
every default of the command, the chapters, the Makefile (`openmed-repro run-dir`) and the book comes from here."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import paths
from openmed_repro.infra.job_settings import (BaselineConfig, DaptConfig, LEARNED, ReleasedConfig, RunConfig, SearchConfig,
                                          load_baseline_config, load_dapt_config, load_released_config,
                                          load_run_config, load_search_config)

RUNS = "runs"           # the runs root's name: a record is named by a run's path after its last runs/ component
RECORD_DIR_ENV = "OPENMED_RECORD_DIR"   # another record than the repository's results/ (a second record, a test's)


@dataclasses.dataclass(frozen=True)
class Layout:
    """The runs root (relative to the working directory: a user's runs sit where the command ran), the record's
    root (absolute: the repository's results/, wherever the command runs), the runs root's sub-folders, the
    tuned run's suffix and the search's files."""

    runs: Path
    repository_record: Path
    book: str = "book"                  # executed chapters and the built HTML, per profile
    verify: str = "verify"              # a reviewer's reruns of recorded runs, per chapter
    sweep: str = "sweep"                # one configuration on every corpus, per profile
    ablation: str = "ablation"          # the capped DAPT ablation of the DAPT chapter
    word_vectors: str = "word_vectors"  # word2vec on the DAPT text, cached for the BiLSTM-CNN-Char
    bench: str = "bench"                # the benchmarks' JSON
    logs: str = "logs"
    tuned_suffix: str = "-tuned"        # the search's tuned run beside the default: <name>-tuned
    search_summary: str = "summary.json"
    search_trials: str = "trials.csv"
    best_parameters: str = "best.yaml"
    confirmation: str = "confirmation.json"
    study_storage: str = "study.db"       # a search's SQLite study, when no other storage is given

    @property
    def record(self) -> Path:
        """The record: the repository's results/, or $OPENMED_RECORD_DIR where it is set."""
        configured = os.environ.get(RECORD_DIR_ENV)
        return Path(configured).absolute() if configured else self.repository_record

    def folder(self, name: str) -> Path:
        """A sub-folder of the runs root (runs/<name>), one of the fields above or a chapter."""
        return self.runs / name

    def tuned(self, directory: str | Path) -> Path:
        """The tuned twin of a run directory: <name>-tuned beside it."""
        directory = Path(directory)
        return directory.with_name(directory.name + self.tuned_suffix)

    def record_name(self, run_dir: str | Path) -> str:
        """A run as the record names it: its path after its last runs/ component (runs/finetune/x: finetune/x)."""
        parts = Path(run_dir).resolve().parts
        if RUNS not in parts or parts[-1] == RUNS:
            raise OpenMedError(f"{run_dir}: not inside a {RUNS}/ directory; a record is named like its run directory "
                               f"relative to {RUNS}/ ({RUNS}/<chapter>/<name>)")
        at = len(parts) - 1 - parts[::-1].index(RUNS)
        return "/".join(parts[at + 1:])

    def runs_root_of(self, run_dir: str | Path) -> Path | None:
        """The directory holding a run's runs/ (so that its paths read runs/<chapter>/<name>), None outside one."""
        parts = Path(run_dir).resolve().parts
        if RUNS not in parts:
            return None
        return Path(*parts[: len(parts) - 1 - parts[::-1].index(RUNS)])

    def recorded(self, run_dir: str | Path) -> Path:
        """The record directory of a default run directory (runs/<chapter>/<name>: results/<chapter>/<name>)."""
        return self.record / Path(run_dir).relative_to(self.runs)

    def in_record(self, path: str | Path) -> bool:
        """Whether `path` lies in the project's record: read there, never trained into."""
        return Path(path).resolve().is_relative_to(self.record.resolve())


LAYOUT = Layout(runs=Path(RUNS), repository_record=paths.PROJECT_ROOT / "results")
FOLDERS = ("book", "verify", "sweep", "ablation", "word_vectors", "bench", "logs")   # Layout's sub-folder fields


def study_name(dataset: str, backbone: str, profile: str) -> str:
    """A search's study by default: <dataset>-<backbone>-<profile>, its run directory's name (workers that share
    it share the study)."""
    return f"{Path(dataset).name}-{Path(backbone).name}-{profile}"


CHAPTERS = ("finetune", "dapt", "baseline", "hpo", "released")


def default_directory(settings: RunConfig | DaptConfig | BaselineConfig | ReleasedConfig,
                      chapter: str | None = None) -> Path:
    """runs/<chapter>/<name>: the one place a default run directory is named (users have these names, so
    they never change). The chapter follows from the configuration's type; a RunConfig names a fine-tuning
    run, or with chapter="hpo" a search."""
    chapter = chapter or _CHAPTER_OF[type(settings)]
    kind, name = _NAMES.get(chapter, (None, None))
    if kind is None or not isinstance(settings, kind):
        valid = ", ".join(f"{c} ({k.__name__})" for c, (k, _) in _NAMES.items())
        raise OpenMedError(f"chapter {chapter!r} of a {type(settings).__name__}: valid: {valid}")
    return LAYOUT.folder(chapter) / name(settings)


def _finetune_name(c: RunConfig) -> str:
    dapt = "-dapt" if c.dapt_adapter else ""
    return f"{Path(c.dataset).name}-{Path(c.backbone).name}-{c.profile}-{c.method}{dapt}-seed{c.seed}"


def _baseline_name(c: BaselineConfig) -> str:
    start = "" if c.word_embeddings == LEARNED else f"-{Path(c.word_embeddings).name}"  # learned: as ever
    return f"{Path(c.dataset).name}-{c.profile}-{c.output}{start}-seed{c.seed}"


_NAMES = {
    "finetune": (RunConfig, _finetune_name),
    "dapt": (DaptConfig, lambda c: f"{Path(c.backbone).name}-{c.profile}-seed{c.seed}"),
    "baseline": (BaselineConfig, _baseline_name),
    "hpo": (RunConfig, lambda c: study_name(c.dataset, c.backbone, c.profile)),
    "released": (ReleasedConfig, lambda c: f"{Path(c.dataset).name}-{Path(c.model).name}"),
}
_CHAPTER_OF = {RunConfig: "finetune", DaptConfig: "dapt", BaselineConfig: "baseline",
               ReleasedConfig: "released"}
_LOADERS = {"finetune": load_run_config, "dapt": load_dapt_config,
            "baseline": load_baseline_config, "hpo": load_run_config,
            "released": lambda _profile, values: load_released_config(values)}   # a checkpoint has no profile


def run_directory(chapter: str, parameters: dict) -> Path:
    """Where the chapter's notebook writes with these parameters: their output_dir, else the default
    directory of the configuration the notebook loads (a None value meaning the profile's, as there)."""
    if chapter not in _LOADERS:
        raise OpenMedError(f"chapter {chapter!r}: valid: {', '.join(CHAPTERS)}")
    values = {key: value for key, value in parameters.items() if value is not None}
    output_dir = values.pop("output_dir", None)
    profile = values.pop("profile", None)
    if chapter == "hpo":   # the study's own parameters (n_trials, pruner, ...) are checked, and name nothing
        search_fields = set(SearchConfig.__dataclass_fields__) & set(values)
        load_search_config({key: values.pop(key) for key in search_fields})
    settings = _LOADERS[chapter](profile, values)
    return Path(output_dir) if output_dir else default_directory(settings, chapter)
