"""Load on `rag serve`: many concurrent streamed chats against a real server on loopback.

    python -m rag.eval.bench serve_load                       # 50 clients for 60 s
    python -m rag.eval.bench serve_load --clients 5 --duration 5 --out /tmp/x

Starts `rag serve --no-ui` in a subprocess (this checkout's code, one API key, no
rate limit: the benchmark's one key would otherwise meet the default per-key limit)
over a small index (the five documents of corpus/, built into `--work` unless `--index`
is given), then runs `--clients` clients for `--duration` seconds. Each client streams
one chat completion after another, the questions of eval/datasets/corpus_qa.jsonl in
turn, and records the time to the first piece of answer text and to `data: [DONE]`.
A chat is an error unless it is HTTP 200, every event is a chunk, the last chunk before
`[DONE]` carries `references` and `refused`, and no error event arrives. Chats started
before the end run to completion (each bounded by `--timeout`).

Writes `results.json` (config, machine, every chat, aggregates) and `report.md` into
`--out` (default eval/reports/serve_load/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rag.eval.bench import measure

REPO = measure.REPO
DEFAULT_OUT = REPO / "eval" / "reports" / "serve_load"
DEFAULT_WORK = Path("/tmp/rag-serve-load")
QUESTIONS = REPO / "eval" / "datasets" / "corpus_qa.jsonl"
KEY = "bench-serve-load-key"
STARTUP_S = 600.0  # the model loads in the server: minutes on a busy 2-core machine


# ---------------------------------------------------------------------------- setup
def questions(path: Path = QUESTIONS) -> list[tuple[str, str]]:
    """(id, question) of the question set, in file order."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out.append((str(row["id"]), row["question"]))
    return out


def build_index(work: Path, log) -> Path:
    """The index of corpus/ in `work` (ingest skips it when it is up to date)."""
    from rag.config import Settings
    from rag.index.build import ingest

    settings = Settings(index_dir=str(work / "index"))
    report = ingest([REPO / "corpus"], settings, progress=False, log=lambda m: None)
    log(f"serve_load: index {report.summary()}")
    return settings.index_path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, work: Path, port: int) -> subprocess.Popen:
    """`rag serve` over `index` on 127.0.0.1:`port`, its output in work/server.log."""
    config = work / "serve.toml"
    config.write_text("api_requests_per_minute = 0\n", encoding="utf-8")
    cmd = [
        sys.executable, "-m", "rag.serve.cli", "serve", "--index", str(index),
        "--config", str(config), "--api-key", KEY, "--no-ui",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"}
    with open(work / "server.log", "wb") as out:
        return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)


def wait_until_up(url: str, proc: subprocess.Popen, work: Path, timeout_s: float) -> float:
    """Seconds until /healthz answers; raises RuntimeError if the server dies or is late."""
    import httpx

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        if proc.poll() is not None:
            tail = (work / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"rag serve exited with {proc.returncode}:\n{tail}")
        try:
            if httpx.get(url + "/healthz", timeout=5).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"rag serve did not answer within {timeout_s:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process `pid` has used (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


# ---------------------------------------------------------------------------- load
async def one_chat(http, url: str, qid: str, question: str, t_origin: float) -> dict[str, Any]:
    """Stream one chat; a row with its timings (seconds) and what went wrong, if anything."""
    t0 = time.perf_counter()
    row: dict[str, Any] = {"question_id": qid, "start_s": round(t0 - t_origin, 3),
                           "first_token_s": None, "total_s": None, "status": None,
                           "error": "", "refused": None, "references": None}  # fmt: skip
    body = {"model": "default", "stream": True, "messages": [{"role": "user", "content": question}]}
    events: list[dict] = []
    done = False
    try:
        async with http.stream("POST", url + "/v1/chat/completions", json=body) as r:
            row["status"] = r.status_code
            if r.status_code != 200:
                row["error"] = f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"
                return row
            async for line in r.aiter_lines():
                if not line:
                    continue
                if not line.startswith("data: "):
                    row["error"] = f"not an SSE data line: {line[:80]!r}"
                    break
                data = line[len("data: ") :]
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if "error" in event:
                    row["error"] = f"error event: {event['error'].get('message', '')[:200]}"
                    break
                events.append(event)
                delta = (event.get("choices") or [{}])[0].get("delta") or {}
                if delta.get("content") and row["first_token_s"] is None:
                    row["first_token_s"] = round(time.perf_counter() - t0, 4)
    except Exception as e:  # noqa: BLE001 -- any failure of a chat is counted, not raised
        row["error"] = f"{type(e).__name__}: {e}"[:200]
    row["total_s"] = round(time.perf_counter() - t0, 4)
    if not row["error"]:
        last = events[-1] if events else {}
        if not done:
            row["error"] = "the stream ended without data: [DONE]"
        elif "references" not in last or "refused" not in last:
            row["error"] = "the last chunk carries no references/refused"
        elif row["first_token_s"] is None:
            row["error"] = "no answer text"
        else:
            row["refused"], row["references"] = last["refused"], len(last["references"])
    return row


