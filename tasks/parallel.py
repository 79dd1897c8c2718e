"""Process pools for CPU-bound batch work (report parsing, export conversion).

A pool forks when this process runs no other thread: the workers start at once and inherit the
imported modules, and there is no lock another thread could hold at fork time. Otherwise (a
Prefect flow keeps threads) it spawns fresh interpreters, which is safe but pays their imports.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

MAX_WORKERS = 8

T = TypeVar("T")
R = TypeVar("R")


def default_workers(jobs: int | None = None) -> int:
    """CPU count, at most :data:`MAX_WORKERS` and at most ``jobs``; at least 1."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS, jobs if jobs is not None else MAX_WORKERS))


def process_pool(workers: int) -> ProcessPoolExecutor:
    alone = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork" if alone else "spawn"))


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``fn(item)`` for every item, in input order: in this process when ``workers`` <= 1, else in
    a pool with at most ``2 * workers`` items in flight, so neither inputs nor results pile up.
    The first exception raised (in input order) propagates; work not yet started is cancelled."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with process_pool(workers) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
