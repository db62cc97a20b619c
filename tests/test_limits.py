"""Serving limits and what users see of failures (issue 26, findings 6 and 7).

Each limit refuses with a Chinese sentence and changes nothing: question length, feedback
comment size (and the feedback file rotates), uploads per user and through the upload
route, Gradio's temporary copies (kept briefly, deleted with their document), a large
upload no longer holds the write slot while it is embedded, failed logins wait. No raw
exception text and no absolute server path reaches a user.
"""

from __future__ import annotations

import shutil
import threading
import time

import pytest
from conftest import running_app

from rag.config import Settings
from rag.errors import IndexStoreError
from rag.serve.feedback import Feedback, append_feedback, feedback_files, read_feedback
from rag.serve.limits import LimitError, RateLimiter, check_question, login_checker
from rag.serve.public import hide_paths, public_error
from rag.serve.ui.handlers import ChatState
from rag.serve.ui.library import Library, purge_temp_copies, store_upload

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")

LAKE = "青岚湖治理报告\n青岚湖水质监测站于2021年建成，共设有17个监测点位。\n"


@pytest.fixture
def library(corpus_settings, embedder, tmp_path):
    from rag.system import load_system

    index = tmp_path / "data" / "index"
    shutil.copytree(corpus_settings.index_path, index)
    system = load_system(corpus_settings.replace(index_dir=str(index)), embedder=embedder)
    temp = tmp_path / "data" / "gradio-tmp"
    temp.mkdir()
    return Library(system, tmp_path / "data" / "uploads", tmp_path / "data" / "fb.jsonl", temp)


# --------------------------------------------------------------------------- questions
def test_a_question_over_the_limit_is_refused_before_any_work(library):
    st = ChatState(library, library.settings)
    long = "崂山" * 1_000_000  # 2M characters
    t0 = time.process_time()
    messages = list(st.respond(long))[-1]
    assert time.process_time() - t0 < 1.0  # nothing was searched or segmented
    assert "问题太长（2000000 字）" in messages[-1]["content"]
    assert len(messages[0]["content"]) < 1000  # only a preview is sent back
    assert st.answers == [] and len(st.history) == 0
    with pytest.raises(LimitError, match="2000 字以内"):
        check_question("字" * 2001, Settings())
    check_question("字" * 2000, Settings())


# --------------------------------------------------------------------------- feedback
def test_comments_are_capped_and_feedback_rotates(library):
    library.settings = library.settings.replace(feedback_max_mb=0.01, feedback_keep=2)
    st = ChatState(library, library.settings)
    list(st.respond("崂山区2023年计划完成投资多少？"))
    st.feedback(1, "up")
    with pytest.raises(LimitError, match="说明太长"):
        st.comment("长" * 1001)
    assert st.pending is not None  # the rating still waits for a shorter comment
    st.comment("引用准确")
    for _ in range(40):  # each record holds the answer and its passages: a few KB
        st.feedback(1, "down")
    files = feedback_files(library.feedback_path)
    assert [f.name for f in files] == ["fb.jsonl.2", "fb.jsonl.1", "fb.jsonl"]
    assert all(f.stat().st_size <= 0.01 * 2**20 for f in files)
    rows = read_feedback(library.feedback_path, latest_only=False)
    assert rows and all(r.rating == "down" for r in rows)  # the oldest were dropped


def test_rotation_keeps_every_line_whole(tmp_path):
    path = tmp_path / "fb.jsonl"
    rec = Feedback(
        id="x",
        time="t",
        rating="up",
        question="问" * 100,
        answer="答",
        refused=False,
        citations=[],
        settings={},
    )
    for _ in range(200):
        append_feedback(path, rec, max_bytes=4000, keep=3)
    assert len(feedback_files(path)) == 4
    assert all(r.question == "问" * 100 for r in read_feedback(path, latest_only=False))


# --------------------------------------------------------------------------- uploads
def test_the_rate_limiter_counts_files_and_size_per_key():
    lim = RateLimiter(max_events=3, max_amount=10.0, window_s=0.5)
    assert lim.allow("a", 2, 4.0) and not lim.allow("a", 2, 1.0)  # 4 files > 3
    assert not lim.allow("a", 1, 7.0)  # 11 MB > 10
    assert lim.allow("a", 1, 6.0) and lim.allow("b", 3, 10.0)
    time.sleep(0.6)
    assert lim.allow("a", 3, 10.0)  # a new window
    assert "最多 3 个文件" in lim.message() and "共 10 MB" in lim.message()


def test_a_removed_uploads_temporary_copies_go_with_it(library, tmp_path):
    temp = library.temp_dir
    copy = temp / "4f1a" / "灯塔.txt"  # how Gradio keeps an upload: a folder per file
    copy.parent.mkdir()
    copy.write_text(LAKE, encoding="utf-8")
    other = temp / "9b2c" / "other.txt"
    other.parent.mkdir()
    other.write_text("另一份文件。", encoding="utf-8")
    [added] = library.add_files([(copy, "灯塔.txt")], user="alice")
    assert added.status == "added" and copy.exists()
    library.remove([added.doc_id])
    assert not copy.exists() and not copy.parent.exists() and other.exists()
    # and the function alone
    stored = store_upload(other, "other.txt", tmp_path / "u", 2**20)
    assert purge_temp_copies(temp, stored) == 1 and not other.exists()


