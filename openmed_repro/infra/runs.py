"""Run directories: where a run writes, atomic files, and the provenance that makes a number traceable.
A run is complete exactly when its metrics.json exists; that file is always written last."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from openmed_repro.infra import config
from openmed_repro.errors import OpenMedError

METRICS = "metrics.json"
CONFIG = "config.json"
LOG_HISTORY = "log_history.json"
PROVENANCE = "provenance.json"
MODEL_DIR = "model"                 # a trained tagger (fine-tuning, baseline) of a run directory
COMMAND_ENV = "OPENMED_REPRO_COMMAND"   # the command a notebook's kernel cannot see (the Makefile sets it)
COMMIT_ENV = "OPENMED_REPRO_COMMIT"     # the commit of a tree copied without .git (to a cluster node, say)
PACKAGES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "seqeval", "numpy", "gensim", "openmed-repro")
CHAPTERS = ("finetune", "dapt", "baseline", "hpo", "released")


def default_directory(settings: config.RunConfig | config.DaptConfig | config.BaselineConfig | config.ReleasedConfig,
                      chapter: str | None = None) -> Path:
    """runs/<chapter>/<name>: the one place a default run directory is named (users have these names, so
    they never change). The chapter follows from the configuration's type; a RunConfig names a fine-tuning
    run, or with chapter="hpo" a search."""
    chapter = chapter or _CHAPTER_OF[type(settings)]
    kind, name = _NAMES.get(chapter, (None, None))
    if kind is None or not isinstance(settings, kind):
        valid = ", ".join(f"{c} ({k.__name__})" for c, (k, _) in _NAMES.items())
        raise OpenMedError(f"chapter {chapter!r} of a {type(settings).__name__}: valid: {valid}")
    return Path("runs") / chapter / name(settings)


def _finetune_name(c: config.RunConfig) -> str:
    dapt = "-dapt" if c.dapt_adapter else ""
    return f"{Path(c.dataset).name}-{Path(c.backbone).name}-{c.profile}-{c.method}{dapt}-seed{c.seed}"


def _baseline_name(c: config.BaselineConfig) -> str:
    start = "" if c.word_embeddings == config.LEARNED else f"-{Path(c.word_embeddings).name}"  # learned: as ever
    return f"{Path(c.dataset).name}-{c.profile}-{c.output}{start}-seed{c.seed}"


_NAMES = {
    "finetune": (config.RunConfig, _finetune_name),
    "dapt": (config.DaptConfig, lambda c: f"{Path(c.backbone).name}-{c.profile}-seed{c.seed}"),
    "baseline": (config.BaselineConfig, _baseline_name),
    "hpo": (config.RunConfig, lambda c: f"{Path(c.dataset).name}-{Path(c.backbone).name}-{c.profile}"),
    "released": (config.ReleasedConfig, lambda c: f"{Path(c.dataset).name}-{Path(c.model).name}"),
}
_CHAPTER_OF = {config.RunConfig: "finetune", config.DaptConfig: "dapt", config.BaselineConfig: "baseline",
               config.ReleasedConfig: "released"}
_LOADERS = {"finetune": config.load_run_config, "dapt": config.load_dapt_config,
            "baseline": config.load_baseline_config, "hpo": config.load_run_config,
            "released": lambda _profile, values: config.load_released_config(values)}   # a checkpoint has no profile


def run_directory(chapter: str, parameters: dict) -> Path:
    """Where the chapter's notebook writes with these parameters: their output_dir, else the default
    directory of the configuration the notebook loads (a None value meaning the profile's, as there)."""
    if chapter not in _LOADERS:
        raise OpenMedError(f"chapter {chapter!r}: valid: {', '.join(CHAPTERS)}")
    values = {key: value for key, value in parameters.items() if value is not None}
    output_dir = values.pop("output_dir", None)
    profile = values.pop("profile", None)
    if chapter == "hpo":   # the study's own parameters (n_trials, pruner, ...) are checked, and name nothing
        search_fields = set(config.SearchConfig.__dataclass_fields__) & set(values)
        config.load_search_config({key: values.pop(key) for key in search_fields})
    settings = _LOADERS[chapter](profile, values)
    return Path(output_dir) if output_dir else default_directory(settings, chapter)


def is_complete(run_dir: Path) -> bool:
    return (run_dir / METRICS).is_file()


RECORD = config.PROJECT_ROOT / "results"


def in_record(run_dir: str | Path) -> bool:
    """Whether `run_dir` lies in the project's record (results/): read there, never trained into."""
    return Path(run_dir).resolve().is_relative_to(RECORD.resolve())


def claim(run_dir: Path, run_config: config.RunConfig) -> None:
    """Create or reopen `run_dir` for this configuration; a directory of another configuration is refused,
    so a resumed run can never mix two configurations."""
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = run_dir / CONFIG
    wanted = run_config.to_dict()
    if in_record(run_dir):   # the record names paths portably (a corpus directory by its name)
        wanted = portable(wanted)
    if existing.is_file():
        changed = changed_settings(read_json(existing), wanted)
        if changed:
            raise OpenMedError(
                f"{run_dir}: holds a run with other parameters ({', '.join(changed)}); "
                "choose another output_dir or delete it"
            )
    else:
        write_json(existing, wanted)


WEIGHT_DIRS = (MODEL_DIR, "adapter")   # what a finished run saved to be loaded again (a tagger, a DAPT adapter)
CALIBRATED_HEAD = "calibrated_head.safetensors"   # DAPT's MLM head, trained alone before the adapter
WEIGHT_FILES = (CALIBRATED_HEAD,)
FILES_SHA256 = "files_sha256"           # metrics.json's key: the sha256 of each of those files


def weights_sha256(run_dir: Path) -> dict[str, str]:
    """The sha256 of every file a finished run saved to be loaded again, by its path in the run directory."""
    run_dir = Path(run_dir)
    saved = [path for folder in WEIGHT_DIRS if (run_dir / folder).is_dir()
             for path in sorted((run_dir / folder).rglob("*")) if path.is_file()]
    saved += [run_dir / name for name in WEIGHT_FILES if (run_dir / name).is_file()]
    return {path.relative_to(run_dir).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest() for path in saved}


def read_finished(run_dir: Path) -> dict:
    """metrics.json of a finished run, once every JSON file beside it parses and (outside the record, which keeps
    no weights) its saved files match their sha256: a damaged file is one line naming it, never a run read back
    as complete."""
    run_dir = Path(run_dir)
    remedy = (f"restore it from git (git checkout -- {run_dir})" if in_record(run_dir)
              else f"delete {run_dir} and rerun the same command to train it again")
    parsed = {path.name: read_json(path, remedy) for path in sorted(run_dir.glob("*.json"))}
    metrics = parsed[METRICS] if METRICS in parsed else read_json(run_dir / METRICS, remedy)   # missing: named
    if not isinstance(metrics, dict):
        raise OpenMedError(f"{run_dir / METRICS}: not a metrics record (a JSON object); the file is damaged: {remedy}")
    if not in_record(run_dir):
        check_weights(run_dir, metrics)
    return metrics


def check_weights(run_dir: Path, metrics: dict | None = None) -> None:
    """A finished run's saved files against the sha256 its metrics.json records (a run from before they were
    recorded is taken as it is): a damaged or missing file is one line naming it and what to do."""
    run_dir = Path(run_dir)
    recorded = (metrics if metrics is not None else read_json(run_dir / METRICS)).get(FILES_SHA256) or {}
    for name, digest in recorded.items():
        path = run_dir / name
        if not path.is_file():
            raise OpenMedError(f"{path}: missing from the finished run; delete {run_dir} and rerun the same command "
                               "to train it again")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise OpenMedError(f"{path}: damaged (its sha256 is not the one {METRICS} records); delete {run_dir} and "
                               "rerun the same command to train it again")


def changed_settings(recorded: dict, wanted: dict) -> list[str]:
    """The parameters whose values differ between a run's recorded configuration and the one wanted; a parameter
    added after the run was recorded counts as unchanged when it is None (unset), and a DAPT adapter is the DAPT
    run it comes from, wherever that run's directory lies."""
    def value(settings: dict, key: str):
        return dapt_run_of(settings.get(key)) if key == "dapt_adapter" else settings.get(key)
    return sorted(k for k in wanted.keys() | recorded.keys() if value(wanted, k) != value(recorded, k))


def dapt_run_of(adapter: str | None) -> str | None:
    """The DAPT run an adapter directory belongs to (runs/dapt/<name>/adapter and results/dapt/<name>/adapter
    name the same run), or the path itself when it lies elsewhere."""
    if not adapter:
        return None
    parts = Path(adapter).parts
    return f"dapt/{parts[-2]}" if len(parts) >= 3 and parts[-1] == "adapter" and parts[-3] == "dapt" else adapter


def recorded_with(record_dir: Path, run_config) -> bool:
    """Whether the record `record_dir` holds a run of exactly this configuration (paths compared portably)."""
    settings = Path(record_dir) / CONFIG
    return settings.is_file() and not changed_settings(read_json(settings), portable(run_config.to_dict()))


def follows_its_profile(run_dir: Path, load=config.load_run_config) -> bool:
    """Whether the run in `run_dir` is its profile's recipe (config.follows_its_profile, with the chapter's
    loader); a run without its configuration file is taken as it is."""
    settings = Path(run_dir) / CONFIG
    return not settings.is_file() or config.follows_its_profile(read_json(settings), load)


def started_from_dapt(run_dir: Path) -> bool:
    """Whether the fine-tuning run in `run_dir` started from a DAPT adapter (its configuration's dapt_adapter):
    the paper's two stages, a recipe of its own beside the profile's plain one."""
    settings = Path(run_dir) / CONFIG
    return settings.is_file() and bool(read_json(settings).get("dapt_adapter"))


def write_json(path: Path, data) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """Readers see the old text or the new, never a part of it."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A new empty file `.NAME.<random>.tmp` beside `path` to write; it becomes `path` (one rename) when the
    block ends and is removed if the block raises, so `path` never holds a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _new_temporary(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _new_temporary(path: Path) -> Path:
    """Created exclusively (no other writer shares it) with an ordinary new file's permissions (umask applies,
    unlike tempfile.mkstemp's owner-only mode, which the rename would carry to `path`). Its name says which
    process on which machine writes it, so a temporary whose writer was killed can be told apart and removed."""
    while True:
        candidate = path.with_name(f".{path.name}.{_WRITER}-{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return candidate
        except FileExistsError:
            continue


_WRITER = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def remove_stale_temporaries(directory: Path, name: str | None = None) -> list[Path]:
    """Remove the temporaries under `directory` (those of the file `name` only, where given) whose writer, a
    process of this machine, is gone: what a killed write leaves. A live writer's, or another machine's, stays."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = []
    for path in (directory.glob(f".{name}.*.tmp") if name else directory.rglob(".*.tmp")):
        match = _TEMPORARY.match(path.name)
        if match and match["host"] == _WRITER and (not name or match["name"] == name) \
                and not _alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def follow_umask(directory: Path) -> None:
    """Every file under `directory` that a library wrote through an owner-only temporary (safetensors does:
    mode 0600) gets an ordinary new file's permissions, 0666 less the umask, like every other file of a run."""
    mode = 0o666 & ~umask()
    for path in Path(directory).rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_mode & 0o777 == 0o600 != mode:
            path.chmod(mode)


def umask() -> int:
    """The process's umask (reading it means setting it, so it is set back at once)."""
    current = os.umask(0o022)
    os.umask(current)
    return current


def read_json(path: Path, remedy: str = "restore it or run again"):
    """The value of a JSON file; one that cannot be read or parsed (cut by an interrupted copy or a full disk)
    is an error naming it, in one line."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise OpenMedError(f"{path}: cannot read ({error.strerror or error})") from error
    except json.JSONDecodeError as error:
        raise OpenMedError(f"{path}: unreadable JSON ({error.msg} at line {error.lineno} column {error.colno}); "
                           f"the file is damaged: {remedy}") from error
    except UnicodeDecodeError as error:
        raise OpenMedError(f"{path}: unreadable JSON (not UTF-8 at byte {error.start}); the file is damaged: "
                           f"{remedy}") from error


def provenance(run_config: config.RunConfig, data: dict, device: str, machine: dict,
               run_dir: str | Path | None = None, precision: str | None = None, git: dict | None = None) -> dict:
    """Git commit, package versions, data checksums, configuration, seed, device, machine (with its CPU's
    low-precision units), the precision training ran in (what `auto` resolved to) and command of a run:
    portable (the corpus named by key and sha256, the run directory relative to the repository). `git`: the
    repository's state when the training started (git_state()), which is the code that ran; default: now."""
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git or git_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in PACKAGES},
        "device": device,
        "machine": machine,
        "precision": precision,
        "command": command(),
        "run_dir": portable_path(run_dir) if run_dir is not None else None,
        "seed": getattr(run_config, "seed", None),   # a released checkpoint is scored, not trained: no seed
        "config": run_config.to_dict(),
        "data": data,
        "constraints": _constraints(),
    }


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what the platform says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def command(argv: list[str] | None = None) -> str | None:
    """The command that started this process, its absolute paths made portable: $OPENMED_REPRO_COMMAND when
    set (a notebook's kernel only sees its own launcher), None inside a kernel without it."""
    if os.environ.get(COMMAND_ENV):
        return portable_text(os.environ[COMMAND_ENV])
    argv = sys.argv if argv is None else argv
    if not argv or "ipykernel" in argv[0] or not argv[0]:
        return None
    program = Path(argv[0])
    if program.name == "__main__.py":        # python -m PACKAGE
        name = f"python -m {program.parent.name}"
    elif program.name == "cli.py" and program.parent.name == "openmed_repro":
        name = "openmed-repro"
    else:
        name = program.name
    return portable_text(" ".join([name, *argv[1:]]))


