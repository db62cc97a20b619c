"""Where ingestion's batches run: in this process, in local worker processes, or as Ray
tasks on a cluster (`rag ingest --ray ADDRESS`).

Ingestion is one job whatever runs it: the loading, segmenting and embedding tasks of
rag/index/workers.py and rag/index/embedding.py are plain functions of picklable
arguments, and an executor only decides where `fn(*task)` is called. Results always
come back in task order, with at most two tasks per worker in flight, so the driver
checkpoints, counts and writes the store exactly as it does without workers.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rag.errors import ConfigError


class Executor(Protocol):
    workers: int  # tasks run at once
    # an embedding task's thread count (None: share this machine's cores among `workers`)
    threads_per_task: int | None

    def map(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator:
        """`fn(*task)` for every task, in order."""
        ...


@dataclass(frozen=True)
class Inline:
    """In this process, one task after another."""

    workers: int = 1
    threads_per_task: int | None = None

    def map(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator:
        return (fn(*t) for t in tasks)


@dataclass(frozen=True)
class Processes:
    """Over `workers` local processes. "fork" starts in ~0.1 s and shares the loaded
    dictionaries; "spawn" for work whose onnxruntime or torch thread pool would not
    survive a fork. `initializer(*initargs)` runs once in each process."""

    workers: int
    start_method: str = "fork"
    initializer: Callable[..., None] | None = None
    initargs: tuple = ()
    threads_per_task: int | None = None

    def map(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator:
        ctx = mp.get_context(self.start_method)
        todo = iter(tasks)
        with ProcessPoolExecutor(
            self.workers, mp_context=ctx, initializer=self.initializer, initargs=self.initargs
        ) as pool:
            pending = deque(pool.submit(fn, *t) for t in itertools.islice(todo, 2 * self.workers))
            while pending:
                done = pending.popleft().result()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append(pool.submit(fn, *nxt))
                yield done


def _in_dir(cwd: str, fn: Callable, *args: Any) -> Any:
    # The driver's relative paths (a file's `source` is recorded as given) resolve on a
    # worker as on the driver: a cluster node sees the files through a shared mount.
    if os.getcwd() != cwd:
        os.chdir(cwd)
    return fn(*args)


@dataclass(frozen=True)
class RayTasks:
    """As Ray tasks of one CPU each, on the cluster this process is connected to
    (`connect_ray`); `workers` at once (0: one per CPU of the cluster)."""

    workers: int = 0
    threads_per_task: int | None = 1  # Ray gives each task one CPU

    def map(self, fn: Callable, tasks: Iterable[tuple]) -> Iterator:
        import ray

        workers = ray_workers(self.workers)
        remote = ray.remote(num_cpus=1, max_retries=2)(_in_dir)
        cwd = os.getcwd()
        todo = iter(tasks)
        pending = deque(remote.remote(cwd, fn, *t) for t in itertools.islice(todo, 2 * workers))
        while pending:
            done = ray.get(pending.popleft())
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(remote.remote(cwd, fn, *nxt))
            yield done


def ray_workers(workers: int) -> int:
    """Tasks that `RayTasks(workers)` runs at once on the connected cluster."""
    import ray

    return workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def _reachable(address: str) -> None:
    """A HOST:PORT that nothing answers on is refused at once: `ray.init` would retry
    for minutes before giving up."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return  # "auto", "local", ray://: Ray's to resolve
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as e:
        raise ConfigError(
            f"--ray {address}：连接不到 Ray 集群（{e.strerror or e}）；请确认地址，或先运行 ray start --head"
        ) from None


@contextlib.contextmanager
def connect_ray(address: str | None) -> Iterator[None]:
    """Connected to the Ray cluster at `address` while inside (nothing when None or "").

    `address` is what `ray.init` takes: "HOST:PORT" of a head started with `ray start
    --head`, "auto" for the one started on this machine, "local" for a new one in this
    process. The workers import this process's `rag` package (shipped as a runtime-env
    module), so the cluster runs the driver's code; its other dependencies, the model
    cache and the files must be on every node (docs/deploy.md).
    """
    if not address:
        yield
        return
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray 需要安装 Ray：pip install 'rag[ray]'（或运行 scripts/setup.sh）"
        ) from None
    if ray.is_initialized():  # a caller's own connection: left as it is
        yield
        return
    _reachable(address)
    here = str(Path(__file__).resolve().parents[1])
    try:
        ray.init(
            address=address,
            runtime_env={"py_modules": [here], "env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}},
            log_to_driver=False,
            logging_level="warning",
        )
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ConfigError(f"--ray {address}：连接不到 Ray 集群（{e}）；请确认地址，或先运行 ray start --head") from None  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()


def choose(
    ray_address: str | None,
    workers: int,
    start_method: str = "fork",
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> Executor:
    """Ray tasks when a cluster is named, else `workers` local processes (1: inline)."""
    if ray_address:
        return RayTasks(workers)
    if workers <= 1 or start_method not in mp.get_all_start_methods():
        return Inline()
    return Processes(workers, start_method, initializer, initargs)
