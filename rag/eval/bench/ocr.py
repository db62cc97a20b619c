"""`python -m rag.eval.bench ocr`: how well and how fast scans are read (issue 19).

Pages of known Chinese text (paragraphs of corpus/, in file order) are drawn with
Pillow in WenQuanYi Micro Hei at A4 and 200 dpi, one or two columns, then degraded as
office scans are: blurred, noisy, slightly rotated, at half the resolution, and all of
those together with JPEG compression. Each page goes through `rag.ingest.ocr` the way
ingestion reads an image (`read_image` then `page_text`), and once more as an
image-only PDF through `rag.ingest.loaders.load_file`, so pypdf, pdfium's rendering
and the reading order are inside the figure.

The measure is the character error rate: the edit distance between the text printed
and the text read, in reading order, with white space left out, over the characters
printed. It is given as read, and after the index's own normalisation
(`rag.textnorm.norm`: full-width to half-width, traditional to simplified), which is
the form search sees. Speed is pages per wall-clock second and CPU-seconds per page.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from rag.eval.bench import measure

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
DPI = 200
A4 = (1654, 2339)  # A4 at 200 dpi
MARGIN = (170, 190)  # left/right and top/bottom margins, pixels at 200 dpi
FONT_PX = 36  # 13 pt at 200 dpi
LINE_PX = 66  # 28 lines to a page
GUTTER = 70  # between two columns
CORPUS = measure.REPO / "corpus"
# The simplified-script items; the traditional one carries inline pinyin (區(qū)) that
# no printed page has.
SOURCES = (
    "weihai-jingzhi-training-2022",
    "weihai-jingzhi-forum-2023",
    "hangzhou-study-tour-report",
    "zhongyuan-zhejiang-training",
)
DEFAULT_OUT = measure.REPO / "eval" / "reports" / "ocr"


class Page(NamedTuple):
    """A drawn page and the text printed on it, line by line in reading order."""

    image: Any  # PIL image, RGB
    lines: tuple[str, ...]
    layout: str  # "one column" | "two columns"
    source: str  # the corpus file its paragraphs came from

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


# --------------------------------------------------------------------------- the metric
_WS = re.compile(r"\s+")


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (insertions, deletions, substitutions, each 1) of two sequences.

    Row by row with numpy: a row's insertions are a running minimum, so a 1,000 x 1,000
    page takes milliseconds. >>> edit_distance("kitten", "sitting") == 3
    """
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    codes: dict[Any, int] = {}
    xa = np.array([codes.setdefault(c, len(codes)) for c in a], np.int64)
    xb = np.array([codes.setdefault(c, len(codes)) for c in b], np.int64)
    idx = np.arange(len(xb) + 1, dtype=np.int64)
    row = idx.copy()
    for i, c in enumerate(xa, start=1):
        new = np.empty_like(row)
        new[0] = i
        # deletion (from the row above) or substitution (diagonal)
        new[1:] = np.minimum(row[1:] + 1, row[:-1] + (xb != c))
        # insertion: new[j] = min over k <= j of new[k] + (j - k)
        row = np.minimum.accumulate(new - idx) + idx
    return int(row[-1])


def strip_ws(text: str) -> str:
    return _WS.sub("", text)


def dropped_runs(reference: str, hypothesis: str, min_run: int = 10) -> list[str]:
    """Runs of `min_run` or more printed characters that the reading lost outright
    (deleted, or replaced by 2 characters or fewer): whole lines missed or misread,
    as opposed to a character read wrong here and there. White space left out."""
    import difflib

    a, b = strip_ws(reference), strip_ws(hypothesis)
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return [
        a[i1:i2]
        for tag, i1, i2, j1, j2 in ops
        if tag in ("delete", "replace") and i2 - i1 >= min_run and j2 - j1 <= 2
    ]


def cer(reference: str, hypothesis: str, normalise: Callable[[str], str] | None = None) -> float:
    """Character error rate of `hypothesis` against `reference`, white space left out:
    edits / characters of the reference. `normalise` is applied to both first."""
    if normalise is not None:
        reference, hypothesis = normalise(reference), normalise(hypothesis)
    ref, hyp = strip_ws(reference), strip_ws(hypothesis)
    return edit_distance(ref, hyp) / max(len(ref), 1)


