"""Upload and serving safety.

- Uploads: only the loader's types and sizes up to `max_file_mb` are accepted; a file is
  stored under a generated name inside the data folder, whatever name the user gave, and
  Gradio's own copy of it lands in the data folder too; a client that names a file on the
  server instead of uploading one is refused.
- Listening: beyond localhost the app refuses to start without a login, and with one it
  serves nothing to a client that has not logged in. (That it listens on 127.0.0.1 by
  default is checked in test_concurrency.py, on the app that test starts.)
- API keys come from the environment and appear nowhere: not in answers, logs, the page's
  config, `--json` output, feedback, the index or the settings.
- Indexes hold no pickle, and loading a tampered index file fails with a clear error.

The app-level tests start `python app.py --host 0.0.0.0 --auth ...` once, with an LLM
setting that points at the scripted server (tests/fake_openai.py), which answers every
request with an error that echoes the key, as a careless real server might.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, listening_addresses, running_app
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.config import Settings
from rag.errors import IndexStoreError, LoadError
from rag.index.hybrid import HybridIndex
from rag.ingest.loaders import SUPPORTED
from rag.serve.ui.library import store_upload

gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")

REPO = Path(__file__).resolve().parent.parent
SECRET = "sk-test-DO-NOT-SHOW-9f8e7d6c5b4a"
USER, PASSWORD = "tester", "pw-Upload-123"
MAX_FILE_MB = 0.05  # 52 KB: small enough to cross with a test file
GENERATED = re.compile(r"[0-9a-f]{16}__[\w.\-]+(\.meta\.json|\.[a-z]+)")

pytestmark = pytest.mark.slow


# --------------------------------------------------------------------------- uploads, unit
@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(
    name=st.one_of(
        st.text(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    "..",
                    "/",
                    "\\",
                    "C:",
                    "~",
                    "%2e%2e%2f",
                    "\x00",
                    " ",
                    "报告",
                    "<script>",
                    ".txt",
                    ".md",
                    ".exe",
                    ".meta.json",
                    "a",
                ]
            ),
            max_size=20,
        ).map("".join),
    )
)
def test_any_upload_name_is_stored_inside_the_uploads_folder(name):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uploads = root / "uploads"
        src = root / "src.bin"
        src.write_text("青岚湖水质监测站于2021年建成。", encoding="utf-8")
        try:
            dest = store_upload(src, name, uploads, 2**20)
        except LoadError as e:
            # refused: only because the name's extension is not a supported type
            assert "不支持的文件类型" in e.reason or "没有扩展名" in e.reason
            assert Path(name.replace("\\", "/")).suffix.lower() not in SUPPORTED
            return
        assert dest.parent.resolve() == uploads.resolve()
        assert GENERATED.fullmatch(dest.name), dest.name
        assert dest.suffix in SUPPORTED and len(dest.name.encode()) < 255
        stored = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        side = dest.with_suffix(".meta.json").name
        assert stored <= {"src.bin", f"uploads/{dest.name}", f"uploads/{side}"}, stored


def test_upload_types_and_sizes(tmp_path):
    uploads = tmp_path / "uploads"
    src = tmp_path / "in.bin"
    src.write_bytes("字".encode() * 1000)  # 3,000 bytes
    for ext in sorted(SUPPORTED):
        assert store_upload(src, f"doc{ext}", uploads, 3000).suffix == ext
    for name in ("tool.exe", "script.py", "page.php", "archive.zip", "noext", ".txt", "x.txt.exe"):
        with pytest.raises(LoadError, match="不支持的文件类型|没有扩展名"):
            store_upload(src, name, uploads, 3000)
    with pytest.raises(LoadError, match=r"文件过大（.* MB，上限 .* MB）"):
        store_upload(src, "big.txt", uploads, 2999)
    assert not [p for p in uploads.iterdir() if p.stem.startswith(("tool", "script", "big"))]


# --------------------------------------------------------------------------- the app
@pytest.fixture(scope="module")
def fake_llm():
    pytest.importorskip("llama_index.llms.openai_like")
    from fake_openai import FakeOpenAI, Reply

    with FakeOpenAI() as srv:
        srv.script(Reply(f"Incorrect API key provided: {SECRET}", kind="status", status=401))
        yield srv


@pytest.fixture(scope="module")
def wide_app(corpus_settings, fake_llm, tmp_path_factory):
    root = tmp_path_factory.mktemp("wide")
    data = root / "data"
    shutil.copytree(corpus_settings.index_path, data / "index")
    config = root / "rag.toml"
    config.write_text(
        f'max_file_mb = {MAX_FILE_MB}\nllm = "openai"\nllm_model = "fake"\n'
        f'llm_base_url = "{fake_llm.base_url}"\nllm_timeout_s = 5.0\nllm_retries = 0\n',
        encoding="utf-8",
    )
    env = {
        "RAG_LLM_API_KEY": SECRET,
        "RAG_AUTH": None,  # the login is the one given on the command line
        "GRADIO_TEMP_DIR": None,  # the app's default: inside the data folder
    }
    args = [
        "--host", "0.0.0.0",
        "--index", str(data / "index"),
        "--config", str(config),
        "--auth", f"{USER}:{PASSWORD}",
    ]  # fmt: skip
    with running_app(args, root / "app.log", env) as app:
        before = {p for p in root.rglob("*")}
        yield {
            "url": app.url,
            "port": app.port,
            "root": root,
            "data": data,
            "log": app.log,
            "before": before,
        }


@pytest.fixture(scope="module")
def client(wide_app):
    return gradio_client.Client(wide_app["url"], auth=(USER, PASSWORD), verbose=False)


def test_wide_listening_without_a_login_is_refused(tmp_path):
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("RAG_AUTH", None)
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "app.py"),
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--index",
            str(tmp_path / "none"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - t0 < 60  # before any model is loaded
    assert "refusing to listen on 0.0.0.0 without a password" in proc.stderr
    assert "--auth USER:PASSWORD" in proc.stderr and proc.stderr.count("\n") == 1
    with socket.socket() as s:  # and nothing was served
        assert s.connect_ex(("127.0.0.1", port)) != 0
    bad = subprocess.run(
        [sys.executable, str(REPO / "app.py"), "--host", "0.0.0.0", "--auth", "nopassword"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert bad.returncode == 2 and "USER:PASSWORD" in bad.stderr


def test_wide_listening_requires_a_login(wide_app):
    if Path("/proc/net/tcp").exists():
        assert listening_addresses(wide_app["port"]) & {
            "00000000",
            "00000000000000000000000000000000",
        }
    url = wide_app["url"]
    for path in ("config", "gradio_api/info"):
        r = httpx.get(url + path, timeout=10)
        assert r.status_code == 401, (path, r.status_code)
    r = httpx.post(url + "gradio_api/upload", files={"files": ("x.txt", b"hi")}, timeout=10)
    assert r.status_code == 401
    with pytest.raises(Exception, match="credentials were not provided|login"):
        gradio_client.Client(url, verbose=False)
    with pytest.raises(Exception, match="[Ll]ogin"):
        gradio_client.Client(url, auth=(USER, "wrong"), verbose=False)


def test_wide_listening_says_a_login_is_required(wide_app):
    log = wide_app["log"].read_text(encoding="utf-8", errors="replace")
    line = f"Listening on 0.0.0.0:{wide_app['port']}; login required (user {USER})"
    assert line in log.splitlines(), log[-2000:]
    assert PASSWORD not in log


def _session(url: str) -> httpx.Client:
    s = httpx.Client(base_url=url, timeout=30)
    assert s.post("login", data={"username": USER, "password": PASSWORD}).status_code == 200
    return s


def test_uploads_are_checked_and_stored_under_generated_names(wide_app, client, tmp_path):
    data, root = wide_app["data"], wide_app["root"]
    names = {
        "report one.txt": "第一份报告：青岚湖监测站共设有17个监测点位。",
        "<b onclick=x>标题..中文.txt": "第二份报告：湖区面积12平方公里。",
        "a\\..\\..\\evil.txt": "第三份报告：今年新增湿地800亩。",
    }
    for name, text in names.items():
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        html = client.predict([gradio_client.handle_file(str(p))], api_name="/on_upload")[0]
        assert "已添加" in html and "<b>" not in html, html  # the name is shown escaped
    (tmp_path / "tool.exe").write_bytes(b"MZ\x90\x00")
    with pytest.raises(Exception, match="Invalid file type"):
        client.predict(
            [gradio_client.handle_file(str(tmp_path / "tool.exe"))], api_name="/on_upload"
        )
    big = tmp_path / "big.txt"
    big.write_text("字" * 30_000, encoding="utf-8")  # 90 KB, over 52 KB
    s = _session(wide_app["url"])
    try:  # past the client's own size check: the server refuses too
        r = s.post("gradio_api/upload", files={"files": ("big.txt", big.read_bytes())})
        assert r.status_code == 413, r.text
        # a client that names a server file instead of uploading one is refused
        secret = root / "server-secret.md"
        secret.write_text("服务器上的文件，不得入库。", encoding="utf-8")
        call = s.post(
            "gradio_api/call/on_upload",
            json={
                "data": [
                    [
                        {
                            "path": str(secret),
                            "orig_name": "s.md",
                            "meta": {"_type": "gradio.FileData"},
                        }
                    ],
                    "default",  # the knowledge base
                    None,
                ]
            },
        )
        event = call.json()["event_id"]
        stream = s.get(f"gradio_api/call/on_upload/{event}").text
        # refused (Gradio's own reason is not shown: the app hides raw exception texts)
        assert "event: error" in stream and str(secret) not in stream, stream
    finally:
        s.close()

    stored = sorted(p.name for p in (data / "uploads").iterdir())
    assert len(stored) == 2 * len(names), stored  # each document and its sidecar
    assert all(GENERATED.fullmatch(n) for n in stored), stored
    # nothing was written anywhere but the uploads, the index and Gradio's upload folder,
    # which is inside the data folder too (GRADIO_TEMP_DIR was not set)
    new = {p for p in root.rglob("*") if p.is_file()} - wide_app["before"] - {secret}
    places = (data / "uploads", data / "index", data / "gradio-tmp")
    assert not [p for p in new if not any(d in p.parents for d in places)], new
    temp = {p.name for p in new if (data / "gradio-tmp") in p.parents}
    assert "report one.txt" in temp, sorted(temp)
    assert f"upload temp files in {data / 'gradio-tmp'}" in wide_app["log"].read_text(
        encoding="utf-8", errors="replace"
    )
    idx = HybridIndex.open(data / "index")
    uploaded = [d for d in idx.docs.values() if (data / "uploads") in Path(d["source"]).parents]
    assert len(uploaded) == len(names)
    assert "report one" in {d["title"] for d in uploaded}
    assert not [d["title"] for d in uploaded if "/" in d["title"] or "\\" in d["title"]]
    assert not [d for d in idx.docs if "服务器上的文件" in idx.document_text(d)]


def test_the_api_key_is_used_but_never_shown(wide_app, client, fake_llm):
    chat, _ = client.predict("崂山区2023年重点推进多少个城市更新项目？", api_name="/on_ask")
    answer = "".join(part.get("text", "") for part in chat[-1]["content"])
    assert "HTTP 401" in answer  # the LLM call failed, and the user is told so
    used = [r["headers"].get("Authorization") for r in fake_llm.requests]
    assert f"Bearer {SECRET}" in used  # the key from the environment was sent
    shown = {
        "chat": json.dumps(chat, ensure_ascii=False),
        "config": json.dumps(client.config, ensure_ascii=False),
        "log": wide_app["log"].read_text(encoding="utf-8", errors="replace"),
    }
    for path in wide_app["data"].rglob("*"):
        if path.is_file():
            shown[str(path)] = path.read_bytes().decode("utf-8", "replace")
    leaks = [where for where, text in shown.items() if SECRET in text]
    assert not leaks, leaks


def test_cli_json_never_shows_the_key(corpus_settings, fake_llm, capsys, caplog, monkeypatch):
    from rag.serve.cli import main

    monkeypatch.setenv("RAG_LLM_API_KEY", SECRET)
    with caplog.at_level(logging.DEBUG):
        code = main(
            [
                "ask",
                "崂山区2023年重点推进多少个城市更新项目？",
                "--json",
                "--index",
                corpus_settings.index_dir,
                "--llm",
                "openai",
                "--llm-model",
                "fake",
                "--llm-base-url",
                fake_llm.base_url,
                "--llm-timeout",
                "5",
            ]
        )
    out = capsys.readouterr()
    assert code == 0
    row = json.loads(out.out)
    assert "HTTP 401" in row["notice"]
    assert SECRET not in out.out + out.err + caplog.text
    assert SECRET not in json.dumps(Settings.load().to_dict())
    # a key is never a setting; only the names of the variables that hold one are
    names = {f: v for f, v in Settings().to_dict().items() if re.search(r"(^|_)key(_|$)", f)}
    assert set(names) == {"llm_api_key_env"}
    assert all(re.fullmatch(r"[A-Z_][A-Z0-9_]*", v) for v in names["llm_api_key_env"])


# --------------------------------------------------------------------------- the index on disk
PICKLE_OPCODES = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def test_the_index_holds_no_pickle(corpus_settings):
    idx = HybridIndex.open(corpus_settings.index_path, corpus_settings)
    files = sorted(p for p in idx.folder.iterdir())
    assert {p.name for p in files} == {
        "manifest.json",
        "chunks.json",
        "chunks.npy",
        "chunk_texts.bin",
        "texts.jsonl",
        "vectors.faiss",
        "bm25_tf.npz",
        "bm25_vocab.json",
    }
    for p in files:
        head = p.read_bytes()[:2]
        assert head not in PICKLE_OPCODES, p
        if p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))
        elif p.suffix == ".jsonl":
            [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()]
        elif p.suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                assert all(z[k].dtype != object for k in z.files)
        elif p.suffix == ".npy":
            assert np.load(p, allow_pickle=False).dtype == np.int64
        elif p.suffix == ".bin":
            p.read_bytes().decode("utf-8")
    source = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "rag").rglob("*.py"))
    for banned in ("import pickle", "allow_pickle=True", "joblib", "torch.load(", "dill"):
        assert banned not in source, banned


class _Payload:
    """Unpickling this would run code: it writes a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def _tamper(folder: Path, kind: str, marker: Path) -> None:
    if kind == "manifest-garbage":
        (folder / "manifest.json").write_text("{not json", encoding="utf-8")
    elif kind == "manifest-schema":
        m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        m["schema_version"] = 99
        (folder / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    elif kind == "chunks-truncated":
        data = (folder / "chunks.json").read_bytes()
        (folder / "chunks.json").write_bytes(data[: len(data) // 2])
    elif kind == "chunks-columns":
        t = json.loads((folder / "chunks.json").read_text(encoding="utf-8"))
        t["ids"] = t["ids"][:-1]
        (folder / "chunks.json").write_text(json.dumps(t), encoding="utf-8")
    elif kind == "chunk-spans-pickle":
        np.save(folder / "chunks.npy", np.array([_Payload(str(marker))], dtype=object))
    elif kind == "chunk-spans-outside":
        spans = np.load(folder / "chunks.npy")
        spans[0, 0] = 10**6  # a document that is not in the table
        np.save(folder / "chunks.npy", spans)
    elif kind == "chunk-texts-truncated":
        data = (folder / "chunk_texts.bin").read_bytes()
        (folder / "chunk_texts.bin").write_bytes(data[: len(data) // 2])
    elif kind == "chunk-texts-garbage":  # same length: only reading the rows finds it
        data = bytearray((folder / "chunk_texts.bin").read_bytes())
        data[len(data) // 2 : len(data) // 2 + 16] = b"\xff" * 16
        (folder / "chunk_texts.bin").write_bytes(bytes(data))
    elif kind == "bm25-pickle":
        np.savez(
            folder / "bm25_tf.npz",
            data=np.array([_Payload(str(marker))], dtype=object),
            indices=np.zeros(1),
            indptr=np.zeros(2),
            shape=np.array([1, 1]),
        )
    elif kind == "bm25-rows":
        with np.load(folder / "bm25_tf.npz", allow_pickle=False) as z:
            parts = {k: z[k] for k in z.files}
        parts["indptr"], parts["shape"] = parts["indptr"][:-1], parts["shape"] - [1, 0]
        np.savez(folder / "bm25_tf.npz", **parts)
    elif kind == "vocab-garbage":
        (folder / "bm25_vocab.json").write_bytes(b"\xff\xfe garbage")
    elif kind == "vectors-garbage":
        (folder / "vectors.faiss").write_bytes(b"not a faiss index at all")
    elif kind == "vectors-truncated":
        data = (folder / "vectors.faiss").read_bytes()
        (folder / "vectors.faiss").write_bytes(data[: len(data) // 2])
    elif kind == "texts-garbage":
        (folder / "texts.jsonl").write_text("garbage\n" * 50, encoding="utf-8")
    elif kind == "texts-missing":
        (folder / "texts.jsonl").unlink()
    elif kind == "current-escape":
        (folder.parent / "CURRENT").write_text("../../etc\n", encoding="utf-8")
    elif kind == "current-missing-version":
        (folder.parent / "CURRENT").write_text("v-19700101-000000-000000\n", encoding="utf-8")
    else:
        raise AssertionError(kind)


TAMPER = [
    "manifest-garbage", "manifest-schema", "chunks-truncated", "chunks-columns",
    "chunk-spans-pickle", "chunk-spans-outside", "chunk-texts-truncated", "chunk-texts-garbage",
    "bm25-pickle",
    "bm25-rows", "vocab-garbage", "vectors-garbage", "vectors-truncated", "texts-garbage",
    "texts-missing", "current-escape", "current-missing-version",
]  # fmt: skip


@pytest.mark.parametrize("kind", TAMPER)
def test_a_tampered_index_fails_with_a_clear_error(corpus_settings, tmp_path, kind):
    index_dir = tmp_path / "index"
    shutil.copytree(corpus_settings.index_path, index_dir)
    s = corpus_settings.replace(index_dir=str(index_dir))
    folder = HybridIndex.open(index_dir, s).folder
    marker = tmp_path / "pwned.txt"
    _tamper(folder, kind, marker)
    with pytest.raises(IndexStoreError) as e:
        idx = HybridIndex.open(index_dir, s)
        for doc_id in idx.docs:  # document texts are read lazily: read them all
            idx.document_text(doc_id)
        for row in range(len(idx)):  # and so are chunk texts
            idx.chunk(row)
    message = str(e.value)
    assert "\n" not in message and str(index_dir) in message, message
    assert re.search(r"rebuild|rag ingest", message), message
    assert not marker.exists()  # nothing in the index was ever unpickled
