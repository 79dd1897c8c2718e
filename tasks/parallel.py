"""Process pools for CPU-bound batch work (report parsing, export conversion).

A pool forks when this process runs no other thread: the workers start at once and inherit the
imported modules, and there is no lock another thread could hold at fork time. Otherwise (a
Prefect flow keeps threads) it spawns fresh interpreters, which is safe but pays their imports.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor

MAX_WORKERS = 8


def default_workers(jobs: int | None = None) -> int:
    """CPU count, at most :data:`MAX_WORKERS` and at most ``jobs``; at least 1."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS, jobs if jobs is not None else MAX_WORKERS))


def process_pool(workers: int) -> ProcessPoolExecutor:
    alone = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork" if alone else "spawn"))
