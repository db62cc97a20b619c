"""Answers never show the pinyin glosses some scraped pages carry (嶗山區(qū)): not on the
terminal, not in the chat UI; the index and citation offsets keep the document's text."""

from __future__ import annotations

import io

from rag.serve.cli import print_answer
from rag.serve.ui.render import render_answer
from rag.textnorm import without_glosses

LAOSHAN = "崂山区2023年计划完成投资多少？"


def test_only_toned_readings_right_after_a_character_go():
    assert (
        without_glosses("嶗山區(qū)召開全區（qū）大會，攻堅戰(zhàn)")
        == "嶗山區召開全區大會，攻堅戰"
    )
    for kept in ("见附件(a)和表(b)", "Python(3)", "区(qu)", "(qū)开头"):
        assert without_glosses(kept) == kept


def test_an_answer_from_a_glossed_document_shows_none(corpus_system):
    ans = corpus_system.ask(LAOSHAN)
    assert "(qū)" in ans.text or any("(qū)" in c.text for c in ans.citations)  # the source has them
    out = io.StringIO()
    print_answer(ans, False, out)
    html = render_answer(ans, 0)
    for shown in (out.getvalue(), html):
        assert "156" in shown and "(qū)" not in shown and "(zhàn)" not in shown
    # the citation still points at the document's own text
    c = ans.citations[0]
    doc = corpus_system.index.document_text(c.doc_id)
    assert doc[c.start : c.end] == c.text
