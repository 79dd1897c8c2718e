"""The plan stage: decide every sample before any model runs.

Reads the ingest and label tables, builds each task of the allocation preset with its builder
(Arrow tables, batch by batch in key order, :mod:`.base`) and writes ``interim/plan.parquet``
(schema :data:`schemas.PLAN`, rows ordered by task then sample key; each batch as it is built, in
row groups of at most :data:`ROW_GROUP_ROWS`) and ``reports/plan-summary.json``. Replay rows carry ``gen_messages``, the
conversation the generate stage answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ...schemas import PLAN
from ..config import section
from ..errors import ConfigError, InputError
from ..io import parquet_writer, read_parquet, write_json
from ..stage import StageSpec
from ..storage.shards import with_pandas_metadata
from ..workdir import Workdir
from .base import BuildContext, fuse_rows
from .fidelity import AUTO, FIDELITIES, IMPROVED, ORIGINAL, ORIGINAL_SPLITS
from .import_original import imported_origin
from .inputs import IMAGE_COLUMNS, LABEL_COLUMNS, REPORT_COLUMNS, PlanInputs, assign_parts, image_frame
from .presets import ALL_TASKS, REPORT_GENERATION, VIEW_CLASSIFICATION, Preset, get_preset
from .registry import BUILDERS
from .templates import template_files

INPUT_TABLES = ("reports", "images", "labels", "nle", "radrestruct_qa")
SPLITS = ("train", "validate", "test")
SUMMARY = "plan-summary.json"
#: the preset the original code built (the only one plan.fidelity original applies to)
ORIGINAL_PRESET = "radialog-v1"
VIEW_CONTEXTS = ("image_only", "context_dropping")
ROW_GROUP_ROWS = 50_000
#: nullable string columns (pandas readers get them as object columns)
OBJECT_COLUMNS = ("task_mode", "source_ref", "view_position", "structured_findings", "labeler", "output")


@dataclass(frozen=True)
class PlanConfig:
    preset: str = "radialog-v1.1"
    splits: list[str] = field(default_factory=lambda: list(SPLITS))
    #: a folder of template YAML files replacing the packaged ones (e.g. imported originals)
    templates_dir: str | None = None
    #: auto | original | improved (:mod:`.fidelity`); :func:`load_config` resolves auto
    fidelity: str = AUTO
    #: image_only (view classification follows the image alone) | context_dropping
    view_classification_context: str = "image_only"

    @property
    def original(self) -> bool:
        return self.fidelity == ORIGINAL


def resolve_fidelity(cfg: PlanConfig) -> str:
    """``original`` or ``improved``: auto is original for radialog-v1 with imported templates."""
    imported = imported_origin(cfg.templates_dir) is not None
    if cfg.fidelity == AUTO:
        return ORIGINAL if cfg.preset == ORIGINAL_PRESET and imported else IMPROVED
    if cfg.fidelity == ORIGINAL and cfg.preset != ORIGINAL_PRESET:
        raise ConfigError(f"params: plan.fidelity original reproduces the original code, which built "
                          f"{ORIGINAL_PRESET} only (plan.preset is {cfg.preset})")
    if cfg.fidelity == ORIGINAL and not imported:
        raise ConfigError("params: plan.fidelity original needs the original prompts: run `radialog-instruct "
                          "import-prompts <RaDialog checkout> -o DIR` and set plan.templates_dir to DIR")
    return cfg.fidelity


def load_config(params: dict[str, Any]) -> PlanConfig:
    """The plan settings with the fidelity resolved (original: the train split only)."""
    cfg = section(PlanConfig, params, "plan")
    bad = [s for s in cfg.splits if s not in SPLITS]
    if bad or not cfg.splits:
        raise ConfigError(f"params: plan.splits has {bad or 'no splits'} (expected a subset of {', '.join(SPLITS)})")
    get_preset(cfg.preset)
    if cfg.fidelity not in FIDELITIES:
        raise ConfigError(f"params: plan.fidelity {cfg.fidelity!r} is unknown (known: {', '.join(FIDELITIES)})")
    if cfg.view_classification_context not in VIEW_CONTEXTS:
        raise ConfigError(f"params: plan.view_classification_context {cfg.view_classification_context!r} is "
                          f"unknown (known: {', '.join(VIEW_CONTEXTS)})")
    fidelity = resolve_fidelity(cfg)
    if fidelity == ORIGINAL:
        if not set(ORIGINAL_SPLITS) <= set(cfg.splits):
            raise ConfigError("params: plan.fidelity original builds the train split, which plan.splits leaves out")
        return replace(cfg, fidelity=fidelity, splits=list(ORIGINAL_SPLITS))
    return replace(cfg, fidelity=fidelity)


def effective_preset(cfg: PlanConfig) -> Preset:
    """The preset, with view classification out of context dropping unless the settings ask for it."""
    preset = get_preset(cfg.preset)
    if cfg.view_classification_context == "image_only":
        preset = replace(preset, context_dropping=tuple(t for t in preset.context_dropping if t != VIEW_CLASSIFICATION))
    return preset


def stage_spec(params: dict[str, Any], wd: Workdir) -> StageSpec:
    cfg = load_config(params)
    # the label stage always writes prediction_labels (empty without a predictions file)
    inputs = [wd.table(t) for t in (*INPUT_TABLES, "prediction_labels")] + template_files(cfg.templates_dir)
    return StageSpec("plan", inputs, [wd.table("plan"), wd.report(SUMMARY)])


def load_inputs(ctx: BuildContext, wd: Workdir) -> PlanInputs:
    images = image_frame(read_parquet(wd.table("reports"), columns=REPORT_COLUMNS),
                         read_parquet(wd.table("images"), columns=[*IMAGE_COLUMNS, "has_report"]),
                         read_parquet(wd.table("labels"), columns=LABEL_COLUMNS), ctx.splits)
    tables = {name: read_parquet(wd.table(name)).to_pandas() for name in ("nle", "radrestruct_qa")}
    predictions = None  # without a predictions file the label stage writes an empty table
    if wd.table("prediction_labels").exists():
        predictions = read_parquet(wd.table("prediction_labels")).to_pandas()
        predictions = predictions if len(predictions) else None
    return PlanInputs(images=images, parts=assign_parts(ctx, images), nle=tables["nle"],
                      radrestruct=tables["radrestruct_qa"], predictions=predictions)


def task_batches(ctx: BuildContext, inputs: PlanInputs, task: str) -> Iterator[pa.Table]:
    """One task's rows batch by batch, in key order; in the original fidelity the instruct tasks' rows
    go through the original's fuse step (rows it would have failed on are dropped and counted)."""
    last = None
    for table in BUILDERS[task](ctx, inputs):
        if ctx.original and task != REPORT_GENERATION and table.num_rows:
            table, dropped = fuse_rows(table)
            if dropped:
                note = f"{task}_dropped_by_fuse_format"
                inputs.notes[note] = inputs.notes.get(note, 0) + dropped
        if not table.num_rows:
            continue
        keys = table.column("sample_key")
        if not pc.all(pc.less(keys[:-1], keys[1:])).as_py() or (last is not None and last >= keys[0].as_py()):
            raise RuntimeError(f"the {task} builder gave rows out of key order")
        last = keys[-1].as_py()
        yield table


