"""The record: finished runs copied into results/ as small, portable files that the book and the tests of
significance read, with an index (results/README.md) naming the command, commit and machine of each. Weights,
checkpoints and model/ stay in runs/, which is scratch.

results/<chapter>/<name>/ is named like runs/<chapter>/<name>/ and holds, by kind of run:
  a training run (metrics.json: finetune, baseline, dapt, ablation, all-corpora) or a released checkpoint scored:
      config.json, metrics.json, provenance.json, log_history.json, footprint.json (when the run has one) and,
      when the run predicted tags, predictions.json.gz
  a search (summary.json: hpo): config.json, summary.json, trials.csv, best.yaml, provenance.json (when the
      search wrote one), footprint.json (every trial's records)
  a benchmark (runs/bench/NAME.json): results/bench/NAME.json, the JSON itself

predictions.json.gz holds the predicted tags alone, tied to the corpus split files by sha256; its format,
writer and reader are data/saved_predictions.py's.

Every absolute path of the machine that made a run is made portable on the way in (run_provenance.portable): relative to
the directory holding runs/ or to the repository, else the last component alone."""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from openmed_repro.data import saved_predictions
from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files, footprint, layout, paths, run_provenance, runs
from openmed_repro.report import audit

INDEX = "README.md"
FILE_LIMIT = 5 * 2**20      # a record file over this is refused: something heavy came in
TOTAL_LIMIT = 25 * 2**20    # the whole record over this is reported: the repository would grow too fast
RUN_FILES = (runs.CONFIG, runs.METRICS, runs.PROVENANCE, runs.LOG_HISTORY, footprint.RECORD)
SEARCH_FILES = (runs.CONFIG, layout.LAYOUT.search_summary, layout.LAYOUT.search_trials, layout.LAYOUT.best_parameters,
                runs.PROVENANCE, layout.LAYOUT.confirmation)
FINISHED_ROOTS = ("finetune", "dapt", "baseline", "hpo", "bench", "released")


@dataclass(frozen=True)
class Recorded:
    """One run's outcome: its record's name and path, and what happened (recorded, identical, replaced)."""

    name: str
    path: Path
    outcome: str
    size: int


@dataclass
class Outcome:
    """What `record` did: the records written or found identical, the runs refused (why), budget warnings."""

    recorded: list[Recorded] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def record(sources: list[Path], results: Path | None = None, replace: bool = False,
           command: str | None = None, allow_dirty: bool = False, allow_env: bool = False) -> Outcome:
    """Copy each finished run into `results` (a different record of the same name only with `replace`; an
    identical one is left as it is), then rewrite the index. A refused run does not stop the others.
    `command` names the command of runs whose provenance has none (runs made before provenance named it)."""
    results = layout.LAYOUT.record if results is None else Path(results)
    outcome = Outcome()
    for source in sources:
        try:
            outcome.recorded.append(record_one(Path(source), results, replace, command, allow_dirty, allow_env))
        except OpenMedError as error:
            outcome.refused.append(str(error))
    if outcome.recorded or not outcome.refused:   # a refusal alone leaves the index and the manifest as they were
        write_index(results)
        audit.write_manifest(results)
    total = sum(path.stat().st_size for path in results.rglob("*") if path.is_file())
    if total > TOTAL_LIMIT:
        outcome.warnings.append(f"{results}: the record holds {total:,} bytes, over its budget of {TOTAL_LIMIT:,} "
                                "bytes; record fewer runs or leave a heavy kind out")
    return outcome


