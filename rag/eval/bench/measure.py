"""Measuring helpers: latency summaries, process memory, the machine, the matmul peak."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[3]


def summary(ms: list[float]) -> dict[str, float]:
    """Median, p95, p99, mean and count of a list of milliseconds."""
    if not ms:
        return {"n": 0}
    a = np.asarray(ms, np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": len(a),
        "median": round(float(p50), 3),
        "p95": round(float(p95), 3),
        "p99": round(float(p99), 3),
        "mean": round(float(a.mean()), 3),
    }


def _status(field: str) -> int:
    """A VmRSS/VmHWM-style field of /proc/self/status, in bytes (0 where unknown)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss() -> int:
    return _status("VmRSS")


def peak_rss() -> int:
    """Peak resident memory since start, or since the last `reset_peak_rss()`."""
    return _status("VmHWM")


def reset_peak_rss() -> bool:
    """Restart the peak-RSS count (Linux: writing 5 to clear_refs); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def bytes_read() -> int:
    """Bytes this process has read through read(2) and friends (/proc/self/io rchar)."""
    try:
        with open("/proc/self/io", encoding="ascii") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def folder_bytes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(Path(folder).iterdir()) if p.is_file()}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions = {}
    for mod in (
        "numpy",
        "scipy",
        "faiss",
        "torch",
        "jieba",
        "sentence_transformers",
        "llama_index.core",
    ):
        try:
            m = __import__(mod, fromlist=["__version__"])
            versions[mod] = getattr(m, "__version__", "?")
        except Exception:  # an absent optional package is just not reported
            continue
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "simd": sorted(flags & {"avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"}),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git": git_state(),
    }


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "rag"))}


def matmul_peak(n: int = 2048, repeats: int = 5) -> dict[str, Any]:
    """Best float32 GFLOP/s of an n x n matmul, with torch (what the model runs on) and numpy.

    The larger of the two is this machine's measured peak; the embedding model cannot
    go faster than its FLOPs per token divided by it.
    """
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n**3
    out: dict[str, Any] = {"n": n, "repeats": repeats}

    cpu: dict[str, float] = {}

    def best(f, name: str) -> float:
        f()  # warm-up
        times = []
        c = time.process_time()
        for _ in range(repeats):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        # FLOPs per CPU-second of all threads: what one core does, however busy the machine
        cpu[name] = round(flops * repeats / (time.process_time() - c) / 1e9, 2)
        return flops / min(times) / 1e9

    out["numpy_gflops"] = round(best(lambda: a @ b, "numpy"), 2)
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        with torch.inference_mode():
            out["torch_gflops"] = round(best(lambda: torch.mm(ta, tb), "torch"), 2)
        out["torch_threads"] = torch.get_num_threads()
    except ImportError:
        out["torch_gflops"] = None
    out["peak_gflops"] = max(v for v in (out["numpy_gflops"], out.get("torch_gflops")) if v)
    out["gflops_per_cpu_s"] = cpu
    out["peak_gflops_per_cpu_s"] = max(cpu.values())
    return out


def encoder_flops_per_token(model_dir: Path, seq_len: float) -> dict[str, float]:
    """Forward FLOPs per token of a BERT-style encoder read from its config.json.

    Dense layers: 2 x (4 H^2 + 2 H F) per layer; attention scores and mixing:
    2 x 2 x L x H per layer at sequence length L. The embedding lookup does no FLOPs.
    """
    cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    h, f, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    dense = 2.0 * (4 * h * h + 2 * h * f) * layers
    attn = 4.0 * seq_len * h * layers
    return {"dense": dense, "attention": attn, "total": dense + attn, "seq_len": seq_len}
