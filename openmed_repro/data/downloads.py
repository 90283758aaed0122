"""Verified downloads: a file reaches its final name only after its git blob id has been checked, so a
partial or corrupted download can never be mistaken for a good one later."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import typing
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from openmed_repro.errors import OpenMedError
from openmed_repro.infra import atomic_files

_CHUNK = 1 << 16


def git_blob_id(path: Path) -> str:
    """What `git hash-object` prints: SHA-1 of `blob <size>\\0` + content."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    _feed(digest, path)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    _feed(digest, path)
    return digest.hexdigest()


def _feed(digest, path: Path) -> None:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)


def fetch_verified(url: str, destination: Path, git_blob: str, timeout: float = 60.0) -> Path:
    """Download `url` to `destination`, verified against `git_blob`; on any failure nothing is left behind
    (no partial file, and no directory that this call created)."""
    created = _missing_directories(destination.parent)
    try:
        with atomic_files.atomic_path(destination) as partial:
            _stream(url, partial, timeout)
            received = git_blob_id(partial)
            if received != git_blob:
                raise OpenMedError(
                    f"{url}: checksum mismatch (git blob {received}, expected {git_blob}); the download was discarded"
                )
    except BaseException:
        _remove_empty(created)
        raise
    return destination


def fetch_all_verified(files: typing.Iterable[tuple[str, Path, str]], timeout: float = 60.0) -> None:
    """Download each (url, destination, git_blob) whose destination is not there yet, verified. All or
    nothing: when one fails, the files and directories this call created are removed before the error
    propagates, so a failed download leaves nothing behind."""
    fetched: list[Path] = []
    created: list[Path] = []
    try:
        for url, destination, git_blob in files:
            if destination.is_file():
                continue
            created += _missing_directories(destination.parent)
            fetch_verified(url, destination, git_blob, timeout)
            fetched.append(destination)
    except BaseException:
        for path in fetched:
            path.unlink(missing_ok=True)
        _remove_empty(created)
        raise


def _missing_directories(directory: Path) -> list[Path]:
    """`directory` and those of its parents that do not exist yet, deepest first."""
    return [d for d in (directory, *directory.parents) if not d.exists()]


def _remove_empty(directories: list[Path]) -> None:
    """Remove `directories` (deepest first) that are empty; one that is not empty is left as it is."""
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()


def _stream(url: str, target: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, target.open("wb") as out:
            expected = response.headers.get("Content-Length")
            total = int(expected) if expected is not None else None
            written = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name, leave=False) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise OpenMedError(f"{url}: download failed ({error})") from error
    if total is not None and written != total:
        raise OpenMedError(f"{url}: partial download ({written} of {total} bytes); the download was discarded")
