"""Document ids when two files share a name: 通知.pdf and 通知.docx in one folder are two
documents, and both are kept; a folder without such pairs keeps the ids it always had
(so an existing index is not re-ingested). Real files, the real ingest."""

from __future__ import annotations

from pathlib import Path

from rag.config import Settings
from rag.index.build import ingest
from rag.index.hybrid import HybridIndex
from rag.ingest.discover import discover
from rag.ingest.loaders import load_file

PDF_TEXT = "关于开展城市更新项目申报的通知（PDF版）"
DOCX_TEXT = "关于开展城市更新项目申报的通知（Word版）"


def make_pdf(path: Path, text: str) -> Path:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    c = canvas.Canvas(str(path))
    c.setFont("STSong-Light", 14)
    c.drawString(72, 760, text)
    c.showPage()
    c.save()
    return path


def make_docx(path: Path, text: str) -> Path:
    import docx

    d = docx.Document()
    d.add_paragraph(text)
    d.save(str(path))
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ids(folder: Path) -> dict[str, str]:
    """{file name relative to folder: doc id} for what discover finds and load_file reads."""
    return {
        f.relative_to(folder).as_posix(): load_file(f, root)[0].doc_id
        for f, root in discover([folder])
    }


def test_same_stem_files_get_their_extension_in_the_id(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "通知.pdf", PDF_TEXT)
    make_docx(docs / "通知.docx", DOCX_TEXT)
    write(docs / "通知.meta.json", '{"author": "市住建局"}')  # a sidecar is not a document
    write(docs / "简报.txt", "简报正文。")
    write(docs / "简报.v2.txt", "第二版简报。")  # stem "简报.v2": no pair
    write(docs / "sub" / "通知.txt", "子目录里的通知。")  # the same stem, another folder
    assert ids(docs) == {
        "sub/通知.txt": "sub/通知",
        "简报.txt": "简报",
        "简报.v2.txt": "简报.v2",
        "通知.docx": "通知.docx",
        "通知.pdf": "通知.pdf",
    }
    # a file loaded on its own (root: its folder) gets the same id as in its folder
    assert load_file(docs / "通知.pdf")[0].doc_id == "通知.pdf"
    assert load_file(docs / "sub" / "通知.txt")[0].doc_id == "通知"


def test_a_pair_with_one_ignored_file_keeps_the_plain_id(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "报告.pdf", PDF_TEXT)
    make_docx(docs / "报告.docx", DOCX_TEXT)
    write(docs / ".ragignore", "*.docx\n")
    assert ids(docs) == {"报告.pdf": "报告"}  # the .docx is not a document here


def test_both_same_stem_files_are_ingested_and_others_keep_their_ids(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "通知.pdf", PDF_TEXT)
    write(docs / "简报.txt", "今年以来全市城市更新工作稳步推进。")
    s = Settings(index_dir=str(tmp_path / "index"))

    def run() -> dict[str, tuple[str, str]]:
        report = ingest([docs], s, embedder=embedder, progress=False, log=lambda m: None)
        return {r.doc_id: (r.status, Path(r.source).name) for r in report.results}

    assert run() == {"通知": ("added", "通知.pdf"), "简报": ("added", "简报.txt")}
    make_docx(docs / "通知.docx", DOCX_TEXT)
    # before: the .docx also took the id "通知" and was refused as a duplicate
    assert run() == {
        "通知": ("removed", "通知.pdf"),
        "通知.docx": ("added", "通知.docx"),
        "通知.pdf": ("added", "通知.pdf"),
        "简报": ("unchanged", "简报.txt"),  # not re-ingested
    }
    index = HybridIndex.open(s.index_path, s)
    assert sorted(index.docs) == ["简报", "通知.docx", "通知.pdf"]
    assert index.document_text("通知.pdf") == PDF_TEXT
    assert index.document_text("通知.docx") == DOCX_TEXT