def record_one(source: Path, results: Path | None = None, replace: bool = False, command: str | None = None,
               allow_dirty: bool = False, allow_env: bool = False) -> Recorded:
    """One run into the record (see the module's docstring for what it holds). A run whose provenance says its
    code had uncommitted changes, or its packages other versions than constraints.txt's, is refused unless
    allowed; the index then marks it."""
    results = layout.LAYOUT.record if results is None else Path(results)
    name = record_name(source)
    provenance_path = source / runs.PROVENANCE if source.is_dir() else None
    if provenance_path is not None and provenance_path.is_file():
        against = marks(atomic_files.read_json(provenance_path))
        refused = [m for m in against if (m == "dirty" and not allow_dirty)
                   or (m.startswith("off-constraints") and not allow_env)]
        if refused:
            raise OpenMedError(f"{source}: {'; '.join(refused)}: rerun it from a clean checkout with `make venv`'s "
                               "packages, or record it marked with --allow-dirty / --allow-env")
    files = contents(source, name, command)
    for file_name, data in files.items():
        if len(data) > FILE_LIMIT:
            raise OpenMedError(f"{source}: {file_name} of its record would be {len(data):,} bytes, over the "
                               f"{FILE_LIMIT:,} bytes a record file may hold; it is not recorded")
    target = results / name
    size = sum(len(data) for data in files.values())
    existing = _read_existing(target, single=source.is_file())
    if existing == files:
        return Recorded(name, target, "identical: already recorded, nothing to do", size)
    if existing is not None and not replace:
        changed = sorted(k for k in files.keys() | existing.keys() if files.get(k) != existing.get(k))
        raise OpenMedError(f"{target}: a different record of {source} is already there ({', '.join(changed)} "
                           "differ); record with --replace to overwrite it")
    kept = supersede(target, files, results) if existing is not None else None
    _write(target, files, single=source.is_file())
    outcome = "recorded" if existing is None else (f"replaced (the older recipe's record kept as {kept})" if kept
                                                   else "replaced")
    return Recorded(name, target, outcome, size)


SUPERSEDED = "superseded"


def supersede(target: Path, files: dict[str, bytes], results: Path | None = None) -> Path | None:
    """Before a record is replaced by a run of another configuration (a profile whose recipe changed), the old
    record moves, untouched, to results/superseded/<name>@<its commit>: the evidence a change was made on stays
    in the record (tables of the current recipes leave it out: it follows no profile any more). A record replaced
    by a run of the same configuration is simply overwritten."""
    results = layout.LAYOUT.record if results is None else Path(results)
    old_config, new_config = target / runs.CONFIG, files.get(runs.CONFIG)
    if not old_config.is_file() or new_config is None:
        return None
    if not runs.changed_settings(atomic_files.read_json(old_config), json.loads(new_config)):
        return None
    provenance = atomic_files.read_json(target / runs.PROVENANCE) if (target / runs.PROVENANCE).is_file() else {}
    commit = str((provenance.get("git") or {}).get("commit") or "unknown")[:7]
    kept = results / SUPERSEDED / f"{target.relative_to(results).as_posix()}@{commit}"
    if kept.exists():
        raise OpenMedError(f"{target}: its older record would move to {kept}, which exists; move one of them by hand")
    kept.parent.mkdir(parents=True, exist_ok=True)
    os.replace(target, kept)
    return kept.relative_to(results)


def record_name(source: Path) -> str:
    """The record's name: the run's path after its last runs/ component (runs/finetune/x -> finetune/x)."""
    return layout.LAYOUT.record_name(source)


def finished(runs_root: Path = layout.LAYOUT.runs) -> list[Path]:
    """Every finished run under runs/finetune, dapt, baseline, released (metrics.json), hpo (summary.json) and every
    benchmark JSON of runs/bench (not the .partial.json of a sitting cut short). A hidden folder (a run set
    aside, a tool's scratch) is never searched."""
    found = []
    for chapter in FINISHED_ROOTS:
        root = runs_root / chapter
        if not root.is_dir():
            continue
        if chapter == "bench":
            found += [p for p in sorted(root.glob("*.json")) if not p.name.endswith(".partial.json")]
        elif chapter == "hpo":
            found += [p.parent for p in _visible(root, layout.LAYOUT.search_summary)]
        else:
            found += [p.parent for p in _visible(root, runs.METRICS) if not _smoke(p.parent)]
    return found


