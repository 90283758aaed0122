"""Files a reader sees whole or not at all: each written to a temporary beside it, then renamed (one step), the
temporaries of killed writers removed, and JSON read back with an error naming a damaged file."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openmed_repro.errors import OpenMedError


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
