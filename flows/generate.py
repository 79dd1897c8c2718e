"""The ``generate`` flow: the replay requests mapped over generation shards, one engine per
shard, on the default runner or a Dask cluster (see :mod:`.runners`). Shard summaries are merged
into the stage's summary; the shared chunked cache makes shards independent and restartable.
"""

from __future__ import annotations

import dask
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from ..tasks.workdir import Workdir
from .registry import STAGES, Params, Summary
from .runners import RESOURCE, dask_runner
from .stages import execute, retry_options, run_stage


@task(name="generate-shard", cache_policy=NO_CACHE, persist_result=False, **retry_options(STAGES["generate"].retries))
def generate_shard(params: Params, workdir: str, shard: tuple[int, int]) -> Summary:
    return run_stage("generate", params, Workdir.at(workdir), {"shard": shard})


@flow(name="generate", persist_result=False, log_prints=True, description=STAGES["generate"].description)
def generate_flow(params: Params, workdir: str, force: bool = False, shards: int = 1) -> Summary:
    from ..tasks.generation.stage import merge_summaries

    def run() -> Summary:
        with dask.annotate(resources={RESOURCE: 1}):
            futures = generate_shard.map([params] * shards, [workdir] * shards, [(i, shards) for i in range(shards)])
        return merge_summaries(Workdir.at(workdir), [f.result() for f in futures])

    return execute("generate", params, workdir, force=force, run=run)


def run_generate_stage(params: Params, workdir: str, *, force: bool, runner: str,
                       dask_address: str | None, dask_workers: int) -> Summary:
    """Run the generate flow on the chosen task runner."""
    if runner == "dask":
        with dask_runner(dask_address, dask_workers) as task_runner:
            return generate_flow.with_options(task_runner=task_runner)(params, workdir, force=force,
                                                                       shards=dask_workers)
    return generate_flow(params, workdir, force=force)

