"""Process pools for CPU-bound batch work (report parsing, export conversion), one-off
background jobs (:class:`Background`: a source read while the reports are parsed) and reading one
item ahead in a thread (:func:`read_ahead`: the next shard while this one is validated).

A pool or job forks when this process runs no other thread: the workers start at once and inherit
the imported modules, and there is no lock another thread could hold at fork time. Otherwise (a
Prefect flow keeps threads) it spawns fresh interpreters, which is safe but pays their imports.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any, Generic, TypeVar

MAX_WORKERS = 8

T = TypeVar("T")
R = TypeVar("R")


def default_workers(jobs: int | None = None) -> int:
    """CPU count, at most :data:`MAX_WORKERS` and at most ``jobs``; at least 1."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS, jobs if jobs is not None else MAX_WORKERS))


def _context() -> multiprocessing.context.BaseContext:
    alone = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if alone else "spawn")


def process_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=_context())


def read_ahead(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``fn(item)`` for every item, in order, the next one made in a thread while the caller works
    on the current one (for work that releases the GIL: Parquet reads, Arrow compute); at most two
    results exist at a time. An exception propagates when its result is reached."""
    with ThreadPoolExecutor(1) as pool:
        pending: Future[R] | None = None
        for item in items:
            ahead = pool.submit(fn, item)
            if pending is not None:
                yield pending.result()
            pending = ahead
        if pending is not None:
            yield pending.result()


class Background(Generic[R]):
    """``fn(*args)`` computed in a forked child process while this one goes on (no thread is started
    here, so pools made meanwhile still fork). :meth:`result` waits and returns it, or raises the
    child's exception here; leaving the ``with`` block ends a child whose result was not taken.
    Where this process cannot fork safely (other threads run), ``fn`` runs here when the result is
    asked for: a spawned interpreter's imports would cost more than the jobs this is meant for."""

    def __init__(self, fn: Callable[..., R], *args: Any):
        self.name = getattr(fn, "__qualname__", repr(fn))
        self._call: Callable[[], R] | None = None
        self._process = None
        context = _context()
        if context.get_start_method() != "fork":
            self._call = partial(fn, *args)
            return
        self._results, sender = context.Pipe(duplex=False)
        self._process = context.Process(target=_send_result, args=(sender, fn, args), daemon=True)
        self._process.start()
        sender.close()

    def result(self) -> R:
        if self._process is None:
            assert self._call is not None
            return self._call()
        try:
            ok, value = self._results.recv()
        except EOFError:
            self._process.join()
            raise RuntimeError(f"the background process for {self.name} ended without a result "
                               f"(exit code {self._process.exitcode})") from None
        finally:
            self._results.close()
        self._process.join()
        if not ok:
            raise value
        return value

    def __enter__(self) -> Background[R]:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._process is None:
            return
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._results.close()


def _send_result(sender: Connection, fn: Callable[..., Any], args: tuple) -> None:
    try:
        outcome: tuple[bool, Any] = (True, fn(*args))
    except BaseException as err:  # noqa: BLE001 - re-raised in the parent
        outcome = (False, err)
    try:
        sender.send(outcome)
    except Exception as err:  # the result or exception does not pickle
        sender.send((False, RuntimeError(f"{type(err).__name__}: {err}")))
    sender.close()


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
