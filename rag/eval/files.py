"""Atomic file writes for evaluation outputs: a reader never sees half a file.

Each write goes to a temporary file beside the target, is fsynced, then renamed over
it; an interrupted run leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, parts: Iterable[str]) -> None:
    """Write the strings of `parts` (streamed, e.g. JSON lines) to `path` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes it private; results are not
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for part in parts:
                f.write(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, (text,))


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")


def write_jsonl_atomic(path: Path, records: Iterable[Any]) -> None:
    """One JSON object a line, UTF-8 as is (not \\u-escaped)."""
    write_atomic(path, (json.dumps(r, ensure_ascii=False) + "\n" for r in records))
