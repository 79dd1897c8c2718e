"""The stages and where their functions live (no Prefect import here, so the CLI can check a
stage's stamp before paying for the Prefect engine's start-up)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..tasks.stage import is_fresh, read_stamp
from ..tasks.workdir import Workdir


@dataclass(frozen=True)
class StageDef:
    name: str
    module: str          # module under radialog_instruct holding the stage functions
    run: str = "run"     # fn(params, wd, **options) -> summary
    spec: str = "stage_spec"
    retries: int = 0     # retries with exponential backoff (model / network stages only)

    def function(self, attr: str) -> Callable[..., Any]:
        module = importlib.import_module(f"radialog_instruct.{self.module}")
        return getattr(module, attr)


STAGES: dict[str, StageDef] = {s.name: s for s in (
    StageDef("ingest", "tasks.sources.ingest", run="run_ingest"),
    StageDef("label", "tasks.labeling.stage", run="run_label", retries=2),
    StageDef("plan", "tasks.instruct.plan", run="run_plan"),
    StageDef("generate", "tasks.generation.stage", run="run_generate", retries=2),
    StageDef("audit", "tasks.quality.audit", run="run_audit"),
    StageDef("assemble", "tasks.storage.assemble", run="run_assemble"),
    StageDef("validate", "tasks.quality.validate", run="run_validate"),
    StageDef("release", "tasks.release.physionet", run="run_release"),
    StageDef("train", "trainer.run", run="run_train"),
)}

#: The dataset build, in dependency order (training is opt-in).
BUILD_ORDER = ("ingest", "label", "plan", "generate", "audit", "assemble", "validate", "release")


def skipped_summary(wd: Workdir, name: str) -> dict[str, Any]:
    return {**(read_stamp(wd, name) or {}).get("summary", {}), "skipped": True}


def fresh_summary(name: str, params: dict[str, Any], wd: Workdir) -> dict[str, Any] | None:
    """The recorded summary when the stage is up to date, else None."""
    stage = STAGES[name]
    return skipped_summary(wd, name) if is_fresh(stage.function(stage.spec)(params, wd), wd) else None
