"""Crash safety: ingest processes are killed with SIGKILL at many points, over repeated runs.

A "zygote" subprocess loads the embedding model once and forks one child per ingest run,
so a run costs its own work and not a model load. Each child is a real process running
the real `rag.index.build.ingest`; the test kills it with SIGKILL -- no exception, no `finally`,
no flush -- either after a random delay (seeded) or right after it reports reaching a
write stage (through `crash_hook`, which only reports and may pause; the kill is real).

After every kill the index must load (or say that there is no index yet), be one of the
two states the run went between -- never a mixture -- and be complete: every document's
chunks all present and exactly its text's chunking, vectors equal to the ones a full run
computes for the same chunk, BM25 rows equal to the chunk's tokens. Re-running the ingest
must finish the job. Then two ingests on one index: the second waits for the lock, or
refuses clearly; a writer killed while holding the lock does not block the next one.
"""

from __future__ import annotations

import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rag.config import Settings
from rag.errors import IndexStoreError
from rag.index.hybrid import HybridIndex
from rag.index.segment import tokenize
from rag.index.versions import current_version
from rag.index.workers import _embed_input
from rag.ingest.chunking import chunk_id, chunk_spans
from rag.textnorm import norm

REPO = Path(__file__).resolve().parent.parent
SEED = 20260801
STARTUP_S = 600  # model load on a busy machine
RUN_S = 300  # one ingest run

pytestmark = pytest.mark.slow

ZYGOTE = r"""
import json, os, sys, time, traceback
from rag.config import Settings
from rag.errors import RagError
from rag.index.build import ingest
from rag.system import make_embedder

base = Settings(**json.loads(sys.argv[1]))
embedder = make_embedder(base)
embedder._model()  # the weights, once; no inference here (OpenMP does not survive a fork)
print(json.dumps({"ready": embedder.model_id}), flush=True)

def child(cmd):
    settings = base.replace(**cmd.get("settings", {}))
    events = open(cmd["events"], "a", buffering=1, encoding="utf-8")
    def hook(stage):
        events.write(f"stage {stage}\n")
        events.flush()
        if stage == cmd.get("pause_at"):
            time.sleep(cmd.get("pause_s", 0.0))
    events.write("start\n")
    try:
        report = ingest(
            cmd["paths"], settings, embedder=embedder, prune=cmd.get("prune", False),
            rebuild=cmd.get("rebuild", False), progress=False,
            log=lambda m: events.write(f"log {m}\n"), crash_hook=hook,
            lock_wait_s=cmd.get("lock_wait_s", 30.0),
        )
        out = {"ok": True, "results": [[r.source, r.status, r.reason] for r in report.results]}
        code = 0
    except RagError as e:
        out, code = {"ok": False, "error": str(e)}, 2
    except BaseException:
        out, code = {"ok": False, "error": traceback.format_exc()}, 3
    with open(cmd["result"], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
    events.write("done\n")
    os._exit(code)

for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "spawn":
        pid = os.fork()
        if pid == 0:
            child(cmd)
        print(json.dumps({"pid": pid}), flush=True)
    elif cmd["op"] == "wait":
        _, status = os.waitpid(cmd["pid"], 0)
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        print(json.dumps({"signal": sig, "code": code}), flush=True)
"""


