"""Verified downloads: a file reaches its final name only after its git blob id has been checked, so a
partial or corrupted download can never be mistaken for a good one later."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from openmed_repro.errors import OpenMedError

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
    """Download `url` to `destination`, verified against `git_blob`; on any failure nothing is left behind."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f"{destination.name}.part-{os.getpid()}")
    try:
        _stream(url, partial, timeout)
        received = git_blob_id(partial)
        if received != git_blob:
            raise OpenMedError(
                f"{url}: checksum mismatch (git blob {received}, expected {git_blob}); the download was discarded"
            )
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return destination


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
