"""The ``radialog-instruct`` command line: a subcommand per stage, ``build`` for all of them, and
utilities (``make-demo``, ``label-file``, ``import-prompts``, ``release --verify``, ``dvc-yaml``).

Every stage command takes ``--workdir`` (default ``work/``, or ``workdir`` in params.yaml),
``--params`` (default: the packaged params.yaml), ``--set KEY=VALUE`` overrides, ``--demo`` (use
the bundled synthetic corpus and tiny local models) and ``--force`` (run even when unchanged).
The whole params file and the source layouts are checked before anything runs or is written;
Prefect starts only when a stage has to run (:func:`execute`). Bad input ends the command with one
line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..tasks import workdir_lock
from ..tasks.config import PROJECT_ROOT, load_params
from ..tasks.errors import ConfigError, InputError, StageFailure
from ..tasks.hugepages import disable_transparent_hugepages
from ..tasks.io import write_text
from ..tasks.workdir import Workdir
from . import environment
from .registry import BUILD_ORDER, check_options, freshness, skipped_summary, validate_params, why_run

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Build the RaDialog-Instruct dataset and train on it.")
console = Console(stderr=True)
out = Console()

WorkdirOpt = Annotated[Path | None, typer.Option("--workdir", help="Folder for all stage outputs [default: work/]")]
ParamsOpt = Annotated[Path | None, typer.Option("--params", help="Settings file [default: the project's params.yaml]")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a setting: --set label.labeler=rules")]
DemoOpt = Annotated[bool, typer.Option("--demo", help="Use the bundled synthetic demo corpus and tiny models")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Run even when inputs, settings and code are unchanged")]


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (InputError, ConfigError, StageFailure) as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    return wrapper


def context(params: Path | None, overrides: list[str] | None, demo: bool, workdir: Path | None,
            stages: Sequence[str]) -> tuple[dict[str, Any], Workdir]:
    """The checked settings and the work dir of a command running ``stages``; nothing is written."""
    settings = load_params(params, overrides or [], demo=demo)
    validate_params(settings, stages)
    return settings, Workdir.at(workdir or settings.get("workdir") or "work")


@dataclass(frozen=True)
class How:
    """How a command runs its stages (never what they write: that is settings)."""

    force: bool = False
    runner: str = "local"
    dask_address: str | None = None
    dask_workers: int = 2
    train: bool = False


def execute(command: str, stages: Sequence[str], settings: dict[str, Any], wd: Workdir, how: How,
            options: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The one place where a command's stages run, holding the work dir's lock. When every stage is
    up to date (and nothing forces a run) the recorded summaries come back without starting
    Prefect; otherwise the stage's flow (or ``build``) runs, and each stage skips or reruns by its
    stamp."""
    options = options or {}
    for name in stages:
        check_options(name, options)
    with workdir_lock.hold(wd.root, command):  # one command per work dir; a second waits, then skips
        if not how.force:
            skipped: dict[str, dict[str, Any]] = {}
            for name in stages:  # the first stage to run decides: its outputs change the later inputs
                state = freshness(name, settings, wd)[1]
                if why_run(name, state, force=False, options=options) is not None:
                    break
                skipped[name] = skipped_summary(state)
            else:
                return skipped
        environment.prepare(wd.root)
        with environment.quiet_engine():  # only now pay for the Prefect engine's start-up
            if command == "build":
                from .build import build_flow
                return build_flow(settings, str(wd.root), force=how.force, runner=how.runner,
                                  dask_address=how.dask_address, dask_workers=how.dask_workers, train=how.train)
            from .build import run_stage_flow

            (stage,) = stages
            summary = run_stage_flow(stage, settings, str(wd.root), force=how.force, runner=how.runner,
                                     dask_address=how.dask_address, dask_workers=how.dask_workers, options=options)
        return {stage: summary}


