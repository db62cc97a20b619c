"""OCR progress of an upload, page by page, onto the page's progress bar.

Ingestion may read files in worker processes it forks (rag.index.workers), where a
call to `gr.Progress` would update nothing the browser sees. So the page callback
(rag.ingest.ocr.on_page) writes each page to a pipe, which forked workers inherit,
and a thread of the request reads it and reports in the request's own context.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from rag.ingest.ocr import PageCallback, on_page

_STORED = re.compile(r"^[0-9a-f]{16}__")  # the content-hash prefix of a stored upload


def shown_name(source: str) -> str:
    """The name a user gave the file being read: an upload's original name (from the
    sidecar the app wrote beside it), else the file's own name."""
    path = Path(source)
    try:
        side = json.loads(path.with_suffix(".meta.json").read_text(encoding="utf-8"))
        if isinstance(side, dict) and isinstance(side.get("original_file"), str):
            return side["original_file"]
    except (OSError, ValueError):
        pass
    return _STORED.sub("", path.name)


@contextlib.contextmanager
def relayed(report: PageCallback) -> Iterator[PageCallback]:
    """A page callback that may be called in this thread or in processes forked inside
    the block; each call reaches `report` in a thread running in this thread's context
    (so `gr.Progress` finds its request). Pages still in the pipe when the block ends are
    reported before it returns."""
    read_fd, write_fd = os.pipe()
    ctx = contextvars.copy_context()

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            for line in pipe:
                try:
                    source, page, pages = json.loads(line)
                except ValueError:
                    continue
                with contextlib.suppress(Exception):  # a closed page must not stop the pump
                    ctx.run(report, source, page, pages)

    reader = threading.Thread(target=pump, name="rag-ocr-progress", daemon=True)
    reader.start()

    def callback(source: str, page: int, pages: int) -> None:
        line = json.dumps([source, page, pages], ensure_ascii=False) + "\n"
        os.write(write_fd, line.encode("utf-8")[:4000])  # under PIPE_BUF: never interleaved

    try:
        yield callback
    finally:
        os.close(write_fd)
        reader.join(timeout=5)  # a worker forked elsewhere may hold the pipe open: not long


@contextlib.contextmanager
def upload_progress(progress: Callable[..., object]) -> Iterator[None]:
    """While an upload is ingested, each scanned page read moves `progress` (a
    `gr.Progress`): "正在识别扫描件《通知.pdf》：第3/10页". The app reads each upload
    twice (into a scratch index, then into the index itself), so a page seen again is
    the second reading."""
    seen: set[tuple[str, int]] = set()

    def report(source: str, page: int, pages: int) -> None:
        again = (source, page) in seen
        seen.add((source, page))
        what = "正在写入知识库，再次识别" if again else "正在识别扫描件"
        progress(
            (page, pages), desc=f"{what}《{shown_name(source)}》：第{page}/{pages}页", unit="页"
        )

    with relayed(report) as callback, on_page(callback):
        yield
