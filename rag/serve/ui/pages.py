"""The cited page of a PDF or a scanned image, drawn as a picture with the cited text
marked in yellow: what the reader checks an answer against when the file is a scan
or a layout that plain text loses.

Where the cited text lies on the page comes from the file itself: on a page with a text
layer, pdfium's character boxes of the quoted words (found by their characters, white
space ignored); on a page read by OCR, the boxes of the lines it read, kept in the
document's metadata at ingest (`meta["ocr"]["lines"]`, rag.ingest.formats). Pure
functions over the file's bytes: the caller decides which file may be drawn.
"""

from __future__ import annotations

import bisect
import io
import unicodedata
from collections.abc import Sequence
from typing import Any, NamedTuple

VIEW_DPI = 110  # sharp enough to read on a screen, about 0.3 MB a PNG page
MAX_IMAGE_WIDTH = 1100  # a scanned image is shown at most this wide
FILL = (255, 214, 0, 105)  # semi-transparent yellow
EDGE = (230, 150, 0, 220)
PAD = 2  # pixels around each marked box

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in the shown image's pixels


class PageImage(NamedTuple):
    """One page as shown: the picture, which page of how many, and what was marked."""

    image: Any  # PIL image, RGB
    page: int  # 1-based
    pages: int
    boxes: tuple[Box, ...]  # the marked rectangles
    from_scan: bool  # the marks come from OCR'd lines (a scan), not a text layer


def page_index(meta: dict[str, Any], offset: int) -> int:
    """The 0-based page of a PDF document that holds character `offset` of its text."""
    starts = meta.get("page_starts") or [0]
    return max(bisect.bisect_right(starts, offset) - 1, 0)


def _page_range(meta: dict[str, Any], index: int, n_chars: int) -> tuple[int, int]:
    starts = meta.get("page_starts") or [0]
    end = starts[index + 1] - 2 if index + 1 < len(starts) else n_chars  # "\n\n" between pages
    return starts[index], end


