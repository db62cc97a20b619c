"""Concurrent users: 20 chat sessions at once against the running app, during an upload.

`python app.py` runs in a subprocess over a copy of the session's corpus index. Twenty
threads each open their own `gradio_client.Client` (so their own session and `gr.State`)
and ask three questions: a question from the corpus QA set, a follow-up that only makes
sense with that session's own history, and a second question. Meanwhile another client
uploads a document, which is embedded and swapped in while the chats go on, and then
asks about it.

Checked: no request fails; every answer to a QA question contains its gold answer; each
follow-up is rewritten from its own session's previous question; each session's chat
holds its own three turns and nothing else; the uploaded document is answerable. The
latency of every chat request (queueing included) is recorded and its p95 printed.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from conftest import listening_addresses, running_app

from rag.read.followup import carry_over

gradio_client = pytest.importorskip("gradio_client")

REPO = Path(__file__).resolve().parent.parent
N_SESSIONS = 20
FOLLOW_UP = "那还有呢？"
LOAD_BOUND_S = 300  # the whole load, on a busy 2-core machine; ~60 s when quiet
P95_BOUND_S = 60.0
UPLOAD_NAME = "青岚湖治理报告.txt"
UPLOAD_TEXT = "青岚湖治理工作报告\n青岚湖水质监测站于2021年建成，共设有17个监测点位。\n" + "".join(
    f"第{i}项工作：沿湖第{i}段岸线完成生态修复，种植水生植物{i * 3}千平方米，清理淤泥{i}万立方米。\n"
    for i in range(1, 31)
)
UPLOAD_Q = "青岚湖水质监测站共设有多少个监测点位？"

pytestmark = pytest.mark.slow


def plain(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


@pytest.fixture(scope="module")
def qa_pool(corpus_system) -> list[tuple[str, list[str]]]:
    """QA questions the extractive answerer gets right in-process: the app must too."""
    rows = [
        json.loads(line)
        for line in (REPO / "eval" / "datasets" / "corpus_qa.jsonl").read_text("utf-8").splitlines()
        if line.strip()
    ]
    pool = []
    for r in rows:
        if not r.get("answerable") or len(pool) >= N_SESSIONS + 4:
            continue
        if carry_over(r["question"], "上一个问题是什么？") != r["question"]:
            continue  # reads as a follow-up ("这几年……"): its answer depends on the turn before
        ans = corpus_system.ask(r["question"])
        if not ans.refused and any(a in ans.text for a in r["answers"]):
            pool.append((r["question"], r["answers"]))
    assert len(pool) >= N_SESSIONS, pool  # a first question of its own for every session
    return pool


@pytest.fixture(scope="module")
def app(corpus_settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrent")
    shutil.copytree(corpus_settings.index_path, root / "data" / "index")
    with running_app(["--index", str(root / "data" / "index")], root / "app.log") as served:
        yield {"url": served.url, "port": served.port, "root": root, "log": served.log}


def test_app_listens_on_localhost_by_default(app):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("no /proc/net/tcp here")
    assert listening_addresses(app["port"]) == {"0100007F"}  # 127.0.0.1 only


# --------------------------------------------------------------------------- the load
class Session(threading.Thread):
    def __init__(self, url: str, n: int, questions: list[tuple[str, list[str]]], start):
        super().__init__(name=f"session-{n}", daemon=True)
        self.url, self.n, self.questions, self.start_gate = url, n, questions, start
        self.latencies: list[float] = []
        self.chats: list[list[dict]] = []
        self.error: BaseException | None = None

    def ask(self, client, question: str) -> list[dict]:
        t0 = time.perf_counter()
        chat, box = client.predict(question, api_name="/on_ask")
        self.latencies.append(time.perf_counter() - t0)
        assert box == ""
        return chat

    def run(self) -> None:
        try:
            client = gradio_client.Client(self.url, verbose=False)
            self.start_gate.wait(60)
            (q1, _), (q3, _) = self.questions
            for q in (q1, FOLLOW_UP, q3):
                self.chats.append(self.ask(client, q))
        except BaseException as e:  # reported by the test
            self.error = e


def text_of(message: dict) -> str:
    return "".join(part.get("text", "") for part in message["content"])


def test_twenty_sessions_during_an_upload(app, qa_pool, tmp_path):
    url = app["url"]
    sessions = []
    start = threading.Barrier(N_SESSIONS + 1)
    for i in range(N_SESSIONS):
        pair = [qa_pool[i], qa_pool[(i + 7) % len(qa_pool)]]
        sessions.append(Session(url, i, pair, start))
    for s in sessions:
        s.start()
    upload = tmp_path / UPLOAD_NAME
    upload.write_text(UPLOAD_TEXT, encoding="utf-8")
    uploader = gradio_client.Client(url, verbose=False)
    up: dict = {}

    def do_upload():
        try:
            t0 = time.perf_counter()
            out = uploader.predict([gradio_client.handle_file(str(upload))], api_name="/on_upload")
            up["seconds"] = time.perf_counter() - t0
            up["result"] = out[0]
            up["answer"] = uploader.predict(UPLOAD_Q, api_name="/on_ask")[0]
        except BaseException as e:
            up["error"] = e

    t0 = time.perf_counter()
    start.wait(120)  # every client is connected: go
    writer = threading.Thread(target=do_upload, daemon=True)
    writer.start()
    for s in sessions:
        s.join(max(1.0, LOAD_BOUND_S - (time.perf_counter() - t0)))
    writer.join(max(1.0, LOAD_BOUND_S - (time.perf_counter() - t0)))
    elapsed = time.perf_counter() - t0
    assert not any(s.is_alive() for s in sessions) and not writer.is_alive(), (
        f"not finished in {LOAD_BOUND_S} s"
    )

    errors = [(s.n, repr(s.error)) for s in sessions if s.error] + (
        [("upload", repr(up["error"]))] if "error" in up else []
    )
    assert not errors, errors
    latencies = sorted(x for s in sessions for x in s.latencies)
    assert len(latencies) == 3 * N_SESSIONS
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(
        f"\n{N_SESSIONS} sessions x 3 questions during an upload: {len(latencies)} requests, "
        f"0 errors, {elapsed:.1f} s in all; latency median {latencies[len(latencies) // 2]:.2f} s, "
        f"p95 {p95:.2f} s, max {latencies[-1]:.2f} s; upload indexed in {up['seconds']:.1f} s"
    )

    for s in sessions:
        (q1, gold1), (q3, gold3) = s.questions
        final = s.chats[-1]
        # its own three turns, in order, and nothing from any other session
        users = [plain(text_of(m)) for m in final if m["role"] == "user"]
        assert users == [q1, FOLLOW_UP, q3], (s.n, users)
        assert [m["role"] for m in final] == ["user", "assistant"] * 3
        answers = [text_of(m) for m in final if m["role"] == "assistant"]
        assert not any("rag-error" in a for a in answers), (s.n, answers)
        for answer, gold in ((answers[0], gold1), (answers[2], gold3)):
            body = plain(answer.split('<div class="rag-cites')[0])
            assert any(g in body for g in gold), (s.n, gold, body)
            assert "rag-refusal" not in answer
        # the follow-up was read in the light of this session's own first question
        rewritten = re.search(r'<div class="rag-rewritten">↻ 理解为：(.*?)</div>', answers[1])
        assert rewritten and html.unescape(rewritten.group(1)) == carry_over(FOLLOW_UP, q1), s.n
        assert [len(c) for c in s.chats] == [2, 4, 6]  # each reply held only this session's chat

    assert "已添加" in up["result"] and UPLOAD_NAME in up["result"], up["result"]
    answer = text_of(up["answer"][-1])
    assert "17" in plain(answer.split('<div class="rag-cites')[0]), answer
    assert "青岚湖治理报告" in plain(answer)  # cited by the title the upload gave it
    assert p95 < P95_BOUND_S, f"p95 {p95:.1f} s"
    stored = list((app["root"] / "data" / "uploads").iterdir())
    assert any(p.name.endswith("__青岚湖治理报告.txt") for p in stored), stored
