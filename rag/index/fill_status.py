"""Why the last background vector fill of an index failed, kept beside the index.

Keyword-first ingest leaves a large sheet's vectors to a background fill
(rag.serve.ui.library). When that fill fails (another process holds the index lock, the
embedder ran out of memory) its chunks stay searchable by keyword and the next upload
or start retries; until then every document list (the web page, `rag list`, the
documents API) says why, read from here. A successful fill (rag.index.build) clears it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from rag.fileio import write_json

FILL_FAILED = "fill-failed.json"


def record_failure(index_dir: Path, reason: str) -> None:
    """Keep `reason` (one line, shown to users) as the last fill's failure."""
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json(Path(index_dir) / FILL_FAILED, {"reason": reason, "at": at})


def last_failure(index_dir: Path) -> str | None:
    """The reason the last background fill failed; None when it did not (or none ran)."""
    try:
        data = json.loads((Path(index_dir) / FILL_FAILED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    reason = data.get("reason") if isinstance(data, dict) else None
    return str(reason) if reason else None


def clear_failure(index_dir: Path) -> None:
    (Path(index_dir) / FILL_FAILED).unlink(missing_ok=True)
