"""The small corpus of a `--limit` run: the sampled questions' own passages plus some distractors.

A 200-question run over the whole CMRC corpus spent 292 of its 298 seconds indexing
paragraphs no question asked about. With `--limit`, the runner indexes only what the
asked questions need (their gold documents and `context_doc_ids`: an unanswerable
question's paragraph, RGB's negatives) plus `distractors` other records, so retrieval
still has to pick the right passage out of many. The distractors are the first records
of a fixed, seeded ranking of the corpus ids, so a run with the same questions and
settings gets the same corpus bytes, hence the same cached index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.eval.questions import Question
from rag.fileio import write_atomic

DEFAULT_DISTRACTORS = 100
SAMPLE_FILE = "corpus.sample.jsonl"


@dataclass(frozen=True)
class CorpusSample:
    """What the small corpus holds; `data` its bytes, written to `path` by `write`."""

    path: Path
    own: int  # records the asked questions name (gold and context documents)
    distractors: int  # other records added
    total: int  # records of the whole corpus
    missing_own: int  # ids the questions name that the corpus lacks
    data: bytes = b""

    @property
    def sha256(self) -> str:
        """What `corpus_fingerprint` gives for the file once written."""
        return hashlib.sha256(self.data).hexdigest()

    def write(self) -> Path:
        write_atomic(self.path, [self.data])
        return self.path

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "own": self.own,
            "distractors": self.distractors,
            "total": self.total,
            "missing_own": self.missing_own,
        }


def _rank(seed: int, doc_id: str) -> str:
    return hashlib.sha1(f"{seed}:{doc_id}".encode()).hexdigest()


def small_corpus(
    corpus: Path,
    questions: Sequence[Question],
    distractors: int,
    out: Path,
    seed: int = 0,
) -> CorpusSample:
    """The records of the JSONL `corpus` that `questions` need, plus `distractors`
    others, in the corpus's own order and bytes, to be written to `out` (`.write()`):
    only once the run knows it may use that folder."""
    wanted = {d for q in questions for d in (*q.gold_doc_ids, *q.context_doc_ids)}
    lines: list[tuple[str, bytes]] = []
    for raw in corpus.read_bytes().splitlines(keepends=True):
        try:
            rec = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # the whole-corpus ingest reports such a line; a sample leaves it out
        if isinstance(rec, dict) and rec.get("id") is not None:
            lines.append((str(rec["id"]), raw if raw.endswith(b"\n") else raw + b"\n"))
    ids = {i for i, _ in lines}
    others = sorted((i for i in ids if i not in wanted), key=lambda i: _rank(seed, i))
    keep = wanted | set(others[: max(0, distractors)])
    data = b"".join(raw for i, raw in lines if i in keep)
    own = len(wanted & ids)
    return CorpusSample(out, own, len(keep & ids) - own, len(lines), len(wanted - ids), data)