def _visible(root: Path, name: str) -> list[Path]:
    return [p for p in sorted(root.rglob(name)) if not any(part.startswith(".") for part in p.relative_to(root).parts)]


def _smoke(run_dir: Path) -> bool:
    """A run of the smoke profile (tiny random models, the tests' runs): its numbers mean nothing, so --all
    leaves it out of the record (naming it explicitly still records it)."""
    settings = run_dir / runs.CONFIG
    return settings.is_file() and atomic_files.read_json(settings).get("profile") == "smoke"


def contents(source: Path, name: str, command: str | None = None) -> dict[str, bytes]:
    """The record of `source` as file name -> bytes, every absolute path made portable."""
    roots = _roots(source)
    if source.is_file():
        if source.suffix != ".json":
            raise OpenMedError(f"{source}: a benchmark is recorded as its JSON file; this is not one")
        return {source.name: _json(run_provenance.portable(atomic_files.read_json(source), roots))}
    if not source.is_dir():
        raise OpenMedError(f"{source}: no such run directory")
    if (source / runs.METRICS).is_file():
        files = {file_name: _json(run_provenance.portable(atomic_files.read_json(source / file_name), roots))
                 for file_name in RUN_FILES if (source / file_name).is_file() and file_name != runs.PROVENANCE}
        provenance = atomic_files.read_json(source / runs.PROVENANCE) if (source / runs.PROVENANCE).is_file() else None
        if provenance is not None:
            provenance = portable_provenance(provenance, name, footprint.read(source), command)
            files[runs.PROVENANCE] = _json(run_provenance.portable(provenance, roots))
        if any(saved_predictions.run_file(source, split).is_file() for split in saved_predictions.SPLITS):
            files[saved_predictions.RECORD_FILE] = saved_predictions.compact(source, provenance)
        return files
    if (source / layout.LAYOUT.search_summary).is_file() and (source / layout.LAYOUT.search_trials).is_file():
        files = {}
        for file_name in SEARCH_FILES:
            path = source / file_name
            if path.suffix == ".json" and path.is_file():
                value = atomic_files.read_json(path)
                if file_name == runs.PROVENANCE:
                    value = portable_provenance(value, name, _search_footprint(source), command)
                files[file_name] = _json(run_provenance.portable(value, roots))
            elif path.is_file():
                files[file_name] = run_provenance.portable_text(path.read_text(encoding="utf-8"), roots).encode("utf-8")
        trials = _search_footprint(source)
        if trials:
            files[footprint.RECORD] = _json(run_provenance.portable({"records": trials}, roots))
        return files
    raise OpenMedError(f"{source}: not a finished run (no {runs.METRICS}, nor a search's {layout.LAYOUT.search_summary} and "
                       "trials.csv); rerun its command to finish it, then record it")


def _roots(source: Path) -> tuple[Path, ...]:
    """The directory holding the run's runs/, so that its paths read runs/<chapter>/<name>."""
    root = layout.LAYOUT.runs_root_of(source)
    return (root,) if root is not None else ()


def _search_footprint(source: Path) -> list[dict]:
    return [entry for path in sorted((source / "footprint").glob(f"*/{footprint.RECORD}"))
            for entry in footprint.read(path.parent)]


def portable_provenance(provenance: dict, name: str, energy_records: list[dict], command: str | None) -> dict:
    """A run's provenance as the record keeps it, also for runs made before provenance was portable: the
    corpus by key and file name with checksums (no directory or path), the run directory as runs/<name>, the
    machine (inferred from the footprint's hardware and the device name when the run did not record it) and
    the command (`command` when the run did not record it)."""
    provenance = dict(provenance)
    data = dict(provenance.get("data") or {})
    data.pop("directory", None)
    if isinstance(data.get("files"), dict):
        data["files"] = {split: {("file" if key == "path" else key): (Path(value).name if key == "path" else value)
                                 for key, value in entry.items()}
                         for split, entry in data["files"].items()}
    provenance["data"] = data
    provenance["run_dir"] = (layout.LAYOUT.runs / name).as_posix()
    if not provenance.get("machine"):
        provenance["machine"] = _inferred_machine(provenance.get("device") or "", energy_records)
    if not provenance.get("command"):
        provenance["command"] = command
    against = marks(provenance)
    if against:   # what it holds against the run, in the record's own file, not only in the index
        provenance["marks"] = against
    return provenance


