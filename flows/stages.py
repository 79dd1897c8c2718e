"""One Prefect flow per stage, and the shared way a stage runs.

``execute`` is the whole life of a stage run: build its :class:`StageSpec`, skip it when its stamp
says inputs, settings and code are unchanged and its outputs intact (``force`` overrides), else
run the stage function as a Prefect task (with retries where the stage talks to a model or the
network), record the stamp, and publish artifacts: a table of row counts and the stage's key
figures. Stage functions are imported lazily so that the CLI starts fast.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from ..tasks.stage import StageSpec, is_fresh, record
from ..tasks.workdir import Workdir
from .registry import STAGES, StageDef, skipped_summary


def _stage_task(stage: StageDef) -> Any:
    options: dict[str, Any] = {"name": f"{stage.name}-run", "persist_result": False, "cache_policy": NO_CACHE}
    if stage.retries:
        options.update(retries=stage.retries, retry_delay_seconds=exponential_backoff(backoff_factor=10),
                       retry_jitter_factor=0.5)

    @task(**options)
    def run_stage(params: dict[str, Any], workdir: str, options: dict[str, Any]) -> dict[str, Any]:
        return stage.function(stage.run)(params, Workdir.at(workdir), **options)

    return run_stage


def _flat(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, name + "."))
        elif not isinstance(value, list):
            out[name] = value
    return out


def publish(stage: str, summary: dict[str, Any], skipped: bool) -> None:
    """A table artifact of row counts and a markdown artifact of the stage's key figures."""
    flat = _flat(summary)
    rows = [{"table": k.split(".", 1)[-1], "rows": v} for k, v in flat.items()
            if k.startswith(("rows", "rows_per_task", "rows_per_split")) and isinstance(v, int)]
    if rows:
        create_table_artifact(key=f"{stage}-rows", table=rows, description=f"{stage}: row counts")
    figures = "\n".join(f"| {k} | {v} |" for k, v in flat.items() if not k.startswith("rows"))
    create_markdown_artifact(
        key=f"{stage}-summary",
        markdown=f"# {stage}{' (skipped: unchanged)' if skipped else ''}\n\n| figure | value |\n|---|---|\n{figures}\n",
        description=f"{stage}: key figures")


def execute(name: str, params: dict[str, Any], workdir: str, *, force: bool = False,
            options: dict[str, Any] | None = None) -> dict[str, Any]:
    stage = STAGES[name]
    wd = Workdir.at(workdir)
    spec: StageSpec = stage.function(stage.spec)(params, wd)
    if not force and is_fresh(spec, wd):
        summary = skipped_summary(wd, name)
        publish(name, summary, skipped=True)
        return summary
    summary = _stage_task(stage)(params, str(wd.root), options or {})
    record(spec, wd, summary)
    publish(name, summary, skipped=False)
    return {**summary, "skipped": False}


def _stage_flow(name: str, description: str) -> Any:
    @flow(name=name, description=description, persist_result=False, log_prints=True)
    def stage_flow(params: dict[str, Any], workdir: str, force: bool = False,
                   options: dict[str, Any] | None = None) -> dict[str, Any]:
        return execute(name, params, workdir, force=force, options=options)

    stage_flow.__doc__ = description
    return stage_flow


ingest_flow = _stage_flow("ingest", "MIMIC-CXR, MIMIC-NLE and Rad-ReStruct -> interim Parquet tables")
label_flow = _stage_flow("label", "CheXpert labels for every study (CheXbert, rules or provided)")
plan_flow = _stage_flow("plan", "Decide every sample of the ten tasks")
audit_flow = _stage_flow("audit", "Re-label pseudo labels and judge their faithfulness")
assemble_flow = _stage_flow("assemble", "Plan + generations + audit -> versioned shards and exports")
validate_flow = _stage_flow("validate", "Great Expectations suite over every shard")
release_flow = _stage_flow("release", "PhysioNet release folder with dataset card, checksums and PHI scan")
train_flow = _stage_flow("train", "LoRA fine-tuning from the shards")

FLOWS = {"ingest": ingest_flow, "label": label_flow, "plan": plan_flow, "audit": audit_flow,
         "assemble": assemble_flow, "validate": validate_flow, "release": release_flow, "train": train_flow}
