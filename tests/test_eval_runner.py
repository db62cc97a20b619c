"""The evaluation runner, its report, `rag eval compare` and the LLM judge.

Runs use the session's real index of corpus/ and the real embedding model; the judge
talks to a small OpenAI-compatible server on a real local socket.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.eval import metrics as M
from rag.eval.compare import compare_runs, format_comparison
from rag.eval.index_cache import corpus_fingerprint, index_cache_key
from rag.eval.judge import LLMJudge, parse_verdict
from rag.eval.provenance import code_hash
from rag.eval.questions import load_questions
from rag.eval.rows import read_rows
from rag.eval.runner import run_eval
from rag.serve.cli import main

REPO = Path(__file__).resolve().parent.parent
CORPUS_QA = REPO / "eval" / "datasets" / "corpus_qa.jsonl"
PICK = ("cq001", "cq002", "cq004", "cq013", "cq030", "cq059", "cq060", "cq065")


def quiet(**kw):
    return {"progress": False, "log": lambda m: None, "plots": False, **kw}


@pytest.fixture(scope="module")
def qfile(tmp_path_factory) -> Path:
    """Eight questions of corpus_qa.jsonl, answerable and unanswerable."""
    rows = [json.loads(x) for x in CORPUS_QA.read_text(encoding="utf-8").splitlines()]
    chosen = [r for r in rows if r["id"] in PICK]
    assert len(chosen) == len(PICK)
    path = tmp_path_factory.mktemp("qa") / "questions.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen), "utf-8")
    return path


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, qfile, corpus_settings, embedder):
    out = tmp_path_factory.mktemp("runs") / "base"
    summary = run_eval(
        qfile,
        out,
        corpus_settings,
        corpus=REPO / "corpus",
        index_dir=corpus_settings.index_path,
        embedder=embedder,
        **quiet(plots=True),
    )
    return summary


# ---------------------------------------------------------------- questions


def test_load_questions_names_file_and_line(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text(
        '{"id": "a", "question": "崂山区有多少项目？", "answers": ["196个"]}\n{"id": "b"}\n',
        "utf-8",
    )
    with pytest.raises(ConfigError, match=r"q\.jsonl:2: .*question"):
        load_questions(p)
    p.write_text('{"id": "a", "question": "x"}\n{"id": "a", "question": "y"}\n', "utf-8")
    with pytest.raises(ConfigError, match=r"q\.jsonl:2: question id 'a' occurs twice"):
        load_questions(p)
    p.write_text(
        '{"id": 7, "question": "x", "answers": ["1"], "answer_items": [["1", "一"], "2"]}\n',
        "utf-8",
    )
    (q,) = load_questions(p)
    assert (q.id, q.answerable, q.answer_items) == ("7", True, (("1", "一"), ("2",)))
    with pytest.raises(ConfigError, match="question file not found"):
        load_questions(tmp_path / "missing")


# ---------------------------------------------------------------- a run


def test_run_writes_rows_metrics_config_report(base_run, qfile):
    out = base_run.out_dir
    assert (base_run.n, base_run.asked, base_run.resumed) == (8, 8, 0)
    rows = read_rows(out / "results.jsonl")
    assert [r["question_id"] for r in rows] == list(PICK)
    for r in rows:
        assert set(r) >= {
            "answer",
            "refused",
            "citations",
            "retrieved_doc_ids",
            "metrics",
            "timings_ms",
        }
        assert r["timings_ms"]["total"] > 0
        # the quote the short answer comes from is kept, so a span rule can be re-scored
        if r["refused"]:
            assert r["first_quote"] is None and r["span"] is None
        else:
            assert r["first_quote"] and r["span"] == (r["short_answer"] or r["first_quote"])
        assert len(r["retrieved_doc_ids"]) == len(set(r["retrieved_doc_ids"])) <= 10
        if r["answerable"]:
            assert r["metrics"]["recall@5"] == M.recall_at_k(
                r["retrieved_doc_ids"], r["gold_doc_ids"], 5
            )
    # The run's metrics are the aggregate of its rows.
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    again = M.aggregate(rows)
    for key in (
        "recall@5",
        "mrr@10",
        "ndcg@10",
        "em",
        "f1",
        "containment",
        "refusal_rate",
        "false_refusal_rate",
        "latency_p50_ms",
    ):
        assert metrics[key] == pytest.approx(again[key])
    assert metrics["n"] == 8 and metrics["n_unanswerable"] == 3
    lo, hi = metrics["ci95"]["recall@5"]
    assert lo <= metrics["recall@5"] <= hi
    assert metrics["recall@5"] >= 0.5  # these questions' documents are easy to find
    assert set(metrics["by_type"]) >= {"unanswerable", "number"}

    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["models"]["embed"].startswith("intfloat/multilingual-e5-small")
    assert config["settings"]["top_k"] == 5
    assert config["dataset"]["n_questions"] == 8
    assert config["versions"]["numpy"] and config["versions"]["python"]
    assert "commit" in config["git"]

    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Metrics" in report and "| recall@5 |" in report and "## By question type" in report
    for png in ("recall_at_k.png", "per_type.png", "latency_hist.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({png})" in report


def test_interrupted_run_resumes_without_redoing(
    tmp_path, qfile, corpus_settings, embedder, monkeypatch
):
    import rag.eval.runner as runner

    out = tmp_path / "run"
    results = out / "results.jsonl"
    real = runner._answer_all

    def ctrl_c_at_the_third_question(*a, **k):
        # Ctrl-C while the third question is being answered, at a fixed point: a watcher
        # thread calling interrupt_main() raced the run, which on a fast machine finished
        # all eight questions first
        for i, row in enumerate(real(*a, **k)):
            if i == 2:
                raise KeyboardInterrupt
            yield row

    kw = dict(corpus=REPO / "corpus", index_dir=corpus_settings.index_path, embedder=embedder)
    monkeypatch.setattr(runner, "_answer_all", ctrl_c_at_the_third_question)
    with pytest.raises(KeyboardInterrupt):
        run_eval(qfile, out, corpus_settings, **kw, **quiet())
    monkeypatch.setattr(runner, "_answer_all", real)
    before = results.read_bytes().splitlines(keepends=True)
    assert len(before) == 2  # the rows finished before the interruption are on disk
    # A crash mid-write leaves half a line behind: it is dropped, not misread.
    with open(results, "ab") as f:
        f.write(before[-1][:40])

    summary = run_eval(qfile, out, corpus_settings, **kw, **quiet())
    assert (summary.resumed, summary.asked) == (len(before), 8 - len(before))
    after = results.read_bytes().splitlines(keepends=True)
    assert len(after) == 8
    assert after[: len(before)] == before  # the finished rows (and their timings) are kept

    started = json.loads((out / "config.json").read_text(encoding="utf-8"))["started"]
    again = run_eval(qfile, out, corpus_settings, **kw, **quiet())
    assert (again.asked, again.resumed) == (0, 8)
    # Nothing asked: the report still describes the session that produced the rows.
    assert again.metrics["run"]["report_only"] is True
    assert again.metrics["run"]["asked"] == summary.asked
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["started"] == started


def test_other_configuration_in_out_dir_is_refused(tmp_path, qfile, corpus_settings, embedder):
    out = tmp_path / "run"
    kw = dict(
        corpus=REPO / "corpus", index_dir=corpus_settings.index_path, embedder=embedder, limit=2
    )
    run_eval(qfile, out, corpus_settings, **kw, **quiet())
    with pytest.raises(ConfigError, match=r"another configuration \(settings\.top_k: 5 -> 3\)"):
        run_eval(qfile, out, corpus_settings.replace(top_k=3), **kw, **quiet())
    s = run_eval(qfile, out, corpus_settings.replace(top_k=3), overwrite=True, **kw, **quiet())
    assert (s.asked, s.resumed) == (2, 0)
    # A larger --limit goes on from the rows already there.
    s = run_eval(qfile, out, corpus_settings.replace(top_k=3), **{**kw, "limit": 3}, **quiet())
    assert (s.asked, s.resumed) == (1, 2)
    # Rows written by other retrieval or answering code are not resumed either.
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["git"]["code_sha256"] == code_hash()
    config["git"]["code_sha256"] = "0" * 20
    (out / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ConfigError, match="answering code changed"):
        run_eval(qfile, out, corpus_settings.replace(top_k=3), **kw, **quiet())


def test_index_is_cached_by_corpus_and_settings(tmp_path, embedder, corpus_settings):
    data = tmp_path / "set"
    data.mkdir()
    corpus = [
        {
            "id": "p1",
            "title": "崂山区城市更新",
            "text": "崂山区2023年推进196个城市更新项目，年度计划投资156亿元。",
        },
        {
            "id": "p2",
            "title": "威海管廊",
            "text": "威海累计建成地下综合管廊40.6公里，海绵城市78.6平方公里。",
        },
        {"id": "p3", "title": "西溪湿地", "text": "西溪湿地公园坚持生态优先、最小干预的原则。"},
    ]
    questions = [
        {
            "id": "q1",
            "question": "崂山区2023年推进多少个城市更新项目？",
            "answers": ["196个"],
            "answerable": True,
            "gold_doc_ids": ["p1"],
        },
        {
            "id": "q2",
            "question": "威海建成了多长的地下综合管廊？",
            "answers": ["40.6公里"],
            "answerable": True,
            "gold_doc_ids": ["p2"],
        },
    ]
    for name, recs in (("corpus.jsonl", corpus), ("questions.jsonl", questions)):
        (data / name).write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), "utf-8"
        )
    settings = corpus_settings.replace(cache_dir=str(tmp_path / "unused-cache"))
    kw = dict(index_root=tmp_path / "cache", embedder=embedder, **quiet())

    first = run_eval(data, tmp_path / "r1", settings, **kw)
    assert not first.index.reused and first.index.n_docs == 3
    assert first.index.dir.parent == tmp_path / "cache"
    live = (first.index.dir / "CURRENT").read_text()
    second = run_eval(data, tmp_path / "r2", settings, **kw)
    assert second.index.reused and second.index.dir == first.index.dir
    assert (first.index.dir / "CURRENT").read_text() == live
    assert second.metrics["recall@1"] == 1.0

    def key_of(s, backend=embedder.backend_id):
        return index_cache_key(data / "corpus.jsonl", s, embedder.model_id, backend)

    key = key_of(settings)
    assert first.index.key == key
    assert key_of(settings.replace(chunk_size=200)) != key
    assert key_of(settings.replace(top_k=9)) == key  # a search setting: same index
    assert key_of(settings, "torch" if embedder.backend_id != "torch" else "onnx-int8") != key
    before = corpus_fingerprint(data)
    (data / "corpus.jsonl").write_text((data / "corpus.jsonl").read_text("utf-8") + "\n", "utf-8")
    assert corpus_fingerprint(data) != before


# ---------------------------------------------------------------- compare and CLI


def test_compare_lists_changes_and_paired_intervals(
    tmp_path, base_run, qfile, corpus_settings, embedder
):
    strict = corpus_settings.replace(refusal_threshold=0.999)  # refuses (nearly) everything
    b = run_eval(
        qfile,
        tmp_path / "strict",
        strict,
        corpus=REPO / "corpus",
        index_dir=corpus_settings.index_path,
        embedder=embedder,
        **quiet(),
    )
    c = compare_runs(base_run.out_dir, b.out_dir)
    assert c.n_common == 8
    assert any("refusal_threshold" in d for d in c.config_diffs)
    correct = next(d for d in c.metrics if d.key == "correct")
    assert correct.a == base_run.metrics["correct"] and correct.b == b.metrics["correct"]
    assert (
        correct.delta_ci is not None and correct.delta_ci[0] <= correct.delta <= correct.delta_ci[1]
    )
    recall = next(d for d in c.metrics if d.key == "recall@5")
    assert recall.delta == 0 and recall.delta_ci == (0.0, 0.0)  # retrieval did not change
    flipped = {x.question_id for x in c.changes if x.kind == "answer"}
    assert flipped, "a near-certain refusal threshold must change some outcome"
    a_rows = {r["question_id"]: r for r in read_rows(base_run.out_dir / "results.jsonl")}
    b_rows = {r["question_id"]: r for r in read_rows(b.out_dir / "results.jsonl")}
    assert all(a_rows[q]["refused"] != b_rows[q]["refused"] for q in flipped)
    text = format_comparison(c)
    assert "correct" in text and "Outcome changed on" in text
    assert next(iter(flipped)) in text


def test_cli_run_compare_and_errors(tmp_path, base_run, qfile, corpus_settings, capsys):
    out = tmp_path / "cli"
    code = main(
        [
            "eval",
            "run",
            str(qfile),
            "--corpus",
            str(REPO / "corpus"),
            "--index",
            str(corpus_settings.index_path),
            "--out",
            str(out),
            "--limit",
            "2",
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "2 questions (2 asked, 0 resumed)" in captured.out
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["command"] == (
        f"rag eval run {qfile} --corpus {REPO / 'corpus'} --index {corpus_settings.index_path} "
        f"--limit 2 --out {out}"
    )
    assert (out / "report.md").exists()

    assert main(["eval", "compare", str(base_run.out_dir), str(out)]) == 0
    text = capsys.readouterr().out
    assert "questions: 2 in both, 6 only in A" in text
    assert main(["eval", "table", str(base_run.out_dir), str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| run | questions | recall@5 |") and len(table) == 4
    assert table[2].startswith("| base | 8 (3 unans.) |")

    assert (
        main(
            [
                "eval",
                "run",
                str(tmp_path / "nope.jsonl"),
                "--corpus",
                str(REPO / "corpus"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "nope.jsonl: question file not found" in capsys.readouterr().err
    assert main(["eval", "run", str(qfile), "--quiet"]) == 2  # no corpus beside it
    assert "--corpus" in capsys.readouterr().err
    assert main(["eval", "compare", str(tmp_path), str(out)]) == 2
    assert "not an evaluation run" in capsys.readouterr().err


# ---------------------------------------------------------------- the judge


class _ChatServer(ThreadingHTTPServer):
    """A minimal OpenAI chat-completions server: `reply(request_body) -> content`."""

    def __init__(self, reply):
        super().__init__(("127.0.0.1", 0), _ChatHandler)
        self.reply = reply
        self.requests: list[dict] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _ChatHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(
            {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
        )
        content = self.server.reply(body)
        data = json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def grading_reply(body: dict) -> str:
    """A stand-in grader: correct when a reference answer occurs in the graded answer."""
    user = body["messages"][-1]["content"]
    refs = user.split("Reference answers: ", 1)[1].split("\n", 1)[0]
    answer = user.split("Answer to grade: ", 1)[1]
    correct = None if refs == "(none)" else any(r in answer for r in refs.split(" / "))
    return json.dumps(
        {"faithfulness": 1.0, "correct": correct, "reason": "参考答案比对"}, ensure_ascii=False
    )


@pytest.fixture()
def chat_server():
    servers = []

    def start(reply):
        srv = _ChatServer(reply)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_judge_over_a_real_socket(chat_server):
    pytest.importorskip("llama_index.llms.openai_like")
    srv = chat_server(grading_reply)
    judge = LLMJudge("grader-1", srv.base_url, api_key="k-123")
    v = judge.judge("崂山区推进多少个项目？", "共196个项目[1]", ["……196个重点项目……"], ["196个"])
    assert (v.faithfulness, v.correct, v.error) == (1.0, True, None)
    v = judge.judge("崂山区推进多少个项目？", "共200个项目[1]", ["……196个……"], ["196个"])
    assert v.correct is False
    req = srv.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "grader-1" and req["body"]["temperature"] == 0
    assert req["body"]["response_format"] == {"type": "json_object"}
    assert req["auth"] == "Bearer k-123"
    assert judge.model_id == f"grader-1 @ {srv.base_url}"


def test_judge_never_reads_yes_from_free_text(chat_server):
    replies = iter(
        ["Yes, the answer is correct and faithful.", '{"faithfulness": "high", "correct": "yes"}']
    )
    srv = chat_server(lambda body: next(replies))
    v = LLMJudge("g", srv.base_url, retries=1).judge("q", "a", ["p"], ["a"])
    assert (
        v.correct is None and v.faithfulness is None and "faithfulness must be a number" in v.error
    )
    assert len(srv.requests) == 2  # retried once, then gave up
    assert (
        parse_verdict('```json\n{"faithfulness": 0.5, "correct": false}\n```').faithfulness == 0.5
    )
    assert parse_verdict("yes").error and parse_verdict('{"faithfulness": true}').error


def test_judge_unreachable_is_an_error_verdict():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.server_close()  # nothing listens there now
    v = LLMJudge("g", url, retries=0, timeout_s=5).judge("q", "a", [], None)
    assert v.faithfulness is None and "judge g at" in v.error


def test_run_with_judge_records_verdicts(tmp_path, chat_server, qfile, corpus_settings, embedder):
    srv = chat_server(grading_reply)
    judge = LLMJudge("grader-1", srv.base_url)
    s = run_eval(
        qfile,
        tmp_path / "judged",
        corpus_settings,
        corpus=REPO / "corpus",
        index_dir=corpus_settings.index_path,
        embedder=embedder,
        judge=judge,
        limit=4,
        workers=2,
        **quiet(),
    )
    rows = read_rows(s.out_dir / "results.jsonl")
    assert [r["question_id"] for r in rows] == list(PICK[:4])  # question order, not finishing order
    judged = [r for r in rows if not r["refused"]]
    assert judged and all(r["judge"]["error"] is None for r in judged)
    assert len(srv.requests) == len(judged)
    for r in judged:
        if r["answerable"]:
            assert r["judge"]["correct"] == any(a in r["answer"] for a in r["answers"])
        else:
            assert r["judge"]["correct"] is None
    assert s.metrics["judge_faithfulness"] == 1.0 and s.metrics["judge_errors"] == 0
    config = json.loads((s.out_dir / "config.json").read_text(encoding="utf-8"))
    assert config["models"]["judge"] == f"grader-1 @ {srv.base_url}"


# ---------------------------------------------------------------- --limit's small corpus


def test_limit_indexes_own_documents_plus_distractors(tmp_path, embedder, corpus_settings, capsys):
    data = tmp_path / "set"
    data.mkdir()
    texts = [
        "崂山区2023年推进196个城市更新项目，年度计划投资156亿元。",
        "威海累计建成地下综合管廊40.6公里，海绵城市78.6平方公里。",
        "西溪湿地公园坚持生态优先、最小干预的原则。",
        "青岛地铁1号线全长60公里，共设车站41座。",
        "烟台市2022年接待游客8000万人次。",
        "济南趵突泉景区2023年游客量增长三成。",
    ]
    corpus = [{"id": f"p{i + 1}", "title": "", "text": t} for i, t in enumerate(texts)]
    questions = [
        {"id": "q1", "question": "崂山区2023年推进多少个城市更新项目？", "answers": ["196个"],
         "answerable": True, "gold_doc_ids": ["p1"]},
        {"id": "q2", "question": "", "answers": ["x"], "answerable": True, "gold_doc_ids": ["p2"]},
        {"id": "q3", "question": "威海建成了多长的地下综合管廊？", "answers": ["40.6公里"],
         "answerable": True, "gold_doc_ids": ["p2"]},
        {"id": "q4", "question": "西溪湿地的门票多少钱？", "answers": [], "answerable": False,
         "gold_doc_ids": [], "context_doc_ids": ["p3"]},
        {"id": "q5", "question": "青岛地铁1号线多长？", "answers": ["60公里"], "answerable": True,
         "gold_doc_ids": ["p4"]},
    ]  # fmt: skip
    for name, recs in (("corpus.jsonl", corpus), ("questions.jsonl", questions)):
        (data / name).write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs), "utf-8"
        )
    (data / "meta.json").write_text(
        json.dumps({"kind": "cmrc", "source": "x.json", "skipped_total": 1,
                    "skipped": {"empty question": 1}}),
        "utf-8",
    )  # fmt: skip
    kw = dict(index_root=tmp_path / "cache", embedder=embedder, **quiet(plots=True))
    s = run_eval(data, tmp_path / "small", corpus_settings, limit=3, distractors=1, **kw)
    # q2's empty question is skipped, not fatal: the first three valid ones are asked
    assert s.n == 3 and [r["question_id"] for r in read_rows(s.out_dir / "results.jsonl")] == [
        "q1",
        "q3",
        "q4",
    ]
    sample = [
        json.loads(x) for x in (s.out_dir / "corpus.sample.jsonl").read_text("utf-8").splitlines()
    ]
    ids = [r["id"] for r in sample]
    assert {"p1", "p2", "p3"} < set(ids) and len(ids) == 4 and ids == sorted(ids)  # corpus order
    assert s.index.n_docs == 4
    config = json.loads((s.out_dir / "config.json").read_text(encoding="utf-8"))
    assert config["corpus_sample"]["own"] == 3 and config["corpus_sample"]["distractors"] == 1
    assert config["dataset"]["skipped_questions"] == [
        {"where": "questions.jsonl:2", "reason": "not a valid question (empty question)"}
    ]
    report = (s.out_dir / "report.md").read_text(encoding="utf-8")
    assert "`--limit 3` indexed a small corpus: the 3 documents the asked questions name" in report
    assert "plus 1 distractors, 4 of the 6 records" in report
    assert "left out 1 record(s): empty question: 1" in report
    assert "questions.jsonl:2: not a valid question (empty question)" in report
    assert (s.out_dir / "report.html").read_text(encoding="utf-8").count("<tr data-outcome=") == 3

    # the same run again: the same small corpus, so the cached index is reused
    capsys.readouterr()
    again = run_eval(
        data,
        tmp_path / "small2",
        corpus_settings,
        limit=3,
        distractors=1,
        **{**kw, "progress": True},
    )
    assert again.index.reused and again.index.dir == s.index.dir
    # the progress line has the rate and the time left: "eval: 100%|...| 3/3 [00:01<00:00, 1.9q/s]"
    assert re.search(r"eval: .*\| 3/3 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+q/s\]", capsys.readouterr().err)
    # a larger --limit in the same folder is another corpus: refused, and says why
    with pytest.raises(ConfigError, match="another --limit is another corpus"):
        run_eval(data, tmp_path / "small", corpus_settings, limit=4, distractors=1, **kw)
    # ... and leaves that run's files as they were
    assert (s.out_dir / "corpus.sample.jsonl").read_text("utf-8").count("\n") == 4
    whole = run_eval(data, tmp_path / "whole", corpus_settings, limit=3, distractors=None, **kw)
    assert whole.index.n_docs == 6 and not (whole.out_dir / "corpus.sample.jsonl").exists()