# --------------------------------------------------------------------------- the zygote
class Zygote:
    """Drives the zygote subprocess: spawn a child ingest, wait for it."""

    def __init__(self, settings: dict, work: Path):
        self.work = work
        self.n = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, json.dumps(settings)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.model_id = self._read(STARTUP_S)["ready"]

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def _read(self, timeout: float) -> dict:
        try:
            return json.loads(self.lines.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"zygote silent for {timeout} s") from None

    def _send(self, obj: dict) -> None:
        self.proc.stdin.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.proc.stdin.flush()

    def spawn(self, paths: list[Path], **kw) -> Child:
        self.n += 1
        events, result = self.work / f"events-{self.n}.txt", self.work / f"result-{self.n}.json"
        self._send(
            {
                "op": "spawn",
                "paths": [str(p) for p in paths],
                "events": str(events),
                "result": str(result),
                **kw,
            }
        )
        return Child(self, self._read(30)["pid"], events, result)

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Child:
    def __init__(self, zygote: Zygote, pid: int, events: Path, result: Path):
        self.z, self.pid, self.events, self.result = zygote, pid, events, result
        self.t0 = time.monotonic()
        self.status: dict | None = None

    def lines(self) -> list[str]:
        try:
            return self.events.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    def stages(self) -> list[str]:
        return [ln.split(" ", 1)[1] for ln in self.lines() if ln.startswith("stage ")]

    def wait_for(self, event: str, timeout: float = RUN_S) -> bool:
        """Poll (every 0.5 ms) until the child reports `event`; False if it ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.lines()
            if event in lines:
                return True
            if "done" in lines:
                return False
            time.sleep(0.0005)
        raise AssertionError(f"child never reported {event!r}: {self.lines()}")

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)  # a zombie (already finished) ignores it

    def wait(self) -> dict:
        if self.status is None:
            self.z._send({"op": "wait", "pid": self.pid})
            self.status = self.z._read(RUN_S)
        return self.status

    @property
    def killed(self) -> bool:
        return self.wait()["signal"] == signal.SIGKILL

    def outcome(self) -> dict:
        return json.loads(self.result.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- checks
def index_state(settings: Settings) -> dict | None:
    """Open the index and check it is complete; return {doc_id: content_hash} and the
    vectors by chunk id, or None when there is no index yet."""
    try:
        idx = HybridIndex.open(settings.index_path, settings)
    except IndexStoreError as e:
        assert "no index here yet" in str(e), e
        return None
    n = len(idx)
    assert n == idx.manifest["n_chunks"] == len(idx.vectors) == len(idx.bm25)
    assert len(idx.docs) == idx.manifest["n_docs"]
    assert set(idx.doc_ids) == set(idx.docs), "chunks of a document the manifest lacks"
    inverse = {j: w for w, j in idx.bm25.vocab.items()}
    tf = idx.bm25.tf
    vectors = idx.vectors.vectors()
    assert np.all(np.isfinite(vectors)) and np.allclose(
        np.linalg.norm(vectors, axis=1), 1, atol=1e-3
    )
    size, overlap = idx.manifest["chunker"]["size"], idx.manifest["chunker"]["overlap"]
    for doc_id, d in idx.docs.items():
        text = idx.document_text(doc_id)
        assert len(text) == d["n_chars"]
        rows = idx.doc_rows(doc_id)
        assert [idx.ids[r] for r in rows] == d["chunk_ids"], doc_id
        spans = chunk_spans(text, size, overlap)
        assert [(idx.starts[r], idx.ends[r]) for r in rows] == [tuple(s) for s in spans], doc_id
        for r in rows:
            c = idx.chunk(r)
            assert c.text == text[c.start : c.end]
            assert c.id == chunk_id(doc_id, c.start, c.end, c.text)
            row = tf.getrow(r)
            got = {inverse[j]: int(v) for j, v in zip(row.indices, row.data, strict=True)}
            want = Counter(tokenize(norm(_embed_input(d["title"], c.text)), normalized=True))
            assert got == dict(want), (doc_id, r)
    return {
        "docs": {k: d["content_hash"] for k, d in idx.docs.items()},
        "vectors": {idx.ids[r]: vectors[r] for r in range(n)},
        "passages": {
            idx.ids[r]: norm(_embed_input(idx.docs[idx.doc_ids[r]]["title"], idx.texts[r]))
            for r in range(n)
        },
    }


def no_leftovers(settings: Settings) -> None:
    names = [p.name for p in settings.index_path.iterdir()]
    assert not [x for x in names if x.startswith(".tmp-")], names
    assert len([x for x in names if x.startswith("v-")]) <= 2, names
    assert current_version(settings.index_path) is not None


# --------------------------------------------------------------------------- fixtures
DOCS_A = {
    "laoshan.txt": "崂山区召开城市更新动员大会。会议部署了196个重点项目，年度计划投资156亿元。"
    "张村河片区安置区今年开工建设，涉及居民三千余户。",
    "weihai.txt": "威海累计建成地下综合管廊40.6公里。海绵城市建设面积78.6平方公里。"
    "精致城市建设专题培训班已经举办了四期。",
    "xixi.md": "# 西溪湿地\n\n西溪湿地公园坚持生态优先、最小干预的原则。湿地内有鸟类一百九十余种。",
    "hangzhou.txt": "杭州钱江新城的地下空间利用很有特色。城市阳台与地铁站点相连，步行十分钟可达。",
    "zhongyuan.txt": "中原城市群干部赴浙江培训，学习数字化改革经验。培训为期七天，共六十人参加。",
    "qinglan.txt": "青岚湖水质监测站于2021年建成，共设有17个监测点位。治理工程总投资3.2亿元。",
}


def apply(folder: Path, changes: dict[str, str | None]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in changes.items():
        if text is None:
            (folder / name).unlink()
        else:
            (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    work = tmp_path_factory.mktemp("zygote")
    z = Zygote({"index_dir": str(work / "unused"), "chunk_size": 40}, work)
    yield z
    z.close()


# --------------------------------------------------------------------------- the kills
def expected_docs(corpus: Path, settings: Settings) -> dict[str, str]:
    """{doc_id: content hash} that a complete `ingest([corpus], prune=True)` leaves."""
    from rag.index.workers import _content_hash, _prepare
    from rag.ingest.discover import discover
    from rag.ingest.loaders import load_file

    out = {}
    for f, root in discover([corpus]):
        for raw in load_file(f, root):
            text, meta = _prepare(raw, settings)
            out[raw.doc_id] = _content_hash(text, meta, settings)
    return out


def mutate(corpus: Path, rng: random.Random, n: int) -> str:
    """One seeded change to the corpus, so that every run has work to do."""
    files = sorted(corpus.iterdir())
    action = rng.choice(["edit", "edit", "add", "delete"] if len(files) > 4 else ["edit", "add"])
    if action == "add":
        (corpus / f"new{n}.txt").write_text(
            f"第{n}批新增文档：青岚湖第{n}号监测点于2023年投入使用。", encoding="utf-8"
        )
        return f"add new{n}"
    target = rng.choice(files)
    if action == "delete":
        target.unlink()
        return f"delete {target.stem}"
    with open(target, "a", encoding="utf-8") as f:
        f.write(f"第{n}次修订补充：相关工作已按计划推进。")
    return f"edit {target.stem}"


STAGES = ["mkdir", "texts", "chunks", "bm25", "vectors", "manifest", "renamed", "swapped"]
N_KILLS = 12  # after the two of the first build


def test_sigkill_at_random_points_never_leaves_a_broken_index(zygote, tmp_path, embedder):
    rng = random.Random(SEED)
    corpus = tmp_path / "corpus"
    settings = Settings(index_dir=str(tmp_path / "index"), chunk_size=40)
    over = {"settings": {"index_dir": settings.index_dir}, "prune": True}
    apply(corpus, DOCS_A)
    seen: list[dict] = []  # every state observed, for the vector check
    log: list[str] = []

    def docs_of(state: dict | None) -> dict | None:
        return None if state is None else state["docs"]

    def kill_run(target: tuple, change: str) -> None:
        before = docs_of(index_state(settings))
        after = expected_docs(corpus, settings)
        kind, arg = target
        if kind == "stage":
            stage, extra = arg
            child = zygote.spawn(
                [corpus], pause_at=stage if extra == 0 else None, pause_s=1.0, **over
            )
            reached = child.wait_for(f"stage {stage}")
            time.sleep(extra)
        else:
            child = zygote.spawn([corpus], **over)
            reached = child.wait_for("start")
            time.sleep(arg)
        child.kill()
        state = index_state(settings)  # loads, and is complete
        where = (["before writing"] + child.stages())[-1]
        log.append(f"{change:>16}: {kind} {arg} -> killed={child.killed}, after {where}")
        assert reached or not child.killed
        assert docs_of(state) in (before, after), log[-1]  # one state or the other, no mix
        if not child.killed:
            assert docs_of(state) == after and child.outcome()["ok"]
        seen.append(state)

    def complete() -> float:
        t0 = time.monotonic()
        child = zygote.spawn([corpus], lock_wait_s=2.0, **over)  # no stale lock
        assert child.wait() == {"signal": 0, "code": 0}, child.outcome()
        elapsed = time.monotonic() - t0
        assert not [r for r in child.outcome()["results"] if r[1] == "failed"]
        no_leftovers(settings)
        state = index_state(settings)
        assert state["docs"] == expected_docs(corpus, settings)
        seen.append(state)
        return elapsed

    # a first build, killed before its version is live: still no index
    for target in [("stage", ("mkdir", 0)), ("stage", ("renamed", 0))]:
        kill_run(target, "first build")
    assert docs_of(seen[-1]) is None and docs_of(seen[-2]) is None
    durations = [complete()]  # how long a whole run takes, to spread the delays over it
    n = 0
    while sum("killed=True" in ln for ln in log) < N_KILLS + 2 and n < 3 * N_KILLS:
        change = mutate(corpus, rng, n)
        if n % 2:
            target = ("stage", (rng.choice(STAGES), rng.choice([0, rng.uniform(0, 0.003)])))
        else:
            target = ("delay", rng.uniform(0.02, 0.9) * min(durations[-3:]))
        t0 = time.monotonic()
        kill_run(target, change)
        if "killed=False" in log[-1]:  # it finished first: a shorter delay next time
            durations.append(time.monotonic() - t0)
        n += 1
    durations.append(complete())  # re-running finishes the job

    # every stored vector is what the model gives for its chunk (with its document's
    # title at the time: a chunk id names the text, not the title)
    vectors: dict[str, list[np.ndarray]] = {}
    for state in filter(None, seen):
        for cid, v in state["vectors"].items():
            vectors.setdefault(state["passages"][cid], []).append(v)
    passages = sorted(vectors)
    fresh = embedder.embed_passages(passages)
    # int8 ONNX (the CPU default) quantises activations with one scale per batch, so a
    # text's vector moves a little with its batch-mates: same model, cosine >= 0.99
    for passage, v in zip(passages, fresh, strict=True):
        for got in vectors[passage]:
            assert float(got @ v) > 0.99, passage

    kills = [ln for ln in log if "killed=True" in ln]
    print(f"\n{len(kills)} SIGKILLs survived in {len(log)} runs:\n  " + "\n  ".join(log))
    assert len(kills) == N_KILLS + 2, log
    where = {ln.rsplit("after ", 1)[1] for ln in kills}
    assert len(where) >= 6, where  # kills landed all over the run


# --------------------------------------------------------------------------- the lock
def test_two_writers_wait_for_each_other_and_lose_nothing(zygote, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    apply(a, {k: DOCS_A[k] for k in ("laoshan.txt", "weihai.txt", "xixi.md")})
    apply(b, {k: DOCS_A[k] for k in ("hangzhou.txt", "zhongyuan.txt", "qinglan.txt")})
    settings = Settings(index_dir=str(tmp_path / "index"), chunk_size=40)
    over = {"settings": {"index_dir": settings.index_dir}, "lock_wait_s": 120.0}
    first, second = zygote.spawn([a], **over), zygote.spawn([b], **over)
    for child in (first, second):
        assert child.wait() == {"signal": 0, "code": 0}, child.outcome()
    waited = [
        c for c in (first, second) if any("another ingest is running" in ln for ln in c.lines())
    ]
    assert waited, "neither writer saw the other holding the lock"
    state = index_state(settings)
    assert set(state["docs"]) == {Path(n).stem for n in DOCS_A}  # no lost update
    no_leftovers(settings)


def test_second_writer_refuses_clearly_and_a_killed_holder_blocks_nobody(zygote, tmp_path):
    corpus = tmp_path / "corpus"
    apply(corpus, {"laoshan.txt": DOCS_A["laoshan.txt"]})
    settings = Settings(index_dir=str(tmp_path / "index"), chunk_size=40)
    over = {"settings": {"index_dir": settings.index_dir}}
    done = zygote.spawn([corpus], **over)
    assert done.wait()["code"] == 0
    before = index_state(settings)

    apply(corpus, {"weihai.txt": DOCS_A["weihai.txt"]})
    holder = zygote.spawn([corpus], pause_at="texts", pause_s=60.0, **over)
    assert holder.wait_for("stage texts")  # holding the lock, half of a version written
    t0 = time.monotonic()
    refused = zygote.spawn([corpus], lock_wait_s=0.5, **over)
    assert refused.wait() == {"signal": 0, "code": 2}
    assert time.monotonic() - t0 < 30
    message = refused.outcome()["error"]
    assert re.fullmatch(
        rf"{re.escape(str(settings.index_path))}: another ingest is still writing this index; "
        "try again when it has finished",
        message,
    ), message
    assert index_state(settings)["docs"] == before["docs"]

    holder.kill()  # SIGKILL while holding the lock: the kernel releases it
    assert holder.killed
    assert index_state(settings)["docs"] == before["docs"]
    t0 = time.monotonic()
    after = zygote.spawn([corpus], lock_wait_s=5.0, **over)
    assert after.wait() == {"signal": 0, "code": 0}, after.outcome()
    assert not any("another ingest is running" in ln for ln in after.lines())
    assert set(index_state(settings)["docs"]) == {"laoshan", "weihai"}
    no_leftovers(settings)  # the killed writer's half-written version is gone


def test_a_folder_is_published_whole_or_not_at_all(tmp_path):
    """rag.fileio.publish_folder, which builds the embedding model and its ONNX export: a
    failed build leaves nothing, an incomplete folder is replaced, and a complete one a
    concurrent build published first is kept."""
    from rag.fileio import publish_folder

    dest = tmp_path / "model"

    def failing(tmp):
        (tmp / "half").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        publish_folder(dest, "DONE", failing)
    assert list(tmp_path.iterdir()) == []

    dest.mkdir()
    (dest / "old").write_text("incomplete")  # no marker: an older, non-atomic copy
    assert publish_folder(dest, "DONE", lambda tmp: (tmp / "DONE").write_text("1"))
    assert sorted(p.name for p in dest.iterdir()) == ["DONE"]

    def racing(tmp):  # another process publishes while this one builds
        (tmp / "DONE").write_text("mine")
        other = tmp_path / "other"
        other.mkdir()
        (other / "DONE").write_text("theirs")
        (other / "x").write_text("y")  # a non-empty dest: the rename fails
        shutil.rmtree(dest)
        other.rename(dest)

    assert publish_folder(dest, "DONE", racing) is False
    assert (dest / "DONE").read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
