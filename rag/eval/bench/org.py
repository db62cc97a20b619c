"""`python -m rag.eval.bench org`: many accounts asking several knowledge bases at once
(issue 23).

A home in a work folder gets 3 knowledge bases made from corpus/ and `--users` reader
accounts, each granted one or two of them. `rag serve --home` runs as a subprocess on a
free loopback port (the real command, the real server). Each user is a thread with its
own API key that, for `--seconds`, asks the chat API one of the knowledge bases it may
read, sometimes one it may not (which must be a 404, as a missing one), and Dify's
retrieval, checking every answer: a reference or record from a document outside the
asked knowledge base is a foreign citation. The figures: requests, errors (any
unexpected status or failure), foreign citations, latency percentiles, throughput; in
`eval/reports/org_concurrency/` with the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from rag.eval.bench.measure import loadavg, machine, summary

REPO = Path(__file__).resolve().parents[3]
OUT = REPO / "eval" / "reports" / "org_concurrency"
KBS = {
    "plan": ("laoshan-urban-renewal-2023", "weihai-jingzhi-forum-2023"),
    "hr": ("hangzhou-study-tour-report", "zhongyuan-zhejiang-training"),
    "training": ("weihai-jingzhi-training-2022",),
}
QUESTIONS = {
    "plan": ["崂山区2023年计划完成投资多少？", "威海精致城市论坛讨论了什么？", "城市更新攻坚项目有多少个？"],
    "hr": ["赴杭州学习考察重点学习了哪些内容？", "杭州的工匠精神体现在哪里？", "中原区赴浙江培训学到了什么？"],
    "training": ["2022年威海精致城市培训班有多少名学员？", "培训班的课程有哪些？", "精致城市培训在哪里举办？"],
}  # fmt: skip


def grants(n_users: int) -> dict[str, list[str]]:
    """user -> knowledge bases: u00 plan, u01 hr, u02 training, u03 plan+hr, ... in turn."""
    names = list(KBS)
    pattern = [[k] for k in names] + [[names[i], names[(i + 1) % 3]] for i in range(3)]
    return {f"u{i:02d}": pattern[i % len(pattern)] for i in range(n_users)}


def build_home(work: Path, n_users: int) -> tuple[Path, dict[str, str], dict[str, list[str]]]:
    from rag.config import Settings
    from rag.index.build import ingest
    from rag.org.accounts import Accounts
    from rag.org.kbs import KnowledgeBases

    shutil.rmtree(work, ignore_errors=True)
    home = work / "home"
    s = Settings(home=str(home), index_dir="")
    for kb, docs in KBS.items():
        src = work / f"src-{kb}"
        src.mkdir(parents=True)
        for d in docs:
            for f in (REPO / "corpus").glob(f"{d}.*"):
                shutil.copy(f, src / f.name)
        k = KnowledgeBases(s).create(kb)
        ingest([src], k.settings(s), progress=False, log=lambda m: None)
    who = grants(n_users)
    keys = {u: Accounts(s).add(u, "reader", kbs) for u, kbs in who.items()}
    return home, keys, who


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(args) -> dict:
    import httpx

    home, keys, who = build_home(args.work, args.users)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(args.work / "serve.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "rag.serve.cli", "serve", "--home", str(home), "--port",
         str(port), "--no-ui"],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((args.work / "serve.log").read_text()[-3000:])
            time.sleep(0.5)
        return _load(url, keys, who, args)
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def _load(url: str, keys: dict[str, str], who: dict[str, list[str]], args) -> dict:
    import httpx

    lock = threading.Lock()
    rows: list[dict] = []
    problems: list[str] = []
    start = threading.Barrier(len(keys) + 1)
    stop_at = [0.0]

    def user(name: str) -> None:
        rnd = random.Random(name)
        mine = who[name]
        others = [k for k in KBS if k not in mine]
        h = {"Authorization": f"Bearer {keys[name]}"}
        with httpx.Client(base_url=url, headers=h, timeout=300) as c:
            models = [m["id"] for m in c.get("/v1/models").json()["data"]]
            if sorted(models) != sorted(mine):
                with lock:
                    problems.append(f"{name}: /v1/models {models} != {mine}")
            start.wait()
            while time.monotonic() < stop_at[0]:
                roll = rnd.random()
                kb = rnd.choice(others) if roll < 0.15 else rnd.choice(mine)
                q = rnd.choice(QUESTIONS[kb])
                route = "retrieval" if 0.15 <= roll < 0.4 else "chat"
                t = time.perf_counter()
                row = {"user": name, "kb": kb, "route": route, "allowed": kb in mine}
                try:
                    if route == "chat":
                        r = c.post("/v1/chat/completions", json={
                            "model": kb, "messages": [{"role": "user", "content": q}]})  # fmt: skip
                        cited = [x["doc_id"] for x in r.json().get("references", [])]
                    else:
                        r = c.post("/retrieval", json={
                            "knowledge_id": kb, "query": q, "retrieval_setting": {"top_k": 3}})  # fmt: skip
                        cited = [x["metadata"]["doc_id"] for x in r.json().get("records", [])]
                    row["status"] = r.status_code
                    row["cited"] = len(cited)
                    row["ok"] = r.status_code == (200 if kb in mine else 404)
                    row["foreign"] = (
                        sum(d not in KBS[kb] for d in cited) if kb in mine else len(cited)
                    )
                except Exception as e:  # a failure is counted, with its kind
                    row |= {"status": type(e).__name__, "ok": False, "foreign": 0}
                row["ms"] = (time.perf_counter() - t) * 1e3
                with lock:
                    rows.append(row)

    threads = [threading.Thread(target=user, args=(n,), daemon=True) for n in keys]
    for t in threads:
        t.start()
    load_before = loadavg()
    stop_at[0] = time.monotonic() + args.seconds
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    answered = [r for r in rows if r["allowed"]]
    return {
        "config": {
            "users": args.users,
            "seconds": args.seconds,
            "knowledge_bases": KBS,
            "grants": who,
            "unreadable_share": 0.15,
            "retrieval_share": 0.25,
        },  # fmt: skip
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": loadavg()},
        "wall_s": round(wall, 1),
        "requests": len(rows),
        "errors": sum(not r["ok"] for r in rows),
        "error_kinds": sorted({str(r["status"]) for r in rows if not r["ok"]}),
        "foreign_citations": sum(r["foreign"] for r in rows),
        "answered_with_citations": sum(1 for r in answered if r.get("cited")),
        "answered": len(answered),
        "refused_as_missing": sum(1 for r in rows if not r["allowed"] and r["status"] == 404),
        "unreadable_asked": sum(1 for r in rows if not r["allowed"]),
        "models_mismatches": problems,
        "per_route": {
            route: {"requests": len(rs), "latency_ms": summary([r["ms"] for r in rs])}
            for route in ("chat", "retrieval")
            for rs in [[r for r in answered if r["route"] == route]]
        },
        "requests_per_s": round(len(rows) / wall, 2),
    }


def write(res: dict, command: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(res, ensure_ascii=False, indent=2) + "\n")
    m = res["machine"]
    lines = [
        "# 20 users, 3 knowledge bases, at once (issue 23)", "",
        f"Command: `{command}`", "",
        f"Machine: {m.get('cpu', '')}, {m.get('cores', '?')} cores, "
        f"{m.get('memory_gib', '?')} GiB, shared with other sessions (load average "
        f"{m['loadavg_before']} before, {m['loadavg_after']} after).", "",
        f"{res['config']['users']} reader accounts, each with its own key and one or two of "
        f"{len(res['config']['knowledge_bases'])} knowledge bases; each a thread asking for "
        f"{res['config']['seconds']} s without pause: the chat API (75%) or Dify retrieval "
        "(25%), 15% of the time a knowledge base it may not read.", "",
        "| | |", "|---|---|",
        f"| requests | {res['requests']} in {res['wall_s']} s ({res['requests_per_s']}/s) |",
        f"| errors (unexpected status or failure) | **{res['errors']}** {res['error_kinds']} |",
        f"| foreign citations (a passage from a knowledge base not asked or not readable) | **{res['foreign_citations']}** |",
        f"| readable knowledge base asked / answered citing at least one passage | {res['answered']} / {res['answered_with_citations']} |",
        f"| unreadable knowledge base asked / answered 404 as missing | {res['unreadable_asked']} / {res['refused_as_missing']} |",
        f"| /v1/models listing other than the grants | {len(res['models_mismatches'])} |",
    ]  # fmt: skip
    for route, r in res["per_route"].items():
        lat = r["latency_ms"]
        lines.append(
            f"| {route}: answered requests, latency median / p95 / p99 | {r['requests']}, "
            f"{lat.get('median', 0):.0f} / {lat.get('p95', 0):.0f} / {lat.get('p99', 0):.0f} ms |"
        )
    lines += ["", "The server answers at most 4 questions at once (rag.serve.api."
              "MAX_CONCURRENT_ANSWERS); the others queue, so latency is mostly queueing on "
              "this machine's cores, not the work of one answer. There are 9 distinct "
              "questions (3 a knowledge base), so the readers' caches are warm after the "
              "first seconds: the figure is for permissions under load, not for the "
              "latency of new questions.", ""]  # fmt: skip
    (OUT / "report.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rag.eval.bench org", description=__doc__)
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--work", type=Path, default=Path("/tmp/rag-bench-org"))
    args = p.parse_args(argv)
    res = run(args)
    write(res, "python -m rag.eval.bench org " + " ".join(argv or sys.argv[1:]))
    print((OUT / "report.md").read_text(encoding="utf-8"))
    return 0 if res["errors"] == 0 and res["foreign_citations"] == 0 else 1
