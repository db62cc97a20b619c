"""The load benchmark of `rag serve` (python -m rag.eval.bench serve_load), run briefly:
a real server in a subprocess, 45 concurrent streamed chats for 2 seconds."""

from __future__ import annotations

import json

from rag.eval.bench.serve_load import main

# more streams than the server's worker threads (anyio's 40): waiting streams once held
# every thread, and the streams holding a turn could not send their next piece
CLIENTS = 45


def test_a_short_load_run_has_no_errors_and_writes_its_report(corpus_settings, tmp_path):
    out, work = tmp_path / "report", tmp_path / "work"
    argv = ["--clients", str(CLIENTS), "--duration", "2", "--timeout", "120",
            "--index", str(corpus_settings.index_path), "--out", str(out), "--work", str(work)]  # fmt: skip
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    a = res["aggregates"]
    assert a["errors"] == 0 and a["chats"] >= CLIENTS and a["chats"] == len(res["rows"])
    assert {r["client"] for r in res["rows"]} == set(range(CLIENTS))
    for r in res["rows"]:
        assert r["status"] == 200 and not r["error"]
        assert 0 < r["first_token_s"] <= r["total_s"] and r["references"] is not None
        assert r["start_s"] < 2  # started within the run; finished after it if need be
    for key in ("first_token_ms", "total_ms"):
        assert a[key]["n"] == a["chats"] and a[key]["median"] <= a[key]["p95"]
    assert res["config"]["clients"] == CLIENTS and res["config"]["documents"] == 5
    assert res["machine"]["cores"] and res["load_start"] and res["server_cpu_s"] > 0
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "0 errors" in report and "| first token |" in report and "shared with" in report
    assert "api_requests_per_minute = 0" in (work / "serve.toml").read_text(encoding="utf-8")