# An absolute path inside text: a "/" not preceded by a word, a dot, a colon or a slash (so no URL, ratio or
# relative path), up to a space, a quote or a separator.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\",;=()\[\]{}]+")


def portable_path(path: str | Path, roots: tuple[Path, ...] = ()) -> str:
    """A place on this machine as a record may name it: relative to the first of `roots`, the repository or the
    working directory that holds it, else its last component alone."""
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    for root in (*roots, config.PROJECT_ROOT, Path.cwd()):
        for base in (root, root.resolve()):
            if base != Path(base.anchor) and path.is_relative_to(base):
                return path.relative_to(base).as_posix()
    return path.name


def portable_text(text: str, roots: tuple[Path, ...] = ()) -> str:
    """`text` with every absolute path in it made portable (portable_path)."""
    return _ABSOLUTE_PATH.sub(lambda match: portable_path(match.group(0), roots), text)


def portable(value, roots: tuple[Path, ...] = ()):
    """A JSON value with every absolute path in its strings made portable (portable_text)."""
    if isinstance(value, str):
        return portable_text(value, roots)
    if isinstance(value, dict):
        return {key: portable(item, roots) for key, item in value.items()}
    if isinstance(value, list):
        return [portable(item, roots) for item in value]
    return value


@functools.lru_cache(maxsize=1)
def code_state() -> dict:
    """git_state() when this process first asked: the code a long process (a sweep of many runs) imported at its
    start, whatever is committed while it runs."""
    return git_state()


