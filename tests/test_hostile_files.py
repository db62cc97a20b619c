"""Hostile files: one batch of them is ingested in one run, in a separate process.

The batch (generated here, in a tmp folder) mixes 100,000 tiny files -- 99,980 of them
empty or blank, 20 real -- with a 200 MB text file, zero-length and truncated PDFs, a
truncated DOCX, two DOCX zip bombs (one honest about its sizes, one lying), a PDF whose
page content inflates without end, binary data named .txt and .md, mixed encodings,
UTF-16 without a BOM, a 4,000-character line without punctuation, HTML nested 20,000
deep, floods of unclosed HTML comments and tags, FIFOs (one in the folder, one named on
the command line), a symlink to /dev/zero, and file names with spaces, Chinese characters
and "..".

The contract: every file gets exactly one result -- ingested, or refused with a
one-line reason that says why -- the good files arrive intact, and the run's memory
and time are bounded. Memory is measured in the ingesting process as the growth of
its peak RSS over the peak it had already reached loading the model and embedding one
full batch: reading the 200 MB file or inflating a bomb would show up there.

The last tests run pathological inputs that used to hang the cleaner and the loaders
(backtracking regular expressions; Python's html.parser) against a time limit.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import LoadError
from rag.index.hybrid import HybridIndex
from rag.ingest.clean import clean_text
from rag.ingest.loaders import load_file

REPO = Path(__file__).resolve().parent.parent
N_MANY = 100_000
N_REAL = 20
BIG_MB = 200
# Growth of the peak RSS over the peak with the model loaded and warm. Measured: about
# 210 MB (the bookkeeping of 100,000 files, plus the largest parser's transient). Reading
# the 200 MB file, or inflating either zip bomb, would add more than 400 MB.
RSS_GROWTH_BOUND_MB = 384
INGEST_BOUND_S = 300  # the ingest call itself; about 60 s on a quiet 2-core machine
RUN_BOUND_S = 900  # the whole subprocess, model load included, on a busy machine

pytestmark = pytest.mark.slow

DRIVER = r"""
import json, resource, sys, time
from rag.config import Settings
from rag.index.build import ingest
from rag.system import make_embedder

paths, index, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
settings = Settings(index_dir=index)
embedder = make_embedder(settings)
embedder.embed_passages(["预热模型" * 80] * 32)  # the model's own peak: one full batch
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
report = ingest(paths, settings, embedder=embedder, progress=False, log=lambda m: None)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows = [[r.source, r.status, r.reason, r.doc_id, r.chunks] for r in report.results]
with open(out, "w", encoding="utf-8") as f:
    json.dump({"base_kb": base, "peak_kb": peak, "seconds": seconds, "results": rows}, f)
