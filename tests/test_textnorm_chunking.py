from rag.ingest.chunking import chunk_document, chunk_spans, split_sentences
from rag.textnorm import normalize

TEXT = (
    "嶗山區(qū)召開全區城市更新動員大會。會議總結了2022年工作！"
    "今年要推進196個項目，投資156億元？\n"
    "他說：“要讓群眾早日受益。”下一步……繼續推進；完成任務。"
)


def test_normalize_folds_script_width_space_and_pinyin():
    n = normalize("嶗山區(qū)　ＡＢＣ１２３  推進")
    assert n.text == "崂山区 abc123 推进"
    assert len(n.offsets) == len(n.text)


def test_normalize_offsets_point_into_original():
    original = "城市　更新ＡＢ（ōu）漢(hàn)字"
    n = normalize(original)
    for i, ch in enumerate(n.text):
        o = original[n.offsets[i]]
        assert ch == " " or normalize(o).text == ch, (i, ch, o)
    # the pinyin gloss after 漢 is skipped for matching but kept in the original
    assert "han" not in n.text and "(hàn)" in original


def test_sentences_end_at_chinese_punctuation_and_closing_quotes():
    sents = [TEXT[s:e] for s, e in split_sentences(TEXT)]
    assert sents[0] == "嶗山區(qū)召開全區城市更新動員大會。"
    assert "他說：“要讓群眾早日受益。”" in sents
    assert "下一步……" in sents
    assert all(s.strip() == s and s for s in sents)


def test_chunks_are_exact_slices_with_overlap():
    text = "".join(f"第{i}句话讲的是城市更新工作的第{i}个要点。" for i in range(60))
    spans = chunk_spans(text, size=100, overlap=1)
    assert len(spans) > 5
    for (s1, e1), (s2, _e2) in zip(spans, spans[1:]):
        assert s2 < e1  # one sentence of overlap
        assert s2 > s1  # progress
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(e - s <= 100 for s, e in spans)


def test_long_sentence_without_punctuation_is_split():
    text = "很" * 1000
    spans = chunk_spans(text, size=300, overlap=1)
    assert all(e - s <= 300 for s, e in spans)
    assert "".join(text[s:e] for s, e in spans) == text


def test_chunks_carry_offsets_and_content_hash_ids():
    chunks = chunk_document("doc-1", TEXT, size=40, overlap=1)
    assert chunks
    for i, c in enumerate(chunks):
        assert TEXT[c.start : c.end] == c.text
        assert c.doc_id == "doc-1" and c.row == i
    again = chunk_document("doc-1", TEXT, size=40, overlap=1)
    assert [c.id for c in chunks] == [c.id for c in again]
    assert len({c.id for c in chunks}) == len(chunks)
    assert chunk_document("doc-2", TEXT, size=40, overlap=1)[0].id != chunks[0].id


def test_norm_is_normalize_text_on_every_code_point():
    from rag.textnorm import norm

    # every code point, in runs of 64 between letters, spaces, full-width forms and glosses
    points = [chr(o) for o in range(0x110000) if not 0xD800 <= o <= 0xDFFF]
    for i in range(0, len(points), 64):
        run = "".join(points[i : i + 64])
        for text in (run, f"Ａ {run}  漢(hàn)\u3000x", f"  {run[::-1]}ＢＣ\t"):
            assert norm(text) == normalize(text).text, hex(ord(run[0]))
    assert norm(TEXT) == normalize(TEXT).text
