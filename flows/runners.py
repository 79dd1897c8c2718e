"""Task runners for scale-out: a local Dask cluster (one worker per GPU) or an existing scheduler.

Each worker runs one generation engine; the ``GPU`` worker resource (one per worker) makes Dask
run at most one generation shard per worker at a time. On a machine with CUDA devices each local
worker sees only its own GPU (``CUDA_VISIBLE_DEVICES``). Workers share the chunked generation
cache through the file system, so a lost worker only costs its chunk in flight.

Without a Prefect server every process would start its own temporary API; the local cluster's
workers inherit ``PREFECT_API_URL`` of the flow process's temporary API instead (set by
:func:`.environment.quiet_engine`, which every flow runs under). The workers are child processes of
this one that exit when it does, however it ends (distributed's worker processes watch a pipe
from their parent).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

RESOURCE = "GPU"


def cuda_device_count() -> int:
    try:
        import torch
        return torch.cuda.device_count()
    except ImportError:
        return 0


def local_cluster(n_workers: int) -> Any:
    """A Dask cluster of ``n_workers`` single-threaded worker processes, one ``GPU`` each."""
    from distributed import LocalCluster, Nanny

    gpus = cuda_device_count()
    cluster = LocalCluster(n_workers=0, processes=True, dashboard_address=":0")
    for i in range(n_workers):
        env = {"CUDA_VISIBLE_DEVICES": str(i % gpus)} if gpus else {}
        cluster.worker_spec[f"worker-{i}"] = {
            "cls": Nanny, "options": {"nthreads": 1, "resources": {RESOURCE: 1}, "env": env}}
    cluster.sync(cluster._correct_state)
    cluster.wait_for_workers(n_workers)
    return cluster


@contextmanager
def dask_runner(address: str | None, n_workers: int) -> Iterator[Any]:
    """A DaskTaskRunner on ``address`` or on a local cluster that lives for the block."""
    from prefect_dask import DaskTaskRunner

    if address:
        yield DaskTaskRunner(address=address)
        return
    cluster = local_cluster(n_workers)
    try:
        yield DaskTaskRunner(address=cluster.scheduler_address)
    finally:
        cluster.close()