# --------------------------------------------------------------------------- pages
def paragraphs(corpus: Path = CORPUS, sources: Sequence[str] = SOURCES) -> list[tuple[str, str]]:
    """(source, paragraph) of every line of 20 or more characters, files in `sources` order."""
    out = []
    for name in sources:
        text = (corpus / f"{name}.txt").read_text(encoding="utf-8")
        for line in text.split("\n"):
            line = _WS.sub("", line)  # a printed paragraph has no spaces inside it
            if len(line) >= 20:
                out.append((name, line))
    return out


def _font(px: int = FONT_PX):
    from PIL import ImageFont

    if not FONT.is_file():
        raise FileNotFoundError(f"{FONT}: font not found (apt-get install fonts-wqy-microhei)")
    return ImageFont.truetype(str(FONT), px)


def wrap(paragraph: str, width: int, font, indent: int = 2) -> list[tuple[str, int]]:
    """`paragraph` cut into lines that fit `width` pixels, as (text, x offset); the first
    line is indented by `indent` characters, as Chinese paragraphs are."""
    lines, current, x0 = [], "", indent * font.size
    for ch in paragraph:
        if current and font.getlength(current + ch) > width - x0:
            lines.append((current, x0))
            current, x0 = "", 0
        current += ch
    if current:
        lines.append((current, x0))
    return lines


def draw_page(
    paras: list[tuple[str, str, int]],
    columns: int = 1,
    size: tuple[int, int] = A4,
    font_px: int = FONT_PX,
    line_px: int = LINE_PX,
    margin: tuple[int, int] = MARGIN,
) -> tuple[Page, list[tuple[str, str, int]]]:
    """Fill one page with paragraphs (source, text, indent in characters) from the front
    of `paras`, column by column; returns the page and the paragraphs left. A paragraph
    cut by a column's end goes on in the next column, or on the next page unindented."""
    from PIL import Image, ImageDraw

    font = _font(font_px)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    width = size[0] - 2 * margin[0]
    col_w = (width - (columns - 1) * GUTTER) // columns
    rows = (size[1] - 2 * margin[1]) // line_px
    todo = list(paras)
    printed: list[str] = []
    source = todo[0][0] if todo else ""
    carry: list[tuple[str, int]] = []  # the lines left of the paragraph being set
    for col in range(columns):
        x_col = margin[0] + col * (col_w + GUTTER)
        for row in range(rows):
            if not carry:
                if not todo:
                    break
                _, para, indent = todo.pop(0)
                carry = wrap(para, col_w, font, indent)
            text, dx = carry.pop(0)
            draw.text((x_col + dx, margin[1] + row * line_px), text, font=font, fill="black")
            printed.append(text)
    if carry:
        todo.insert(0, (source, "".join(t for t, _ in carry), 0))
    layout = "one column" if columns == 1 else "two columns"
    return Page(img, tuple(printed), layout, source), todo


def make_pages(n: int = 8, two_column_every: int = 4, corpus: Path = CORPUS) -> list[Page]:
    """`n` pages of corpus text; every `two_column_every`-th page has two columns."""
    paras = [(src, text, 2) for src, text in paragraphs(corpus)]
    pages = []
    while len(pages) < n:
        if not paras:  # the corpus read again from the start
            paras = [(src, text, 2) for src, text in paragraphs(corpus)]
        columns = 2 if (len(pages) + 1) % two_column_every == 0 else 1
        page, paras = draw_page(paras, columns)
        pages.append(page)
    return pages


# --------------------------------------------------------------------------- degradations
def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def blur(img, radius: float = 1.5):
    from PIL import ImageFilter

    return img.filter(ImageFilter.GaussianBlur(radius))