"""


# --------------------------------------------------------------------------- the files
def fact(i: int) -> str:
    return f"青岚湖第{i}号监测站于2021年建成，共设有{i + 3}个监测点位。"


T16 = "崂山区召开城市更新动员大会，会议部署了一百九十六个重点项目。\n威海累计建成地下综合管廊。\n"
LONG_LINE = "城市更新行动推进老旧小区改造和地下管网建设" * 190  # 4,180 characters, no stop
HEADING_MD = "# 报告标题" + " \t" * 20_000 + "#\n\n正文：湖区面积12平方公里。\n"
MENU_LINE = "a//" * 40 + "aaaaaaa"  # hung the cleaner's menu rule (exponential)

# name -> text the document must have once ingested
GOOD: dict[str, str] = {
    "utf16-nobom.txt": T16.rstrip("\n"),
    "long-line.txt": LONG_LINE,
    "deep.html": "西溪湿地公园坚持生态优先、最小干预的原则。",
    "menu-redos.txt": MENU_LINE,
    "heading-redos.md": HEADING_MD.rstrip("\n"),
    "gbk.txt": "威海市举办全市安全生产培训班，一百二十名安全管理人员参加。",
    "file with spaces.txt": "文件名里有空格的文件也要能入库。",
    "中文文件名.txt": "中文文件名的文件同样可以入库。",
    "名称..双点.txt": "文件名中间有两个点。",
    "结尾..txt": "文件名以两个点结尾。",
    "长" * 80 + ".txt": "很长的文件名（240 字节）。",
    "sub dir/子 目录/嵌套.txt": "放在带空格和中文的子目录里的文件。",
}
JSONL_TEXT = "JSON 行文件里唯一有效的一条记录。"

# name -> pattern the refusal reason must match (the whole reason)
NO_TEXT = r"文件中没有文字：请确认它不是空白文档"
EMPTY = r"文件是空的（0 字节）：请确认文件内容后重新上传"
BINARY = r"文件内容是二进制数据，不是文本：请确认扩展名与文件类型一致"
NOT_REGULAR = r"不是普通文件（可能是文件夹、管道或设备）：请选择要导入的文档文件"
DOCX_BROKEN = r"文件已损坏，无法读取 DOCX：请在 Word/WPS 中打开后重新保存（.+）"
BAD: dict[str, str] = {
    "empty.txt": EMPTY,
    "empty.pdf": EMPTY,
    "truncated.pdf": r"文件已损坏，无法读取 PDF：请用 PDF 阅读器打开后另存或重新导出，再上传（.+）",
    "truncated.docx": r"DOCX 文件已损坏或不完整（不是 ZIP 压缩包），无法读取：请重新保存后再上传，"
    r"并确认扩展名与文件类型一致",
    "bomb.docx": r"DOCX 解压后达 51\d MB（可能是恶意构造的压缩包）：请确认文件来源，"
    r"或在 Word/WPS 中打开后重新保存",
    "lying-bomb.docx": r"文件已损坏，无法读取 DOCX：请在 Word/WPS 中打开后重新保存"
    r"（BadZipFile: Bad CRC-32 for file 'word/document\.xml'）",
    "lying-bomb-good-crc.docx": DOCX_BROKEN,
    "pdf-bomb.pdf": r"PDF 页面内容解压后超过 32 MB（可能是恶意构造的文件）：请确认文件来源，"
    r"或拆分成较小的文件后再导入",
    "no-text.pdf": r"PDF 没有文字层，扫描件经 OCR 后也没有识别出文字（可能是空白页）："
    r"请确认扫描清晰后重新上传",
    "fake.pdf": r"不是 PDF 文件（文件开头没有 %PDF 标记）：文件可能已损坏，或扩展名与内容不符",
    "fake.docx": r"DOCX 文件已损坏或不完整（不是 ZIP 压缩包），无法读取：.+",
    "binary.txt": BINARY,
    "png.md": BINARY,
    "control.txt": BINARY,
    "mixed-encodings.txt": r"无法识别文字编码（已尝试 UTF-8、UTF-16、GB18030、Big5）："
    r"请另存为 UTF-8 编码后再导入",
    "big.txt": rf"文件过大（{BIG_MB} MB，上限 50 MB）：请拆分后再导入，或请管理员调大上限（max_file_mb）",
    "comment-flood.html": NO_TEXT,
    "unclosed-tags.html": NO_TEXT,
    "whitespace.md": NO_TEXT,
    "clutter.html": r"去掉网页杂项后没有剩下正文：.*",  # rag/index/workers.py
    "program.exe": r"不支持的文件类型 \.exe（支持：.+）：请另存为支持的格式后再导入",
    "README": r"文件名没有扩展名，无法判断类型（支持：.+）：请加上扩展名后再导入",
    "pipe.txt": NOT_REGULAR,
    "zero.txt": NOT_REGULAR,
    "dangling.txt": r"找不到文件：请确认路径和文件名是否正确",
}


def _pdf_bytes(text: str | None) -> bytes:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    if text:
        c.setFont("STSong-Light", 14)
        c.drawString(72, 760, text)
    else:
        c.rect(100, 100, 200, 200, fill=1)  # a drawing, no text layer
    c.showPage()
    c.save()
    return buf.getvalue()


def _pdf_bomb(mb: int, pages: int = 20) -> bytes:
    """A PDF of about `mb` KB whose pages all draw one content stream of `mb` MB of blanks."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    w = PdfWriter()
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    res = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): w._add_object(font)})}
    )
    s = DecodedStreamObject()
    s.set_data(b"BT /F1 12 Tf 10 10 Td (bomb) Tj ET\n" + b" " * (mb * 2**20))
    ref = w._add_object(s.flate_encode())
    for _ in range(pages):
        page = w.add_blank_page(200, 200)
        page[NameObject("/Resources")] = res
        page[NameObject("/Contents")] = ref
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def _docx_bytes(text: str) -> bytes:
    import docx

    d = docx.Document()
    d.add_paragraph(text)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def _zip_bomb(real_mb: int, claim: int | None = None, good_crc: bool = False) -> bytes:
    """A DOCX whose word/document.xml inflates to `real_mb` MB of blanks.

    With `claim`, the headers say the member is `claim` bytes (a lie); with `good_crc`,
    the CRC is that of the first `claim` bytes, so the lie passes zipfile's check.
    """
    src = zipfile.ZipFile(io.BytesIO(_docx_bytes("炸弹")))
    head = (
        b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/'
        b'wordprocessingml/2006/main"><w:body>'
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for info in src.infolist():
            if info.filename != "word/document.xml":
                zf.writestr(info.filename, src.read(info.filename))
        with zf.open("word/document.xml", "w") as m:
            m.write(head)
            block = b" " * 2**20
            for _ in range(real_mb):
                m.write(block)
    if claim is None:
        return buf.getvalue()
    data = bytearray(buf.getvalue())
    name = b"word/document.xml"
    crc = zlib.crc32((head + b" " * claim)[:claim])
    # offsets in the local and the central header: name length, CRC, size, name
    for sig, name_len, crc_at, size_at, name_at in (
        (b"PK\x03\x04", 26, 14, 22, 30),
        (b"PK\x01\x02", 28, 16, 24, 46),
    ):
        j = data.find(sig)
        while j >= 0:
            n = struct.unpack_from("<H", data, j + name_len)[0]
            if data[j + name_at : j + name_at + n] == name:
                struct.pack_into("<I", data, j + size_at, claim)
                if good_crc:
                    struct.pack_into("<I", data, j + crc_at, crc)
            j = data.find(sig, j + 4)
    return bytes(data)


def build_batch(root: Path) -> tuple[list[Path], dict[str, tuple[str, str]]]:
    """Write the hostile batch under `root`; return the paths to ingest and the
    expectations: source -> ("added", text) or ("failed", reason pattern)."""
    batch = root / "batch"
    batch.mkdir()
    expect: dict[str, tuple[str, str]] = {}

    def put(name: str, data: bytes | str) -> Path:
        p = batch / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return p

    # 100,000 tiny files in 100 folders: empty, 1% blank, and N_REAL real ones. (Few
    # blank ones: each takes a disk block, and freeing 50,000 blocks on a disk mounted
    # with `discard` took two minutes.)
    real_every = N_MANY // N_REAL
    blank = b" \n\t \n"
    for d in range(100):
        folder = batch / "many" / f"d{d:03d}"
        folder.mkdir(parents=True)
        for k in range(N_MANY // 100):
            i = d * (N_MANY // 100) + k
            if i % real_every == 0:
                j = i // real_every
                p = folder / f"real{j:02d}.txt"
                p.write_bytes(fact(j).encode())
                expect[str(p)] = ("added", fact(j))
                continue
            p = folder / f"f{i:05d}.{'md' if i % 7 == 0 else 'txt'}"
            with open(p, "wb") as f:
                if i % 100 == 1:
                    f.write(blank)
            expect[str(p)] = ("failed", NO_TEXT if i % 100 == 1 else EMPTY)

    # the good ones
    for name, text in GOOD.items():
        if name == "utf16-nobom.txt":
            put(name, T16.encode("utf-16-le"))
        elif name == "gbk.txt":
            put(name, text.encode("gbk"))
        elif name == "deep.html":
            put(name, "<html><body>" + "<div>" * 20_000 + f"<p>{text}</p>" + "</div>" * 20_000)
        elif name == "heading-redos.md":
            put(name, HEADING_MD)
        else:
            put(name, text)
        expect[str(batch / name)] = ("added", text)
    record = json.dumps({"id": "rec-1", "text": JSONL_TEXT}, ensure_ascii=False)
    put("records.jsonl", f'{record}\nnot json\n{{"text": ""}}\n')
    expect[str(batch / "records.jsonl") + "#rec-1"] = ("added", JSONL_TEXT)

    # the bad ones
    pdf = _pdf_bytes("威海市安全生产培训班")
    put("empty.txt", b"")
    put("empty.pdf", b"")
    put("truncated.pdf", pdf[: len(pdf) // 3])
    good_docx = _docx_bytes("被截断的文档")
    put("truncated.docx", good_docx[: len(good_docx) * 9 // 10])
    put("bomb.docx", _zip_bomb(512))
    put("lying-bomb.docx", _zip_bomb(300, claim=4096))
    put("lying-bomb-good-crc.docx", _zip_bomb(300, claim=4096, good_crc=True))
    put("pdf-bomb.pdf", _pdf_bomb(40))
    put("no-text.pdf", _pdf_bytes(None))
    put("fake.pdf", "这不是 PDF")
    put("fake.docx", "这也不是 DOCX")
    put("binary.txt", bytes((i * 7919 + 13) % 256 for i in range(65_536)))
    put("png.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    put("control.txt", bytes(range(1, 32)) * 20 + "正文".encode())
    put("mixed-encodings.txt", fact(1).encode() + b"\n" + fact(2).encode("gbk") + b"\n")
    with open(batch / "big.txt", "wb") as f:  # 200 MB, written in 1 MB steps
        line = (fact(0) + "\n").encode()
        block = line * (2**20 // len(line)) + b"." * (2**20 % len(line))
        for _ in range(BIG_MB):
            f.write(block)
    put("comment-flood.html", "<!--" * 100_000)
    put("unclosed-tags.html", "<a" * 100_000)
    put("whitespace.md", " \n\t\r\n\u3000 \n")
    put("clutter.html", "<p>首页 > 新闻</p><p>版权所有：某网</p><p>责任编辑：张三</p>")
    put("program.exe", b"MZ\x90\x00")
    put("README", "没有扩展名")
    os.mkfifo(batch / "pipe.txt")  # reading it would block for ever
    (batch / "zero.txt").symlink_to("/dev/zero")  # reading it would never end
    (batch / "dangling.txt").symlink_to(batch / "gone.txt")
    for name, reason in BAD.items():
        expect[str(batch / name)] = ("failed", reason)

    # a file named directly, through a path with ".." in it
    outside = root / "outside"
    (outside / "x").mkdir(parents=True)
    direct_text = "直接给出路径的文件，路径里有“..”。"
    (outside / "直接..文件.txt").write_text(direct_text, encoding="utf-8")
    direct = outside / "x" / ".." / "直接..文件.txt"
    expect[str(direct)] = ("added", direct_text)
    fifo = outside / "named-pipe.txt"  # named directly: it used to abort the whole batch
    os.mkfifo(fifo)
    expect[str(fifo)] = ("failed", NOT_REGULAR)
    return [batch, direct, fifo], expect


# --------------------------------------------------------------------------- the run
class Run:
    def __init__(self, root: Path, expect: dict, out: dict, wall_s: float, settings: Settings):
        self.root, self.expect, self.wall_s, self.settings = root, expect, wall_s, settings
        self.results: list[list] = out["results"]
        self.base_mb = out["base_kb"] / 1024
        self.peak_mb = out["peak_kb"] / 1024
        self.seconds: float = out["seconds"]
        self.by_source = {r[0]: r for r in self.results}


def _scratch(tmp_path_factory) -> Path:
    """A folder for the batch: in memory (/dev/shm) when it has room, else under tmp.

    Creating 100,000 files takes 2 minutes on some virtual disks and 5 s in tmpfs; the
    test is about ingesting them, not about the disk.
    """
    shm = Path(os.environ.get("RAG_HOSTILE_TMP", "/dev/shm"))
    try:
        if shm.is_dir() and shutil.disk_usage(shm).free > 2 * 2**30:
            return Path(tempfile.mkdtemp(prefix="rag-hostile-", dir=shm))
    except OSError:
        pass
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    root = _scratch(tmp_path_factory)
    t0 = time.perf_counter()
    paths, expect = build_batch(root)
    print(
        f"\nhostile batch of {len(expect)} files written to {root} in {time.perf_counter() - t0:.1f} s"
    )
    settings = Settings(index_dir=str(root / "index"))
    out = root / "out.json"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            DRIVER,
            json.dumps([str(p) for p in paths]),
            settings.index_dir,
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_BOUND_S,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = Run(root, expect, json.loads(out.read_text(encoding="utf-8")), wall, settings)
    print(
        f"\nhostile batch: {len(r.results)} results, ingest {r.seconds:.1f} s, run {wall:.1f} s, "
        f"peak RSS {r.peak_mb:.0f} MB (model loaded and warm: {r.base_mb:.0f} MB, "
        f"growth {r.peak_mb - r.base_mb:.0f} MB)"
    )
    yield r
    shutil.rmtree(root, ignore_errors=True)  # 100,000 inodes and 200 MB


def test_every_file_gets_exactly_one_result(run):
    sources = [r[0] for r in run.results]
    assert len(sources) == len(set(sources)), "a file was reported twice"
    assert set(sources) == set(run.expect), (
        f"missing: {sorted(set(run.expect) - set(sources))[:5]}, "
        f"unexpected: {sorted(set(sources) - set(run.expect))[:5]}"
    )
    assert len(run.results) >= N_MANY + len(GOOD) + len(BAD)


def test_each_refusal_is_one_clear_line_with_its_reason(run):
    wrong = []
    for source, (status, want) in run.expect.items():
        got = run.by_source[source]
        if got[1] != status:
            wrong.append((source, got[1], got[2]))
        elif status == "failed":
            reason = got[2]
            if not re.fullmatch(want, reason) or "\n" in reason or "Traceback" in reason:
                wrong.append((source, status, reason))
    assert not wrong, wrong[:10]


def test_nothing_good_in_the_batch_is_lost(run):
    idx = HybridIndex.open(run.settings.index_path, run.settings)
    added = {s: r for s, r in run.by_source.items() if r[1] == "added"}
    assert len(added) == N_REAL + len(GOOD) + 2  # + the JSON-lines record and the direct file
    for source, (status, text) in run.expect.items():
        if status != "added":
            continue
        doc_id = run.by_source[source][3]
        assert idx.document_text(doc_id) == text, source
        rows = idx.doc_rows(doc_id)
        assert rows and len(rows) == run.by_source[source][4]
        for row in rows:  # every chunk is a non-blank slice of its document
            c = idx.chunk(row)
            assert text[c.start : c.end] == c.text and c.text.strip()
    assert len(idx) == len(idx.vectors) == len(idx.bm25)
    docs = idx.docs
    assert docs["utf16-nobom"]["encoding"] == "utf-16-le"
    assert docs["gbk"]["encoding"] == "gb18030"
    assert docs["heading-redos"]["title"] == "报告标题"
    assert docs["many/d000/real00"]["title"] == fact(0)
    assert "直接..文件" in docs and "sub dir/子 目录/嵌套" in docs


def test_memory_stays_bounded(run):
    growth = run.peak_mb - run.base_mb
    assert growth < RSS_GROWTH_BOUND_MB, (
        f"peak RSS grew {growth:.0f} MB over the warm model ({run.base_mb:.0f} MB) while "
        f"ingesting the batch; bound {RSS_GROWTH_BOUND_MB} MB"
    )


def test_time_stays_bounded(run):
    assert run.seconds < INGEST_BOUND_S, f"ingest took {run.seconds:.0f} s"


# --------------------------------------------------------------------------- pathological inputs
SLOW_S = 5.0  # each of these took minutes to hours before its fix


def _timed(f, *args):
    t0 = time.perf_counter()
    out = f(*args)
    elapsed = time.perf_counter() - t0
    assert elapsed < SLOW_S, f"{elapsed:.1f} s"
    return out


def test_menu_rule_does_not_backtrack():
    # was exponential: 13 repeats took 18 s, 40 would take years
    assert _timed(clean_text, "a//" * 400 + "aaaaaaa").text == "a//" * 400 + "aaaaaaa"
    menu = clean_text(
        "首页 新闻 体育 财经 娱乐\n" + "正文第一段，内容很长很长很长很长很长很长。" * 3
    )
    assert [d.reason for d in menu.dropped] == ["navigation"]


@pytest.mark.parametrize(
    ("name", "data", "title"),
    [
        ("heading.md", "# 标题" + " \t" * 64_000 + "#\n正文。", "标题"),  # was 143 s at 32,000
        ("front.md", "---\ntitle: 甲" + " \t" * 64_000 + "乙\n---\n正文。", None),  # 13 s at 16,000
        ("comments.html", "<p>正文。</p>" + "<!--" * 200_000, None),  # html.parser: 6 s at 16,000
        ("tags.html", "<p>正文。</p>" + "<a" * 200_000, None),  # html.parser: 2.3 s at 16,000
        ("dashes.html", "<p>正文。</p>" + "<!" * 200_000, None),
    ],
)
def test_pathological_markup_loads_fast(tmp_path, name, data, title):
    p = tmp_path / name
    p.write_text(data, encoding="utf-8")
    docs = _timed(load_file, p)
    assert "正文。" in docs[0].text
    if title:
        assert docs[0].meta.title == title
    if name == "front.md":
        assert docs[0].meta.title.startswith("甲") and docs[0].meta.title.endswith("乙")


def test_long_line_without_punctuation_is_chunked_fast():
    from rag.ingest.chunking import chunk_spans

    text = "城市更新" * 500_000  # 2,000,000 characters, one line
    spans = _timed(chunk_spans, _timed(clean_text, text).text, 300, 1)
    assert len(spans) == 6667 and all(e - s <= 300 for s, e in spans)


def test_lying_zip_bomb_is_never_inflated(tmp_path):
    """zipfile inflates a member whole before cutting it to its declared size; the loader
    reads in steps, so a 1.4 MB file claiming 4 KB for 300 MB costs a few MB, not 600."""
    import tracemalloc

    p = tmp_path / "lie.docx"
    p.write_bytes(_zip_bomb(300, claim=4096, good_crc=True))
    tracemalloc.start()
    try:
        with pytest.raises(LoadError, match="文件已损坏，无法读取 DOCX"):
            load_file(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB allocated"
