"""The LLM-vs-extractive report (rag/eval/bench/llm_report.py) on rows written here:
answers rescored from their text, RGB items all required, the reader's refusal as a gate."""

from __future__ import annotations

import json

import pytest

from rag.eval.bench.llm_report import main
from rag.read.extractive import REFUSAL


def _llm(qid, answer, raw, shown="llm", refused=False):
    return {
        "id": qid, "answer": answer, "raw": raw, "shown": shown, "refused": refused,
        "cited_sentences": 1, "valid_citations": 1, "sentences": 1, "supported": 1,
        "first_token_ms": 2000.0, "total_ms": 3000.0, "tokens": 10, "tokens_per_s": 5.0,
    }  # fmt: skip


def _ext(qid, answer, refused=False):
    return {"id": qid, "answer": answer, "shown": "extractive", "refused": refused,
            "supported": 1, "sentences": 1, "total_ms": 20.0}  # fmt: skip


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def test_the_report_rescores_pairs_and_gates(tmp_path):
    qs = [
        {"id": "a", "question": "谁？", "answers": ["张丹"], "answerable": True,
         "answer_items": [["张丹"], ["张昊"]]},
        {"id": "b", "question": "多少？", "answers": ["156亿元"], "answerable": True},
        {"id": "c", "question": "何时？", "answers": [], "answerable": False},
        {"id": "d", "question": "哪里？", "answers": [], "answerable": False},
        {"id": "e", "question": "哪几家？", "answers": ["甲院", "乙院"], "answerable": True,
         "type": "list"},
    ]  # fmt: skip
    _write(tmp_path / "q.jsonl", qs)
    runs = tmp_path / "runs"
    runs.mkdir()
    _write(
        runs / "s.extractive.jsonl",
        [_ext("a", "张丹与张昊[1]"), _ext("b", "156亿元[1]"), _ext("c", "2023年[1]"),
         _ext("d", REFUSAL, refused=True), _ext("e", "甲院[1]")],
    )  # fmt: skip
    _write(
        runs / "s.qwen.jsonl",
        [_llm("a", "张丹[1]", "张丹[1]"), _llm("b", "156亿元[1]", "156亿元[1]"),
         _llm("c", REFUSAL, REFUSAL, "refusal", True), _llm("d", REFUSAL, REFUSAL, "refusal", True),
         _llm("e", "甲院[1]、乙院[2]", "甲院[1]、乙院[2]")],
    )  # fmt: skip
    out = tmp_path / "rep"
    assert main([str(runs), "--set", f"s={tmp_path / 'q.jsonl'}", "--out", str(out)]) == 0
    m = json.loads((out / "sets.json").read_text("utf-8"))["sets"]["s"]
    assert (m["answerable"], m["unanswerable"]) == (3, 2)
    assert m["extractive"]["containment"] == 1.0
    assert m["llm"]["containment"] == pytest.approx(2 / 3)  # RGB: 张丹 alone misses 张昊
    assert m["paired"]["containment"]["diff"] == pytest.approx(-1 / 3)
    assert (m["lists"]["items_extractive"], m["lists"]["items_llm"]) == (0.5, 1.0)
    assert m["extractive"]["refusal_unanswerable"] == 0.5
    assert m["gated"]["refusal_unanswerable"] == 1.0  # the reader refused c as well
    assert m["gated"]["false_refusal"] == 0.0
    assert "| containment, extractive | 1.00 |" in (out / "sets.md").read_text("utf-8")