def noise(img, sigma: float = 40.0, seed: int = 0):
    from PIL import Image

    a = np.asarray(img.convert("L"), np.float32)
    a = a + _rng(seed).normal(0.0, sigma, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB")


def rotate(img, degrees: float = 1.5):
    from PIL import Image

    return img.rotate(degrees, resample=Image.BICUBIC, fillcolor="white")


def downscale(img, factor: float = 0.5):
    from PIL import Image

    w, h = img.size
    return img.resize((round(w * factor), round(h * factor)), Image.LANCZOS)


def jpeg(img, quality: int = 60):
    import io

    from PIL import Image

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def scanned(img, seed: int = 0, degrees: float = 1.0):
    """What a flatbed at 200 dpi and an office's JPEG setting do together."""
    return jpeg(noise(blur(rotate(img, degrees), 1.0), 20.0, seed), 60)


# name -> (what it is, function of (image, page number))
CONDITIONS: dict[str, tuple[str, Callable[[Any, int], Any]]] = {
    "clean": ("as drawn, 200 dpi", lambda im, i: im),
    "blur": ("Gaussian blur, radius 1.5 px", lambda im, i: blur(im, 1.5)),
    "noise": ("Gaussian noise, sigma 40 of 255, grey", lambda im, i: noise(im, 40.0, seed=i)),
    "rotated": (
        "rotated 1.5 degrees (alternately left and right)",
        lambda im, i: rotate(im, 1.5 if i % 2 else -1.5),
    ),
    "dpi_150": ("downscaled to 150 dpi", lambda im, i: downscale(im, 0.75)),
    "low_res": ("downscaled to half: 100 dpi", lambda im, i: downscale(im, 0.5)),
    "scanned": (
        "rotated 1 degree, blur 1 px, noise sigma 20, JPEG quality 60",
        lambda im, i: scanned(im, seed=i, degrees=1.0 if i % 2 else -1.0),
    ),
}


# --------------------------------------------------------------------------- reading
def read_text(image) -> tuple[str, list[float]]:
    """The text ingestion would take from an image: `read_image` then `page_text`."""
    from rag.ingest.ocr import page_text, read_image

    lines, _ = read_image(image)
    text, _ = page_text(lines, 1)
    return text, [ln.confidence for ln in lines]


def _norm(text: str) -> str:
    from rag.textnorm import norm

    return norm(text)


def page_row(page: Page, number: int, condition: str, text: str, conf: list[float],
             wall_s: float, cpu_s: float) -> dict[str, Any]:  # fmt: skip
    ref = page.text
    return {
        "condition": condition,
        "page": number,
        "layout": page.layout,
        "source": page.source,
        "chars": len(strip_ws(ref)),
        "read_chars": len(strip_ws(text)),
        "edits": edit_distance(strip_ws(ref), strip_ws(text)),
        "cer": round(cer(ref, text), 4),
        "cer_normalised": round(cer(ref, text, _norm), 4),
        "dropped": dropped_runs(ref, text),
        "lines": len(page.lines),
        "confidence": round(float(np.mean(conf)), 4) if conf else None,
        "wall_s": round(wall_s, 3),
        "cpu_s": round(cpu_s, 3),
        "text": text,
    }


def read_text_without_cls(image) -> tuple[str, list[float]]:
    """EXPERIMENT, not what ingestion does: `read_text` with rapidocr's text-direction
    classifier turned off (`use_cls=False`), the rest of `rag.ingest.ocr` as it is."""
    from rag.ingest import ocr

    image = image.convert("RGB")
    result = ocr._ocr_engine()(np.asarray(image)[:, :, ::-1], use_cls=False)
    pieces = []
    for box, text, score in zip(
        result.boxes if result.boxes is not None else [], result.txts or (), result.scores or ()
    ):
        if not text.strip() or score < ocr.MIN_CONFIDENCE:
            continue
        xs, ys = [p[0] for p in box], [p[1] for p in box]
        pieces.append(
            ocr.OcrLine(
                text.strip(), float(score), (int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys)))
            )
        )
    lines = ocr.reading_order(pieces, image.size)
    text, _ = ocr.page_text(lines, 1)
    return text, [ln.confidence for ln in lines]


NO_CLS = "+no_cls"  # the suffix of an experiment's condition name


def run_images(
    pages: list[Page], conditions: Sequence[str], log=print, reader=read_text, suffix: str = ""
) -> list[dict[str, Any]]:
    """Each page under each condition through `reader` (default: `read_image` and
    `page_text`, as ingestion reads an image); one row per page."""
    from rag.ingest.ocr import _ocr_engine

    _ocr_engine()  # loading the models is not reading a page
    rows = []
    for name in conditions:
        _, degrade = CONDITIONS[name]
        load = measure.loadavg()[0]  # the 1-minute load average as the condition starts
        for i, page in enumerate(pages, start=1):
            img = degrade(page.image, i)
            t, c = time.perf_counter(), time.process_time()
            text, conf = reader(img)
            row = page_row(page, i, name + suffix, text, conf, time.perf_counter() - t,
                           time.process_time() - c)  # fmt: skip
            row["load"] = load
            rows.append(row)
            log(f"ocr: {name} page {i}: CER {row['cer']:.3f} in {row['wall_s']:.1f} s")
    return rows


