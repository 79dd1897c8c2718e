"""A demo work dir whose replay rows the audit both passes and fails: the generation cache is the
faithful writer of ``test_release_demo`` (answers built from each study's labels, every fifth one
broken) instead of the tiny random model, whose answers all fail. For the review tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from radialog_instruct.tasks.config import load_params
from radialog_instruct.tasks.instruct.plan import run_plan
from radialog_instruct.tasks.labeling.stage import run_label
from radialog_instruct.tasks.quality.audit import run_audit
from radialog_instruct.tasks.sources.ingest import run_ingest
from radialog_instruct.tasks.workdir import Workdir

from test_release_demo import SETTINGS, write_generation_cache


def audited_demo(root: Path) -> tuple[dict[str, Any], Workdir]:
    """(params, work dir) after ingest, label, plan, the faithful cache and the audit."""
    params = load_params(demo=True)
    for key, value in SETTINGS.items():
        params[key] = {**(params.get(key) or {}), **value}
    wd = Workdir.at(root)
    run_ingest(params, wd)
    run_label(params, wd)
    run_plan(params, wd)
    write_generation_cache(params, wd)
    run_audit(params, wd)
    return params, wd