def test_a_large_upload_does_not_hold_the_write_slot_while_it_is_embedded(library, tmp_path):
    """The upload's passages are embedded outside the index's write lock: a removal asked
    for meanwhile is done at once, and the upload is written after."""
    embedder = library.system.embedder
    embedding, go_on = threading.Event(), threading.Event()
    real = embedder.embed_passages

    def gated(texts, show_progress=False):  # the real model, held until the test says
        embedding.set()
        go_on.wait(120)
        return real(texts, show_progress=show_progress)

    big = tmp_path / "big.txt"
    big.write_text("城市更新报告\n" + "青岚湖水质监测站共设有17个监测点位。" * 40, encoding="utf-8")
    doomed = tmp_path / "doomed.txt"
    doomed.write_text("东港灯塔始建于1907年。\n", encoding="utf-8")
    [d] = library.add_files([(doomed, "doomed.txt")])
    embedder.embed_passages = gated
    uploaded: list = []
    worker = threading.Thread(target=lambda: uploaded.extend(library.add_files([(big, "big.txt")])))
    try:
        worker.start()
        assert embedding.wait(60), "the upload never reached its embedding"
        removal = threading.Thread(target=lambda: library.remove([d.doc_id]))
        removal.start()
        removal.join(30)
        assert not removal.is_alive(), "the removal waited for the upload's embedding"
        assert d.doc_id not in library.index.docs and worker.is_alive()
    finally:
        go_on.set()
        embedder.embed_passages = real
        worker.join(120)
    assert [r.status for r in uploaded] == ["added"], uploaded
    assert uploaded[0].doc_id in library.index.docs and d.doc_id not in library.index.docs


# --------------------------------------------------------------------------- failures
def test_users_see_no_raw_exception_and_no_server_path():
    err = IndexStoreError("/srv/rag/data/index: locked by another process; try again")
    assert public_error(err) == "index: locked by another process; try again"
    shown = public_error(KeyError("/srv/rag/secret.txt"))
    assert "KeyError" not in shown and "/srv" not in shown and "编号" in shown
    assert (
        hide_paths("http://127.0.0.1:8000/v1 与 /a/b/c.pdf") == "http://127.0.0.1:8000/v1 与 c.pdf"
    )


def test_failed_logins_wait_one_at_a_time():
    import asyncio

    check = login_checker({"alice": "pw-Correct-1"}, delay_s=0.3)

    async def tries():
        t0 = time.monotonic()
        bad = await asyncio.gather(*(check("alice", f"guess{i}") for i in range(5)))
        took = time.monotonic() - t0
        good = await check("alice", "pw-Correct-1")
        return bad, took, good

    bad, took, good = asyncio.run(tries())
    assert bad == [False] * 5 and good is True
    assert took >= 5 * 0.3 * 0.9  # serialised: five waits in a row, not in parallel


# --------------------------------------------------------------------------- the app
@pytest.mark.slow
def test_the_app_enforces_the_limits_through_its_routes(corpus_settings, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(corpus_settings.index_path, data / "index")
    config = tmp_path / "rag.toml"
    config.write_text(
        "uploads_per_hour = 3\nupload_mb_per_hour = 5.0\nupload_temp_keep_s = 3\n"
        "login_delay_s = 0.5\nmax_file_mb = 1.0\n",
        encoding="utf-8",
    )
    user, password = "bob", "pw-Limits-2468"
    args = ["--index", str(data / "index"), "--config", str(config), "--auth", f"{user}:{password}"]
    with running_app(
        args, tmp_path / "app.log", {"RAG_AUTH": None, "GRADIO_TEMP_DIR": None}
    ) as app:
        # failed logins: about two tries a second at most, the right password still works
        with httpx.Client(base_url=app.url, timeout=30) as s:
            t0 = time.monotonic()
            for i in range(4):
                r = s.post("login", data={"username": user, "password": f"wrong{i}"})
                assert r.status_code == 400
            assert time.monotonic() - t0 >= 4 * 0.5 * 0.9
            assert s.post("login", data={"username": user, "password": password}).status_code == 200
            # the upload route: three files an hour, then a Chinese 429
            codes = []
            for i in range(5):
                r = s.post(
                    "gradio_api/upload", files={"files": (f"f{i}.txt", f"文件{i}。".encode())}
                )
                codes.append(r.status_code)
            assert codes[:3] == [200] * 3 and codes[3:] == [429, 429], codes
            assert "上传过于频繁" in r.json()["detail"]
        # files posted to the route are deleted after upload_temp_keep_s (here 3 s)
        temp = data / "gradio-tmp"
        posted = [p for p in temp.rglob("f*.txt")]
        assert posted
        deadline = time.monotonic() + 30
        while any(p.exists() for p in posted) and time.monotonic() < deadline:
            time.sleep(1)
        assert not any(p.exists() for p in posted)
        # a crafted like event gets a Chinese line, not an exception text
        client = gradio_client.Client(app.url, auth=(user, password), verbose=False)
        long = client.predict("字" * 5000, api_name="/on_ask")[0]
        text = "".join(p.get("text", "") for p in long[-1]["content"])
        assert "问题太长（5000 字）" in text
        # the page (its config holds the info line) names no server path
        import json

        assert str(data) not in json.dumps(client.config, ensure_ascii=False)