def image_pdf(images: list, path: Path, dpi: int = DPI) -> Path:
    """A PDF of page images and nothing else (no text layer), as Pillow writes one."""
    first, *rest = [im.convert("RGB") for im in images]
    first.save(path, "PDF", resolution=float(dpi), save_all=True, append_images=rest)
    return path


def run_pdf(pages: list[Page], condition: str = "clean", log=print) -> dict[str, Any]:
    """The pages (under `condition`) as one image-only PDF through `load_file`."""
    from rag.ingest.loaders import load_file

    _, degrade = CONDITIONS[condition]
    with tempfile.TemporaryDirectory(prefix="rag-ocr-bench-") as tmp:
        path = image_pdf([degrade(p.image, i) for i, p in enumerate(pages, 1)],
                         Path(tmp) / "scan.pdf")  # fmt: skip
        size = path.stat().st_size
        t, c = time.perf_counter(), time.process_time()
        [doc] = load_file(path, Path(tmp))
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    load = measure.loadavg()[0]
    starts = list(doc.meta.get("page_starts")) + [len(doc.text) + 2]
    rows = []
    for i, page in enumerate(pages, start=1):
        text = doc.text[starts[i - 1] : starts[i] - 2]
        rows.append(page_row(page, i, f"pdf_{condition}", text, [], wall / len(pages),
                             cpu / len(pages)) | {"load": load})  # fmt: skip
    ocr = doc.meta.get("ocr") or {}
    log(f"ocr: image-only PDF of {len(pages)} pages read in {wall:.1f} s")
    return {
        "condition": f"pdf_{condition}",
        "pdf_bytes": size,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "ocr_pages": ocr.get("pages"),
        "mean_confidence": ocr.get("confidence"),
        "rows": rows,
    }


