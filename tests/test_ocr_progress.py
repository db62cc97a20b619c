"""OCR says where it is, page by page (issue 19): `rag ingest` prints a line per scanned
page to stderr, and an upload in the app moves its progress bar. Real image-only PDFs
(Chinese text drawn by Pillow, saved as PDF), the real OCR, the real CLI."""

from __future__ import annotations

import contextvars
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.ingest import ocr
from rag.serve.ui.progress import relayed, shown_name, upload_progress

REPO = Path(__file__).resolve().parents[1]
FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
needs_font = pytest.mark.skipif(not FONT.is_file(), reason="fonts-wqy-microhei is not installed")

PAGES = [
    ["关于开展老旧小区改造申报工作的通知", "2024年全市计划改造老旧小区350个。"],
    ["申报截止日期为2024年3月15日。", "青岛市住房和城乡建设局"],
]


def scan_images(pages=PAGES) -> list:
    """Pictures of pages of Chinese text, as a scanner makes them."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(FONT), 34)
    images = []
    for lines in pages:
        img = Image.new("RGB", (1000, 420), "white")
        draw = ImageDraw.Draw(img)
        for i, line in enumerate(lines):
            draw.text((80, 100 + 90 * i), line, font=font, fill="black")
        images.append(img)
    return images


def scan_pdf(path: Path, images=None) -> Path:
    """An image-only PDF: each page a picture, no text layer."""
    first, *rest = images or scan_images()
    first.save(path, "PDF", resolution=200.0, save_all=True, append_images=rest)
    return path


@needs_font
def test_rag_ingest_prints_each_scanned_page_to_stderr(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    scan_pdf(docs / "申报通知.pdf")
    (docs / "plain.txt").write_text("这是一份文本文件，没有扫描页。", encoding="utf-8")

    def rag_ingest(*flags: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "rag.serve.cli", "ingest", str(docs)]
        cmd += ["--index", str(tmp_path / "index"), *flags]
        return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)

    out = rag_ingest()
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("OCR ")]
    assert lines == ["OCR 申报通知.pdf：第1/2页", "OCR 申报通知.pdf：第2/2页"], out.stderr[-2000:]
    assert "added: " in out.stdout and "申报通知.pdf" in out.stdout

    quiet = rag_ingest("--quiet")  # reads the file again (to compare), and says nothing
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "OCR " not in quiet.stderr


@needs_font
def test_the_page_hook_reports_pages_of_pdfs_and_images_and_blank_pages(tmp_path):
    from PIL import Image

    from rag.ingest.loaders import load_file

    pdf = scan_pdf(tmp_path / "scan.pdf")
    with_blank = scan_pdf(
        tmp_path / "with-blank.pdf", [Image.new("RGB", (1000, 420), "white"), scan_images()[0]]
    )
    picture = tmp_path / "notice.png"
    scan_images()[0].save(picture)
    seen: list[tuple[str, int, int]] = []
    with ocr.on_page(lambda source, page, pages: seen.append((Path(source).name, page, pages))):
        load_file(pdf)
        load_file(with_blank)
        load_file(picture)
    assert seen == [
        ("scan.pdf", 1, 2),
        ("scan.pdf", 2, 2),
        ("with-blank.pdf", 1, 2),  # blank: done without reading
        ("with-blank.pdf", 2, 2),
        ("notice.png", 1, 1),
    ]
    seen.clear()
    load_file(pdf)  # outside the block: nobody is told
    assert seen == []


def test_relayed_reports_from_forked_processes_in_the_callers_context():
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="none")
    marker.set("request-7")
    got: list[tuple] = []
    with relayed(lambda s, p, n: got.append((s, p, n, marker.get()))) as callback:
        callback("here.pdf", 1, 3)
        pid = os.fork()
        if pid == 0:  # a worker process, as ingestion forks them
            try:
                callback("child.pdf", 2, 3)
                callback("child.pdf", 3, 3)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
    assert got == [
        ("here.pdf", 1, 3, "request-7"),
        ("child.pdf", 2, 3, "request-7"),
        ("child.pdf", 3, 3, "request-7"),
    ]


def test_an_upload_is_named_by_its_original_name(tmp_path):
    from rag.serve.ui.library import store_upload

    src = tmp_path / "x.pdf"
    src.write_bytes(b"%PDF-1.4 not really")
    stored = store_upload(src, "年度 报告(终稿).pdf", tmp_path / "uploads", 2**20)
    assert stored.name != "年度 报告(终稿).pdf"
    assert shown_name(str(stored)) == "年度 报告(终稿).pdf"
    assert shown_name("/data/uploads/0123456789abcdef__通知.pdf") == "通知.pdf"  # no sidecar


@needs_font
def test_an_upload_moves_the_progress_bar_page_by_page(tmp_path, embedder):
    from rag.config import Settings
    from rag.index.build import ingest
    from rag.serve.ui.library import Library
    from rag.system import load_system

    base = tmp_path / "base"
    base.mkdir()
    (base / "a.txt").write_text("威海市召开城市更新大会。", encoding="utf-8")
    settings = Settings(index_dir=str(tmp_path / "data" / "index"))
    ingest([base], settings, embedder=embedder, progress=False, log=lambda m: None)
    library = Library(
        load_system(settings, embedder=embedder),
        tmp_path / "data" / "uploads",
        tmp_path / "data" / "feedback.jsonl",
    )
    calls: list[tuple] = []

    def progress(value, desc=None, unit="steps"):  # what gr.Progress is called with
        calls.append((value, desc, unit))

    with upload_progress(progress):
        [result] = library.add_files([(scan_pdf(tmp_path / "tmp-upload.pdf"), "申报通知.pdf")])
    assert result.status == "added", result
    descs = [d for _, d, _ in calls]
    assert descs[:2] == [
        "正在识别扫描件《申报通知.pdf》：第1/2页",
        "正在识别扫描件《申报通知.pdf》：第2/2页",
    ]
    assert calls[0][0] == (1, 2) and calls[1][0] == (2, 2) and calls[0][2] == "页"
    # the app reads an upload a second time as it writes the index: said as such
    assert all(d.startswith("正在写入知识库，再次识别《申报通知.pdf》") for d in descs[2:])


@needs_font
def test_a_scanned_page_is_read_once(tmp_path, monkeypatch):
    """An upload loads its file twice (outside the write lock, then inside it) and a
    rebuild loads every file again: each scanned page goes through OCR once, its lines
    kept in the cache folder; a damaged cache entry is read again, not trusted."""
    from rag.config import Settings
    from rag.index.build import ingest
    from rag.serve.ui.library import Library
    from rag.system import load_system

    reads = []
    real = ocr._read
    monkeypatch.setattr(ocr, "_read", lambda arr, size: reads.append(size) or real(arr, size))
    settings = Settings(index_dir=str(tmp_path / "index"), cache_dir=str(tmp_path / "cache"))
    seed = tmp_path / "seed.txt"
    seed.write_text("种子文档\n本文件只用于建立索引。\n", encoding="utf-8")
    assert ingest([seed], settings, progress=False).ingested_anything
    library = Library(load_system(settings), tmp_path / "uploads", tmp_path / "fb.jsonl")

    [added] = library.add_files([(scan_pdf(tmp_path / "x.pdf"), "申报通知.pdf")])
    assert added.status == "added", added.reason
    assert len(reads) == 2  # two pages, each read once though the file was loaded twice
    entries = sorted((tmp_path / "cache" / "ocr").rglob("*.json"))
    assert len(entries) == 2
    ans = library.system.ask("申报截止日期是哪天？")
    assert "3月15日" in ans.text

    report = ingest([library.uploads_dir], settings, rebuild=True, progress=False)
    assert report.count("added") == 1 and len(reads) == 2  # the rebuild read no page again

    entries[0].write_text("{not json", encoding="utf-8")
    ingest([library.uploads_dir], settings, rebuild=True, progress=False)
    assert len(reads) == 3  # only the damaged page is read again