def git_state() -> dict:
    """The commit of the working tree and whether it holds uncommitted changes (a copied tree: its sender's)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=config.PROJECT_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD") or None
        if commit:
            # the record (results/) is data the runs write, not code: a run recorded meanwhile dirties nothing
            return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--", ".", ":(exclude)results"))}
    except (OSError, subprocess.SubprocessError):
        pass
    # A copy of the tree has no repository to ask: the commit it was copied from, as its sender says.
    return {"commit": os.environ.get(COMMIT_ENV) or None, "dirty": None}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _constraints() -> dict:
    """The pip constraints file the environment was installed with (make venv), by its sha256."""
    path = config.PROJECT_ROOT / "constraints.txt"
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {"file": path.name, "sha256": digest}


def write_predictions(path: Path, sentences: list, predicted: list[list[str]]) -> None:
    """token, gold, predicted per line; a blank line between sentences (what later chapters read)."""
    blocks = ["\n".join(f"{t}\t{g}\t{p}" for t, g, p in zip(s.tokens, s.tags, tags))
              for s, tags in zip(sentences, predicted)]
    write_text(path, "\n\n".join(blocks) + "\n")


def read_predictions(path: Path) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """The tokens, gold tags and predicted tags of a predictions file, sentence by sentence."""
    tokens, gold, predicted = [], [], []
    for number, block in enumerate(path.read_text(encoding="utf-8").split("\n\n"), start=1):
        rows = [line.split("\t") for line in block.splitlines() if line]
        if not rows:
            continue
        if any(len(row) != 3 for row in rows):
            raise OpenMedError(f"{path}: sentence {number} has a line without token, gold and predicted tag")
        tokens.append([r[0] for r in rows])
        gold.append([r[1] for r in rows])
        predicted.append([r[2] for r in rows])
    return tokens, gold, predicted
