"""`python -m rag.eval.bench store_scale` on small sizes: both stores measured where
milvus-lite is loaded, only its write rate probed above `--milvus-max`, and the report
and plot written (real FAISS, real milvus-lite)."""

from __future__ import annotations

import json
from pathlib import Path

from rag.eval.bench import store_scale


def test_store_scale_measures_both_stores_and_probes_beyond_the_limit(tmp_path: Path) -> None:
    out = tmp_path / "report"
    argv = ["--sizes", "400,1200", "--milvus-max", "400", "--probe-rows", "300",
            "--milvus-queries", "6", "--queries", "8", "--out", str(out),
            "--work", str(tmp_path)]  # fmt: skip
    assert store_scale.main(argv) == 0
    r = json.loads((out / "scale.json").read_text(encoding="utf-8"))
    small, large = r["sizes"]
    assert (small["n_chunks"], large["n_chunks"]) == (400, 1200)
    for call in store_scale.CALLS:
        assert set(small[call]) == {"faiss", "milvus", "same_top10"}
        assert small[call]["faiss"]["n"] == small[call]["milvus"]["n"] == 6
        assert small[call]["same_top10"] == 1.0  # the same chunks from both stores
        assert set(large[call]) == {"faiss"} and large[call]["faiss"]["n"] == 8
    assert small["milvus_write_s"] > 0 and "milvus_probe" not in small
    assert large["milvus_probe"]["rows"] == 300
    est = large["milvus_probe"]["load_estimate_s"]
    assert abs(est - 1200 / large["milvus_probe"]["rows_per_s"]) <= 1  # the rate is rounded
    md = (out / "scale.md").read_text(encoding="utf-8")
    assert "| 1,200 | flat | dense | 8 |" in md and "not loaded: first 300 rows" in md
    assert (out / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