def _inferred_machine(device: str, energy_records: list[dict]) -> dict:
    hardware = (energy_records[-1].get("hardware") or {}) if energy_records else {}
    threads = re.search(r"\((\d+) threads?\)", device)
    gpu = hardware.get("gpu_model") or (device if device and not device.startswith("cpu") else None)
    return {"cpu": hardware.get("cpu_model"), "cpu_count": hardware.get("cpu_count"),
            "threads": int(threads.group(1)) if threads else None, "gpu": gpu,
            "gpu_count": hardware.get("gpu_count") or (1 if gpu else 0),
            "inferred_from": "footprint.json and the device name (the run predates recorded machines)"}


def listing(results: Path | None = None) -> pd.DataFrame:
    """Every record under `results`: its name, chapter, kind (run, search, benchmark), path, what it ran
    (corpus, backbone, profile, method, seed), its headline figure, and the command, commit, machine and date."""
    results = layout.LAYOUT.record if results is None else Path(results)
    rows = []
    for path in sorted(results.rglob("*.json")):
        relative = path.relative_to(results)
        if path.name == runs.METRICS:
            kind, directory = "run", path.parent
        elif path.name == layout.LAYOUT.search_summary and (path.parent / layout.LAYOUT.search_trials).is_file():
            kind, directory = "search", path.parent
        elif relative.parts[0] == "bench" and len(relative.parts) == 2:
            kind, directory = "benchmark", path
        else:
            continue
        rows.append(_row(results, kind, directory))
    table = pd.DataFrame(rows, columns=["name", "chapter", "kind", "path", "corpus", "backbone", "profile", "method",
                                        "seed", "headline", "command", "commit", "machine", "date", "marks"])
    return table.astype({"seed": "Int64"})   # a benchmark has no seed: the others stay integers (42, not 42.0)


def _row(results: Path, kind: str, path: Path) -> dict:
    name = path.relative_to(results).as_posix()
    if kind == "benchmark":
        value = atomic_files.read_json(path)
        provenance = value.get("provenance") or {}
        settings, headline = value, ""
        command = value.get("command") or provenance.get("command")
    else:
        provenance = _optional_json(path / runs.PROVENANCE)
        settings = _optional_json(path / runs.CONFIG)
        headline = _headline(kind, atomic_files.read_json(path / (runs.METRICS if kind == "run" else layout.LAYOUT.search_summary)))
        command = provenance.get("command")
    git = provenance.get("git") or {}
    commit = (git.get("commit") or "")[:10]
    return {"name": name, "chapter": name.split("/")[0], "kind": kind, "path": str(path),
            "corpus": Path(str(settings.get("dataset") or "")).name or None,
            "backbone": settings.get("backbone") or settings.get("model"),   # a released checkpoint names its model
            "profile": settings.get("profile"), "method": settings.get("method") or settings.get("output"),
            "seed": settings.get("seed"), "headline": headline, "command": command, "commit": commit or None,
            "machine": _machine_name(provenance.get("machine") or {}), "date": (provenance.get("created") or "")[:10] or None,
            "marks": "; ".join(marks(provenance)) if provenance else None}


