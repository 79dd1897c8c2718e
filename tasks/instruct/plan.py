"""The plan stage: decide every sample before any model runs.

Reads the ingest and label tables, builds each task of the allocation preset with its builder
and writes ``interim/plan.parquet`` (schema :data:`schemas.PLAN`, rows ordered by task then
sample key) and ``reports/plan-summary.json``. Replay rows carry ``gen_messages``, the
conversation the generate stage answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ...schemas import PLAN
from ..config import section
from ..errors import ConfigError, InputError
from ..io import read_parquet, write_json, write_parquet
from ..stage import StageSpec
from ..workdir import Workdir
from .base import BuildContext, fuse_rows
from .fidelity import AUTO, FIDELITIES, IMPROVED, ORIGINAL, ORIGINAL_SPLITS
from .import_original import imported_origin
from .inputs import PlanInputs, assign_parts, image_frame
from .presets import ALL_TASKS, REPORT_GENERATION, VIEW_CLASSIFICATION, Preset, get_preset
from .registry import BUILDERS
from .templates import template_files

INPUT_TABLES = ("reports", "images", "labels", "nle", "radrestruct_qa")
SPLITS = ("train", "validate", "test")
SUMMARY = "plan-summary.json"
#: the preset the original code built (the only one plan.fidelity original applies to)
ORIGINAL_PRESET = "radialog-v1"
VIEW_CONTEXTS = ("image_only", "context_dropping")


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
    tables = {name: read_parquet(wd.table(name)).to_pandas() for name in INPUT_TABLES}
    images = image_frame(tables["reports"], tables["images"], tables["labels"], ctx.splits)
    predictions = None  # without a predictions file the label stage writes an empty table
    if wd.table("prediction_labels").exists():
        predictions = read_parquet(wd.table("prediction_labels")).to_pandas()
        predictions = predictions if len(predictions) else None
    return PlanInputs(images=images, parts=assign_parts(ctx, images), nle=tables["nle"],
                      radrestruct=tables["radrestruct_qa"], predictions=predictions)


def build_plan(ctx: BuildContext, inputs: PlanInputs) -> pd.DataFrame:
    """Every task of the preset; in the original fidelity the instruct tasks' rows then go through
    the original's fuse step (rows it would have failed on are dropped and counted)."""
    frames = []
    for task in (t for t in ALL_TASKS if t in ctx.preset.tasks):
        frame = BUILDERS[task](ctx, inputs)
        if ctx.original and task != REPORT_GENERATION and len(frame):
            frame, dropped = fuse_rows(frame)
            if dropped:
                inputs.notes[f"{task}_dropped_by_fuse_format"] = dropped
        frames.append(frame)
    plan = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    if plan is None:
        raise InputError(None, "the plan is empty: no source rows in the configured splits")
    dup = plan["sample_id"].duplicated()
    if dup.any():
        raise InputError(None, f"sample id collision for key {plan.loc[dup, 'sample_key'].iloc[0]!r}")
    return plan


def to_table(plan: pd.DataFrame) -> pa.Table:
    """The plan as Arrow, rows ordered by task (in ALL_TASKS order) then sample key."""
    frame = plan[PLAN.names].astype({"subject_id": "Int64", "study_id": "Int64"})
    for name in ("task_mode", "source_ref", "view_position", "structured_findings", "labeler", "output"):
        frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    table = pa.Table.from_pandas(frame, schema=PLAN, preserve_index=False)
    order = {task: i for i, task in enumerate(ALL_TASKS)}
    rank = pa.array(plan["task"].map(order).to_numpy(dtype="int64"))
    keys = pa.table({"rank": rank, "key": table.column("sample_key")})
    return table.take(pc.sort_indices(keys, [("rank", "ascending"), ("key", "ascending")]))


def run_plan(params: dict[str, Any], wd: Workdir) -> dict[str, Any]:
    cfg = load_config(params)
    ctx = BuildContext(seed=int(params["seed"]), preset=effective_preset(cfg), splits=tuple(cfg.splits),
                       templates_dir=cfg.templates_dir, fidelity=cfg.fidelity)
    inputs = load_inputs(ctx, wd)
    plan = build_plan(ctx, inputs)
    write_parquet(to_table(plan), wd.table("plan"))
    counts = plan.groupby(["task", "split"]).size()
    summary = {
        "preset": cfg.preset,
        "fidelity": cfg.fidelity,
        "splits": list(cfg.splits),
        "rows": len(plan),
        "rows_per_task": {t: int(n) for t, n in plan["task"].value_counts().sort_index().items()},
        "rows_per_task_split": {f"{t}/{s}": int(n) for (t, s), n in counts.items()},
        "replay_rows": int(plan["gen_messages"].notna().sum()),
        "context_modes": {f"{t}/{m}": int(n) for (t, m), n in plan.groupby(["task", "context_mode"]).size().items()},
        "notes": inputs.notes,
    }
    write_json(summary, wd.report(SUMMARY))
    return summary
