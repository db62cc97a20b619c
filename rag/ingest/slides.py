"""Slides (.pptx): each slide's title, text boxes, tables and speaker notes, in order,
located as "第N张幻灯片" for citations."""

from __future__ import annotations

import io
from typing import Any

from rag.ingest.tables import TextBuilder, row_lines


def _shape_lines(shape: Any, slide_label: str, out: TextBuilder, depth: int = 0) -> None:
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
        for _, line in row_lines(rows, f"{slide_label}表格"):
            out.add(line, slide_label)
        return
    if shape.shape_type == 6 and depth < 8:  # a group: its shapes, in order
        for inner in shape.shapes:
            _shape_lines(inner, slide_label, out, depth + 1)
        return
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        for paragraph in shape.text_frame.paragraphs:
            text = "".join(run.text for run in paragraph.runs) or paragraph.text
            out.add(text, slide_label)


def pptx(data: bytes) -> tuple[str, dict]:
    """Text of every slide: the title first, then the other shapes top to bottom, then
    the speaker notes ("备注：……")."""
    from pptx import Presentation

    deck = Presentation(io.BytesIO(data))
    out = TextBuilder()
    for n, slide in enumerate(deck.slides, start=1):
        label = f"第{n}张幻灯片"
        title = slide.shapes.title
        if title is not None and title.has_text_frame and title.text_frame.text.strip():
            out.add(title.text_frame.text.replace("\n", " "), label)
        others = [s for s in slide.shapes if title is None or s.shape_id != title.shape_id]
        others.sort(key=lambda s: ((s.top or 0), (s.left or 0)))
        for shape in others:
            _shape_lines(shape, label, out)
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                out.add("备注：" + " ".join(notes.text.split()), label)
    meta: dict[str, Any] = {"slides": len(deck.slides), "locations": out.locations}
    props = deck.core_properties
    if props.title and props.title.strip():
        meta["title"] = props.title.strip()
    if props.author and props.author.strip() and props.author.strip() != "python-pptx":
        meta["author"] = props.author.strip()
    return out.text, meta
