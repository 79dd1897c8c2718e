"""One Prefect flow per stage, and the shared way a stage runs.

``execute`` is the whole life of a stage run: build its spec from the registry, skip it when its
stamp says inputs, settings and code are unchanged and its outputs intact (``force`` or a rerunning
option overrides), else say why it runs, run the stage function as a Prefect task (with retries
where the stage talks to a model or the network), record the stamp, and publish artifacts: a table
of row counts and the stage's key figures. Stage modules are imported on first use, so that the
CLI starts fast.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from ..tasks.errors import ConfigError, InputError
from ..tasks.stage import record
from ..tasks.workdir import Workdir
from .registry import STAGES, Params, Summary, check_options, freshness, producer, skipped_summary, why_run


def retry_unless_bad_input(task: Any, task_run: Any, state: Any) -> bool:
    """Retries are for models and networks; bad input or settings fail at once."""
    return not isinstance(state.data, (InputError, ConfigError))


def retry_options(retries: int, *, delay: float = 10, jitter: float = 0.5,
                  condition: Callable[[Any, Any, Any], bool] = retry_unless_bad_input) -> dict[str, Any]:
    """Prefect task options: ``retries`` with exponential backoff from ``delay`` seconds, where ``condition``."""
    if not retries:
        return {}
    return {"retries": retries, "retry_delay_seconds": exponential_backoff(backoff_factor=delay),
            "retry_jitter_factor": jitter, "retry_condition_fn": condition}


def name_the_writer(err: InputError, stage: str, params: Params, wd: Workdir) -> InputError:
    """``err`` naming the stage that writes its file, when another stage does."""
    writer = producer(err.path, params, wd)
    if writer is None or writer == stage:
        return err
    return InputError(err.path, f"{err.problem}; it is written by the {writer} stage (rerun it with "
                      f"`radialog-instruct {writer} --force`, or run `build`)", record=err.record, expected=err.expected)


def run_stage(name: str, params: Params, wd: Workdir, options: dict[str, Any]) -> Summary:
    try:
        return STAGES[name].functions().run(params, wd, **options)
    except InputError as err:
        raise name_the_writer(err, name, params, wd) from None


@cache
def _stage_task(name: str) -> Any:
    @task(name=f"{name}-run", persist_result=False, cache_policy=NO_CACHE, **retry_options(STAGES[name].retries))
    def run_stage_task(params: Params, workdir: str, options: dict[str, Any]) -> Summary:
        return run_stage(name, params, Workdir.at(workdir), options)

    return run_stage_task


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


def execute(name: str, params: Params, workdir: str, *, force: bool = False, options: dict[str, Any] | None = None,
            run: Callable[[], Summary] | None = None) -> Summary:
    """Run stage ``name`` unless it is up to date; ``run`` replaces the default stage task."""
    options = options or {}
    check_options(name, options)
    wd = Workdir.at(workdir)
    spec, state = freshness(name, params, wd)
    why = why_run(name, state, force=force, options=options)
    if why is None:
        summary = skipped_summary(state)
        publish(name, summary, skipped=True)
        return summary
    print(f"{name}: running ({why})")
    summary = run() if run is not None else _stage_task(name)(params, str(wd.root), options)
    record(spec, wd, summary, key=state.key)
    publish(name, summary, skipped=False)
    return {**summary, "skipped": False, "rerun": why}


def _stage_flow(name: str) -> Any:
    description = STAGES[name].description

    @flow(name=name, description=description, persist_result=False, log_prints=True)
    def stage_flow(params: Params, workdir: str, force: bool = False,
                   options: dict[str, Any] | None = None) -> Summary:
        return execute(name, params, workdir, force=force, options=options)

    stage_flow.__doc__ = description
    return stage_flow


#: The flow of every stage but generate (see :mod:`.generate`), by name.
FLOWS = {name: _stage_flow(name) for name in STAGES if name != "generate"}
