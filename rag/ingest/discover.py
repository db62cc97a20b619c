"""Which files under the paths a user gives are documents: supported suffixes, no lock files or sidecars, .ragignore patterns."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rag.errors import LoadError
from rag.ingest.names import SIDECAR_SUFFIX, ignored, ragignore, skipped_name


def discover(paths: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """List (file, root) pairs for `paths`: folders are walked recursively.

    Within a folder the files are sorted by relative path; hidden files and folders,
    Word lock files, sidecars (`*.meta.json`) and paths matching a glob in the
    folder's `.ragignore` are skipped. A file named directly
    has its parent as root (and is kept even if hidden; not if it is a sidecar). Unsupported extensions are kept: `load_file` reports
    them. Raises LoadError for a path that does not exist.
    """
    out: list[tuple[Path, Path]] = []
    seen: set[Path] = set()

    def add(file: Path, root: Path) -> None:
        key = file.resolve()
        if key not in seen:
            seen.add(key)
            out.append((file, root))

    for p in map(Path, paths):
        if p.is_dir():
            found: list[tuple[str, Path]] = []
            patterns = ragignore(p)
            for dirpath, dirnames, filenames in os.walk(p):
                dirnames[:] = [d for d in dirnames if not skipped_name(d)]
                for name in filenames:
                    if skipped_name(name) or name.lower().endswith(SIDECAR_SUFFIX):
                        continue
                    f = Path(dirpath) / name
                    rel = f.relative_to(p).as_posix()
                    if ignored(rel, patterns):
                        continue
                    found.append((rel, f))
            for _, f in sorted(found):
                add(f, p)
        elif p.is_file():
            if not p.name.lower().endswith(SIDECAR_SUFFIX):
                add(p, p.parent)
        elif p.exists():  # a FIFO, a device: load_file refuses it, the batch goes on
            add(p, p.parent)
        else:
            raise LoadError(str(p), "找不到这个文件或文件夹：请确认路径是否正确")
    return out
