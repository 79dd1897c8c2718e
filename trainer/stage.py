"""The train stage as the stage registry sees it: what it reads and writes (:func:`stage_spec`)
and its entry point. Kept apart from :mod:`.run` so that deciding whether training is up to date
(or checking its settings) does not import torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..tasks.stage import StageSpec
from ..tasks.text.conversation import conversation_file, templates_dir_of
from ..tasks.workdir import Workdir
from .config import DEMO_MODEL, dataset_version, load_config, output_dir


def stage_spec(params: dict[str, Any], wd: Workdir) -> StageSpec:
    cfg = load_config(params)
    version = dataset_version(cfg, params)
    inputs = [wd.shards(version) / "manifest.json", conversation_file(templates_dir_of(params))]
    if cfg.features.path:
        inputs.append(Path(cfg.features.path))
    if cfg.base_model == DEMO_MODEL:
        inputs.append(wd.models / DEMO_MODEL)
    elif Path(cfg.base_model).is_dir():
        inputs.append(Path(cfg.base_model))
    return StageSpec("train", inputs, [output_dir(cfg, wd, version) / "adapter", wd.report("train-summary.json")])


def run_train(params: dict[str, Any], wd: Workdir, *, resume: bool = True) -> dict[str, Any]:
    """The stage function (imports the training code, and with it torch)."""
    from .run import run_train as train

    return train(params, wd, resume=resume)
