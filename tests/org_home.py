"""A home with two knowledge bases made from corpus/, shared by the org tests:
`plan` holds the Laoshan and Weihai forum reports, `hr` the Hangzhou and Zhongyuan ones."""

from __future__ import annotations

import shutil
from pathlib import Path

from rag.config import Settings

REPO = Path(__file__).resolve().parent.parent
PLAN_DOCS = ("laoshan-urban-renewal-2023", "weihai-jingzhi-forum-2023")
HR_DOCS = ("hangzhou-study-tour-report", "zhongyuan-zhejiang-training")
LAOSHAN = "崂山区2023年计划完成投资多少？"  # answered by plan only
HANGZHOU = "赴杭州学习考察重点学习了哪些内容？"  # answered by hr only


def make_home(root: Path, embedder) -> Settings:
    from rag.index.build import ingest
    from rag.org.kbs import KnowledgeBases

    settings = Settings(home=str(root / "home"), index_dir="")
    registry = KnowledgeBases(settings)
    for name, docs in (("plan", PLAN_DOCS), ("hr", HR_DOCS)):
        src = root / f"src-{name}"
        src.mkdir()
        for d in docs:
            for f in (REPO / "corpus").glob(f"{d}.*"):
                shutil.copy(f, src / f.name)
        kb = registry.create(name)
        report = ingest([src], kb.settings(settings), embedder=embedder, progress=False,
                        log=lambda m: None)  # fmt: skip
        assert report.count("added") == 2, report.results
    return settings
