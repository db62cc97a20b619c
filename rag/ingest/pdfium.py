"""pdfium (pypdfium2) for every use of it: a PDF's text layer (rag.ingest.formats), its
pages drawn for OCR (rag.ingest.ocr) and the cited page the UI shows (rag.serve.ui.pages).

PDFium is not thread-safe, not even across documents (pypdfium2's documentation:
concurrent calls "would crash or corrupt the process"), and its calls release the GIL,
so every use holds one process-wide lock: uploads read in the UI's threads while another
session's citation is drawn. Processes (ingest workers) each have their own pdfium.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

# reentrant: code holding it may call a helper here that takes it again
LOCK = threading.RLock()


@contextlib.contextmanager
def open_pdf(data: bytes) -> Iterator[Any]:
    """The `pypdfium2.PdfDocument` of `data`, used and closed under `LOCK`.

    Raises ImportError when pypdfium2 is missing and `pypdfium2.PdfiumError` when pdfium
    cannot open the file (damaged, or encrypted with a user password).
    """
    import pypdfium2 as pdfium

    with LOCK:
        pdf = pdfium.PdfDocument(data)
        try:
            yield pdf
        finally:
            pdf.close()


def page_texts(data: bytes) -> list[str]:
    """The text layer of every page, in pdfium's reading order (lines end in "\\r\\n").

    About 12 times faster than pypdf's `extract_text` on the formats benchmark's PDF,
    with the same text but for blanks at line ends and runs of blanks, and for what the
    page does not show: a glyph missing from the embedded font (which pypdf still reads
    from the font's ToUnicode map) and NUL glyphs (eval/reports/ingest_formats/
    pdf_text.md). A table's cells come out as rows rather than one cell per line. Call
    it only after the PDF expansion limits (rag.ingest.formats) have been checked:
    pdfium decodes the same content streams.
    """
    out = []
    with open_pdf(data) as pdf:
        for page in pdf:
            try:
                text = page.get_textpage()
                try:
                    # pdfium joins a line that ends in a hyphen to the next, marking
                    # the hyphen U+FFFE: the hyphen is the document's, and so is the break
                    out.append(text.get_text_range().replace("\ufffe", "-\n"))
                finally:
                    text.close()
            finally:
                page.close()
    return out
