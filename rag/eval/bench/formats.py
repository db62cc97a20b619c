"""`python -m rag.eval.bench formats`: ingestion throughput per file type (issue 19).

One file of each type the loader reads is made from crud_news articles (real Chinese
news, ../shared/data/crud_news) with the libraries offices' files come from: plain
text, Markdown, an HTML page, a Word document (python-docx, with a table), a PDF with
a text layer (reportlab, the WenQuanYi font embedded), a PowerPoint deck
(python-pptx, with speaker notes), and a spreadsheet of 10,000 rows by 6 columns as
.xlsx (openpyxl) and as CSV (UTF-8 and GB18030). Each is then taken through what
`rag ingest` does to a file, in three cumulative stages:

1. load: `rag.ingest.loaders.load_file`;
2. + chunk: the ingest worker's `_load` (load, clean the formats that are cleaned,
   hash) and `chunk_spans`;
3. + index terms: the worker's `_segment_task` instead of `chunk_spans` (chunk,
   normalise, segment for BM25): everything before embedding.

Embedding is measured once, on chunks of every type with the real model, in chunks
per second; "with embedding" per type is then stage 3's time plus its chunks at that
rate (an estimate from two measurements, not a run of its own). Each stage is timed
`--repeats` times; the median is reported, with CPU-seconds beside wall-clock seconds
because the machine may be shared.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.eval.bench import corpus, measure

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
DEFAULT_OUT = measure.REPO / "eval" / "reports" / "ingest_formats"
SHEET_ROWS = 10_000
HEADER = ["项目编号", "所属区县", "项目名称", "计划投资（万元）", "开工日期", "责任单位"]
DISTRICTS = ["市南区", "市北区", "李沧区", "崂山区", "黄岛区", "城阳区", "即墨区", "胶州市", "平度市", "莱西市"]  # fmt: skip
UNITS = ["市住建局", "市发改委", "市交通局", "市生态环境局", "区城市更新中心", "区财政局", "街道办事处"]  # fmt: skip


# --------------------------------------------------------------------------- makers
def articles(n: int, source: Path = corpus.DEFAULT_SOURCE) -> list[corpus.Article]:
    return corpus.read_articles(source, limit=n)


def _chars(arts: list[corpus.Article], target: int) -> list[corpus.Article]:
    """The first articles whose texts add up to about `target` characters."""
    out, total = [], 0
    for a in arts:
        if total >= target:
            break
        out.append(a)
        total += len(a.text)
    return out


def _headline(a: corpus.Article) -> str:
    return a.text.split("。", 1)[0][:30]


def make_txt(path: Path, arts) -> Path:
    path.write_text("\n\n".join(a.text for a in arts), encoding="utf-8")
    return path


def make_md(path: Path, arts) -> Path:
    parts = ["# 新闻汇编\n"]
    for a in arts:
        parts.append(f"## {_headline(a)}\n\n*{a.date or ''}*\n\n{a.text}\n")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def make_html(path: Path, arts) -> Path:
    import html

    body = "".join(
        f'<article><h2>{html.escape(_headline(a))}</h2><p class="date">{a.date or ""}</p>'
        f"<p>{html.escape(a.text)}</p></article>\n"
        for a in arts
    )
    page = (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>新闻汇编</title>'
        '<meta name="author" content="编辑部"></head><body><nav><a href="/">首页</a> '
        f'<a href="/news">新闻</a></nav><main>{body}</main><footer>版权所有</footer></body></html>'
    )
    path.write_text(page, encoding="utf-8")
    return path


def make_docx(path: Path, arts) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("新闻汇编", 1)
    for i, a in enumerate(arts):
        d.add_heading(_headline(a), 2)
        for para in a.text.split("。"):
            if para.strip():
                d.add_paragraph(para.strip() + "。")
        if i == len(arts) // 2:  # one table, as reports have
            d.add_paragraph("表1 各区项目汇总")
            rows = sheet_rows(200)
            t = d.add_table(rows=len(rows) + 1, cols=len(HEADER))
            for c, h in enumerate(HEADER):
                t.cell(0, c).text = h
            for r, row in enumerate(rows, start=1):
                for c, v in enumerate(row):
                    t.cell(r, c).text = str(v)
    d.save(str(path))
    return path


def make_pdf(path: Path, arts, chars_per_line: int = 38, lines_per_page: int = 48) -> Path:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont
    from reportlab.pdfgen import canvas

    if "WQY" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("WQY", str(FONT), subfontIndex=0))
    c = canvas.Canvas(str(path))
    c.setTitle("新闻汇编")
    lines = []
    for a in arts:
        lines.append(_headline(a))
        lines += [a.text[i : i + chars_per_line] for i in range(0, len(a.text), chars_per_line)]
        lines.append("")
    for p in range(0, len(lines), lines_per_page):
        c.setFont("WQY", 11)
        for i, line in enumerate(lines[p : p + lines_per_page]):
            c.drawString(72, 780 - 15.5 * i, line)
        c.drawString(290, 40, str(p // lines_per_page + 1))  # a page number
        c.showPage()
    c.save()
    return path


def make_pptx(path: Path, arts) -> Path:
    from pptx import Presentation

    p = Presentation()
    for a in arts:
        s = p.slides.add_slide(p.slide_layouts[1])
        s.shapes.title.text = _headline(a)
        sentences = [x + "。" for x in a.text.split("。") if x.strip()]
        s.placeholders[1].text = "\n".join(sentences[:4])
        s.notes_slide.notes_text_frame.text = "".join(sentences[4:8])
    p.save(path)
    return path


def sheet_rows(n: int, seed: int = 7) -> list[list[Any]]:
    """`n` rows of a project table: ids, districts, names, amounts, dates, units."""
    rng = random.Random(seed)
    words = "城市更新 老旧小区改造 道路提升 海绵城市 公园建设 管网改造 学校扩建 停车场 口袋公园 立面整治".split()
    start = dt.date(2023, 1, 1)
    return [
        [
            f"XM{2023_00000 + i}",
            rng.choice(DISTRICTS),
            f"{rng.choice(DISTRICTS)}{rng.choice(words)}项目（第{rng.randint(1, 9)}期）",
            round(rng.uniform(50, 50_000), 1),
            start + dt.timedelta(days=rng.randint(0, 700)),
            rng.choice(UNITS),
        ]
        for i in range(n)
    ]


def make_xlsx(path: Path, rows) -> Path:
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("项目清单")
    ws.append(HEADER)
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def make_csv(path: Path, rows, encoding: str = "utf-8") -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEADER)
    for row in rows:
        w.writerow([v.isoformat() if isinstance(v, dt.date) else v for v in row])
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def make_files(folder: Path, source: Path, scale: float = 1.0) -> dict[str, dict[str, Any]]:
    """Every benchmark file in `folder`: name -> {path, type, rows}. `scale` sizes the
    text files (1.0: about 600,000 characters of text for txt, md and html)."""
    folder.mkdir(parents=True, exist_ok=True)
    arts = articles(4000, source)
    big = _chars(arts, int(600_000 * scale))
    mid = _chars(arts, int(150_000 * scale))
    small = _chars(arts, int(60_000 * scale))
    rows = sheet_rows(SHEET_ROWS)
    files = {
        "txt": (make_txt, folder / "news.txt", big, None),
        "md": (make_md, folder / "news.md", big, None),
        "html": (make_html, folder / "news.html", big, None),
        "docx": (make_docx, folder / "news.docx", mid, None),
        "pdf": (make_pdf, folder / "news.pdf", mid, None),
        "pptx": (make_pptx, folder / "news.pptx", small[:60], None),
        "xlsx": (make_xlsx, folder / "projects.xlsx", rows, SHEET_ROWS),
        "csv": (make_csv, folder / "projects.csv", rows, SHEET_ROWS),
    }
    out = {}
    for name, (make, path, data, n_rows) in files.items():
        make(path, data)
        out[name] = {"path": path, "type": path.suffix[1:], "rows": n_rows}
    gb = make_csv(folder / "projects-gb18030.csv", rows, "gb18030")
    out["csv (gb18030)"] = {"path": gb, "type": "csv", "rows": SHEET_ROWS}
    return out


# --------------------------------------------------------------------------- timing
def _timed(f: Callable[[], Any], repeats: int) -> tuple[Any, dict[str, float]]:
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = f()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return out, {
        "wall_s": round(statistics.median(walls), 4),
        "wall_s_min": round(min(walls), 4),
        "cpu_s": round(statistics.median(cpus), 4),
    }


def stages(path: Path, settings, repeats: int) -> dict[str, Any]:
    """The three cumulative stages on one file, and what they produced."""
    from rag.index import workers
    from rag.index.segment import available_segmenter, get_segmenter
    from rag.ingest.chunking import chunk_spans
    from rag.ingest.loaders import load_file

    root = path.parent
    size, overlap = settings.chunk_size, settings.chunk_overlap
    segmenter = available_segmenter(settings.tokenizer)

    def loaded():
        out = workers._load(path, root, settings)
        if isinstance(out, str):
            raise RuntimeError(f"{path.name}: {out}")
        return out

    load_file(path, root)  # once untimed: the parser's imports are not reading the file
    list(get_segmenter(segmenter).iter_tokens("预热"))  # nor is loading the dictionary
    docs, load = _timed(lambda: load_file(path, root), repeats)

    def chunked():
        return [chunk_spans(text, size, overlap) for _, text, _, _ in loaded()]

    spans, chunk = _timed(chunked, repeats)

    def segmented():
        tasks = [(m.get("title"), t, size, overlap, segmenter) for _, t, m, _ in loaded()]
        return workers._segment_task(tasks)

    seg, terms = _timed(segmented, repeats)
    return {
        "docs": len(docs),
        "chars": sum(len(d.text) for d in docs),
        "chunks": sum(len(s) for s in spans),
        "load": load,
        "load_chunk": chunk,
        "load_chunk_terms": terms,
        "embed_inputs": seg.embed_inputs,
        "segmenter": segmenter,
    }


def embed_rate(inputs: list[str], settings, n: int = 96) -> dict[str, Any]:
    """Chunks per second of the real embedding model on `n` chunk inputs (after 8 to warm up)."""
    from rag.system import make_embedder

    embedder = make_embedder(settings)
    embedder.embed_passages(inputs[:8])
    sample = inputs[:n]
    t, c = time.perf_counter(), time.process_time()
    embedder.embed_passages(sample)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return {
        "model": settings.embed_model,
        "chunks": len(sample),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "chunks_per_s": round(len(sample) / wall, 2),
    }


def row_of(name: str, info: dict[str, Any], st: dict[str, Any], emb: dict | None) -> dict:
    mb = info["path"].stat().st_size / 2**20
    out: dict[str, Any] = {
        "file": name,
        "type": info["type"],
        "file_mb": round(mb, 3),
        "chars": st["chars"],
        "chunks": st["chunks"],
        "rows": info["rows"],
    }
    for stage in ("load", "load_chunk", "load_chunk_terms"):
        wall = st[stage]["wall_s"]
        out[stage] = {
            **st[stage],
            "mb_per_s": round(mb / wall, 3),
            "chars_per_s": round(st["chars"] / wall),
            **({"rows_per_s": round(info["rows"] / wall)} if info["rows"] else {}),
        }
    if emb:
        wall = st["load_chunk_terms"]["wall_s"] + st["chunks"] / emb["chunks_per_s"]
        out["with_embedding_est"] = {
            "wall_s": round(wall, 2),
            "mb_per_s": round(mb / wall, 4),
            **({"rows_per_s": round(info["rows"] / wall, 1)} if info["rows"] else {}),
        }
    return out


# --------------------------------------------------------------------------- report
def markdown(res: dict[str, Any], notes: str = "") -> str:
    m, cfg = res["machine"], res["config"]
    busy = max(res["load_start"][0], res["load_end"][0]) > m["cores"]
    emb = res.get("embedding")
    lines = [
        "# Ingestion throughput per file type",
        "",
        f"Run {res['started']} with `{res['command'].strip()}` (commit `{m['git']['commit'][:7]}`"
        f"{', uncommitted changes' if m['git']['dirty'] else ''}).",
        "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, no GPU. Load "
        f"average {res['load_start'][0]} at the start, {res['load_end'][0]} at the end"
        + (
            ": the machine was shared; wall-clock figures are the CPU share the benchmark got, "
            "and CPU-seconds (single-threaded stages) are what an idle core would take."
            if busy
            else "."
        ),
        "",
        f"**Settings:** chunk size {cfg['chunk_size']}, overlap {cfg['chunk_overlap']}, "
        f"BM25 segmenter `{cfg['segmenter']}`, cleaning {'on' if cfg['clean'] else 'off'} "
        f"(txt, md, html), one process (the ingest workers' pool is not used: each stage "
        f"is the per-file work a worker does). Median of {cfg['repeats']} runs per stage.",
        "",
        "**Files** (made from crud_news articles, Apache-2.0, and a generated project table):",
        "",
        "| file | type | size MB | characters | chunks | rows |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['file']} | {r['type']} | {r['file_mb']:.2f} | {r['chars']:,} | "
            f"{r['chunks']:,} | {r['rows'] or '–'} |"
        )
    lines += [
        "",
        "## Throughput (wall-clock, median)",
        "",
        "MB of file per second; 万字/s = 10,000 characters of extracted text per second "
        "(file sizes mean different things per type: an .xlsx is zipped, a PDF carries its "
        "font, an HTML page its tags).",
        "",
        "| file | load MB/s | + chunk MB/s | + index terms MB/s | 万字/s (all three) | CPU-s (all three) |"
        + (" with embedding KB/s (est.) |" if emb else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if emb else ""),
    ]
    for r in res["rows"]:
        t = r["load_chunk_terms"]
        row = (
            f"| {r['file']} | {r['load']['mb_per_s']:.2f} | {r['load_chunk']['mb_per_s']:.2f} | "
            f"{t['mb_per_s']:.2f} | {t['chars_per_s'] / 1e4:.1f} | {t['cpu_s']:.2f} |"
        )
        if emb:
            row += f" {r['with_embedding_est']['mb_per_s'] * 1024:.1f} |"
        lines.append(row)
    sheets = [r for r in res["rows"] if r["rows"]]
    if sheets:
        lines += [
            "",
            f"## Spreadsheets: {SHEET_ROWS:,} rows × {len(HEADER)} columns",
            "",
            "| file | load rows/s | + chunk rows/s | + index terms rows/s"
            + (" | with embedding rows/s (est.) |" if emb else " |"),
            "|---|---:|---:|---:|" + ("---:|" if emb else ""),
        ]
        for r in sheets:
            row = (
                f"| {r['file']} | {r['load']['rows_per_s']:,} | {r['load_chunk']['rows_per_s']:,} | "
                f"{r['load_chunk_terms']['rows_per_s']:,} |"
            )
            if emb:
                row += f" {r['with_embedding_est']['rows_per_s']:,} |"
            lines.append(row)
    if emb:
        lines += [
            "",
            f"**Embedding**, measured once: `{emb['model']}`, {emb['chunks']} chunks (drawn from "
            f"every file) in {emb['wall_s']} s, {emb['chunks_per_s']} chunks/s "
            f"({emb['cpu_s']} CPU-s). *With embedding* = stage 3 + the file's chunks at that "
            "rate: an estimate, not a run of its own.",
        ]
    lines += ["", "## What it means", ""]
    if notes:
        lines += [notes.strip(), "", "Read off the figures of this run:", ""]
    lines += [*res["findings"], "", "## Reproduce", "", "```sh", res["command"].strip(), "```", ""]
    lines += ["Every stage's wall, min and CPU seconds per file are in `results.json`.", ""]
    return "\n".join(lines)


def findings(res: dict[str, Any]) -> list[str]:
    rows = res["rows"]
    fast = max(rows, key=lambda r: r["load_chunk_terms"]["mb_per_s"])
    slow = min(rows, key=lambda r: r["load_chunk_terms"]["mb_per_s"])
    out = [
        f"- Before embedding, the fastest type is {fast['file']} "
        f"({fast['load_chunk_terms']['mb_per_s']:.2f} MB/s), the slowest {slow['file']} "
        f"({slow['load_chunk_terms']['mb_per_s']:.2f} MB/s)."
    ]
    for r in rows:
        load = r["load"]["wall_s"]
        total = r["load_chunk_terms"]["wall_s"]
        out.append(
            f"- {r['file']}: loading is {100 * load / total:.0f}% of the time before embedding "
            f"({load:.2f} of {total:.2f} s)."
        )
    emb = res.get("embedding")
    if emb:
        shares = [
            r["chunks"] / emb["chunks_per_s"] / r["with_embedding_est"]["wall_s"] for r in rows
        ]
        out.append(
            f"- With the real model, embedding is {100 * min(shares):.0f}–{100 * max(shares):.0f}% "
            "of the time per file: the file type matters little once chunks are embedded."
        )
    return out


def write_report(res: dict[str, Any], out: Path) -> None:
    notes = out / "notes.md"
    text = notes.read_text(encoding="utf-8") if notes.is_file() else ""
    (out / "report.md").write_text(markdown(res, text), encoding="utf-8")


def run(args: argparse.Namespace, log=print) -> dict[str, Any]:
    from rag.config import Settings

    settings = Settings()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = measure.loadavg()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rag-formats-bench-") as tmp:
        files = make_files(Path(tmp), args.source, args.scale)
        results, inputs = {}, []
        for name, info in files.items():
            st = stages(info["path"], settings, args.repeats)
            results[name] = st
            inputs += st.pop("embed_inputs")[:12]
            log(
                f"formats: {name}: {st['chunks']} chunks, "
                f"{st['load_chunk_terms']['wall_s']:.2f} s through all three stages"
            )
        emb = embed_rate(inputs, settings) if args.embed else None
        if emb:
            log(f"formats: embedding {emb['chunks_per_s']} chunks/s")
        rows = [row_of(n, files[n], results[n], emb) for n in files]
    res: dict[str, Any] = {
        "started": started,
        "command": "python -m rag.eval.bench formats " + " ".join(args.argv),
        "load_start": load_start,
        "machine": measure.machine(),
        "config": {
            "chunk_size": settings.chunk_size,
            "chunk_overlap": settings.chunk_overlap,
            "clean": settings.clean,
            "segmenter": next(iter(results.values()))["segmenter"],
            "repeats": args.repeats,
            "scale": args.scale,
            "sheet_rows": SHEET_ROWS,
            "sheet_columns": HEADER,
            "source": str(args.source),
        },
        "embedding": emb,
        "rows": rows,
    }
    res["findings"] = findings(res)
    res["load_end"] = measure.loadavg()
    res["duration_s"] = round(time.perf_counter() - t0, 1)
    return res


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rag.eval.bench formats", description=__doc__.splitlines()[0]
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per stage (median reported)")
    p.add_argument(
        "--scale", type=float, default=1.0, help="size of the text files (1.0: ~600k chars)"
    )
    p.add_argument("--no-embed", dest="embed", action="store_false", help="skip the embedding rate")
    p.add_argument(
        "--source", type=Path, default=corpus.DEFAULT_SOURCE, help="crud_news documents.txt.gz"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    p.add_argument("--report-only", action="store_true",
                   help="write report.md again from OUT/results.json (and OUT/notes.md)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.report_only:
        write_report(json.loads((args.out / "results.json").read_text(encoding="utf-8")), args.out)
        print(f"bench formats: wrote {args.out}/report.md", file=sys.stderr)
        return 0
    if not args.source.is_file():
        print(
            f"bench formats: {args.source}: corpus file not found (give --source PATH)",
            file=sys.stderr,
        )
        return 2
    if not FONT.is_file():
        print(
            f"bench formats: {FONT} not found; apt-get install fonts-wqy-microhei", file=sys.stderr
        )
        return 2
    res = run(args, log=lambda m: print(m, file=sys.stderr, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(res, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
    )
    write_report(res, args.out)
    print(
        f"bench formats: wrote {args.out}/report.md and results.json in {res['duration_s']} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
