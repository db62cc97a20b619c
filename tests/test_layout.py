"""The layout's promises: dependencies point one way (import-linter contracts), and the
latent bugs found while reorganising stay fixed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    out = subprocess.run([str(exe)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_a_chunk_size_too_small_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="chunk_size must be at least 20"):
        Settings(chunk_size=10)
    (tmp_path / "a.txt").write_text("威海市召开城市更新大会。", encoding="utf-8")
    (tmp_path / "rag.toml").write_text("[rag]\nchunk_size = 10\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "rag.serve.cli", "ingest", str(tmp_path / "a.txt"),
         "--config", str(tmp_path / "rag.toml"), "--index", str(tmp_path / "idx")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode != 0
    assert "chunk_size must be at least 20" in out.stderr
    assert "Traceback" not in out.stderr


def test_the_eval_code_hash_covers_the_refusal_model(tmp_path: Path) -> None:
    from rag.eval.provenance import code_hash

    pkg = tmp_path / "rag"
    shutil.copytree(REPO / "rag", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = code_hash(pkg)
    model = pkg / "read" / "refusal_model.json"
    model.write_text(model.read_text(encoding="utf-8").replace('"threshold"', '"threshold" ', 1))
    assert code_hash(pkg) != before


def test_opening_an_index_changes_no_global_segmenter(corpus_settings) -> None:
    from rag.index import segment
    from rag.index.hybrid import HybridIndex

    before = segment.default_segmenter()
    index = HybridIndex.open(corpus_settings.index_path, corpus_settings)
    assert segment.default_segmenter() == before == segment.available_segmenter()
    assert index.tokenize("威海市城市更新") == segment.tokenize(
        "威海市城市更新", False, index.segmenter
    )


def test_reload_gives_the_retriever_a_reader_of_the_new_index(corpus_system) -> None:
    old_reader = corpus_system.retriever.reader
    old_reader.analyse("威海累计建成地下综合管廊多少公里？")
    corpus_system.reload()
    reader = corpus_system.retriever.reader
    assert reader is not old_reader and reader.index is corpus_system.index
    assert corpus_system.retriever.index is corpus_system.index
    ans = corpus_system.ask("威海累计建成地下综合管廊多少公里？")
    assert not ans.refused and "40.6" in ans.text