def _clip(spans: Sequence[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    return [(max(s, lo), min(e, hi)) for s, e in spans if min(e, hi) > max(s, lo)]


def _width(c: str) -> float:
    """A character's width in a line of Chinese print, in hanzi: digits and Latin about half."""
    return 1.0 if unicodedata.east_asian_width(c) in ("W", "F") else 0.55


def ocr_boxes(
    lines: Sequence[Sequence],
    page: int,
    spans: Sequence[tuple[int, int]],
    scale: float,
    text: str = "",
) -> list[Box]:
    """Boxes of the OCR'd lines of `page` (1-based) that `spans` cover, scaled from the
    pixels OCR read to the image shown. A span that covers part of a line gets that part
    of its box, measured by the widths of the line's characters in `text` (the
    document's), or by their count without it."""
    out = []
    for rec in lines:
        p, start, end, _conf, x0, y0, x1, y1 = rec[:8]
        if p != page or end <= start:
            continue
        widths = [_width(c) for c in text[start:end]] if len(text) >= end else [1.0] * (end - start)
        total = sum(widths) or 1.0
        for s, e in _clip(spans, start, end):
            a = x0 + (x1 - x0) * sum(widths[: s - start]) / total
            b = x0 + (x1 - x0) * sum(widths[: e - start]) / total
            out.append((round(a * scale), round(y0 * scale), round(b * scale), round(y1 * scale)))
    return out


def _fold(c: str) -> str:
    """One character as matching sees it: compatibility forms (Kangxi radicals that some
    PDF extractors produce, full-width letters) folded when that keeps it one character."""
    n = unicodedata.normalize("NFKC", c)
    return n if len(n) == 1 else c


def find_chars(page_text: str, quote: str) -> list[int]:
    """Indices into `page_text` of the characters of `quote`, white space ignored.

    The whole quote where it occurs; otherwise each of its pieces between punctuation
    (4 characters or more) that occurs, in order. [] when none does.
    """
    keep = [i for i, c in enumerate(page_text) if not c.isspace()]
    hay = "".join(_fold(page_text[i]) for i in keep)
    needle = "".join(_fold(c) for c in quote if not c.isspace())
    if not needle:
        return []
    at = hay.find(needle)
    if at >= 0:
        return keep[at : at + len(needle)]
    found, pos, piece = [], 0, ""
    for c in needle + "。":
        if unicodedata.category(c).startswith("P"):
            if len(piece) >= 4 and (at := hay.find(piece, pos)) >= 0:
                found += keep[at : at + len(piece)]
                pos = at + len(piece)
            piece = ""
        else:
            piece += c
    return found


def merge_lines(boxes: Sequence[Box]) -> list[Box]:
    """Character boxes, in reading order, joined into one rectangle per run on a line."""
    out: list[list[int]] = []
    for x0, y0, x1, y1 in boxes:
        if out:
            last = out[-1]
            mid, height = (y0 + y1) / 2, max(y1 - y0, last[3] - last[1], 1)
            if last[1] <= mid <= last[3] and x0 >= last[0] - height:
                last[:] = [min(last[0], x0), min(last[1], y0), max(last[2], x1), max(last[3], y1)]
                continue
        out.append([x0, y0, x1, y1])
    return [tuple(b) for b in out]  # type: ignore[misc]


def text_layer_boxes(page: Any, quotes: Sequence[str], scale: float) -> list[Box]:
    """Boxes of `quotes` on a pdfium page with a text layer, in pixels at `scale` (px/pt)."""
    textpage = page.get_textpage()
    try:
        n = textpage.count_chars()
        text = textpage.get_text_range(0, n) if n else ""
        if len(text) != n:  # not one character per index: read them one by one
            text = "".join(textpage.get_text_range(i, 1) or " " for i in range(n))
        height = page.get_height()
        boxes: list[Box] = []
        for quote in quotes:
            chars = []
            for i in find_chars(text, quote):
                left, bottom, right, top = textpage.get_charbox(i, loose=True)
                chars.append(
                    (
                        round(left * scale),
                        round((height - top) * scale),
                        round(right * scale),
                        round((height - bottom) * scale),
                    )
                )
            boxes += merge_lines(chars)
        return boxes
    finally:
        textpage.close()


def highlight(image: Any, boxes: Sequence[Box]) -> Any:
    """`image` with each box filled in semi-transparent yellow (the text stays legible)."""
    from PIL import Image, ImageDraw

    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle((x0 - PAD, y0 - PAD, x1 + PAD, y1 + PAD), fill=FILL, outline=EDGE)
    return Image.alpha_composite(base, layer).convert("RGB")


def cited_page(
    data: bytes,
    fmt: str,
    meta: dict[str, Any],
    text: str,
    spans: Sequence[tuple[int, int]],
    dpi: int = VIEW_DPI,
) -> PageImage:
    """The page of a PDF (`fmt` "pdf") or the scanned image (`fmt` "image") where the
    first of `spans` (offsets in the document's `text`) starts, every span's part on that
    page marked. Raises ValueError for another format or a file that cannot be drawn."""
    spans = [(s, e) for s, e in spans if e > s]
    if not spans:
        raise ValueError("nothing to mark")
    ocr = meta.get("ocr") or {}
    if fmt == "image":
        from PIL import Image

        image = Image.open(io.BytesIO(data))
        image.load()
        image = image.convert("RGB")
        scale = min(1.0, MAX_IMAGE_WIDTH / max(image.width, 1))
        if scale < 1.0:
            image = image.resize((round(image.width * scale), round(image.height * scale)))
        boxes = ocr_boxes(ocr.get("lines") or [], 1, spans, scale, text)
        return PageImage(highlight(image, boxes), 1, 1, tuple(boxes), True)
    if fmt != "pdf":
        raise ValueError(f"a {fmt} file has no pages to draw")
    from rag.ingest.ocr import RENDER_DPI
    from rag.ingest.pdfium import open_pdf

    index = page_index(meta, spans[0][0])
    lo, hi = _page_range(meta, index, len(text))
    on_page = _clip(spans, lo, hi) or spans[:1]
    with open_pdf(data) as pdf:  # one pdfium call at a time: sessions draw pages at once
        pages = len(pdf)
        if not 0 <= index < pages:
            raise ValueError(f"page {index + 1} is not in the file ({pages} pages)")
        page = pdf[index]
        try:
            image = page.render(scale=dpi / 72).to_pil().convert("RGB")
            from_scan = index + 1 in (ocr.get("pages") or [])
            if from_scan:
                boxes = ocr_boxes(
                    ocr.get("lines") or [], index + 1, on_page, dpi / RENDER_DPI, text
                )
            else:
                boxes = text_layer_boxes(page, [text[s:e] for s, e in on_page], dpi / 72)
        finally:
            page.close()
    return PageImage(highlight(image, boxes), index + 1, pages, tuple(boxes), from_scan)