async def run_load(url: str, clients: int, duration_s: float, timeout_s: float, qs) -> dict:
    """`clients` clients streaming chats back to back for `duration_s`; every chat's row."""
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {KEY}"}
    rows: list[dict] = []
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=timeout_s) as http:
        t_origin = time.perf_counter()
        deadline = t_origin + duration_s

        async def client(i: int) -> None:
            k = i
            while time.perf_counter() < deadline:
                qid, q = qs[k % len(qs)]
                row = await one_chat(http, url, qid, q, t_origin)
                rows.append({"client": i, **row})
                k += clients

        await asyncio.gather(*(client(i) for i in range(clients)))
        wall = time.perf_counter() - t_origin
    return {"rows": rows, "wall_s": round(wall, 2)}


async def _warm_up(url: str, question: tuple[str, str], timeout_s: float) -> None:
    """One chat before the clock starts, so the first client does not pay for warm-up."""
    import httpx

    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(headers=headers, timeout=timeout_s) as http:
        row = await one_chat(http, url, *question, time.perf_counter())
    if row["error"]:
        raise RuntimeError(f"the warm-up chat failed: {row['error']}")


def aggregates(rows: list[dict], wall_s: float) -> dict[str, Any]:
    ok = [r for r in rows if not r["error"]]
    return {
        "chats": len(rows),
        "errors": len(rows) - len(ok),
        "error_kinds": sorted({r["error"].split(":")[0] for r in rows if r["error"]}),
        "refused": sum(bool(r["refused"]) for r in ok),
        "chats_per_s": round(len(ok) / max(wall_s, 1e-9), 3),
        "first_token_ms": measure.summary([r["first_token_s"] * 1e3 for r in ok]),
        "total_ms": measure.summary([r["total_s"] * 1e3 for r in ok]),
    }


