"""The ``build`` flow: every stage of the registry's build order (training on request).

A stage that is up to date is skipped by its stamp; a failing stage fails the build and leaves
the outputs of the stages before it intact, so the next build resumes at the failed stage.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from .generate import run_generate_stage
from .registry import BUILD_ORDER, Params, Summary
from .stages import FLOWS


def run_stage_flow(stage: str, params: Params, workdir: str, *, force: bool = False, runner: str = "local",
                   dask_address: str | None = None, dask_workers: int = 2,
                   options: dict[str, Any] | None = None) -> Summary:
    """One stage's flow: generate on its runner (local, process pool or Dask), any other stage on
    its own flow."""
    if stage == "generate":
        return run_generate_stage(params, workdir, force=force, runner=runner, dask_address=dask_address,
                                  dask_workers=dask_workers)
    return FLOWS[stage](params, workdir, force=force, options=options)


@flow(name="build", persist_result=False, log_prints=True, description="Every stage, in order")
def build_flow(params: Params, workdir: str, force: bool = False, runner: str = "local",
               dask_address: str | None = None, dask_workers: int = 2, train: bool = False) -> dict[str, Summary]:
    results = {stage: run_stage_flow(stage, params, workdir, force=force, runner=runner, dask_address=dask_address,
                                     dask_workers=dask_workers)
               for stage in BUILD_ORDER + (("train",) if train else ())}
    create_table_artifact(key="build-stages", description="build: what each stage did", table=[
        {"stage": s, "skipped": bool(r.get("skipped")), "rows": r.get("rows", ""), "why": r.get("rerun", "")}
        for s, r in results.items()])
    return results
