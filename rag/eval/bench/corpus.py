"""The benchmark corpus: crud_news articles as JSON-lines shards, and questions about them.

`documents.txt.gz` holds one article a line ("2023-08-16 18:24:57，正文：..."). Articles
are put in one seeded random order, so the corpus of size N is the first N of it and
every smaller corpus is part of every larger one; the questions come from the first
1,000, so the same questions are asked at every size. Shards hold 5,000 articles each,
which keeps every file under the loader's 50 MB limit.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path
from typing import NamedTuple


def shared_data() -> Path:
    """The shared data sets: `shared/data` beside the nearest folder above this checkout
    that has one (/work/shared/data for /work/main and for worktrees in /work/wt/NAME)."""
    here = Path(__file__).resolve()
    for up in here.parents[3:]:
        if (up / "shared" / "data").is_dir():
            return up / "shared" / "data"
    return here.parents[4] / "shared" / "data"


DEFAULT_SOURCE = shared_data() / "crud_news" / "documents.txt.gz"
SHARD = 5000
SEED = 7
_SENT = re.compile(r"[^。！？!?]+[。！？!?]")


class Article(NamedTuple):
    id: str
    date: str | None
    text: str


def read_articles(source: Path, seed: int = SEED, limit: int | None = None) -> list[Article]:
    """All articles of `source` in the benchmark's seeded order (the first `limit` of it)."""
    opener = gzip.open if str(source).endswith(".gz") else open
    with opener(source, "rt", encoding="utf-8") as f:
        lines = [ln.rstrip("\n") for ln in f if ln.strip()]
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    out = []
    for i in order[:limit]:
        line = lines[i]
        head, sep, body = line.partition("，正文：")
        date = head[:10] if sep and re.match(r"\d{4}-\d{2}-\d{2}", head) else None
        out.append(Article(f"crud-{i:05d}", date, body if sep else line))
    return out


def write_corpus(articles: list[Article], folder: Path, source: str = "") -> Path:
    """Write `articles` as JSON-lines shards into `folder` (kept if already written)."""
    marker = folder / ".corpus.json"  # a dot name: ingest's file discovery skips it
    want = {"n": len(articles), "source": source, "first": articles[0].id if articles else ""}
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")) == want:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*.jsonl"):
        old.unlink()
    for s in range(0, len(articles), SHARD):
        with open(folder / f"part-{s // SHARD:03d}.jsonl", "w", encoding="utf-8") as f:
            for a in articles[s : s + SHARD]:
                rec = {"id": a.id, "text": a.text, **({"date": a.date} if a.date else {})}
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    marker.write_text(json.dumps(want), encoding="utf-8")
    return folder


def make_queries(articles: list[Article], n: int, seed: int = SEED) -> list[str]:
    """`n` distinct questions: a sentence start of a random article, as a question.

    Distinct, so the query-embedding cache never answers one: every timing is a miss.
    """
    rng = random.Random(seed)
    pool = articles[:1000]
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(50 * n):
        if len(out) >= n or not pool:
            break
        sents = [s.strip() for s in _SENT.findall(rng.choice(pool).text)]
        sents = [s for s in sents if 12 <= len(s) <= 200]
        if not sents:
            continue
        q = rng.choice(sents)[:24].rstrip("，,。！？!?、 ") + "？"
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out
