"""Which names in a folder are documents: no hidden files, Word lock files or sidecars,
nothing a folder's .ragignore lists. Shared by `discover` (which files to load) and
`load_file` (whether a document shares its name with another, rag.ingest.loaders)."""

from __future__ import annotations

import fnmatch
from pathlib import Path

SIDECAR_SUFFIX = ".meta.json"


def skipped_name(name: str) -> bool:
    """Hidden files and folders, and "~$x.docx": Word's lock files (tiny, not documents,
    always fail to parse)."""
    return name.startswith((".", "~$"))


def ragignore(folder: Path) -> list[str]:
    """Glob patterns (relative paths) from FOLDER/.ragignore: files that are not documents."""
    try:
        lines = (folder / ".ragignore").read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        return []
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    """Whether the relative path `rel` ("sub/a.pdf") matches one of the patterns."""
    return any(fnmatch.fnmatch(rel, pat) for pat in patterns)
