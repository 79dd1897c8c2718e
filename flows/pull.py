"""The ``pull`` flow: download and verify the sources (orchestration only; see tasks/sources/pull.py).

One task per checksum list and per file (images in batches of :data:`IMAGE_BATCH`), run by a
thread pool of ``sources.physionet.concurrency``; connection failures, timeouts and HTTP
429/5xx are retried with exponential backoff, nothing else is. The MIMIC-NLE step waits for the
reports; Rad-ReStruct runs alongside. No credential is a parameter of any flow or task: the
PhysioNet client is built inside the run from the environment, a netrc file, or the command line's
prompt (kept in this process).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from ..tasks.errors import ConfigError, InputError, StageFailure
from ..tasks.io import write_json
from ..tasks.sources import pull
from ..tasks.sources.physionet_http import TransientError
from ..tasks.sources.transfer_progress import active
from ..tasks.workdir import Workdir
from .stages import retry_options

TASK_OPTIONS: dict[str, Any] = {"persist_result": False, "cache_policy": NO_CACHE}


def transient_only(task: Any, task_run: Any, state: State) -> bool:
    """Retry connection failures, timeouts and HTTP 429/5xx; never a refused login or a bad checksum."""
    return isinstance(state.data, TransientError)


@task(name="checksum-list", **TASK_OPTIONS)
def sums_task(project: pull.Project, fetcher: pull.Fetcher, force: bool) -> dict[str, str]:
    return pull.fetch_sums(project, fetcher, force=force)


@task(name="images", **TASK_OPTIONS)
def batch_task(items: list[pull.RemoteFile], sums: dict[str, str], fetcher: pull.Fetcher,
               force: bool) -> list[pull.Outcome]:
    return pull.fetch_batch(items, sums, fetcher, force=force)


@task(name="mimic-nle", **TASK_OPTIONS)
def nle_task(plan: pull.PullPlan, fetcher: pull.Fetcher, force: bool) -> dict[str, Any]:
    return pull.pull_mimic_nle(plan, fetcher, force=force)


@task(name="rad-restruct", **TASK_OPTIONS)
def rad_restruct_task(plan: pull.PullPlan, fetcher: pull.Fetcher, force: bool) -> dict[str, Any]:
    return pull.pull_rad_restruct(plan, fetcher, force=force)


@flow(name="pull", persist_result=False, description="Download and verify MIMIC-CXR, MIMIC-NLE and Rad-ReStruct")
def pull_flow(params: dict[str, Any], workdir: str, images: str | None = None, force: bool = False) -> dict[str, Any]:
    wd = Workdir.at(workdir)
    plan = pull.plan_pull(params, wd)
    cfg = plan.config
    retry = retry_options(cfg.retries, delay=cfg.retry_delay_s, jitter=0.2, condition=transient_only)
    fetch_sums, fetch_images, rebuild_nle, fetch_rad_restruct = (
        t.with_options(**retry) for t in (sums_task, batch_task, nle_task, rad_restruct_task))
    fetch_file = batch_task.with_options(name="file", task_run_name="{items[0].rel}", **retry)
    progress = active()
    with pull.Fetcher(plan, progress) as fetcher:
        sums = {p: fetch_sums.submit(p, fetcher, force) for p in plan.projects()}
        files = plan.files()
        progress.expect(len(files))
        file_runs = [fetch_file.submit([f], sums[f.project], fetcher, force) for f in files]
        steps = [fetch_rad_restruct.submit(plan, fetcher, force)]
        wait(file_runs)
        image_runs: list[PrefectFuture] = []
        if _succeeded(file_runs):
            steps.append(rebuild_nle.submit(plan, fetcher, force))
            if images:
                batches = pull.image_batches(plan, pull.select_images(pull.parse_images(images, params), plan))
                progress.expect(sum(map(len, batches)))
                jpg_sums = quote(sums[cfg.mimic_cxr_jpg()].result())  # 377k entries: not for Prefect to walk
                image_runs = [fetch_images.submit(b, jpg_sums, fetcher, force) for b in batches]
        wait([*image_runs, *steps])
    raise_failures([*sums.values(), *file_runs, *image_runs, *steps])
    summary: dict[str, Any] = pull.summarize(o for run in file_runs for o in run.result())
    if image_runs:
        counts = pull.summarize(o for run in image_runs for o in run.result())
        summary.update({f"images_{key}": value for key, value in counts.items()})
    for step in steps:
        summary.update(step.result())
    write_json(summary, wd.report("pull-summary.json"))
    return summary


def _succeeded(runs: list[PrefectFuture]) -> bool:
    return all(run.state.is_completed() for run in runs)


def raise_failures(runs: list[PrefectFuture]) -> None:
    """One line for the command line: a refused login or bad setting first, then bad input, then the rest."""
    errors = [run.state.result(raise_on_failure=False) for run in runs if run.state.is_failed()]
    errors = [e for e in errors if isinstance(e, BaseException)]
    for kind in (ConfigError, InputError):
        for err in errors:
            if isinstance(err, kind):
                raise err
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StageFailure(f"pull: {len(errors)} download(s) failed after retries: {errors[0]}{more}")


def run_pull(params: dict[str, Any], workdir: str, *, images: str | None = None, force: bool = False) -> dict[str, Any]:
    """The flow with its thread pool sized by ``sources.physionet.concurrency``."""
    concurrency = pull.load_config(params).physionet.concurrency
    runner = ThreadPoolTaskRunner(max_workers=concurrency)
    return pull_flow.with_options(task_runner=runner)(params, workdir, images=images, force=force)