def marks(provenance: dict, constraints: dict[str, str] | None = None) -> list[str]:
    """What the provenance of a run says against it: code with uncommitted changes ("dirty"), a tree copied without
    its repository ("commit unverified"), packages at other versions than constraints.txt pins
    ("off-constraints: torch 2.11.0, not 2.13.0"). Empty for a run made as `make` sets things up."""
    found = []
    git = provenance.get("git") or {}
    if git.get("dirty"):
        found.append("dirty")
    elif git and git.get("dirty") is None:
        found.append("commit unverified")
    pinned = pinned_versions() if constraints is None else constraints
    off = [f"{name} {version}, not {pinned[name]}" for name, version in sorted((provenance.get("packages") or {}).items())
           if version and name in pinned and version.split("+")[0] != pinned[name]]
    if off:
        found.append("off-constraints: " + "; ".join(off))
    return found


def pinned_versions() -> dict[str, str]:
    """Package versions constraints.txt pins (name -> version, local labels dropped)."""
    return dict(_pins(paths.PROJECT_ROOT / "constraints.txt"))


@functools.lru_cache(maxsize=4)
def _pins(path: Path) -> tuple[tuple[str, str], ...]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        name, separator, version = line.strip().partition("==")
        if separator and not line.startswith("#"):
            pins[name.strip().lower()] = version.strip().split("+")[0]
    return tuple(pins.items())


def _optional_json(path: Path) -> dict:
    return atomic_files.read_json(path) if path.is_file() else {}


def _headline(kind: str, values: dict) -> str:
    if kind == "search":
        return f"best dev strict F1 {100 * values['best_dev_strict_f1']:.2f}"
    if "test" in values:
        return f"test strict F1 {100 * values['test']['strict']['f1']:.2f}"
    if "perplexity_reduction_percent" in values:
        return f"perplexity reduction {values['perplexity_reduction_percent']:.1f}%"
    return ""


def _machine_name(machine: dict) -> str | None:
    if not machine:
        return None
    text = f"{machine.get('cpu') or 'CPU unknown'}, {machine.get('threads') or '?'} threads"
    return text + (f", {machine['gpu']}" if machine.get("gpu") else "")


def write_index(results: Path | None = None) -> Path:
    """results/README.md: a table of every record, written from the record alone (so it is always current)."""
    results = layout.LAYOUT.record if results is None else Path(results)
    table = listing(results)
    lines = ["# The record", "",
             "Finished runs as data: the book and the tests of significance read these files; weights and checkpoints",
             "stay in `runs/`. Each record names the command, commit and machine that produced it. Written by",
             "`openmed-repro record` (`make record`); do not edit by hand.", "",
             "A mark says what a run's provenance holds against it: code with uncommitted changes (dirty), a tree copied",
             "without its repository (commit unverified), packages at other versions than constraints.txt's.", "",
             "| record | chapter | corpus | backbone | profile | method | seed | headline | command | commit | machine | date "
             "| marks |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples(index=False):
        link = f"[{row.name}]({row.name})"
        cells = [link, row.chapter, row.corpus, row.backbone, row.profile, row.method, row.seed, row.headline,
                 f"`{row.command}`" if row.command else "not recorded", row.commit, row.machine, row.date, row.marks]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    if table.empty:
        lines.append("| (no record yet) |  |  |  |  |  |  |  |  |  |  |  |  |")
    path = results / INDEX
    atomic_files.write_text(path, "\n".join(lines) + "\n")
    return path


def _cell(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value)):
        return ""
    return str(value).replace("|", "\\|")


def _json(value) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")


def _read_existing(target: Path, single: bool) -> dict[str, bytes] | None:
    if single:
        return {target.name: target.read_bytes()} if target.is_file() else None
    if not target.is_dir():
        return None
    return {path.name: path.read_bytes() for path in target.iterdir() if path.is_file()}


def _write(target: Path, files: dict[str, bytes], single: bool) -> None:
    """The record appears whole or not at all: written beside its place, then renamed into it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if single:
        [data] = files.values()
        with atomic_files.atomic_path(target) as temporary:
            temporary.write_bytes(data)
        return
    staging = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    staging.mkdir()
    try:
        for file_name, data in files.items():
            (staging / file_name).write_bytes(data)
        if target.exists():
            old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