# ---------------------------------------------------------------------------- report
def markdown(res: dict[str, Any]) -> str:
    a, c, m = res["aggregates"], res["config"], res["machine"]

    def row(name: str, s: dict) -> str:
        if not s.get("n"):
            return f"| {name} | – | – | – | – |"
        return (
            f"| {name} | {s['median'] / 1e3:.2f} | {s['p95'] / 1e3:.2f} | "
            f"{s['p99'] / 1e3:.2f} | {s['mean'] / 1e3:.2f} |"
        )

    lines = [
        "# Load on `rag serve`: concurrent streamed chats (issue 22, item 8)",
        "",
        f"Command: `{res['command']}`  ",
        f"Started {res['started']}; commit `{m['git']['commit'][:12]}`"
        f"{' (uncommitted changes)' if m['git']['dirty'] else ''}.",
        "",
        f"**Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, shared with "
        f"other sessions and busy**: load average {res['load_start']} before, "
        f"{res['load_end']} after. The clients ran on the same machine as the server. "
        "The figures say what this machine gave under this load, not what the server can do "
        "on a machine of its own.",
        "",
        f"- {c['clients']} clients, each streaming one chat after another for "
        f"{c['duration_s']} s (chats started before the end ran to completion: "
        f"{res['wall_s']} s in all); questions of `{c['questions']}` in turn "
        f"({c['n_questions']} questions, so each was asked about "
        f"{a['chats'] / max(c['n_questions'], 1):.0f} times: after the first round the "
        "server's caches, the reader's among them, hold what those questions need, and the "
        "figures are those of the serving path more than of fresh retrieval).",
        "- Server: `rag serve --no-ui` on 127.0.0.1, extractive answerer, a fixed number of "
        "answers at a time (`rag.serve.service.MAX_CONCURRENT_ANSWERS`; the rest queue), no "
        f"per-key rate limit (`api_requests_per_minute = 0`); index `{c['index']}` "
        f"({c['documents']} documents, {c['chunks']} chunks). Up in {res['startup_s']:.1f} s.",
        f"- Server CPU during the load: {res['server_cpu_s']:.1f} CPU-s in {res['wall_s']} s.",
        "",
        f"**{a['chats']} chats, {a['errors']} errors**"
        + (f" ({', '.join(a['error_kinds'])})" if a["errors"] else "")
        + f"; {a['refused']} refused (an ordinary answer); {a['chats_per_s']} chats/s.",
        "",
        "| seconds | p50 | p95 | p99 | mean |",
        "|---|---|---|---|---|",
        row("first token", a["first_token_ms"]),
        row("whole answer ([DONE])", a["total_ms"]),
        "",
        "First token: from sending the request to the first chunk with answer text. With more "
        "clients than answer slots, most of it is waiting for a slot: the extractive answer "
        "arrives as one piece, so first token and total differ by the rest of the stream.",
        "",
        "Every chat is a row of `results.json` (client, question, start, first token, total, "
        "status, error, refused, number of references).",
    ]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, log) -> dict[str, Any]:
    from rag.config import Settings
    from rag.index.hybrid import HybridIndex

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    index = Path(args.index) if args.index else build_index(work, log)
    opened = HybridIndex.open(index, Settings(index_dir=str(index)))
    qs = questions(Path(args.questions))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    proc = start_server(index, work, port)
    try:
        startup = wait_until_up(url, proc, work, args.startup_timeout)
        log(f"serve_load: rag serve up in {startup:.1f} s; warming up")
        asyncio.run(_warm_up(url, qs[0], args.timeout))
        load_start, cpu0 = measure.loadavg(), cpu_seconds(proc.pid)
        log(f"serve_load: {args.clients} clients for {args.duration} s")
        load = asyncio.run(run_load(url, args.clients, args.duration, args.timeout, qs))
        cpu1, load_end = cpu_seconds(proc.pid), measure.loadavg()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
    res: dict[str, Any] = {
        "started": started,
        "command": "python -m rag.eval.bench serve_load " + " ".join(args.argv),
        "machine": measure.machine(),
        "load_start": load_start,
        "load_end": load_end,
        "startup_s": round(startup, 1),
        "wall_s": load["wall_s"],
        "server_cpu_s": round(cpu1 - cpu0, 2),
        "config": {
            "clients": args.clients,
            "duration_s": args.duration,
            "timeout_s": args.timeout,
            "questions": _shown(Path(args.questions)),
            "n_questions": len(qs),
            "index": _shown(index),
            "documents": len(opened.docs),
            "chunks": len(opened),
            "settings": Settings(index_dir=str(index)).to_dict(),
        },
        "aggregates": aggregates(load["rows"], load["wall_s"]),
        "rows": load["rows"],
    }
    return res


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m rag.eval.bench serve_load", description=__doc__.splitlines()[0]
    )
    p.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one chat may take")
    p.add_argument("--index", help="an existing index (default: corpus/ built into --work)")
    p.add_argument("--work", default=str(DEFAULT_WORK), help="index, config and server log")
    p.add_argument("--questions", default=str(QUESTIONS), help="questions (JSON lines)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder")
    p.add_argument("--report-only", action="store_true",
                   help="write report.md again from OUT/results.json")  # fmt: skip
    p.add_argument("--startup-timeout", type=float, default=STARTUP_S, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.report_only:
        res = json.loads((args.out / "results.json").read_text(encoding="utf-8"))
        (args.out / "report.md").write_text(markdown(res), encoding="utf-8")
        return 0
    if args.clients < 1 or args.duration <= 0:
        print(
            "bench serve_load: --clients must be 1 or more and --duration above 0", file=sys.stderr
        )
        return 2
    res = run(args, log=lambda m: print(m, file=sys.stderr, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps(res, ensure_ascii=False, indent=1, default=str), encoding="utf-8"
    )
    (args.out / "report.md").write_text(markdown(res), encoding="utf-8")
    a = res["aggregates"]
    print(
        f"bench serve_load: {a['chats']} chats, {a['errors']} errors; first token p50 "
        f"{a['first_token_ms'].get('median', 0) / 1e3:.2f} s; wrote {args.out}/report.md",
        file=sys.stderr,
    )
    return 0 if a["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
