"""Atomic file writes: a reader never sees half a file, a crash never leaves one.

Every write in `rag` that replaces a file goes through here: the data goes to a
temporary file beside the target, is fsynced, then renamed over it (and, for
`durable=True`, the folder is fsynced so the rename itself survives a power cut).
A folder (a built model) is published the same way by `publish_folder`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in folder `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, parts: Iterable[str | bytes], durable: bool = False) -> None:
    """Write `parts` (strings, or bytes, streamed) to `path` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it private; our files are not
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part.encode("utf-8") if isinstance(part, str) else part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str | bytes, durable: bool = False) -> None:
    write_atomic(path, (text,), durable)


def write_json(path: Path, data: Any, durable: bool = False) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n", durable)


def write_jsonl_atomic(path: Path, records: Iterable[Any]) -> None:
    """One JSON object a line, UTF-8 as is (not \\u-escaped)."""
    write_atomic(path, (json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def publish_folder(dest: Path, marker: str, build: Callable[[Path], None]) -> bool:
    """Make the folder `dest` with `build(tmp)` in a temporary sibling, then rename it into
    place: a killed build never leaves a folder that would later load. `marker` is the
    file whose presence says a folder is complete: a `dest` without it (an older,
    non-atomic copy) is replaced; if another process published a complete `dest` first,
    its folder is kept and this one discarded. Siblings left by builds killed more than an
    hour ago are removed. Returns whether this call's folder was the one published."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - stale.stat().st_mtime > 3600:
                shutil.rmtree(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        build(tmp)
        if dest.exists() and not (dest / marker).is_file():
            shutil.rmtree(dest)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / marker).is_file():
                raise
            shutil.rmtree(tmp)  # a concurrent build won the race
            return False
        return True
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
