"""The ``generate`` flow: the replay requests mapped over generation shards, one engine per
shard, on the default runner or a Dask cluster (see :mod:`.runners`). Shard summaries are merged
into the stage's summary; the shared chunked cache makes shards independent and restartable.
"""

from __future__ import annotations

from typing import Any

import dask
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from ..tasks.stage import is_fresh, record
from ..tasks.workdir import Workdir
from .registry import skipped_summary
from .runners import RESOURCE, dask_runner
from .stages import publish


@task(name="generate-shard", cache_policy=NO_CACHE, persist_result=False, retries=2,
      retry_delay_seconds=exponential_backoff(backoff_factor=10), retry_jitter_factor=0.5)
def generate_shard(params: dict[str, Any], workdir: str, shard: tuple[int, int]) -> dict[str, Any]:
    from ..tasks.generation.stage import run_generate
    return run_generate(params, Workdir.at(workdir), shard=shard)


@flow(name="generate", persist_result=False, log_prints=True,
      description="Pseudo ground truth for the replay tasks, mapped over generation shards")
def generate_flow(params: dict[str, Any], workdir: str, force: bool = False,
                  options: dict[str, Any] | None = None) -> dict[str, Any]:
    from ..tasks.generation.stage import merge_summaries, stage_spec

    wd = Workdir.at(workdir)
    spec = stage_spec(params, wd)
    if not force and is_fresh(spec, wd):
        summary = skipped_summary(wd, "generate")
        publish("generate", summary, skipped=True)
        return summary
    shards = int((options or {}).get("shards", 1))
    with dask.annotate(resources={RESOURCE: 1}):
        futures = generate_shard.map([params] * shards, [workdir] * shards, [(i, shards) for i in range(shards)])
    summary = merge_summaries(wd, [f.result() for f in futures])
    record(spec, wd, summary)
    publish("generate", summary, skipped=False)
    return {**summary, "skipped": False}


def run_generate_stage(params: dict[str, Any], workdir: str, *, force: bool, runner: str,
                       dask_address: str | None, dask_workers: int) -> dict[str, Any]:
    """Run the generate flow on the chosen task runner."""
    if runner == "dask":
        with dask_runner(dask_address, dask_workers) as task_runner:
            return generate_flow.with_options(task_runner=task_runner)(
                params, workdir, force=force, options={"shards": dask_workers})
    return generate_flow(params, workdir, force=force)