# --------------------------------------------------------------------------- aggregates
def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled CER (all edits over all characters), per-page spread, and speed."""
    chars = sum(r["chars"] for r in rows)
    edits = sum(r["edits"] for r in rows)
    cers = [r["cer"] for r in rows]
    norm_edits = sum(r["cer_normalised"] * r["chars"] for r in rows)
    wall = sum(r["wall_s"] for r in rows)
    cpu = sum(r["cpu_s"] for r in rows)
    confs = [r["confidence"] for r in rows if r["confidence"] is not None]
    dropped = [run for r in rows for run in r.get("dropped", [])]
    return {
        "pages": len(rows),
        "chars": chars,
        "cer": round(edits / max(chars, 1), 4),
        "cer_normalised": round(norm_edits / max(chars, 1), 4),
        "cer_page_median": round(float(np.median(cers)), 4) if cers else None,
        "cer_page_max": round(max(cers), 4) if cers else None,
        "dropped_runs": len(dropped),
        "dropped_share": round(sum(map(len, dropped)) / edits, 3) if edits else None,
        "pages_per_s": round(len(rows) / wall, 3) if wall else None,
        "cpu_s_per_page": round(cpu / len(rows), 2) if rows else None,
        "confidence": round(float(np.mean(confs)), 4) if confs else None,
        "load": max((r["load"] for r in rows if r.get("load") is not None), default=None),
    }


def by(rows: list[dict[str, Any]], *keys: str) -> dict[str, dict[str, Any]]:
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(" / ".join(str(r[k]) for k in keys), []).append(r)
    return {k: aggregate(v) for k, v in groups.items()}


def onnx_info() -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        import onnxruntime as ort

        out["onnxruntime"] = ort.__version__
        out["providers_available"] = ort.get_available_providers()
    except ImportError:
        pass
    try:
        from importlib import metadata

        out["rapidocr"] = metadata.version("rapidocr")
        out["pypdfium2"] = metadata.version("pypdfium2")
        out["pillow"] = metadata.version("pillow")
    except Exception:  # a missing distribution is just not reported
        pass
    try:
        import rapidocr

        models = Path(rapidocr.__file__).parent / "models"
        out["models"] = sorted(p.name for p in models.glob("*.onnx"))
    except ImportError:
        pass
    return out


# --------------------------------------------------------------------------- report
def markdown(res: dict[str, Any], notes: str = "") -> str:
    """The report; `notes` (the report folder's notes.md, written by a person who read
    the figures) opens its "What it means" section."""
    m, cfg = res["machine"], res["config"]
    lines = [
        "# OCR of scanned pages: accuracy and speed",
        "",
        f"Run {res['started']} with `{res['command'].strip()}` "
        f"(commit `{m['git']['commit'][:7]}`{', uncommitted changes' if m['git']['dirty'] else ''}).",
        "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, no GPU "
        f"(onnxruntime providers: {', '.join(res['ocr']['providers_available'])}). "
        f"Load average {res['load_start'][0]} at the start and {res['load_end'][0]} at the end: "
        + (
            "the machine was shared, so pages/s is the share of the CPU the benchmark got; "
            "CPU-seconds per page is the steadier figure."
            if max(res["load_start"][0], res["load_end"][0]) > m["cores"]
            else "the machine was not busy."
        ),
        "",
        f"**OCR:** rapidocr {res['ocr'].get('rapidocr')} ({', '.join(res['ocr'].get('models', []))}) "
        f"through `rag.ingest.ocr` (reading order, confidence ≥ {cfg['min_confidence']}); "
        f"PDF pages rendered by pypdfium2 {res['ocr'].get('pypdfium2')} at {cfg['render_dpi']} dpi.",
        "",
        f"**Pages:** {cfg['pages']} pages of corpus text ({', '.join(f'`{s}`' for s in cfg['sources'])}, "
        f"paragraphs in file order), A4 at {cfg['dpi']} dpi ({cfg['size'][0]}×{cfg['size'][1]} px), "
        f"WenQuanYi Micro Hei at {cfg['font_px']} px ({cfg['font_px'] * 72 / cfg['dpi']:.0f} pt), "
        f"{cfg['lines_per_column']} lines a column; "
        + (
            f"pages {', '.join(map(str, cfg['two_column_pages']))} have two columns. "
            if cfg["two_column_pages"]
            else "all in one column. "
        )
        + f"{res['totals']['chars']} characters per condition.",
        "",
        "**Measure:** character error rate (CER) = edit distance between the printed and the "
        "read text (in reading order, white space left out) ÷ printed characters, pooled over "
        "the pages; *normalised*: both after `rag.textnorm.norm` (full-width → half-width, "
        "traditional → simplified, lower case), the form search sees. Pages/s is wall-clock; "
        "CPU-s per page counts all threads.",
        "",
        "## Per condition",
        "",
        "| condition | what | CER | CER normalised | page median / worst | runs lost | share of errors | pages/s | CPU-s/page | load | mean confidence |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, agg in res["conditions"].items():
        what = res["condition_notes"].get(name, "")
        conf = f"{agg['confidence']:.3f}" if agg["confidence"] is not None else "–"
        lines.append(
            f"| {name} | {what} | {agg['cer']:.3f} | {agg['cer_normalised']:.3f} | "
            f"{agg['cer_page_median']:.3f} / {agg['cer_page_max']:.3f} | {agg['dropped_runs']} | "
            f"{_pct(agg['dropped_share'])} | {agg['pages_per_s']:.2f} | "
            f"{agg['cpu_s_per_page']:.1f} | {_num(agg.get('load'))} | {conf} |"
        )
    lines += [
        "",
        "*Runs lost*: stretches of 10 or more printed characters the reading lost outright "
        "(a line missed, or read as one or two characters); *share of errors*: their "
        "characters over all edits. `+no_cls` rows are an experiment, not what ingestion "
        "does: the same pages with rapidocr's text-direction classifier off.",
        "",
        (
            "`pdf_clean` is the clean pages as one image-only PDF (Pillow, 200 dpi) read by "
            "`load_file`: pypdf finds no text layer, each page is rendered by pdfium and read; "
            "its time is the whole load divided by the pages."
            if "pdf_clean" in res["conditions"]
            else "No image-only PDF run (`--no-pdf`)."
        ),
        "",
        *(
            [
                "What each condition looks like, page 1 as OCR saw it: "
                + ", ".join(f"[{n.removesuffix('.png')}](samples/{n})" for n in res["samples"])
                + ".",
                "",
            ]
            if res.get("samples")
            else []
        ),
        "## Per layout",
        "",
        "| condition / layout | pages | CER | CER normalised | worst page |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, agg in res["by_layout"].items():
        lines.append(
            f"| {key} | {agg['pages']} | {agg['cer']:.3f} | {agg['cer_normalised']:.3f} | "
            f"{agg['cer_page_max']:.3f} |"
        )
    lines += ["", "## What it means", ""]
    if notes:
        lines += [notes.strip(), "", "Read off the figures of this run:", ""]
    lines += [*res.get("findings", ["(see results.json)"]), ""]
    lines += [
        "## Reproduce",
        "",
        "```sh",
        res["command"].strip(),
        "```",
        "",
        "Every page's text as read, its CER and timings are in `results.json` (`rows`).",
        "",
    ]
    return "\n".join(lines)


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def findings(res: dict[str, Any]) -> list[str]:
    """Plain statements read off the figures (no judgement the numbers do not carry)."""
    c = res["conditions"]
    out = []
    clean = c.get("clean")
    if clean:
        out.append(
            f"- Clean 200-dpi pages are read with a CER of {clean['cer']:.3f} "
            f"({clean['cer'] * 1000:.0f} errors per 1,000 characters; "
            f"{clean['cer_normalised']:.3f} after normalisation)."
        )
    plain = {k: v for k, v in c.items() if NO_CLS not in k}
    worst = max(plain.items(), key=lambda kv: kv[1]["cer"])
    out.append(f"- The hardest condition here is `{worst[0]}`, CER {worst[1]['cer']:.3f}.")
    for name, agg in plain.items():
        if clean and name != "clean" and not name.startswith("pdf"):
            ratio = agg["cer"] / clean["cer"] if clean["cer"] else math.inf
            out.append(
                f"- `{name}`: CER {agg['cer']:.3f} ({'×' + format(ratio, '.1f') if math.isfinite(ratio) else 'from 0'} "
                f"of clean), {agg['cpu_s_per_page']:.1f} CPU-s per page."
            )
    pdf = c.get("pdf_clean")
    if pdf and clean:
        out.append(
            f"- Through the PDF loader the clean pages read at CER {pdf['cer']:.3f} "
            f"(images directly: {clean['cer']:.3f}) and {pdf['cpu_s_per_page']:.1f} CPU-s per page "
            f"including rendering (images: {clean['cpu_s_per_page']:.1f})."
        )
    shares = [v["dropped_share"] for v in plain.values() if v.get("dropped_share") is not None]
    if shares:
        out.append(
            f"- Lines lost outright make {_pct(min(shares))}–{_pct(max(shares))} of the errors "
            "per condition; the rest are single characters read wrong."
        )
    for name, agg in c.items():
        base = c.get(name.removesuffix(NO_CLS))
        if NO_CLS in name and base:
            out.append(
                f"- Experiment: `{name.removesuffix(NO_CLS)}` with the text-direction classifier "
                f"off reads at CER {agg['cer']:.3f} (on: {base['cer']:.3f}), "
                f"{agg['dropped_runs']} runs lost (on: {base['dropped_runs']}), "
                f"{agg['cpu_s_per_page']:.1f} CPU-s per page (on: {base['cpu_s_per_page']:.1f})."
            )
    lay = res["by_layout"]
    one, two = lay.get("clean / one column"), lay.get("clean / two columns")
    if one and two:
        out.append(
            f"- Layout, clean pages: one column CER {one['cer']:.3f}, two columns {two['cer']:.3f}; "
            "a reading-order mistake (columns interleaved) would show as a CER near or above 1 on that page."
        )
    return out


def save_samples(pages: list[Page], conditions: Sequence[str], folder: Path) -> list[str]:
    """A 700 x 260 crop of page 1 under each condition, at the size OCR saw it."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name in conditions:
        img = CONDITIONS[name][1](pages[0].image, 1)
        f = img.size[0] / A4[0]
        box = tuple(
            round(v * f) for v in (MARGIN[0] - 20, MARGIN[1] - 20, MARGIN[0] + 680, MARGIN[1] + 240)
        )
        crop = img.crop(box).convert("L")
        crop.save(folder / f"{name}.png", optimize=True)
        names.append(f"{name}.png")
    return names


