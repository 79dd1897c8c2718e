"""The ``radialog-instruct`` command line: a subcommand per stage, ``build`` for all of them, and
utilities (``make-demo``, ``label-file``, ``import-prompts``, ``release --verify``).

Every stage command takes ``--workdir`` (default ``work/``, or ``workdir`` in params.yaml),
``--params`` (default: the project's params.yaml), ``--set KEY=VALUE`` overrides, ``--demo`` (use
the bundled synthetic corpus and tiny local models) and ``--force`` (run even when unchanged).
Bad input ends the command with one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..tasks.config import load_params
from ..tasks.errors import ConfigError, InputError
from ..tasks.workdir import Workdir
from . import environment
from .registry import fresh_summary

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
        except (InputError, ConfigError) as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
    return wrapper


def context(params: Path | None, overrides: list[str] | None, demo: bool, workdir: Path | None
            ) -> tuple[dict[str, Any], Workdir]:
    settings = load_params(params, overrides or [], demo=demo)
    wd = Workdir.at(workdir or settings.get("workdir") or "work")
    wd.root.mkdir(parents=True, exist_ok=True)
    environment.prepare(wd.root)
    return settings, wd


def show(stage: str, summary: dict[str, Any]) -> None:
    """Print the row counts a stage reports, and its key figures."""
    state = "unchanged, skipped" if summary.get("skipped") else "done"
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
        if key not in ("rows", "rows_per_task", "rows_per_split", "rows_per_task_split", "skipped") \
                and isinstance(value, (int, float, str, bool)):
            table.add_row(key, str(value))
    out.print(table)


def run_stage_command(stage: str, params: Path | None, overrides: list[str] | None, demo: bool,
                      workdir: Path | None, force: bool, **options: Any) -> dict[str, Any]:
    settings, wd = context(params, overrides, demo, workdir)
    summary = None if force else fresh_summary(stage, settings, wd)
    if summary is None:  # only now pay for the Prefect engine
        from .stages import FLOWS
        summary = FLOWS[stage](settings, str(wd.root), force=force, options=options)
    show(stage, summary)
    return summary


@app.command()
@one_line_errors
def ingest(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
           force: ForceOpt = False) -> None:
    """Read MIMIC-CXR, MIMIC-NLE and Rad-ReStruct into interim Parquet tables."""
    run_stage_command("ingest", params, set_, demo, workdir, force)


@app.command()
@one_line_errors
def plan(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
         force: ForceOpt = False) -> None:
    """Decide every sample of the ten tasks (no model runs)."""
    run_stage_command("plan", params, set_, demo, workdir, force)


@app.command()
@one_line_errors
def assemble(workdir: WorkdirOpt = None, params: ParamsOpt = None, set_: SetOpt = None, demo: DemoOpt = False,
             force: ForceOpt = False,
             exclude_failed_audit: Annotated[bool, typer.Option(
                 "--exclude-failed-audit/--keep-failed-audit",
                 help="Move rows that failed the audit to the exclusion shards")] = True) -> None:
    """Join plan, generations and audit into versioned shards, manifest and JSON exports."""
    overrides = [*(set_ or []), f"assemble.exclude_failed_audit={str(exclude_failed_audit).lower()}"]
    run_stage_command("assemble", params, overrides, demo, workdir, force)


@app.command("make-demo")
@one_line_errors
def make_demo(out_dir: Annotated[Path, typer.Argument(help="Target folder")] = Path("data/demo"),
              rad_restruct: Annotated[Path | None, typer.Option(help="Rad-ReStruct data folder to copy")] = None,
              seed: Annotated[int, typer.Option(help="Generator seed")] = 20240712) -> None:
    """(Re)generate the synthetic demo corpus (deterministic)."""
    from ..tasks.sources.demo import generate_demo
    counts = generate_demo(out_dir, seed=seed, rad_restruct_src=rad_restruct)
    out.print(counts)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
