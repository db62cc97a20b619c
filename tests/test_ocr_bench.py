"""The OCR benchmark's parts work (rag/eval/bench/ocr.py): the character error rate
against a reference implementation, and one small page through the same OCR path as
the benchmark (the real rapidocr models), clean and heavily degraded."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from rag.eval.bench import ocr as bench

needs_font = pytest.mark.skipif(
    not bench.FONT.is_file(), reason="fonts-wqy-microhei is not installed"
)


def reference_distance(a: str, b: str) -> int:
    """Levenshtein distance, the textbook dynamic programme."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_edit_distance_agrees_with_the_textbook_one():
    assert bench.edit_distance("kitten", "sitting") == 3
    assert bench.edit_distance("", "威海") == 2 and bench.edit_distance("威海", "") == 2
    rng = random.Random(3)
    for _ in range(300):
        a = "".join(rng.choice("威海市区年") for _ in range(rng.randint(0, 15)))
        b = "".join(rng.choice("威海市县月") for _ in range(rng.randint(0, 15)))
        assert bench.edit_distance(a, b) == reference_distance(a, b), (a, b)


def test_cer_leaves_white_space_out_and_can_normalise():
    assert bench.cer("威海 市\n区", "威海市区") == 0.0
    assert bench.cer("威海市区", "威海市县") == 0.25
    assert bench.cer("威海市区", "") == 1.0
    # full-width digits are what search folds away; as read they count
    assert bench.cer("2024年", "２０２４年") == 0.8
    assert bench.cer("2024年", "２０２４年", bench._norm) == 0.0


def test_a_lost_line_is_told_from_scattered_errors():
    ref = "第一行的文字在这里。\n第二行整行都没有读出来的文字。\n最后一行。"
    assert bench.dropped_runs(ref, "第一行的文字在这里。\n最后一行。") == [
        "第二行整行都没有读出来的文字。"
    ]
    assert bench.dropped_runs(ref, ref.replace("文字", "文子")) == []


def test_pages_hold_the_corpus_text_in_reading_order():
    paras = [("a", "第一段" * 12, 2), ("a", "第二段" * 12, 2)]
    page, rest = bench.draw_page(paras, 2, size=(900, 700), margin=(40, 40))
    assert page.layout == "two columns" and rest == []
    assert bench.strip_ws(page.text) == "第一段" * 12 + "第二段" * 12
    page, rest = bench.draw_page(paras, 1, size=(900, 150), margin=(40, 40))
    assert len(page.lines) == 1 and rest  # what did not fit is carried to the next page
    assert bench.strip_ws(page.text + rest[0][1]) == "第一段" * 12  # ... unindented


@needs_font
def test_one_small_page_through_the_benchmarks_ocr_path(tmp_path: Path):
    paras = [(src, text, 2) for src, text in bench.paragraphs()][:2]
    page, _ = bench.draw_page(paras, 1, size=(1000, 420), margin=(60, 60))
    [clean] = bench.run_images([page], ["clean"], log=lambda m: None)
    assert clean["chars"] == len(bench.strip_ws(page.text)) > 40
    assert clean["cer"] < 0.1, clean["text"]
    heavy = bench.downscale(bench.blur(bench.noise(page.image, 80.0, seed=1), 3.0), 0.35)
    text, _ = bench.read_text(heavy)
    assert bench.cer(page.text, text) > clean["cer"]
    # the same page as an image-only PDF through the loader
    pdf = bench.run_pdf([page], "clean", log=lambda m: None)
    assert pdf["ocr_pages"] == [1] and pdf["rows"][0]["cer"] < 0.1
    agg = bench.aggregate([clean])
    assert agg["pages"] == 1 and agg["cer"] == clean["cer"]