def run(args: argparse.Namespace, log=print) -> dict[str, Any]:
    conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise SystemExit(
            f"bench ocr: unknown condition(s) {unknown}; choose from {list(CONDITIONS)}"
        )
    from rag.ingest import ocr

    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = measure.loadavg()
    t0 = time.perf_counter()
    pages = make_pages(args.pages, args.two_column_every)
    rows = run_images(pages, conditions, log)
    pdf = run_pdf(pages, "clean", log) if args.pdf else None
    experiment = [c.strip() for c in args.experiment_no_cls.split(",") if c.strip()]
    no_cls = run_images(pages, experiment, log, read_text_without_cls, NO_CLS)
    all_rows = rows + (pdf["rows"] if pdf else []) + no_cls
    res: dict[str, Any] = {
        "started": started,
        "command": "python -m rag.eval.bench ocr " + " ".join(args.argv),
        "duration_s": None,
        "load_start": load_start,
        "machine": measure.machine(),
        "ocr": onnx_info(),
        "config": {
            "pages": len(pages),
            "dpi": DPI,
            "size": list(A4),
            "font": str(FONT),
            "font_px": FONT_PX,
            "line_px": LINE_PX,
            "lines_per_column": (A4[1] - 2 * MARGIN[1]) // LINE_PX,
            "margin_px": list(MARGIN),
            "two_column_pages": [i for i, p in enumerate(pages, 1) if p.layout == "two columns"],
            "sources": list(SOURCES),
            "conditions": conditions,
            "render_dpi": ocr.RENDER_DPI,
            "min_confidence": ocr.MIN_CONFIDENCE,
            "onnx_threads_default": os.cpu_count(),
        },
        "condition_notes": {k: CONDITIONS[k][0] for k in conditions}
        | ({"pdf_clean": "clean pages as an image-only PDF, through load_file"} if pdf else {})
        | {
            c + NO_CLS: f"EXPERIMENT: {c}, text-direction classifier off (use_cls=False)"
            for c in experiment
        },
        "conditions": by(all_rows, "condition"),
        "by_layout": by(all_rows, "condition", "layout"),
        "totals": {"chars": sum(r["chars"] for r in rows[: len(pages)])},
        "pdf": {k: v for k, v in pdf.items() if k != "rows"} if pdf else None,
        "rows": all_rows,
        "printed": [
            {"page": i, "layout": p.layout, "text": p.text} for i, p in enumerate(pages, 1)
        ],
    }
    res["findings"] = findings(res)
    res["load_end"] = measure.loadavg()
    res["duration_s"] = round(time.perf_counter() - t0, 1)
    if args.samples:
        res["samples"] = save_samples(pages, conditions, args.out / "samples")
    return res


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rag.eval.bench ocr", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "--pages", type=int, default=8, help="pages per condition (default 8; ~3.5 CPU-s each)"
    )
    p.add_argument("--two-column-every", type=int, default=4, help="every Nth page has two columns")
    p.add_argument(
        "--conditions",
        default=",".join(CONDITIONS),
        help="comma-separated, from: " + ", ".join(CONDITIONS),
    )
    p.add_argument("--no-pdf", dest="pdf", action="store_false", help="skip the image-only PDF run")
    p.add_argument(
        "--experiment-no-cls",
        default="clean,blur,scanned",
        metavar="CONDITIONS",
        help="also read these with the text-direction classifier off (an experiment; '' for none)",
    )
    p.add_argument(
        "--no-samples", dest="samples", action="store_false", help="do not save sample crops"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="write report.md again from OUT/results.json (and OUT/notes.md); read nothing",
    )
    return p


def write_report(res: dict[str, Any], out: Path) -> None:
    notes = out / "notes.md"
    text = notes.read_text(encoding="utf-8") if notes.is_file() else ""
    (out / "report.md").write_text(markdown(res, text), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.report_only:
        res = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
        write_report(res, args.out)
        print(f"bench ocr: wrote {args.out}/report.md", file=sys.stderr)
        return 0
    if not FONT.is_file():
        print(f"bench ocr: {FONT} not found; apt-get install fonts-wqy-microhei", file=sys.stderr)
        return 2
    random.seed(0)
    res = run(args, log=lambda m: print(m, file=sys.stderr, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(res, ensure_ascii=False, indent=1), encoding="utf-8"
    )
    write_report(res, args.out)
    print(
        f"bench ocr: wrote {args.out}/report.md and results.json in {res['duration_s']} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
