"""Provenance: what makes a number traceable (the commit, the packages, the machine, the command, the data), and
absolute paths made portable so a record names places the same way on every machine."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from openmed_repro.infra import paths

COMMAND_ENV = "OPENMED_REPRO_COMMAND"   # the command a notebook's kernel cannot see (the Makefile sets it)
COMMIT_ENV = "OPENMED_REPRO_COMMIT"     # the commit of a tree copied without .git (to a cluster node, say)
PACKAGES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "seqeval", "numpy", "gensim", "openmed-repro")


def provenance(run_config, data: dict, device: str, machine: dict,
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
        "packages": {name: version(name) for name in PACKAGES},
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
    for root in (*roots, paths.PROJECT_ROOT, Path.cwd()):
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
        return subprocess.run(["git", *args], cwd=paths.PROJECT_ROOT, capture_output=True, text=True,
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


def version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _constraints() -> dict:
    """The pip constraints file the environment was installed with (make venv), by its sha256."""
    path = paths.PROJECT_ROOT / "constraints.txt"
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {"file": path.name, "sha256": digest}