def show(stage: str, summary: dict[str, Any]) -> None:
    """Print the row counts a stage reports, and its key figures."""
    state = "unchanged, skipped" if summary.get("skipped") else f"done ({summary.get('rerun', 'ran')})"
    table = Table(title=f"{stage}: {state}", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("rows", "rows_per_task", "rows_per_split"):
        value = summary.get(key)
        if isinstance(value, dict):
            for name, n in value.items():
                table.add_row(f"{key.replace('rows_per_', '')}: {name}" if key != "rows" else name, str(n))
        elif isinstance(value, int):
            table.add_row("rows", str(value))
    for key, value in summary.items():
        if key not in ("rows", "rows_per_task", "rows_per_split", "rows_per_task_split", "skipped", "rerun") \
                and isinstance(value, (int, float, str, bool)):
            table.add_row(key, str(value))
    out.print(table)


def stage_command(stage: str, params: Path | None, set_: list[str] | None, demo: bool, workdir: Path | None,
                  how: How, flags: dict[str, Any] | None = None, options: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Run one stage: ``flags`` are the command's settings flags (params keys, skipped when None)."""
    settings, wd = context(params, _overrides(set_, flags or {}), demo, workdir, [stage])
    summary = execute(stage, [stage], settings, wd, how, options)[stage]
    show(stage, summary)
    return summary


def _overrides(set_: list[str] | None, flags: dict[str, Any]) -> list[str]:
    """``--set`` items plus the command's flags that are settings (those not None)."""
    extra = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in flags.items() if v is not None]
    return [*(set_ or []), *extra]


@app.command()
@one_line_errors
def pull(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None,
         images: Annotated[str | None, typer.Option(
             "--images", help="Also the JPGs: all, split names (train,validate,test), or built[:VERSION] "
                              "(the images the shards of a built version use)")] = None,
         force: Annotated[bool, typer.Option(
             "--force", help="Hash every file again instead of trusting the record of verified files, "
                             "fetch the checksum lists again, redo MIMIC-NLE and Rad-ReStruct")] = False) -> None:
    """Download MIMIC-CXR, MIMIC-CXR-JPG, MIMIC-NLE and Rad-ReStruct into the sources: folders, verified.

    PhysioNet credentials: PHYSIONET_USERNAME / PHYSIONET_PASSWORD, ~/.netrc, or a prompt.
    """
    from contextlib import nullcontext

    from ..tasks.sources.credentials import prepare_credentials
    from ..tasks.sources.pull import parse_images, plan_pull
    from ..tasks.sources.transfer_progress import Progress, RichProgress, activated

    settings, wd = context(params, set_, False, workdir, ())
    wd.root.mkdir(parents=True, exist_ok=True)
    environment.prepare(wd.root)
    plan = plan_pull(settings, wd)  # settings that cannot work fail here, before the engine starts
    if images:
        parse_images(images, settings)
    prepare_credentials(plan.config.host, interactive=sys.stdin.isatty())
    from .pull import run_pull
    bars = RichProgress(console) if console.is_terminal else nullcontext(Progress())  # no bars in logs
    with workdir_lock.hold(wd.root, "pull"), environment.quiet_engine(), bars as progress, activated(progress):
        summary = run_pull(settings, str(wd.root), images=images, force=force)
    show("pull", summary)


@app.command()
@one_line_errors
def ingest(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
           force: ForceOpt = False) -> None:
    """Read MIMIC-CXR, MIMIC-NLE and Rad-ReStruct into interim Parquet tables."""
    stage_command("ingest", params, set_, demo, workdir, How(force))


@app.command()
@one_line_errors
def label(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
          force: ForceOpt = False,
          labeler: Annotated[str | None, typer.Option(help="auto | chexbert | rules | provided")] = None,
          compare: Annotated[bool, typer.Option("--compare", help="Also measure agreement with MIMIC's "
                                                "provided CheXpert labels (reports/label-compare.json)")] = False
          ) -> None:
    """CheXpert labels for every study (CheXbert, the rule labeler, or MIMIC's provided CSV)."""
    summary = stage_command("label", params, set_, demo, workdir, How(force), {"label.labeler": labeler},
                            {"compare": compare})
    if compare and isinstance(summary.get("compare"), dict):
        show_compare(summary["compare"])


def show_compare(result: dict[str, Any]) -> None:
    table = Table(title="agreement with the provided CheXpert labels (F1)", header_style="bold")
    for col in ("condition", "positive", "negative", "uncertain"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for name, row in (result.get("per_condition") or {}).items():
        table.add_row(name, *(f"{(row.get(k) or {}).get('f1', float('nan')):.3f}" for k in ("positive", "negative", "uncertain")))
    out.print(table)
    for key in ("ce_macro_f1", "studies_compared", "skipped"):
        if key in result:
            out.print(f"{key}: {result[key]}")


@app.command("label-file")
@one_line_errors
def label_file(in_csv: Annotated[Path, typer.Argument(help="CSV with a header row")],
               column: Annotated[str, typer.Option("--column", help="The text column to label")],
               out_csv: Annotated[Path, typer.Option("-o", "--out", help="Output CSV")],
               labeler: Annotated[str | None, typer.Option(help="auto | chexbert | rules")] = None,
               params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Label any CSV's text column; writes the text then the 14 conditions (1 / 0 / -1 / blank)."""
    from ..tasks.labeling.stage import label_file as run
    settings = load_params(params, set_ or [])
    environment.prepare(Path(settings.get("workdir") or "work").resolve())
    out.print(run(in_csv, column, out_csv, labeler, settings))


@app.command()
@one_line_errors
def plan(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
         force: ForceOpt = False) -> None:
    """Decide every sample of the ten tasks (no model runs)."""
    stage_command("plan", params, set_, demo, workdir, How(force))


RunnerOpt = Annotated[str, typer.Option("--runner", help="local (one process) | dask (generation shards on a "
                                        "Dask cluster, one engine per worker)")]
DaskAddressOpt = Annotated[str | None, typer.Option("--dask-address", help="Existing scheduler, e.g. "
                                                    "tcp://10.0.0.5:8786 [default: start a local cluster]")]
DaskWorkersOpt = Annotated[int, typer.Option("--dask-workers", help="Local cluster size (one per GPU)")]


def _runner(runner: str) -> str:
    if runner not in ("local", "dask"):
        raise ConfigError(f"--runner {runner!r}: expected local or dask")
    return runner


@app.command()
@one_line_errors
def generate(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
             force: ForceOpt = False, runner: RunnerOpt = "local", dask_address: DaskAddressOpt = None,
             dask_workers: DaskWorkersOpt = 2) -> None:
    """Generate the replay tasks' pseudo ground truth into the content-addressed cache."""
    stage_command("generate", params, set_, demo, workdir, How(force, _runner(runner), dask_address, dask_workers))


@app.command()
@one_line_errors
def audit(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
          force: ForceOpt = False) -> None:
    """Re-label every pseudo label and judge it (interim/audit.parquet; assemble writes the audit report)."""
    stage_command("audit", params, set_, demo, workdir, How(force))


@app.command()
@one_line_errors
def assemble(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
             force: ForceOpt = False,
             exclude_failed_audit: Annotated[bool | None, typer.Option(
                 "--exclude-failed-audit/--keep-failed-audit",
                 help="Move rows that failed the audit to the exclusion shards [default: "
                      "assemble.exclude_failed_audit]")] = None) -> None:
    """Join plan, generations and audit into versioned shards, manifest and JSON exports."""
    stage_command("assemble", params, set_, demo, workdir, How(force),
                  {"assemble.exclude_failed_audit": exclude_failed_audit})


@app.command()
@one_line_errors
def validate(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
             force: ForceOpt = False) -> None:
    """Great Expectations suite over every shard; exits non-zero on any failure."""
    stage_command("validate", params, set_, demo, workdir, How(force))


@app.command()
@one_line_errors
def release(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
            force: ForceOpt = False,
            verify: Annotated[Path | None, typer.Option("--verify", help="Recheck an existing release folder "
                                                        "(checksums, names, PHI scan) instead of building")] = None
            ) -> None:
    """Build the PhysioNet release folder (dataset card, licence note, SHA256SUMS, PHI scan)."""
    if verify is not None:
        from ..tasks.release.physionet import verify_release
        out.print(verify_release(verify))
        return
    stage_command("release", params, set_, demo, workdir, How(force))


def launched() -> bool:
    """Whether a launcher (accelerate launch / torchrun) started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@app.command()
@one_line_errors
def train(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
          force: ForceOpt = False,
          max_steps: Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps "
                                                        "(smoke runs)")] = None,
          resume: Annotated[bool, typer.Option("--resume/--no-resume",
                                               help="Continue from the latest checkpoint")] = True) -> None:
    """LoRA fine-tuning of the base model on the shards (adapter + metadata); runs data-parallel
    under accelerate launch / torchrun."""
    if launched():  # every rank trains without the flow engine; rank 0 records (trainer/launch.py)
        from ..trainer.launch import run_launched
        settings, wd = context(params, _overrides(set_, {"train.max_steps": max_steps}), demo, workdir,
                               ["train"])
        summary = run_launched(settings, wd, force=force, resume=resume,
                               hold=lambda: workdir_lock.hold(wd.root, "train"))
        if summary is not None:
            show("train", summary)
        return
    stage_command("train", params, set_, demo, workdir, How(force), {"train.max_steps": max_steps},
                  {"resume": resume})


@app.command()
@one_line_errors
def build(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
          force: ForceOpt = False, runner: RunnerOpt = "local", dask_address: DaskAddressOpt = None,
          dask_workers: DaskWorkersOpt = 2,
          with_train: Annotated[bool, typer.Option("--train", help="Also train a LoRA adapter at the end")] = False,
          max_steps: Annotated[int | None, typer.Option("--max-steps", help="With --train: stop after N steps")] = None
          ) -> None:
    """Every stage in order: ingest, label, plan, generate, audit, assemble, validate, release."""
    if launched():
        raise ConfigError("build runs in one process: build first, then start `train` under the launcher")
    stages = [*BUILD_ORDER, *(["train"] if with_train else [])]
    settings, wd = context(params, _overrides(set_, {"train.max_steps": max_steps}), demo, workdir, stages)
    results = execute("build", stages, settings, wd, How(force, _runner(runner), dask_address, dask_workers,
                                                         with_train))
    show_build(results, wd)


@app.command("dvc-yaml")
@one_line_errors
def dvc_yaml(path: Annotated[Path, typer.Option("-o", "--out", help="Where to write it")] = PROJECT_ROOT / "dvc.yaml",
             check: Annotated[bool, typer.Option("--check", help="Only compare: exit 1 when the file differs "
                                                 "from the stage registry")] = False) -> None:
    """Write dvc.yaml from the stage registry (the stamps' own inputs, outputs, settings and code)."""
    from .dvc_yaml import render_dvc_yaml
    text = render_dvc_yaml()
    if check:
        same = path.exists() and path.read_text(encoding="utf-8") == text
        out.print(f"{path}: {'up to date' if same else 'differs from the stage registry (run radialog-instruct dvc-yaml)'}")
        raise typer.Exit(0 if same else 1)
    write_text(text, path)
    out.print(f"wrote {path}")


def show_build(results: dict[str, dict[str, Any]], wd: Workdir) -> None:
    table = Table(title="build", header_style="bold")
    for col in ("stage", "state", "key figures"):
        table.add_column(col)
    for stage, summary in results.items():
        figures = ", ".join(f"{k}={summary[k]}" for k in ("rows", "requests", "model_calls", "cache_hits",
                                                           "labeler", "pass_rate", "failed", "files")
                            if k in summary and not isinstance(summary[k], (dict, list)))
        state = "skipped (unchanged)" if summary.get("skipped") else f"ran: {summary.get('rerun', '')}"
        table.add_row(stage, state, figures)
    out.print(table)
    assembled = results.get("assemble", {})
    if isinstance(assembled.get("rows_per_task"), dict):
        show_dataset(assembled)
    out.print(f"work dir: {wd.root}")


def show_dataset(assembled: dict[str, Any]) -> None:
    """Rows per task and split of the shards, and the rows the audit or a reviewer moved to the exclusion shards."""
    excluded = (assembled.get("excluded") or {}).get("per_task", {})
    kept = assembled.get("rows_per_task", {})
    table = Table(title=f"dataset {assembled.get('version', '')}: {assembled.get('rows', 0)} rows",
                  header_style="bold")
    for col in ("task", "rows", "excluded (audit or review)"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task in sorted(set(kept) | set(excluded)):
        table.add_row(task, str(kept.get(task, 0)), str(excluded.get(task, 0)))
    for split, n in (assembled.get("rows_per_split") or {}).items():
        table.add_row(f"split: {split}", str(n), "")
    out.print(table)


@app.command("import-prompts")
@one_line_errors
def import_prompts(radialog_checkout: Annotated[Path, typer.Argument(help="A checkout of ChantalMP/RaDialog")],
                   out_dir: Annotated[Path, typer.Option("-o", "--out", help="Folder for the template YAMLs")]
                   = Path("work/prompt_templates_original")) -> None:
    """Import the original prompts (data/instruct_prompts/*_prompts.csv, vicuna_prompts.json and the
    strings in data/create_data.py and data/instruct_tasks.py) as a template folder."""
    from ..tasks.instruct.import_original import import_original
    out.print(import_original(radialog_checkout, out_dir))
    out.print(f"faithful v1: --set plan.preset=radialog-v1 --set plan.templates_dir={out_dir}")


@app.command("make-demo")
@one_line_errors
def make_demo(out_dir: Annotated[Path, typer.Argument(help="Target folder")] = Path("data/demo"),
              rad_restruct: Annotated[Path | None, typer.Option(help="Rad-ReStruct data folder to copy")] = None,
              seed: Annotated[int, typer.Option(help="Generator seed")] = 20240712) -> None:
    """(Re)generate the synthetic demo corpus (deterministic)."""
    from ..tasks.sources.demo import generate_demo
    counts = generate_demo(out_dir, seed=seed, rad_restruct_src=rad_restruct)
    out.print(counts)


# --- review: human decisions on the pseudo labels -------------------------------------------

review_app = typer.Typer(no_args_is_help=True, help="Human review of the pseudo labels: a local web app, and CSV "
                         "import / export of the decisions (reviews/decisions.parquet in the work dir).")
app.add_typer(review_app, name="review")
ReviewerOpt = Annotated[str | None, typer.Option("--reviewer", help="Name recorded with each decision "
                                                 "[default: your login name]")]


def _review_workdir(workdir: Path | None) -> Workdir:
    wd = Workdir.at(workdir or "work")
    if not wd.root.is_dir():
        raise InputError(wd.root, "work dir not found", expected="a built work dir (radialog-instruct build)")
    return wd


def _reviewer(name: str | None) -> str:
    if name:
        return name
    import getpass
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@review_app.command("serve")
@one_line_errors
def review_serve(workdir: WorkdirOpt = None,
                 port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1")] = 8765,
                 host: Annotated[str | None, typer.Option("--host", help="Serve on another interface (e.g. 0.0.0.0): "
                                                          "anyone who reaches it reads MIMIC-derived text")] = None,
                 reviewer: ReviewerOpt = None) -> None:
    """Local web app: read every audited replay row, filter, and accept / reject by keyboard."""
    from ..tasks.quality.review.app import LOOPBACK, serve
    wd = _review_workdir(workdir)
    bound = host or "127.0.0.1"
    if bound not in LOOPBACK:
        console.print(f"[bold yellow]warning:[/] serving on {bound}: anyone who can reach this machine can read the "
                      "reports and answers (MIMIC data must stay with credentialed users)", highlight=False)
    name = _reviewer(reviewer)
    url_host = f"[{bound}]" if ":" in bound else bound
    out.print(f"reviewing {wd.root} as {name}: http://{url_host}:{port}/  (Ctrl+C stops)", highlight=False)
    serve(wd, host=bound, port=port, reviewer=name)


@review_app.command("import")
@one_line_errors
def review_import(csv_file: Annotated[Path, typer.Argument(help="CSV with sample_id,decision[,note][,reviewer]")],
                  workdir: WorkdirOpt = None, reviewer: ReviewerOpt = None) -> None:
    """Append the decisions of a CSV (accept / reject per sample id); a file with a bad row imports nothing."""
    from ..tasks.quality.review.spreadsheet import import_csv
    out.print(import_csv(csv_file, _review_workdir(workdir), reviewer=_reviewer(reviewer)))


@review_app.command("export")
@one_line_errors
def review_export(workdir: WorkdirOpt = None,
                  out_csv: Annotated[Path, typer.Option("-o", "--out", help="CSV to write")] = Path("review.csv"),
                  decided_only: Annotated[bool, typer.Option("--decided-only", help="Only rows with a decision")]
                  = False) -> None:
    """Every audited replay row with its decision and context, as CSV to fill in and import back."""
    from ..tasks.quality.review.spreadsheet import export_csv
    out.print(export_csv(_review_workdir(workdir), out_csv, decided_only=decided_only))


def main() -> None:
    disable_transparent_hugepages()
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":  # python -m radialog_instruct.flows.cli (as accelerate launch -m / torchrun -m run it)
    main()