def tasks_of(ctx: BuildContext) -> list[str]:
    return [t for t in ALL_TASKS if t in ctx.preset.tasks]


def build_plan(ctx: BuildContext, inputs: PlanInputs) -> pa.Table:
    """Every task of the preset in one table (rows ordered by task, then sample key)."""
    tables = [table for task in tasks_of(ctx) for table in task_batches(ctx, inputs, task)]
    return check_plan(pa.concat_tables(tables) if tables else PLAN.empty_table())


def check_plan(plan: pa.Table) -> pa.Table:
    """A plan with rows and without two rows of one sample id."""
    if plan.num_rows == 0:
        raise InputError(None, "the plan is empty: no source rows in the configured splits")
    counts = pc.value_counts(plan.column("sample_id"))
    twice = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(twice):
        at = pc.index(plan.column("sample_id"), twice[0]).as_py()
        raise InputError(None, f"sample id collision for key {plan.column('sample_key')[at].as_py()!r}")
    return plan


class Summary:
    """The plan summary's counts, gathered task by task."""

    def __init__(self) -> None:
        self.rows = 0
        self.per_task: dict[str, int] = {}
        self.per_task_split: dict[str, int] = {}
        self.context_modes: dict[str, int] = {}
        self.replay_rows = 0

    def add(self, task: str, table: pa.Table) -> None:
        if not table.num_rows:
            return
        self.rows += table.num_rows
        self.per_task[task] = self.per_task.get(task, 0) + table.num_rows
        self.replay_rows += table.num_rows - table.column("gen_messages").null_count
        for name, target in (("split", self.per_task_split), ("context_mode", self.context_modes)):
            counts = pc.value_counts(table.column(name))
            for value, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()):
                target[f"{task}/{value}"] = target.get(f"{task}/{value}", 0) + n


def write_plan(ctx: BuildContext, inputs: PlanInputs, path: Any) -> Summary:
    """Build the plan into ``path`` (atomically), task by task and batch by batch: each batch is
    written as soon as it is built, so one batch's columns are in memory, not the plan's."""
    schema = with_pandas_metadata(PLAN, OBJECT_COLUMNS)
    summary, ids = Summary(), []
    with parquet_writer(path, schema) as writer:
        with ThreadPoolExecutor(1) as background:
            written = None  # a batch is compressed and written while the next one is built
            for task in tasks_of(ctx):
                for table in task_batches(ctx, inputs, task):
                    summary.add(task, table)
                    ids.append(table.select(["sample_id", "sample_key"]))
                    if written is not None:
                        written.result()
                    written = background.submit(writer.write_table, table.replace_schema_metadata(schema.metadata),
                                                row_group_size=ROW_GROUP_ROWS)
            if written is not None:
                written.result()
        check_plan(pa.concat_tables(ids) if ids else PLAN.empty_table())
    return summary


def run_plan(params: dict[str, Any], wd: Workdir) -> dict[str, Any]:
    cfg = load_config(params)
    ctx = BuildContext(seed=int(params["seed"]), preset=effective_preset(cfg), splits=tuple(cfg.splits),
                       templates_dir=cfg.templates_dir, fidelity=cfg.fidelity)
    inputs = load_inputs(ctx, wd)
    counts = write_plan(ctx, inputs, wd.table("plan"))
    summary = {
        "preset": cfg.preset,
        "fidelity": cfg.fidelity,
        "splits": list(cfg.splits),
        "rows": counts.rows,
        "rows_per_task": dict(sorted(counts.per_task.items())),
        "rows_per_task_split": dict(sorted(counts.per_task_split.items())),
        "replay_rows": counts.replay_rows,
        "context_modes": dict(sorted(counts.context_modes.items())),
        "notes": inputs.notes,
    }
    write_json(summary, wd.report(SUMMARY))
    return summary
